"""The Linux-namespace backend: each command runs in a fresh bubblewrap sandbox.

Isolation: new user/pid/net/ipc/uts/cgroup namespaces (``--unshare-all``; the net namespace has
only loopback), no capabilities, no nested user namespaces, a seccomp filter, a read-only view
of ``/usr`` and a few ``/etc`` files, a read-only ``/dev``, private size-capped ``/tmp`` and
``/dev/shm`` tmpfs, and the workspace bound read-write at ``/workspace``. When the host process
is root, bwrap is started under a dedicated unprivileged host uid (root is exempt from
``RLIMIT_NPROC``); the workspace is then owned by that uid while the sandbox is open and handed
back on close.

Limits (:attr:`NamespaceSandbox.enforcement` says which mechanism applied on this host):

- memory: each command runs in its own cgroup (v2 ``memory.max`` where the memory controller is
  delegated, else v1 ``memory.limit_in_bytes``) that caps all its processes together, shared
  memory, memfds, ``/tmp`` and ``/dev/shm`` included; an OOM kill is reported as ``memory``.
  Without a memory cgroup, ``RLIMIT_AS`` caps each process's address space instead (node, the
  JVM and threaded programs need far more address space than memory) and ``RLIMIT_FSIZE``
  each memfd. ``RLIMIT_DATA`` is kept either way so a large malloc fails fast with ENOMEM.
- cpu: the CPU time of the whole tree, read every 0.1 s from the cgroup (v2 ``cpu.stat`` needs
  no controller; else v1 ``cpuacct``), or summed over the tree's processes in ``/proc``; over
  the budget the command is killed. ``RLIMIT_CPU`` also stops each single process.
- disk: the workspace (a host folder) is measured every 0.25 s (less often when a walk is slow)
  and when the command ends; a command that grows it past ``disk_mb`` is killed, one that ends
  with it over ``disk_mb`` is failed. What it wrote is kept. ``RLIMIT_FSIZE`` caps each file.
- pids: ``RLIMIT_NPROC`` set inside the user namespace, so it counts only the sandbox's
  processes.
"""
from __future__ import annotations

import math
import os
import platform
import random
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from demoai.errors import SandboxError, SandboxUnavailable

from .base import (SANDBOX_ENV, SANDBOX_UID, WORKDIR, Capture, ExecResult, Sandbox,
                   SandboxLimits, classify)
from .cgroups import CgroupDirs, RunCgroup, cgroup_dirs, tree_cpu_s  # noqa: F401 (CgroupDirs: tests)
from .files import chown_tree, clear_dir, read_tree, tree_usage, write_file
from .seccomp import SECCOMP_DENIED, seccomp_filter

__all__ = ["NamespaceSandbox", "BWRAP", "PRLIMIT", "bwrap_available", "seccomp_filter",
           "SECCOMP_DENIED"]

