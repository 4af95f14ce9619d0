"""The namespace sandbox's limits hold for the whole command, not per process.

Each test runs a real bubblewrap sandbox and tries one way around a limit that per-process
rlimits let through: shared memory, memfds, ``/dev/shm``, a workspace on the host's disk,
CPU spread over several processes, and dangerous syscalls. Where this host offers no cgroup,
the backend falls back to per-process limits; ``fallback`` tests force that mode here.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Iterator

import pytest

from demoai.engines.sandbox import ExecResult, SandboxLimits, open_sandbox
from demoai.engines.sandbox import namespace as ns_backend
from demoai.engines.sandbox.files import tree_usage
from demoai.engines.sandbox.namespace import NamespaceSandbox
from tests.helpers.skips import unavailable as _unavailable

MB = 1 << 20
LIMITS = SandboxLimits(cpu_seconds=2, memory_mb=128, pids=32, timeout_s=30, disk_mb=64)


@pytest.fixture(autouse=True)
def _need_bwrap() -> None:
    reason = ns_backend.bwrap_available()
    if reason:
        _unavailable(reason, "DEMOAI_REQUIRE_BWRAP")


@pytest.fixture(params=["native", "fallback"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``native``: the mechanisms this host offers; ``fallback``: as if it had no cgroups."""
    if request.param == "fallback":
        monkeypatch.setattr(ns_backend, "cgroup_dirs", lambda: ns_backend.CgroupDirs())
    return str(request.param)


@pytest.fixture
def sb(mode: str) -> Iterator[NamespaceSandbox]:
    box = open_sandbox("namespace", LIMITS)
    assert isinstance(box, NamespaceSandbox)
    try:
        yield box
    finally:
        box.close()


def py(box: NamespaceSandbox, code: str, **kw: object) -> ExecResult:
    return box.run(["python3", "-c", code], **kw)  # type: ignore[arg-type]


def assert_usable(box: NamespaceSandbox) -> None:
    res = box.run(["echo", "still-ok"])
    assert (res.exit_code, res.stdout, res.limit) == (0, "still-ok\n", None), res


