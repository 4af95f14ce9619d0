"""Crash-safe file primitives: atomic writes, fsync of directories, and advisory locks.

Every file DemoAI writes goes through :func:`atomic_write` (write a temp file in the same
directory, fsync it, rename over the target, fsync the directory), so a reader or a crash
sees either the old bytes or the new ones, never a mix.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path
from typing import Iterator

from demoai.errors import LockTimeout

__all__ = ["atomic_write", "replacing", "fsync_dir", "FileLock", "file_lock", "tmp_name"]


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory entry (a rename or create) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_name(target: str | os.PathLike) -> str:
    """A unique temp-file path beside ``target`` (same filesystem, so rename is atomic)."""
    target = Path(target)
    return str(target.parent / f".tmp-{target.name}-{os.getpid()}-{os.urandom(4).hex()}")


def atomic_write(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (write, fsync, rename, fsync dir)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[str]:
    """A temp path beside ``path`` for a writer that cannot take bytes (a streaming or
    foreign writer); when the block ends, the file written there is fsynced and renamed over
    ``path`` (and the folder fsynced); on an error it is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = tmp_name(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


class FileLock:
    """An advisory lock (``flock``, exclusive or ``shared``) on a lock file; released if the
    process dies.

    ``timeout`` seconds of waiting raise :class:`LockTimeout` naming the lock.
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 30.0, shared: bool = False) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.shared = shared
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, waiting up to the timeout; :class:`LockTimeout` then."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                self._fd = fd
                return
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LockTimeout(f"timed out after {self.timeout:g}s waiting for lock {self.path}",
                                  lock=str(self.path))
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self) -> None:
        """Let the lock go (nothing if it is not held)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, timeout: float = 30.0) -> Iterator[None]:
    """Context manager form of :class:`FileLock`."""
    with FileLock(path, timeout):
        yield
