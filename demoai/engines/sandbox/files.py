"""Workspace file helpers that never follow a symlink the sandbox may have planted.

All host-side access to a workspace goes through directory file descriptors with
``O_NOFOLLOW``, so a link such as ``evil -> /etc`` written by a sandboxed command cannot make
the host read or write outside the workspace. Symlinks are skipped on export.
"""
from __future__ import annotations

import io
import os
import stat
import tarfile
import time

from demoai.errors import SandboxError

from .base import SANDBOX_UID, check_relpath

__all__ = ["write_file", "read_tree", "clear_dir", "chown_tree", "tar_of", "files_of_tar",
           "tree_usage", "INODE_BYTES", "MAX_DEPTH"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
INODE_BYTES = 1024
"""What :func:`tree_usage` charges for each file, directory or link on top of its blocks."""
MAX_DEPTH = 256
"""How deep :func:`tree_usage` descends (one open descriptor per level)."""


def write_file(root_fd: int, rel: str, data: bytes, *, owner: int | None = None) -> None:
    """Write ``data`` at ``rel`` under the directory ``root_fd``, creating parents."""
    parts = check_relpath(rel).split("/")
    fds: list[int] = []
    cur = root_fd
    try:
        for part in parts[:-1]:
            try:
                os.mkdir(part, 0o755, dir_fd=cur)
                if owner is not None:
                    os.chown(part, owner, owner, dir_fd=cur, follow_symlinks=False)
            except FileExistsError:
                pass
            try:
                cur = os.open(part, _DIR_FLAGS, dir_fd=cur)
            except OSError as e:
                raise SandboxError(f"cannot write {rel!r}: {part!r} is not a directory",
                                   path=rel) from e
            fds.append(cur)
        name = parts[-1]
        try:
            st = os.stat(name, dir_fd=cur, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                if stat.S_ISDIR(st.st_mode):
                    raise SandboxError(f"cannot write {rel!r}: it is a directory", path=rel)
                os.unlink(name, dir_fd=cur)
        except FileNotFoundError:
            pass
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644,
                     dir_fd=cur)
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(data)
            if owner is not None:
                os.fchown(fd, owner, owner)
        finally:
            os.close(fd)
    finally:
        for fd in fds:
            os.close(fd)


def read_tree(root_fd: int, max_bytes: int) -> dict[str, bytes]:
    """Every regular file under ``root_fd`` (relative path -> bytes), symlinks skipped."""
    out: dict[str, bytes] = {}
    total = 0
    dup = os.dup(root_fd)
    try:
        for dirpath, _dirs, names, dfd in os.fwalk(".", dir_fd=dup, follow_symlinks=False):
            for name in names:
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                total += st.st_size
                if total > max_bytes:
                    raise SandboxError(f"workspace holds more than {max_bytes} bytes",
                                       max_bytes=max_bytes)
                fd = _open_file(name, dfd)
                try:
                    with os.fdopen(fd, "rb", closefd=False) as f:
                        data = f.read(st.st_size)
                finally:
                    os.close(fd)
                rel = os.path.normpath(os.path.join(dirpath, name))
                out[rel] = data
    finally:
        os.close(dup)
    return out


def tree_usage(root_fd: int, stop_above: int | None = None) -> int:
    """Bytes the tree under ``root_fd`` takes on disk: each entry's allocated blocks plus
    :data:`INODE_BYTES` (so sparse files count what they hold, and a million empty files count).

    Hard links count once; symlinks are never followed. Returns early with a partial sum as
    soon as it passes ``stop_above``. Raises :class:`SandboxError` for a tree deeper than
    :data:`MAX_DEPTH` or a directory that cannot be listed, so the caller can fail closed.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    frames: list[tuple[int, list[str]]] = []
    fd = os.dup(root_fd)
    try:
        while True:
            subdirs: list[str] = []
            try:
                entries = _list(fd)
            except OSError as e:
                os.close(fd)
                raise SandboxError(f"cannot measure the workspace: {e}") from e
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                    if (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512 + INODE_BYTES
                if stat.S_ISDIR(st.st_mode):
                    subdirs.append(entry.name)
            frames.append((fd, subdirs))
            if stop_above is not None and total > stop_above:
                return total
            fd = -1
            while frames and fd < 0:
                top, pending = frames[-1]
                if not pending:
                    os.close(top)
                    frames.pop()
                    continue
                if len(frames) >= MAX_DEPTH:
                    raise SandboxError(f"the workspace is deeper than {MAX_DEPTH} directories")
                try:
                    fd = _open_dir(pending.pop(), top)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    raise SandboxError(f"cannot measure the workspace: {e}") from e
            if fd < 0:
                return total
    finally:
        for top, _ in frames:
            os.close(top)


def _list(fd: int) -> list[os.DirEntry[str]]:
    with os.scandir(fd) as it:
        return list(it)


def _open_dir(name: str, dfd: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dfd)
    except PermissionError:  # a sandbox may chmod 000 its own directories (non-root host)
        os.chmod(name, 0o700, dir_fd=dfd, follow_symlinks=False)
        return os.open(name, _DIR_FLAGS, dir_fd=dfd)


def _open_file(name: str, dfd: int) -> int:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        return os.open(name, flags, dir_fd=dfd)
    except PermissionError:  # a sandbox may chmod 000 its own files (non-root host)
        os.chmod(name, 0o600, dir_fd=dfd, follow_symlinks=False)
        return os.open(name, flags, dir_fd=dfd)


def clear_dir(root_fd: int) -> None:
    """Remove everything inside the directory ``root_fd`` (not the directory itself)."""
    for entry in os.listdir(root_fd):
        _remove(entry, root_fd)


def _remove(name: str, dfd: int) -> None:
    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        if st.st_mode & 0o700 != 0o700:
            os.chmod(name, 0o700, dir_fd=dfd, follow_symlinks=False)
        sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        try:
            for entry in os.listdir(sub):
                _remove(entry, sub)
        finally:
            os.close(sub)
        os.rmdir(name, dir_fd=dfd)
    else:
        os.unlink(name, dir_fd=dfd)


def chown_tree(path: str | os.PathLike[str], uid: int, gid: int | None = None) -> None:
    """``lchown -R`` of a directory tree (symlinks themselves, never their targets)."""
    gid = uid if gid is None else gid
    os.chown(path, uid, gid, follow_symlinks=False)
    for _d, dirs, names, dfd in os.fwalk(path, follow_symlinks=False):
        for name in dirs + names:
            try:
                os.chown(name, uid, gid, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                pass


def tar_of(files: dict[str, bytes]) -> bytes:
    """A tar of ``files`` (checked relative paths), owned by the sandbox uid."""
    buf = io.BytesIO()
    now = time.time()
    dirs: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, data in files.items():
            rel = check_relpath(rel)
            parts = rel.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    tar.addfile(_info(d, tarfile.DIRTYPE, 0o755, now))
            info = _info(rel, tarfile.REGTYPE, 0o644, now)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _info(name: str, kind: bytes, mode: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, mtime
    info.uid = info.gid = SANDBOX_UID
    return info


def files_of_tar(stream: io.RawIOBase | io.BufferedIOBase, prefix: str,
                 max_bytes: int) -> dict[str, bytes]:
    """Regular files of a tar stream whose members start with ``prefix/`` (symlinks skipped)."""
    out: dict[str, bytes] = {}
    total = 0
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for m in tar:
            if not m.isreg():
                continue
            name = m.name
            if name == prefix or not name.startswith(prefix + "/"):
                continue
            total += m.size
            if total > max_bytes:
                raise SandboxError(f"workspace holds more than {max_bytes} bytes",
                                   max_bytes=max_bytes)
            f = tar.extractfile(m)
            if f is not None:
                out[name[len(prefix) + 1:]] = f.read()
    return out
