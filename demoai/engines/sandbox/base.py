"""The sandbox interface shared by both backends: limits, results, and the ``Sandbox`` ABC."""
from __future__ import annotations

import abc
import os
import re
import signal
from dataclasses import asdict, dataclass, fields
from pathlib import PurePosixPath
from typing import Any

from demoai.errors import SandboxError

__all__ = ["SandboxLimits", "ExecResult", "Sandbox", "SANDBOX_UID", "SANDBOX_ENV",
           "WORKDIR", "check_relpath", "classify", "Capture"]

SANDBOX_UID = 65534
"""The uid/gid commands run as inside either sandbox (``nobody``)."""
WORKDIR = "/workspace"
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": WORKDIR, "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1"}
"""The whole environment a sandboxed command sees; nothing leaks from the host."""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-command resource limits. ``output_bytes`` caps stdout and stderr each.

    ``cpu_seconds`` is the CPU time of the whole process tree, ``memory_mb`` its memory
    (shared memory and tmpfs included where the backend can count them), ``disk_mb`` the size
    the workspace may reach; what each backend enforces is in its module docstring.
    """

    cpu_seconds: float = 10
    memory_mb: int = 512
    pids: int = 64
    timeout_s: float = 30
    output_bytes: int = 65536
    disk_mb: int = 1024

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "SandboxLimits":
        """Limits from an agent's ``sandbox:`` mapping (its ``backend`` is skipped, and so is
        ``network: false``, the only network there is). An unknown key is refused with the
        closest known one: a misspelt limit must not leave the default in force."""
        if not d:
            return cls()
        known = {f.name: f.type for f in fields(cls)}
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k == "backend" or (k == "network" and v is False):
                continue
            if k not in known:
                import difflib
                close = difflib.get_close_matches(str(k), list(known), n=1)
                hint = (" (the sandbox has no network)" if k == "network" else
                        f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})")
                raise SandboxError(f"unknown sandbox limit {k!r}{hint}", key=str(k))
            if v is None:
                continue
            try:
                if isinstance(v, bool) or (k not in ("cpu_seconds", "timeout_s") and isinstance(v, float)
                                           and not v.is_integer()):
                    raise ValueError(v)
                kw[k] = float(v) if k in ("cpu_seconds", "timeout_s") else int(v)
            except (TypeError, ValueError) as e:
                raise SandboxError(f"sandbox limit {k}={v!r} is not a number", key=k) from e
            if kw[k] <= 0:
                raise SandboxError(f"sandbox limit {k} must be positive, got {v!r}", key=k)
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExecResult:
    """What one command did. ``limit`` names the limit that ended it, when one did."""

    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    limit: str | None = None  # "timeout" | "cpu" | "memory" | "pids" | "disk" | None
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Sandbox(abc.ABC):
    """An isolated place to run an agent's commands against a private ``/workspace``.

    Every command runs with cwd ``/workspace``, the environment :data:`SANDBOX_ENV`, uid
    :data:`SANDBOX_UID`, no network and the sandbox's :class:`SandboxLimits`. Use it as a
    context manager; :meth:`close` is idempotent.
    """

    backend: str = ""

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.closed = False

    @abc.abstractmethod
    def run(self, argv: list[str], *, stdin: bytes | None = None,
            timeout_s: float | None = None) -> ExecResult:
        """Run ``argv`` in the sandbox; a limit being hit is reported, never raised."""

    @abc.abstractmethod
    def put_files(self, files: dict[str, bytes]) -> None:
        """Write files (paths relative to the workspace) into the workspace."""

    @abc.abstractmethod
    def export_files(self, max_bytes: int = 64 << 20) -> dict[str, bytes]:
        """Every regular file in the workspace, relative path -> bytes. Symlinks are skipped."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Empty the workspace."""

    @abc.abstractmethod
    def _close(self) -> None: ...

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._close()

    def _check_open(self) -> None:
        if self.closed:
            raise SandboxError(f"{self.backend} sandbox is closed")

    def _check_argv(self, argv: list[str]) -> None:
        self._check_open()
        if not argv or not all(isinstance(a, str) for a in argv):
            raise SandboxError("argv must be a non-empty list of strings")
        if any("\0" in a for a in argv):
            raise SandboxError("argv must not contain NUL bytes")

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort: never leak a container or a temp dir
        try:
            self.close()
        except Exception:
            pass


def check_relpath(path: str) -> str:
    """Normalise a workspace-relative path; reject absolute paths and ``..``."""
    if not isinstance(path, str) or not path or "\0" in path:
        raise SandboxError(f"invalid workspace path {path!r}", path=str(path))
    p = PurePosixPath(path.replace(os.sep, "/"))
    if p.is_absolute() or ".." in p.parts:
        raise SandboxError(f"path {path!r} leaves the workspace", path=path)
    parts = [x for x in p.parts if x not in ("", ".")]
    if not parts:
        raise SandboxError(f"invalid workspace path {path!r}", path=path)
    return "/".join(parts)


class Capture:
    """Collect one output stream, keeping at most ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.truncated = False

    def feed(self, data: bytes) -> None:
        room = self.limit - len(self.buf)
        if len(data) > room:
            self.truncated = True
            data = data[:max(room, 0)]
        self.buf += data

    def text(self) -> str:
        return self.buf.decode("utf-8", errors="replace")


_MEMORY = re.compile(r"MemoryError|Cannot allocate memory|out of memory|std::bad_alloc"
                     r"|cannot allocate|ENOMEM", re.I)
_DISK = re.compile(r"No space left on device|File too large|Disk quota exceeded"
                   r"|ENOSPC|EFBIG|EDQUOT", re.I)
_PIDS = re.compile(r"Resource temporarily unavailable|Cannot fork|can't fork|fork: retry"
                   r"|BlockingIOError: \[Errno 11\]|EAGAIN", re.I)


def classify(exit_code: int, stderr: str, timed_out: bool, *, killed_means_memory: bool) -> str | None:
    """Best-effort name of the limit that ended a command (from its exit status and stderr).

    ``killed_means_memory``: a SIGKILL that was not ours is an out-of-memory kill (cgroup).
    """
    if timed_out:
        return "timeout"
    if _PIDS.search(stderr):  # a fork that failed is reported even if the command recovered
        return "pids"
    if exit_code == 0:
        return None
    if exit_code == 128 + signal.SIGXCPU:
        return "cpu"
    if exit_code == 128 + signal.SIGXFSZ:
        return "disk"
    if exit_code == 128 + signal.SIGKILL and killed_means_memory:
        return "memory"
    if _MEMORY.search(stderr):
        return "memory"
    if _DISK.search(stderr):  # a full workspace, /tmp or /dev/shm
        return "disk"
    return None
