"""The Docker backend: one long-lived locked-down container per sandbox, one exec per command.

The container has no network, a read-only root, no capabilities, ``no-new-privileges``, uid
65534, memory/pids/CPU limits and tmpfs ``/workspace`` and ``/tmp``. Its pid 1 is a tiny
python reaper so killed process trees never pile up as zombies. Each command runs as
``timeout -s KILL T argv`` under a shell that afterwards kills every process the command
left behind. Files move in and out with ``tar`` over exec stdin/stdout: the engine's archive
API refuses a read-only root and cannot see tmpfs mounts. Works with any Docker-API engine.
"""
from __future__ import annotations

import io
import math
import os
import socket
import struct
import threading
import time
from typing import Any

from demoai.errors import SandboxError, SandboxUnavailable

from .base import (SANDBOX_ENV, SANDBOX_UID, WORKDIR, Capture, ExecResult, Sandbox,
                   SandboxLimits, classify)
from .files import files_of_tar, tar_of

__all__ = ["DockerSandbox", "connect", "engine_available"]

_REAPER = ("import os,time\nwhile True:\n try: os.wait()\n"
           " except ChildProcessError: time.sleep(1)\n except InterruptedError: pass\n")
# Runs the command under a hard wall-clock limit, then kills whatever it left running
# (kill -1 spares pid 1 and the shell itself).
_WRAP = 'timeout -s KILL "$0" "$@"; rc=$?; kill -9 -1 2>/dev/null; exit $rc'
_GRACE_S = 5.0


def _lib() -> Any:
    try:
        import docker
    except ImportError as e:
        raise SandboxUnavailable("the docker backend needs the 'docker' package "
                                 "(pip install docker)", backend="docker") from e
    return docker


def connect(docker_host: str | None = None, timeout: float = 60) -> Any:
    """A ``docker.DockerClient`` for ``docker_host`` (else ``DOCKER_HOST``/the default socket).

    Raises :class:`SandboxUnavailable` when no engine answers.
    """
    docker = _lib()
    host = docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.DockerClient(base_url=host, timeout=timeout)
        client.ping()
    except Exception as e:  # the SDK raises several types for "nothing there"
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise SandboxUnavailable(f"no Docker engine answers at {host}: {msg}",
                                 backend="docker", host=host) from e
    return client


def engine_available(docker_host: str | None = None) -> str | None:
    """None when an engine answers at ``docker_host``/``DOCKER_HOST``, else why not."""
    try:
        connect(docker_host, timeout=5).close()
    except SandboxUnavailable as e:
        return e.message
    return None