BWRAP = "/usr/bin/bwrap"
"""Path of the bubblewrap binary (tests monkeypatch it)."""
PRLIMIT = "/usr/bin/prlimit"
_HOST_UID_BASE = 0x5DA00000  # dedicated host uids used when the host process is root
_PASSWD = (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
           f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:{WORKDIR}:/bin/sh\n").encode()
_GROUP = f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\n".encode()
_HOSTS = b"127.0.0.1 localhost\n::1 localhost\n"
_SHM_MB = 64  # /dev/shm, as Docker's default --shm-size
_CPU_POLL_S = 0.1
_DISK_POLL_S = 0.25
_CLK_TCK = os.sysconf("SC_CLK_TCK")
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
    """A sandbox whose commands each run in a fresh set of Linux namespaces (bubblewrap).

    ``enforcement`` maps ``memory``, ``cpu``, ``disk``, ``pids`` and ``seccomp`` to the mechanism
    that enforces each on this host.
    """

    backend = "namespace"

    def __init__(self, limits: SandboxLimits | None = None, *,
                 workspace: str | os.PathLike[str] | None = None, bwrap: str | None = None) -> None:
        super().__init__(limits)
        self.closed = True  # until fully set up
        self._bwrap = bwrap or BWRAP
        reason = bwrap_available(self._bwrap)
        if reason:
            raise SandboxUnavailable(reason, backend="namespace")
        if not os.access(PRLIMIT, os.X_OK):
            raise SandboxUnavailable(f"prlimit not found at {PRLIMIT} (install util-linux)",
                                     backend="namespace")
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
        self._cgroups = cgroup_dirs()
        self._seccomp = seccomp_filter()
        self._ws_usage: int | None = 0 if self._own_ws else None  # after the last command
        self._static = self._static_args()
        self.enforcement = self._describe()
        self.closed = False

    def _describe(self) -> dict[str, str]:
        lim, cg = self.limits, self._cgroups
        mem = (f"{cg.memory}: {lim.memory_mb} MiB for all processes together, shared memory, "
               "memfd, /tmp and /dev/shm included" if cg.memory else
               f"RLIMIT_AS {lim.memory_mb} MiB per process (no memory cgroup here); each "
               f"memfd or file at most {min(lim.memory_mb, lim.disk_mb)} MiB (RLIMIT_FSIZE)")
        cpu = (f"{cg.cpu}: {lim.cpu_seconds:g} s for the whole tree, polled every "
               f"{_CPU_POLL_S:g} s" if cg.cpu else
               f"{lim.cpu_seconds:g} s for the whole tree, summed from /proc every "
               f"{_CPU_POLL_S:g} s (children reaped between polls by a parent that ignores "
               "SIGCHLD are missed)")
        return {
            "memory": mem,
            "cpu": cpu + f"; RLIMIT_CPU {max(1, math.ceil(lim.cpu_seconds))} s per process",
            "disk": (f"workspace {lim.disk_mb} MiB, measured every {_DISK_POLL_S:g} s and at "
                     f"the end; RLIMIT_FSIZE per file"),
            "pids": f"RLIMIT_NPROC {lim.pids} in the sandbox's user namespace",
            "seccomp": (f"x86_64 filter, {len(SECCOMP_DENIED)} syscalls denied"
                        if self._seccomp else f"none: no syscall table for {platform.machine()}"),
        }

    # -- commands -------------------------------------------------------------------------
    def _static_args(self) -> list[str]:
        tmp_mb = max(16, min(self.limits.memory_mb, 256))
        shm_mb = max(1, min(self.limits.memory_mb, _SHM_MB))
        args = [self._bwrap, "--unshare-all", "--unshare-user", "--disable-userns",
                "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
                "--ro-bind", "/usr", "/usr", *_root_links(),
                "--proc", "/proc", "--dev", "/dev",
                # bwrap's /dev is a tmpfs as large as half the host's RAM that the sandbox
                # owns: give /dev/shm its own small tmpfs and make the rest read-only
                "--perms", "1777", "--size", str(shm_mb << 20), "--tmpfs", "/dev/shm",
                "--remount-ro", "/dev",
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
        mem, disk = lim.memory_mb << 20, lim.disk_mb << 20
        args = [PRLIMIT, f"--cpu={cpu}:{cpu + 1}", f"--data={mem}:{mem}",
                f"--nproc={lim.pids}:{lim.pids}", "--core=0:0"]
        if self._cgroups.memory is None:  # nothing counts shared memory: cap each process
            args.append(f"--as={mem}:{mem}")
            disk = min(disk, mem)
        return args + [f"--fsize={disk}:{disk}", "--"]

    def run(self, argv: list[str], *, stdin: bytes | None = None,
            timeout_s: float | None = None) -> ExecResult:
        self._check_argv(argv)
        timeout = float(timeout_s if timeout_s is not None else self.limits.timeout_s)
        fds: list[int] = []
        cg: RunCgroup | None = None
        try:
            args = list(self._static)
            for data, dest in ((_PASSWD, "/etc/passwd"), (_GROUP, "/etc/group"),
                               (_HOSTS, "/etc/hosts")):
                fds.append(_memfd(data))
                args += ["--ro-bind-data", str(fds[-1]), dest]
            if self._seccomp is not None:
                fds.append(_memfd(self._seccomp))
                args += ["--seccomp", str(fds[-1])]
            src = ["--bind", self._stage, WORKDIR] if self._stage else \
                ["--bind-fd", str(self._ws_fd), WORKDIR]
            args += [*src, "--remount-ro", "/",
                     "--chdir", WORKDIR, "--"]
            args += self._limit_args() + list(argv)
            if self._cgroups.memory or self._cgroups.cpu:
                cg = RunCgroup(self._cgroups, self.limits.memory_mb << 20)
            return self._execute(args, stdin, timeout, fds + [self._ws_fd], cg)
        finally:
            for fd in fds:
                os.close(fd)
            if cg is not None:
                cg.remove()

    def _execute(self, args: list[str], stdin: bytes | None, timeout: float,
                 pass_fds: list[int], cg: RunCgroup | None) -> ExecResult:
        uid = self._host_uid
        staged = _StagedBind(str(self.workspace), self._stage, uid) if self._stage else None
        if self._ws_usage is None:
            self._ws_usage = self._measure()
        pipes: list[int] = []
        if cg is not None:  # see RunCgroup.join
            pipes = [*os.pipe(), *os.pipe()]  # info (read, write), block (read, write)
            args = [args[0], "--info-fd", str(pipes[1]), "--block-fd", str(pipes[2]), *args[1:]]
            pass_fds = pass_fds + [pipes[1], pipes[2]]
        out, err = Capture(self.limits.output_bytes), Capture(self.limits.output_bytes)
        start = time.monotonic()
        try:
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
            watch = _Watch(self, proc, cg, start)
            if cg is not None:
                os.close(pipes.pop(2))
                os.close(pipes.pop(1))
                if not cg.join(proc, pipes[0], pipes[1], start + timeout):
                    watch.kill()  # it never reached the command
        finally:
            for fd in pipes:
                os.close(fd)
        reason = _pump(proc, stdin, start + timeout, out, err, watch)
        code = proc.returncode if proc.returncode is not None else -1
        if code < 0:
            code = 128 - code
        dur = time.monotonic() - start
        usage = self._ws_usage = self._measure()
        if reason is not None:  # a limit we enforce by killing
            limit: str | None = reason
            if code == 0:  # it exited on its own just as the watch struck: still never a success
                code = 128 + (signal.SIGXFSZ if reason == "disk" else signal.SIGKILL)
        elif cg is not None and cg.oom_kills():
            limit = "memory"
        elif usage is None or usage > self.limits.disk_mb << 20:
            limit = "disk"  # written faster than the watch polls: kept, but never a success
            code = code or 128 + signal.SIGXFSZ
        else:
            limit = classify(code, err.text(), False, killed_means_memory=False)
        return ExecResult(exit_code=code, stdout=out.text(), stderr=err.text(), duration_s=dur,
                          timed_out=reason == "timeout", limit=limit,
                          truncated=out.truncated or err.truncated)

    def _measure(self) -> int | None:
        """The workspace's size on disk (None: it cannot be measured, e.g. too deep)."""
        try:
            return tree_usage(self._ws_fd)
        except SandboxError:
            return None

    # -- files ----------------------------------------------------------------------------
    def put_files(self, files: dict[str, bytes]) -> None:
        self._check_open()
        self._ws_usage = None  # measured again before the next command
        for rel, data in files.items():
            write_file(self._ws_fd, rel, data, owner=self._host_uid)

    def export_files(self, max_bytes: int = 64 << 20) -> dict[str, bytes]:
        self._check_open()
        return read_tree(self._ws_fd, max_bytes)

    def reset(self) -> None:
        self._check_open()
        clear_dir(self._ws_fd)
        self._ws_usage = None

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


def _memfd(data: bytes) -> int:
    fd = os.memfd_create("demoai-bwrap")
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


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


class _Watch:
    """Polls one running command for the limits that no kernel counter stops by itself: the
    CPU time of its whole tree and the size of the workspace. ``poll`` names the one broken."""

    def __init__(self, sb: NamespaceSandbox, proc: subprocess.Popen[bytes],
                 cg: RunCgroup | None, start: float) -> None:
        self._sb, self._proc, self._cg = sb, proc, cg
        self._cpu_budget = sb.limits.cpu_seconds
        self._clock: Callable[[], float | None] = \
            cg.cpu_s if cg is not None and sb._cgroups.cpu else lambda: tree_cpu_s(proc.pid)
        self._disk_cap = sb.limits.disk_mb << 20
        self._last_usage = sb._ws_usage
        self._cpu_at = start + _CPU_POLL_S
        self._disk_at = start + _DISK_POLL_S

    def due(self) -> float:
        return min(self._cpu_at, self._disk_at)

    def poll(self, now: float) -> str | None:
        if now >= self._cpu_at:
            self._cpu_at = now + _CPU_POLL_S
            try:
                used = self._clock()
            except (OSError, ValueError, IndexError):
                used = None
            if used is not None and used > self._cpu_budget:
                return "cpu"
        if now >= self._disk_at:
            usage = self._sb._measure()
            spent = time.monotonic() - now
            self._disk_at = now + min(5.0, max(_DISK_POLL_S, 20 * spent))
            # over the cap and not shrinking: a command may still clean up an over-full workspace
            if usage is None or (usage > self._disk_cap and usage >= (self._last_usage or 0)):
                return "disk"
            self._last_usage = usage
        return None

    def kill(self) -> None:
        _kill(self._proc)
        if self._cg is not None:
            self._cg.kill()


def _pump(proc: subprocess.Popen[bytes], stdin: bytes | None, deadline: float,
          out: Capture, err: Capture, watch: _Watch) -> str | None:
    """Feed stdin, collect output until the process ends, the deadline passes or ``watch``
    finds a limit broken; returns ``"timeout"``, the watch's limit, or None."""
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    pending = memoryview(stdin or b"")
    if proc.stdin is not None:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin, selectors.EVENT_WRITE, None)
    reason: str | None = None
    kill_at: float | None = None
    while sel.get_map():
        now = time.monotonic()
        if reason is None:
            if now >= deadline:
                reason = "timeout"
            elif now >= watch.due():
                reason = watch.poll(now)
            if reason is not None:
                watch.kill()
                kill_at = now
        if kill_at is not None and now - kill_at > 2.0:
            break  # the namespace is gone; something outside still holds a pipe
        wait = min(deadline, watch.due()) - now if reason is None else 0.2
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
    while reason is None:  # the pipes closed; wait for the exit under the same watch
        now = time.monotonic()
        try:
            proc.wait(timeout=max(0.01, min(deadline, watch.due()) - now))
            return None
        except subprocess.TimeoutExpired:
            now = time.monotonic()
            reason = "timeout" if now >= deadline else \
                watch.poll(now) if now >= watch.due() else None
    watch.kill()
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        _kill(proc)
        proc.wait()
    return reason


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill bwrap's process group; the sandbox's pid namespace dies with it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
