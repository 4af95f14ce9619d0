"""The namespace sandbox's seccomp filter: a classic BPF program, built with ``struct``, that
bubblewrap loads (``--seccomp FD``) so the syscalls a sandboxed command has no business
making fail with EPERM (x86_64 only; elsewhere no filter, and the backend says so)."""
from __future__ import annotations

import errno
import platform
import struct

__all__ = ["SECCOMP_DENIED", "seccomp_filter"]


SECCOMP_DENIED = {
    "ptrace": 101, "syslog": 103, "uselib": 134, "ustat": 136, "sysfs": 139, "vhangup": 153,
    "pivot_root": 155, "_sysctl": 156, "acct": 163, "settimeofday": 164, "mount": 165,
    "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173,
    "create_module": 174, "init_module": 175, "delete_module": 176, "get_kernel_syms": 177,
    "query_module": 178, "quotactl": 179, "nfsservctl": 180, "lookup_dcookie": 212,
    "clock_settime": 227, "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250,
    "unshare": 272, "perf_event_open": 298, "fanotify_init": 300, "name_to_handle_at": 303,
    "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "kexec_file_load": 320,
    "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "pidfd_getfd": 438, "process_madvise": 440,
    "mount_setattr": 442, "quotactl_fd": 443,
}
"""x86_64 syscalls the filter answers with EPERM (Docker's default profile denies the same
kinds: kernel keyrings, tracing, io_uring, BPF, userfaultfd, perf, mounts, namespaces, modules).
``personality`` is allowed only for the values Docker allows (no ASLR switch-off); x32 and
32-bit syscalls get ENOSYS."""
_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_SYSCALL_BIT = 0x40000000
_PERSONALITY, _PERSONALITY_OK = 135, (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


def seccomp_filter(machine: str | None = None) -> bytes | None:
    """The classic-BPF program bwrap loads with ``--seccomp`` (an array of ``sock_filter``),
    or None where the syscall table is not known (only x86_64 is)."""
    if (machine or platform.machine()) not in ("x86_64", "amd64", "AMD64"):
        return None
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, JGE|K, BPF_RET|K
    allow, err = 0x7FFF0000, 0x00050000  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO
    prog: list[tuple[int, int, str | None, str | None] | str] = [
        (ld, 4, None, None), (jeq, _AUDIT_ARCH_X86_64, None, "enosys"),  # seccomp_data.arch
        (ld, 0, None, None), (jge, _X32_SYSCALL_BIT, "enosys", None),    # seccomp_data.nr
        *[(jeq, nr, "eperm", None) for nr in sorted(SECCOMP_DENIED.values())],
        (jeq, _PERSONALITY, "personality", None), (ret, allow, None, None),
        "personality", (ld, 16, None, None),                             # low half of args[0]
        *[(jeq, v, "allow", None) for v in _PERSONALITY_OK],
        "eperm", (ret, err | errno.EPERM, None, None),
        "allow", (ret, allow, None, None),
        "enosys", (ret, err | errno.ENOSYS, None, None)]
    labels: dict[str, int] = {}
    code: list[tuple[int, int, str | None, str | None]] = []
    for item in prog:
        if isinstance(item, str):
            labels[item] = len(code)
        else:
            code.append(item)
    out = bytearray()
    for i, (op, k, jt, jf) in enumerate(code):  # classic BPF only jumps forward
        out += struct.pack("=HBBI", op, labels[jt] - i - 1 if jt else 0,
                           labels[jf] - i - 1 if jf else 0, k)
    return bytes(out)


