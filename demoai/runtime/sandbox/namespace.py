"""The Linux-namespace backend: each command runs in a fresh bubblewrap sandbox.

Isolation: new user/pid/net/ipc/uts/cgroup namespaces (``--unshare-all``; the net namespace has
only loopback), no capabilities, no nested user namespaces, a read-only view of ``/usr`` and a
few ``/etc`` files, a private ``/tmp`` tmpfs, and the workspace bound read-write at
``/workspace``. Limits are rlimits set *inside* the user namespace with ``prlimit``, so
``RLIMIT_NPROC`` counts only the sandbox's processes. When the host process is root, bwrap is
started under a dedicated unprivileged host uid (root is exempt from ``RLIMIT_NPROC``); the
workspace is then owned by that uid while the sandbox is open and handed back on close.
"""
from __future__ import annotations

import math
import os
import random
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from demoai.errors import SandboxError, SandboxUnavailable

from .base import (SANDBOX_ENV, SANDBOX_UID, WORKDIR, Capture, ExecResult, Sandbox,
                   SandboxLimits, classify)
from .files import chown_tree, clear_dir, read_tree, write_file

__all__ = ["NamespaceSandbox", "BWRAP", "PRLIMIT", "bwrap_available"]

BWRAP = "/usr/bin/bwrap"
"""Path of the bubblewrap binary (tests monkeypatch it)."""
PRLIMIT = "/usr/bin/prlimit"
_HOST_UID_BASE = 0x5DA00000  # dedicated host uids used when the host process is root
_PASSWD = (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
           f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:{WORKDIR}:/bin/sh\n").encode()
_GROUP = f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\n".encode()
_HOSTS = b"127.0.0.1 localhost\n::1 localhost\n"
_probe_lock = threading.Lock()
_probed: dict[str, str | None] = {}


def bwrap_available(bwrap: str | None = None) -> str | None:
    """None when bubblewrap works here, else a one-line reason (the result is cached)."""
    path = bwrap or BWRAP
    with _probe_lock:
        if path not in _probed:
            _probed[path] = _probe(path)
        return _probed[path]


def _probe(path: str) -> str | None:
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return f"bubblewrap not found at {path} (install the 'bubblewrap' package)"
    uid = _pick_host_uid() if os.geteuid() == 0 else None
    try:
        p = subprocess.run([path, "--unshare-all", "--unshare-user", "--ro-bind", "/usr", "/usr",
                            *_root_links(), "--uid", str(SANDBOX_UID), "/usr/bin/true"],
                           capture_output=True, timeout=20, user=uid, group=uid, extra_groups=[]
                           if uid is not None else None)
    except (OSError, subprocess.SubprocessError) as e:
        return f"bubblewrap cannot start: {e}"
    if p.returncode != 0:
        msg = p.stderr.decode(errors="replace").strip().splitlines()
        return f"bubblewrap cannot create namespaces here: {msg[-1] if msg else p.returncode}"
    return None


def _root_links() -> list[str]:
    """Mirror the host's top-level /bin, /lib... (symlinks into /usr, or real dirs)."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = f"/{name}"
        if os.path.islink(p):
            args += ["--symlink", os.readlink(p), p]
        elif os.path.isdir(p):
            args += ["--ro-bind", p, p]
    return args


def _pick_host_uid() -> int:
    """A random uid from a dedicated range, if this user namespace maps it; else nobody."""
    uid = _HOST_UID_BASE + random.SystemRandom().randrange(1 << 16)
    try:
        with open("/proc/self/uid_map") as f:
            for line in f:
                inner, _outer, count = (int(x) for x in line.split())
                if inner <= uid < inner + count:
                    return uid
    except OSError:
        pass
    return SANDBOX_UID


class NamespaceSandbox(Sandbox):
    """A sandbox whose commands each run in a fresh set of Linux namespaces (bubblewrap)."""

    backend = "namespace"

    def __init__(self, limits: SandboxLimits | None = None, *,
                 workspace: str | os.PathLike[str] | None = None, bwrap: str | None = None) -> None:
        super().__init__(limits)
        self.closed = True  # until fully set up
        self._bwrap = bwrap or BWRAP
        reason = bwrap_available(self._bwrap)
        if reason:
            raise SandboxUnavailable(reason, backend="namespace")
        self._own_ws = workspace is None
        if workspace is None:
            self.workspace = Path(tempfile.mkdtemp(prefix="demoai-ws-"))
        else:
            self.workspace = Path(workspace).resolve()
            self.workspace.mkdir(parents=True, exist_ok=True)
        self._host_uid = _pick_host_uid() if os.geteuid() == 0 else None
        if self._host_uid is not None:
            chown_tree(self.workspace, self._host_uid)
        self._ws_fd = os.open(self.workspace, os.O_RDONLY | os.O_DIRECTORY)
        self._stage: str | None = None  # see _StagedBind
        if self._host_uid is not None and not _reachable(self.workspace, self._host_uid):
            self._stage = tempfile.mkdtemp(prefix="demoai-stage-")
            os.chmod(self._stage, 0o755)
        self._prlimit = PRLIMIT if os.access(PRLIMIT, os.X_OK) else None
        self._static = self._static_args()
        self.closed = False

    # -- commands -------------------------------------------------------------------------
    def _static_args(self) -> list[str]:
        tmp_mb = max(16, min(self.limits.memory_mb, 256))
        args = [self._bwrap, "--unshare-all", "--unshare-user", "--disable-userns",
                "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
                "--ro-bind", "/usr", "/usr", *_root_links(),
                "--proc", "/proc", "--dev", "/dev",
                "--perms", "1777", "--size", str(tmp_mb << 20), "--tmpfs", "/tmp",
                "--dir", "/etc"]
        for name in ("ld.so.cache", "alternatives", "nsswitch.conf"):
            if os.path.exists(f"/etc/{name}"):
                args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        args += ["--clearenv"]
        for k, v in SANDBOX_ENV.items():
            args += ["--setenv", k, v]
        return args

    def _limit_args(self) -> list[str]:
        lim = self.limits
        cpu = max(1, math.ceil(lim.cpu_seconds))
        mem = lim.memory_mb << 20
        if self._prlimit is None:
            return []
        return [self._prlimit, f"--cpu={cpu}:{cpu + 1}", f"--data={mem}:{mem}",
                f"--nproc={lim.pids}:{lim.pids}", "--core=0:0", "--"]

    def run(self, argv: list[str], *, stdin: bytes | None = None,
            timeout_s: float | None = None) -> ExecResult:
        self._check_argv(argv)
        timeout = float(timeout_s if timeout_s is not None else self.limits.timeout_s)
        fds: list[int] = []
        try:
            args = list(self._static)
            for data, dest in ((_PASSWD, "/etc/passwd"), (_GROUP, "/etc/group"),
                               (_HOSTS, "/etc/hosts")):
                fd = os.memfd_create("demoai-etc")
                os.write(fd, data)
                os.lseek(fd, 0, os.SEEK_SET)
                fds.append(fd)
                args += ["--ro-bind-data", str(fd), dest]
            src = ["--bind", self._stage, WORKDIR] if self._stage else \
                ["--bind-fd", str(self._ws_fd), WORKDIR]
            args += [*src, "--remount-ro", "/",
                     "--chdir", WORKDIR, "--"]
            args += self._limit_args() + list(argv)
            return self._execute(args, stdin, timeout, fds + [self._ws_fd])
        finally:
            for fd in fds:
                os.close(fd)

    def _execute(self, args: list[str], stdin: bytes | None, timeout: float,
                 pass_fds: list[int]) -> ExecResult:
        uid = self._host_uid
        staged = _StagedBind(str(self.workspace), self._stage, uid) if self._stage else None
        out, err = Capture(self.limits.output_bytes), Capture(self.limits.output_bytes)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                args, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=pass_fds,
                start_new_session=True, close_fds=True, cwd="/", env={},
                preexec_fn=staged,
                **({} if staged else dict(user=uid, group=uid,
                                          extra_groups=[] if uid is not None else None)))
        except OSError as e:
            raise SandboxError(f"cannot start bubblewrap: {e}") from e
        timed_out = _pump(proc, stdin, start + timeout, out, err)
        code = proc.returncode if proc.returncode is not None else -1
        if code < 0:
            code = 128 - code
        dur = time.monotonic() - start
        limit = classify(code, err.text(), timed_out, killed_means_memory=False)
        return ExecResult(exit_code=code, stdout=out.text(), stderr=err.text(), duration_s=dur,
                          timed_out=timed_out, limit=limit,
                          truncated=out.truncated or err.truncated)

    # -- files ----------------------------------------------------------------------------
    def put_files(self, files: dict[str, bytes]) -> None:
        self._check_open()
        for rel, data in files.items():
            write_file(self._ws_fd, rel, data, owner=self._host_uid)

    def export_files(self, max_bytes: int = 64 << 20) -> dict[str, bytes]:
        self._check_open()
        return read_tree(self._ws_fd, max_bytes)

    def reset(self) -> None:
        self._check_open()
        clear_dir(self._ws_fd)

    def _close(self) -> None:
        try:
            if self._own_ws:
                shutil.rmtree(self.workspace, ignore_errors=True)
            elif self._host_uid is not None:
                chown_tree(self.workspace, os.geteuid(), os.getegid())
        finally:
            os.close(self._ws_fd)
            if self._stage:
                os.rmdir(self._stage)


def _reachable(path: Path, uid: int) -> bool:
    """Whether ``uid`` (no groups) may traverse every parent directory of ``path``."""
    for parent in path.parents:
        st = parent.stat()
        if not (st.st_mode & 0o001 or (st.st_uid == uid and st.st_mode & 0o100)):
            return False
    return True


class _StagedBind:
    """Pre-exec step for a root host whose workspace lies under a directory the dedicated uid
    cannot enter (bwrap resolves bind sources by path, after dropping privileges): in a
    private mount namespace of the bwrap process only, bind the workspace onto a reachable
    empty directory, then drop to the dedicated uid.
    """

    _CLONE_NEWNS, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x00020000, 4096, 16384, 1 << 18

    def __init__(self, source: str, stage: str, uid: int | None) -> None:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        self._unshare, self._mount = libc.unshare, libc.mount
        self._args = (source.encode(), stage.encode(), uid if uid is not None else os.getuid())

    def __call__(self) -> None:  # runs in the forked child: syscalls only
        source, stage, uid = self._args
        if self._unshare(self._CLONE_NEWNS) != 0 or \
                self._mount(None, b"/", None, self._MS_REC | self._MS_PRIVATE, None) != 0 or \
                self._mount(source, stage, None, self._MS_BIND | self._MS_REC, None) != 0:
            raise OSError("cannot stage the workspace bind mount")
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)


def _pump(proc: subprocess.Popen[bytes], stdin: bytes | None, deadline: float,
          out: Capture, err: Capture) -> bool:
    """Feed stdin, collect output until the process ends or the deadline; True if it timed out."""
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    pending = memoryview(stdin or b"")
    if proc.stdin is not None:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin, selectors.EVENT_WRITE, None)
    timed_out = False
    kill_at: float | None = None
    while sel.get_map():
        now = time.monotonic()
        if not timed_out and now >= deadline:
            timed_out = True
            _kill(proc)
            kill_at = now
        if kill_at is not None and now - kill_at > 2.0:
            break  # the namespace is gone; something outside still holds a pipe
        wait = (deadline - now) if not timed_out else 0.2
        for key, _ in sel.select(timeout=max(0.01, wait)):
            if key.data is None:  # stdin
                try:
                    pending = pending[os.write(key.fd, pending[:65536]):]
                    done = not pending
                except BlockingIOError:
                    done = False
                except BrokenPipeError:
                    done = True
                if done:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()  # type: ignore[union-attr]
                continue
            chunk = os.read(key.fd, 65536)
            if chunk:
                key.data.feed(chunk)
            else:
                sel.unregister(key.fileobj)
    sel.close()
    for f in (proc.stdout, proc.stderr, proc.stdin):
        if f is not None and not f.closed:
            f.close()
    try:
        proc.wait(timeout=max(0.1, deadline - time.monotonic()) if not timed_out else 2)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(proc)
        proc.wait()
    return timed_out


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill bwrap's process group; the sandbox's pid namespace dies with it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
