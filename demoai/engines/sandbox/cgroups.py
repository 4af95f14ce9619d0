"""Cgroups for the namespace sandbox: where this process may nest a command's cgroup (v2
with the memory controller, else v1 memory + cpuacct), one cgroup per command capping its
memory and measuring its CPU, and the /proc fallback that sums a process tree's CPU."""
from __future__ import annotations

import itertools
import os
import random
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from demoai.errors import SandboxError

__all__ = ["CgroupDirs", "cgroup_dirs", "RunCgroup", "tree_cpu_s"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_probe_lock = threading.Lock()
_seq = itertools.count()


@dataclass(frozen=True)
class CgroupDirs:
    """The cgroups this process may nest a command's cgroup under (None: cannot)."""

    v2: str | None = None
    v2_memory: bool = False
    v1_memory: str | None = None
    v1_cpuacct: str | None = None

    @property
    def memory(self) -> str | None:
        return "cgroup v2" if self.v2_memory else "cgroup v1" if self.v1_memory else None

    @property
    def cpu(self) -> str | None:
        return "cgroup v2" if self.v2 else "cgroup v1 cpuacct" if self.v1_cpuacct else None


_cgroups_found: list[CgroupDirs] = []


def cgroup_dirs() -> CgroupDirs:
    """Where per-command cgroups can be made here (probed once per process)."""
    with _probe_lock:
        if not _cgroups_found:
            _cgroups_found.append(_find_cgroups())
        return _cgroups_found[0]


def _find_cgroups() -> CgroupDirs:
    try:
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read().splitlines()
        with open("/proc/self/cgroup") as f:
            own_lines = f.read().splitlines()
    except OSError:
        return CgroupDirs()
    mounts: dict[str, tuple[str, str]] = {}  # "2" or a v1 controller -> (fs root, mount point)
    for line in mountinfo:
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        if rfields[0] == "cgroup2":
            mounts.setdefault("2", (fields[3], fields[4]))
        elif rfields[0] == "cgroup":
            for opt in rfields[2].split(","):
                mounts.setdefault(opt, (fields[3], fields[4]))
    own: dict[str, str] = {}
    for line in own_lines:
        hid, ctrls, path = (line.split(":", 2) + ["", ""])[:3]
        for c in (["2"] if hid == "0" and not ctrls else ctrls.split(",")):
            own[c] = path

    def nest_under(key: str) -> str | None:
        if key not in mounts or key not in own:
            return None
        root, point = mounts[key]
        rel = os.path.relpath(own[key], root)
        if rel.startswith(".."):
            return None
        d = os.path.normpath(os.path.join(point, rel))
        probe = os.path.join(d, f"demoai-probe-{os.getpid()}-{random.getrandbits(32):08x}")
        try:
            os.mkdir(probe)
            os.rmdir(probe)
        except OSError:
            return None
        return d

    v2 = nest_under("2")
    v2_memory = v2 is not None and _v2_memory(v2)
    return CgroupDirs(v2=v2, v2_memory=v2_memory,
                       v1_memory=None if v2_memory else nest_under("memory"),
                       v1_cpuacct=None if v2 else nest_under("cpuacct"))


def _v2_memory(d: str) -> bool:
    """Whether children of the v2 cgroup ``d`` get the memory controller (enabling it where
    the kernel allows: only a cgroup without processes of its own, e.g. the root)."""
    try:
        if "memory" in _read(f"{d}/cgroup.subtree_control").split():
            return True
        if "memory" not in _read(f"{d}/cgroup.controllers").split():
            return False
        _write(f"{d}/cgroup.subtree_control", "+memory")
        return True
    except OSError:
        return False


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: object) -> None:
    with open(path, "w") as f:
        f.write(str(value))


