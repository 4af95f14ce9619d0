"""The threads of the blob stores and the file writes they share.

One CPU pool (a worker per core) cuts, hashes, compresses and verifies chunks; a one-thread
"io" pool flushes files to disk in the background (:class:`Flusher`), so the final fsync of
a large write only has the tail left. Pools are made on first use and again in a forked
child (threads do not survive ``fork``).
"""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["get_pool", "nworkers", "write_all", "Flusher", "SYNC_EVERY"]

SYNC_EVERY = 8 << 20        # flush in the background while compressing, so the final fsync is short

_pools: dict[str, ThreadPoolExecutor] = {}
_pool_lock = threading.Lock()


def nworkers() -> int:
    """Threads of the CPU pool (and how many batches keep it busy)."""
    return max(2, os.cpu_count() or 2)


def get_pool(kind: str = "cpu") -> ThreadPoolExecutor:
    """The shared CPU pool, or the one-thread "io" pool that flushes packs in the background."""
    with _pool_lock:
        if kind not in _pools:
            _pools[kind] = ThreadPoolExecutor(nworkers() if kind == "cpu" else 1,
                                              thread_name_prefix=f"demoai-blobs-{kind}")
        return _pools[kind]


def _after_fork() -> None:
    # Threads do not survive fork: a child must build its own pools.
    global _pools, _pool_lock
    _pools, _pool_lock = {}, threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


def write_all(fd: int, data: Any) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Flusher:
    """Starts ``fdatasync`` in the background every ``SYNC_EVERY`` bytes written, so the
    final fsync only has the tail to flush and disk writes overlap the CPU work."""

    def __init__(self, fd: int) -> None:
        self.fd, self.pending, self.unsynced = fd, None, 0

    def wrote(self, n: int) -> None:
        """Count ``n`` more bytes written; start a background flush when enough are."""
        self.unsynced += n
        if self.unsynced >= SYNC_EVERY and (self.pending is None or self.pending.done()):
            self.pending, self.unsynced = get_pool("io").submit(os.fdatasync, self.fd), 0

    def wait(self) -> None:
        """Wait for the background flush in flight, if any (its failure is ignored)."""
        if self.pending is not None:
            with contextlib.suppress(OSError):
                self.pending.result()  # a failed early flush is redone by the final fsync
            self.pending = None

    def fsync(self) -> None:
        """Make everything written durable."""
        self.wait()
        os.fsync(self.fd)
