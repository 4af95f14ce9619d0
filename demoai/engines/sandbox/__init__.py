"""The agent sandbox: run an agent's tool commands isolated, behind one interface.

Two backends pass the same escape tests: ``docker`` (one locked-down container per sandbox, on
any Docker-API engine) and ``namespace`` (bubblewrap, for machines without an engine)::

    with open_sandbox(limits=SandboxLimits(timeout_s=10)) as sb:
        sb.put_files({"main.py": b"print(6 * 7)"})
        res = sb.run(["python3", "main.py"])   # ExecResult(exit_code=0, stdout="42\\n", ...)
"""
from __future__ import annotations

import os

from demoai.errors import SandboxError, SandboxUnavailable

from .base import ExecResult, Sandbox, SandboxLimits

__all__ = ["SandboxLimits", "ExecResult", "Sandbox", "BACKENDS", "available_backends",
           "open_sandbox", "SandboxError", "SandboxUnavailable"]

BACKENDS = ("docker", "namespace")


def available_backends(docker_host: str | None = None) -> list[str]:
    """The backends that can start here, preferred first (docker probes ``docker_host``,
    ``DOCKER_HOST`` or the default socket)."""
    from .docker import engine_available
    from .namespace import bwrap_available

    found = []
    try:
        if engine_available(docker_host) is None:
            found.append("docker")
    except SandboxUnavailable:  # the docker package is missing
        pass
    if bwrap_available() is None:
        found.append("namespace")
    return found


def open_sandbox(backend: str | None = None, limits: SandboxLimits | None = None, *,
                 workspace: str | os.PathLike[str] | None = None, docker_host: str | None = None,
                 image: str | None = None) -> Sandbox:
    """Open a sandbox on ``backend``; ``None`` picks docker when an engine answers
    (``docker_host`` or ``DOCKER_HOST``), else namespace.

    ``workspace`` (namespace only) is a host directory bound at ``/workspace``; the docker
    backend keeps its workspace in the container (move files with put_files/export_files).
    Raises :class:`SandboxUnavailable` when the backend cannot run here.
    """
    if backend is None:
        from .docker import engine_available

        host = docker_host or os.environ.get("DOCKER_HOST")
        if not host and os.path.exists("/var/run/docker.sock"):
            host = "unix:///var/run/docker.sock"
        try:
            usable = bool(host) and engine_available(host) is None
        except SandboxUnavailable:
            usable = False
        backend = "docker" if usable else "namespace"
    if backend == "namespace":
        from .namespace import NamespaceSandbox
        return NamespaceSandbox(limits, workspace=workspace)
    if backend == "docker":
        from .docker import DockerSandbox
        if workspace is not None:
            raise SandboxError("the docker backend keeps its workspace inside the container; "
                               "use put_files()/export_files() instead of workspace=")
        return DockerSandbox(limits, docker_host=docker_host, image=image)
    raise SandboxError(f"unknown sandbox backend {backend!r} (choose from {', '.join(BACKENDS)})",
                       backend=str(backend))