def usage(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return tree_usage(fd)
    finally:
        os.close(fd)


def cgroup_memory(box: NamespaceSandbox) -> bool:
    return box.enforcement["memory"].startswith("cgroup")


# -- memory ---------------------------------------------------------------------------------
_SHARED_MMAP = """
import mmap
m = mmap.mmap(-1, 2 << 30, mmap.MAP_SHARED)
for i in range(0, 2 << 30, 4096):
    m[i] = 1
print("touched 2 GiB of shared memory")
"""


def test_shared_mmap_over_the_limit_is_stopped(sb: NamespaceSandbox) -> None:
    res = py(sb, _SHARED_MMAP)
    assert res.exit_code != 0 and res.limit == "memory", res
    assert "touched" not in res.stdout
    assert_usable(sb)


_MEMFD = """
import os
fd = os.memfd_create("big")
chunk = b"x" * (1 << 20)
for i in range(1024):
    os.write(fd, chunk)
print("wrote 1 GiB into a memfd")
"""


def test_memfd_over_the_limit_is_stopped(mode: str) -> None:
    # a disk cap far above the memory limit, so RLIMIT_FSIZE (= disk_mb) is not what stops it
    with open_sandbox("namespace", SandboxLimits(memory_mb=128, disk_mb=4096)) as box:
        assert isinstance(box, NamespaceSandbox)
        res = py(box, _MEMFD)
        assert res.exit_code != 0 and "wrote" not in res.stdout, res
        # without a memory cgroup, RLIMIT_FSIZE (min of memory and disk) stops the memfd
        assert res.limit == ("memory" if cgroup_memory(box) else "disk"), res
        assert_usable(box)


def test_dev_shm_is_small_and_dev_read_only(sb: NamespaceSandbox) -> None:
    res = sb.run(["dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=1M", "count=1024"])
    assert res.exit_code != 0 and res.limit == "disk", res  # full (ENOSPC, or RLIMIT_FSIZE)
    assert "1073741824 bytes" not in res.stderr
    res = sb.run(["sh", "-c", "echo x > /dev/planted"])
    assert res.exit_code != 0 and "Read-only" in res.stderr, res
    res = sb.run(["sh", "-c", "echo x > /dev/null && echo x > /dev/shm/ok && cat /dev/shm/ok"])
    assert (res.exit_code, res.stdout) == (0, "x\n"), res  # /dev/shm still works, fresh each run


def test_tmp_and_shm_count_against_the_memory_cgroup(mode: str) -> None:
    if mode == "fallback":
        pytest.skip("without a memory cgroup tmpfs is only capped by its size")
    limits = SandboxLimits(memory_mb=96, timeout_s=30)  # /tmp is 96 MiB, /dev/shm 64 MiB
    with open_sandbox("namespace", limits) as box:
        assert isinstance(box, NamespaceSandbox)
        if not cgroup_memory(box):
            pytest.skip("no memory cgroup on this host")
        res = box.run(["sh", "-c", "dd if=/dev/zero of=/tmp/a bs=1M count=90 2>/dev/null; "
                                   "dd if=/dev/zero of=/dev/shm/b bs=1M count=60; echo done"])
        assert res.limit == "memory", res  # 150 MiB of tmpfs do not fit in a 96 MiB cgroup


# -- disk -----------------------------------------------------------------------------------
_MANY_FILES = """
import os, time
os.makedirs("out", exist_ok=True)
chunk = b"x" * (1 << 20)
for i in range(400):
    with open(f"out/f{i}", "wb") as f:
        f.write(chunk)
    if i % 16 == 0:
        time.sleep(0.01)
print("wrote 400 MiB")
"""


def test_workspace_growing_past_disk_cap_is_killed(sb: NamespaceSandbox) -> None:
    res = py(sb, _MANY_FILES)
    assert res.exit_code != 0 and res.limit == "disk" and not res.timed_out, res
    assert "wrote" not in res.stdout
    used = usage(sb.workspace)
    assert used < 300 * MB, used  # stopped long before 400 MiB (cap 64 MiB + one poll's worth)
    res = sb.run(["sh", "-c", "rm -rf out"])  # cleaning up an over-full workspace is allowed
    assert res.exit_code == 0 and res.limit is None, res
    assert_usable(sb)


def test_one_big_file_stops_at_the_cap(sb: NamespaceSandbox) -> None:
    res = sb.run(["sh", "-c", "dd if=/dev/zero of=big bs=1M count=400"])
    assert res.exit_code != 0 and res.limit == "disk", res
    assert (sb.workspace / "big").stat().st_size <= 64 * MB


def test_fast_write_then_exit_is_not_a_success(sb: NamespaceSandbox) -> None:
    # two files under RLIMIT_FSIZE each, written and closed before the first poll
    res = sb.run(["sh", "-c", "head -c 40M /dev/zero > a; head -c 40M /dev/zero > b"])
    assert res.exit_code != 0 and res.limit == "disk", res
    assert sorted(sb.export_files(max_bytes=200 * MB)) == ["a", "b"]  # what it wrote is kept
    res = sb.run(["ls"])  # a workspace left over the cap fails every command...
    assert res.limit == "disk" and res.exit_code != 0, res
    res = sb.run(["rm", "b"])  # ...until one brings it back under
    assert res.exit_code == 0 and res.limit is None, res
    assert_usable(sb)


# -- cpu ------------------------------------------------------------------------------------
_SPIN = """
import os, sys, time
name, last = f"cpu-{sys.argv[1]}", 0.0
while True:
    for _ in range(20000):
        pass
    now = time.process_time()
    if now - last >= 0.05:
        with open(name + ".tmp", "w") as f:
            f.write(repr(now))
        os.replace(name + ".tmp", name)
        last = now
"""


def test_cpu_budget_covers_the_whole_process_tree(sb: NamespaceSandbox) -> None:
    sb.put_files({"spin.py": _SPIN.encode()})
    t = time.monotonic()
    res = sb.run(["sh", "-c", "for i in 1 2 3 4; do python3 spin.py $i & done; wait"])
    wall = time.monotonic() - t
    assert res.exit_code != 0 and res.limit == "cpu" and not res.timed_out, res
    files = sb.export_files()
    used = sum(float(files[f"cpu-{i}"]) for i in range(1, 5) if f"cpu-{i}" in files)
    # 4 spinners x 2 s each would be 8 s; the budget is 2 s for the tree (+ one poll, startup)
    assert 1.0 < used < 3.5, (used, files.keys())
    assert wall < 10, wall
    assert_usable(sb)


# -- seccomp --------------------------------------------------------------------------------
_SYSCALLS = """
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    ctypes.set_errno(0)
    rc = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return [rc, ctypes.get_errno()]
params = ctypes.create_string_buffer(120)
attr = ctypes.create_string_buffer(128)
print(json.dumps({
    "io_uring_setup": call(425, 1, ctypes.addressof(params)),
    "ptrace": call(101, 0, 0, 0, 0),                  # PTRACE_TRACEME
    "keyctl": call(250, 0, -3, 1),                    # KEYCTL_GET_KEYRING_ID, session, create
    "add_key": call(248, 0, 0, 0, 0, 0),
    "bpf": call(321, 0, ctypes.addressof(attr), 128),
    "userfaultfd": call(323, 1),                      # UFFD_USER_MODE_ONLY
    "perf_event_open": call(298, ctypes.addressof(attr), 0, -1, -1, 0),
    "unshare": call(272, 0),
    "personality_aslr_off": call(135, 0x0040000),     # ADDR_NO_RANDOMIZE
    "personality_query": call(135, 0xFFFFFFFF),
    "getpid": call(39),
}))
"""


def test_seccomp_denies_dangerous_syscalls(sb: NamespaceSandbox) -> None:
    if platform.machine() != "x86_64":
        pytest.skip("the seccomp filter is built for x86_64 only")
    res = py(sb, _SYSCALLS)
    assert res.exit_code == 0, res
    got = json.loads(res.stdout)
    for name in ("io_uring_setup", "ptrace", "keyctl", "add_key", "bpf", "userfaultfd",
                 "perf_event_open", "unshare", "personality_aslr_off"):
        assert got[name] == [-1, 1], (name, got[name])  # EPERM
    assert got["personality_query"][0] >= 0 and got["getpid"][0] > 0, got
    assert "syscalls denied" in sb.enforcement["seccomp"]


def test_seccomp_filter_is_only_built_for_x86_64() -> None:
    prog = ns_backend.seccomp_filter("x86_64")
    assert prog is not None and len(prog) % 8 == 0 and len(prog) // 8 < 4096
    assert ns_backend.seccomp_filter("aarch64") is None


# -- fallback costs and bookkeeping ---------------------------------------------------------
def test_common_tools_run_under_the_fallback_address_space_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ns_backend, "cgroup_dirs", lambda: ns_backend.CgroupDirs())
    with open_sandbox("namespace", SandboxLimits()) as box:  # the default 512 MiB
        assert isinstance(box, NamespaceSandbox)
        assert "RLIMIT_AS" in box.enforcement["memory"]
        res = box.run(["sh", "-c", "python3 -c 'import json, subprocess, sqlite3; print(1)' && "
                                   "ls / | sort | grep -c usr && echo hi | sed s/hi/ok/ && "
                                   "git --version >/dev/null && tar --version >/dev/null && "
                                   "echo done"])
        assert (res.exit_code, res.stdout) == (0, "1\n1\nok\ndone\n"), res