class DockerSandbox(Sandbox):
    """A sandbox backed by one container on a Docker engine."""

    backend = "docker"

    def __init__(self, limits: SandboxLimits | None = None, *, docker_host: str | None = None,
                 image: str | None = None) -> None:
        super().__init__(limits)
        self.closed = True  # until the container runs
        self._lock = threading.Lock()
        self.client = connect(docker_host)
        try:
            if image is None:
                from .image import ensure_image
                image = ensure_image(self.client)
            self.image = image
            self.container = self._start_container(image)
        except BaseException:
            self.client.close()
            raise
        self.closed = False

    def _start_container(self, image: str) -> Any:
        docker = _lib()
        lim = self.limits
        cpu = max(1, math.ceil(lim.cpu_seconds))
        data = lim.memory_mb << 20
        ws_mb = max(64, min(lim.disk_mb, lim.memory_mb + 128))   # disk_mb, within the memory cgroup
        try:
            return self.client.containers.run(
                image, ["python3", "-c", _REAPER], detach=True, user=f"{SANDBOX_UID}:{SANDBOX_UID}",
                network_mode="none", read_only=True, cap_drop=["ALL"],
                security_opt=["no-new-privileges"], hostname="sandbox", working_dir=WORKDIR,
                environment=dict(SANDBOX_ENV), labels={"demoai.sandbox": "1"},
                tmpfs={WORKDIR: f"rw,nosuid,nodev,size={ws_mb}m,uid={SANDBOX_UID},"
                                f"gid={SANDBOX_UID},mode=0755",
                       "/tmp": f"rw,nosuid,nodev,noexec,size={min(ws_mb, 256)}m,mode=1777"},
                mem_limit=f"{lim.memory_mb + 128}m", memswap_limit=f"{lim.memory_mb + 128}m",
                pids_limit=lim.pids + 2, nano_cpus=1_000_000_000,
                ulimits=[docker.types.Ulimit(name="cpu", soft=cpu, hard=cpu + 1),
                         docker.types.Ulimit(name="data", soft=data, hard=data),
                         docker.types.Ulimit(name="core", soft=0, hard=0)])
        except docker.errors.ImageNotFound as e:
            raise SandboxError(f"sandbox image {image} not found", image=image) from e
        except docker.errors.APIError as e:
            raise SandboxError(f"cannot start the sandbox container: {e.explanation or e}") from e

    # -- commands -------------------------------------------------------------------------
    def run(self, argv: list[str], *, stdin: bytes | None = None,
            timeout_s: float | None = None) -> ExecResult:
        self._check_argv(argv)
        timeout = float(timeout_s if timeout_s is not None else self.limits.timeout_s)
        cmd = ["sh", "-c", _WRAP, f"{timeout:.3f}s", *argv]
        lim = self.limits.output_bytes
        with self._lock:
            for attempt in range(20):
                start = time.monotonic()
                code, out, err, hung = self._exec(cmd, stdin, start + timeout + _GRACE_S, lim, lim)
                # runc could not even start the command: the pids of a just-killed process
                # tree are still being reaped. Nothing ran, so trying again is safe.
                if not (code == 126 and "OCI runtime exec failed" in out.text() + err.text()):
                    break
                time.sleep(0.1 * (attempt + 1))
        dur = time.monotonic() - start
        timed_out = hung or (code == 137 and dur >= timeout - 0.05)
        text_err = err.text()
        limit = classify(code, text_err, timed_out, killed_means_memory=True)
        return ExecResult(exit_code=code, stdout=out.text(), stderr=text_err, duration_s=dur,
                          timed_out=timed_out, limit=limit,
                          truncated=out.truncated or err.truncated)

    def _exec(self, cmd: list[str], stdin: bytes | None, deadline: float, out_limit: int,
              err_limit: int) -> tuple[int, Capture, Capture, bool]:
        """Run ``cmd``; returns (exit code, stdout, stderr, hung past the deadline)."""
        api = self.client.api
        out, err = Capture(out_limit), Capture(err_limit)
        try:
            eid = api.exec_create(self.container.id, cmd, stdin=stdin is not None,
                                  user=f"{SANDBOX_UID}:{SANDBOX_UID}", workdir=WORKDIR,
                                  environment=dict(SANDBOX_ENV))["Id"]
            raw = api.exec_start(eid, socket=True)
        except Exception as e:
            raise SandboxError(f"docker exec failed: {e}") from e
        sock: socket.socket = getattr(raw, "_sock", raw)
        hung = False
        try:
            if stdin is not None:
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                sock.sendall(stdin)
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            hung = not _read_frames(sock, deadline, out, err)
        except (socket.timeout, TimeoutError):
            hung = True
        except OSError as e:
            raise SandboxError(f"docker exec stream failed: {e}") from e
        finally:
            raw.close()
        if hung:
            self._kill_all()
            return 137, out, err, True
        return self._exit_code(eid), out, err, False

    def _exit_code(self, eid: str) -> int:
        for _ in range(100):
            info = self.client.api.exec_inspect(eid)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            time.sleep(0.02)
        raise SandboxError("docker exec did not report an exit code")

    def _kill_all(self) -> None:
        """Kill every process of the sandbox user except pid 1 (used after a hung exec)."""
        try:
            self.container.exec_run(["kill", "-9", "-1"], user=f"{SANDBOX_UID}:{SANDBOX_UID}")
        except Exception:
            pass

    # -- files ----------------------------------------------------------------------------
    def put_files(self, files: dict[str, bytes]) -> None:
        self._check_open()
        if not files:
            return
        data = tar_of(files)
        with self._lock:
            code, _out, err, _ = self._exec(
                ["tar", "-x", "-f", "-", "-C", WORKDIR, "--no-same-owner", "--overwrite"],
                data, time.monotonic() + 120, 4096, 4096)
        if code != 0:
            raise SandboxError(f"cannot write files into the sandbox: {err.text().strip()}")

    def export_files(self, max_bytes: int = 64 << 20) -> dict[str, bytes]:
        self._check_open()
        limit = max_bytes + (max_bytes >> 4) + (1 << 20)  # room for tar headers
        with self._lock:
            code, out, err, _ = self._exec(["tar", "-c", "-f", "-", "-C", WORKDIR, "."], None,
                                           time.monotonic() + 120, limit, 4096)
        if out.truncated:
            raise SandboxError(f"workspace holds more than {max_bytes} bytes", max_bytes=max_bytes)
        if code not in (0, 1) and not out.buf:
            raise SandboxError(f"cannot read files from the sandbox: {err.text().strip()}")
        return files_of_tar(io.BytesIO(bytes(out.buf)), ".", max_bytes)

    def reset(self) -> None:
        self._check_open()
        with self._lock:
            code, _o, err, _ = self._exec(
                ["sh", "-c", f"chmod -R u+rwX {WORKDIR} 2>/dev/null; "
                             f"find {WORKDIR} -mindepth 1 -delete"], None,
                time.monotonic() + 60, 4096, 4096)
        if code != 0:
            raise SandboxError(f"cannot empty the sandbox workspace: {err.text().strip()}")

    def _close(self) -> None:
        try:
            self.container.remove(force=True)
        except Exception:
            pass
        finally:
            self.client.close()


def _read_frames(sock: socket.socket, deadline: float, out: Capture, err: Capture) -> bool:
    """Demultiplex docker's stdout/stderr frames until EOF; False if the deadline passed."""
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        chunk = sock.recv(1 << 16)
        if not chunk:
            return True
        buf += chunk
        pos = 0
        while len(buf) - pos >= 8:
            kind, size = struct.unpack_from(">BxxxL", buf, pos)
            if len(buf) - pos < 8 + size:
                break
            (err if kind == 2 else out).feed(bytes(buf[pos + 8:pos + 8 + size]))
            pos += 8 + size
        del buf[:pos]