class RunCgroup:
    """The cgroup(s) one command runs in: its memory cap, its CPU clock, and a way to kill it."""

    def __init__(self, where: CgroupDirs, memory_bytes: int) -> None:
        name = f"demoai-{os.getpid()}-{next(_seq)}"
        self.dirs: list[str] = []
        self.procs: list[int] = []  # cgroup.procs of each hierarchy
        self._cpu: str | None = None
        self._oom: str | None = None
        self._v2: str | None = None
        try:
            if where.v2:
                d = self._v2 = self._make(where.v2, name)
                self._cpu = f"{d}/cpu.stat"
                if where.v2_memory:
                    _write(f"{d}/memory.max", memory_bytes)
                    self._try_write(f"{d}/memory.swap.max", 0)
                    self._oom = f"{d}/memory.events"
            if where.v1_memory:
                d = self._make(where.v1_memory, name)
                _write(f"{d}/memory.limit_in_bytes", memory_bytes)
                self._try_write(f"{d}/memory.memsw.limit_in_bytes", memory_bytes)  # no swap
                self._oom = f"{d}/memory.oom_control"
            if where.v1_cpuacct:
                self._cpu = f"{self._make(where.v1_cpuacct, name)}/cpuacct.usage"
        except OSError as e:
            self.remove()
            raise SandboxError(f"cannot set up the command's cgroup: {e}") from e

    def _make(self, parent: str, name: str) -> str:
        d = os.path.join(parent, name)
        os.mkdir(d)
        self.dirs.append(d)
        self.procs.append(os.open(f"{d}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
        return d

    def join(self, proc: subprocess.Popen[bytes], info_fd: int, block_fd: int,
             deadline: float) -> bool:
        """Move bwrap's namespace child into the cgroup, then let it go on.

        bwrap was started with ``--info-fd`` (it reports its child's pid there) and
        ``--block-fd`` (the child waits on it before it forks or execs anything), so every
        sandboxed process starts inside. The outer bwrap, which only waits, stays out: each
        move costs a kernel synchronisation. False when bwrap died first.
        """
        data = b""
        while b"}" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([info_fd], [], [], left)[0]:
                return False
            chunk = os.read(info_fd, 4096)
            if not chunk:
                return False
            data += chunk
        try:
            child = int(data.split(b'"child-pid":', 1)[1].split(b",")[0].split(b"}")[0])
        except (IndexError, ValueError):
            return False
        for fd in self.procs:
            os.write(fd, str(child).encode())
        os.write(block_fd, b"1")
        return True

    @staticmethod
    def _try_write(path: str, value: object) -> None:
        try:
            _write(path, value)
        except OSError:  # no swap accounting: nothing to cap
            pass

    def cpu_s(self) -> float | None:
        """CPU seconds used by every process that ever ran in the cgroup."""
        if self._cpu is None:
            return None
        text = _read(self._cpu)
        if self._cpu.endswith("cpu.stat"):
            return int(text.split("usage_usec", 1)[1].split()[0]) / 1e6
        return int(text) / 1e9

    def oom_kills(self) -> int:
        """How many processes the kernel killed for going over the memory cap."""
        if self._oom is None:
            return 0
        for line in _read(self._oom).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def kill(self) -> None:
        """SIGKILL every process left in the cgroup."""
        if self._v2 and os.path.exists(f"{self._v2}/cgroup.kill"):
            self._try_write(f"{self._v2}/cgroup.kill", 1)
        for d in self.dirs:
            try:
                pids = _read(f"{d}/cgroup.procs").split()
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def remove(self) -> None:
        """Remove the cgroup(s), killing stragglers; gives up (leaks an empty name) after ~1 s.

        Right after the last process is reaped the kernel may still call the cgroup busy for
        well under a millisecond, hence the short first waits.
        """
        for fd in self.procs:
            os.close(fd)
        self.procs = []
        for d in reversed(self.dirs):
            wait = 0.0005
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if wait > 0.5:
                        break
                    self.kill()
                    time.sleep(wait)
                    wait *= 2
        self.dirs = []


def tree_cpu_s(root: int) -> float:
    """CPU seconds of ``root`` and its live descendants, reaped children included (/proc)."""
    kids: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        f_ = data[data.rindex(b")") + 2:].split()
        kids.setdefault(int(f_[1]), []).append(int(name))
        ticks[int(name)] = int(f_[11]) + int(f_[12]) + int(f_[13]) + int(f_[14])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo += kids.get(pid, [])
    return total / _CLK_TCK