def test_enforcement_names_each_mechanism(sb: NamespaceSandbox, mode: str) -> None:
    assert set(sb.enforcement) == {"memory", "cpu", "disk", "pids", "seccomp"}
    if mode == "fallback":
        assert "RLIMIT_AS" in sb.enforcement["memory"] and "/proc" in sb.enforcement["cpu"]


def test_command_cgroups_are_removed(sb: NamespaceSandbox, mode: str) -> None:
    dirs = ns_backend.cgroup_dirs()
    roots = [d for d in (dirs.v2, dirs.v1_memory, dirs.v1_cpuacct) if d]
    if not roots:
        pytest.skip("no cgroups here")
    for _ in range(5):
        assert sb.run(["true"]).exit_code == 0
    py(sb, _SHARED_MMAP)
    mine = f"demoai-{os.getpid()}-"
    left = [n for r in roots for n in os.listdir(r) if n.startswith(mine)]
    assert left == []


def test_disk_limit_parsed_from_agent_settings() -> None:
    assert SandboxLimits.from_dict({"disk_mb": "64"}).disk_mb == 64
    assert SandboxLimits().disk_mb == 1024


def test_tree_usage_counts_blocks_and_entries(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 100_000)
    os.link(tmp_path / "d" / "f", tmp_path / "hard")
    with open(tmp_path / "sparse", "wb") as f:
        f.truncate(1 << 30)
    used = usage(tmp_path)
    assert 100_000 <= used < 1 * MB  # the hard link counts once, the sparse GiB not at all
