"""The staging area: the full set of manifests the next commit will hold.

Like git's index it is a snapshot, not a list of changes: after a commit or checkout it
equals the commit's tree. It also caches, per working-tree path, the (size, mtime)
under which the file was last imported, so ``status`` can skip re-hashing unchanged files.
Writes happen under a lock and replace the file atomically.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import blake3

from demoai.errors import RepositoryError
from demoai.objects import Artifact, decode_manifest, encode_manifest
from demoai.store.fsutil import FileLock, atomic_write

__all__ = ["Index", "IndexState", "fingerprint", "content_hash", "stat_record"]

# A file modified within this window of being recorded may share its mtime with the
# recorded one (coarse timestamps): its stat is not trusted and its bytes are hashed.
_RACY_NS = 2_000_000_000


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def fingerprint(path: Path) -> list[int]:
    """(size, newest mtime_ns, inode or file count) of a file or folder."""
    if path.is_dir():
        sts = [p.stat() for p in _files(path)]
        return [sum(s.st_size for s in sts), max((s.st_mtime_ns for s in sts), default=0), len(sts)]
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def stat_record(fp: list[int], raw: str) -> dict[str, Any]:
    """The stat record of a file whose bytes hash (BLAKE3 hex) to ``raw``, ``fp`` being its
    :func:`fingerprint` taken *before* they were read; it is timed when it is staged
    (:meth:`IndexState.stage_file`)."""
    return {"fp": fp, "raw": raw, "at": None}


def _stat_trusted(rec: dict[str, Any], fp: list[int]) -> bool:
    """Whether a file's fingerprint ``fp`` alone proves it holds what ``rec`` recorded:
    unchanged, and recorded long enough after its last write that no write can hide."""
    return fp == rec["fp"] and fp[1] < rec["at"] - _RACY_NS


def content_hash(path: Path) -> str:
    """BLAKE3 of a file's bytes, or of a folder's (relative path, file hash) listing."""
    if path.is_dir():
        h = blake3.blake3()
        for p in _files(path):
            h.update(p.relative_to(path).as_posix().encode() + b"\0" + content_hash(p).encode())
        return h.hexdigest()
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    # 8 MiB blocks, not mmap: a mapped file counts whole in the process's resident memory
    buf = bytearray(8 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


@dataclass
class IndexState:
    """Staged manifests (path -> canonical manifest bytes) and the stat cache."""

    entries: dict[str, bytes] = field(default_factory=dict)
    stat: dict[str, dict[str, Any]] = field(default_factory=dict)   # path -> {fp, raw, at}

    def artifacts(self) -> dict[str, Artifact]:
        """Staged path -> typed artifact."""
        return {p: decode_manifest(b, p) for p, b in self.entries.items()}

    def stage(self, path: str, art: Artifact, source: Path | None = None) -> None:
        """Stage ``art`` at ``path``; ``source`` is the working file it came from."""
        self.entries[path] = encode_manifest(art)
        if source is not None:
            self.stat[path] = {"fp": fingerprint(source), "raw": content_hash(source), "at": time.time_ns()}
        else:
            self.stat.pop(path, None)

    def stage_file(self, path: str, art: Artifact, source: Path,
                   record: dict[str, Any] | None = None) -> None:
        """Stage ``art`` at ``path``, made from the working file ``source``. A ``record``
        (:func:`stat_record`) made when ``source`` was stored is kept as it is, without
        hashing the file again, while the file's fingerprint still matches it; otherwise the
        file is hashed. A file removed meanwhile is staged without a record (never clean)."""
        try:
            if record is not None and fingerprint(source) == record["fp"]:
                self.stage(path, art, None)
                self.stat[path] = dict(record, at=record["at"] or time.time_ns())
            else:
                self.stage(path, art, source)
        except FileNotFoundError:
            self.stage(path, art, None)

    def trusted_record(self, path: str, source: Path) -> dict[str, Any] | None:
        """A copy of ``path``'s stat record when the stat of ``source`` alone proves the file
        unchanged (not racy); None when it would have to be hashed to tell."""
        rec = self.stat.get(path)
        if not rec:
            return None
        return dict(rec) if _stat_trusted(rec, fingerprint(source)) else None

    def is_clean(self, path: str, source: Path) -> bool:
        """Whether the working file still holds what was staged at ``path``: trusted from
        its stat when that is unchanged and old enough, otherwise by hashing its bytes."""
        return self.check(path, source)[0]

    def check(self, path: str, source: Path) -> tuple[bool, dict[str, Any] | None]:
        """:meth:`is_clean`, and, when that took hashing the file (its stat changed, its
        bytes did not: touched, or rewritten the same), the stat record to keep instead,
        so the next look trusts the stat again (git's index refresh)."""
        rec = self.stat.get(path)
        if not rec or not source.exists():
            return False, None
        fp = fingerprint(source)
        if _stat_trusted(rec, fp):
            return True, None
        if fp[0] == rec["fp"][0] and content_hash(source) == rec["raw"]:
            return True, {"fp": fp, "raw": rec["raw"], "at": time.time_ns()}
        return False, None

    def unstage(self, path: str) -> None:
        """Drop ``path`` (the next commit leaves it out)."""
        self.entries.pop(path, None)
        self.stat.pop(path, None)


class Index:
    """The index file of one repository."""

    def __init__(self, path: Path, lock_path: Path) -> None:
        self.path = path
        self.lock_path = lock_path

    def read(self) -> IndexState:
        """The staged state (empty when there is no index file yet)."""
        try:
            raw = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return IndexState()
        except ValueError as e:
            raise RepositoryError(f"index {self.path} is corrupt: {e}") from None
        return IndexState(entries={p: m.encode() for p, m in raw.get("entries", {}).items()},
                          stat=raw.get("stat", {}))

    def write(self, state: IndexState) -> None:
        """Replace the index with ``state``, atomically (hold :meth:`lock` around a
        read-modify-write: :meth:`update`)."""
        data = {"version": 1, "entries": {p: b.decode() for p, b in sorted(state.entries.items())},
                "stat": state.stat}
        atomic_write(self.path, json.dumps(data).encode())

    def lock(self, timeout: float = 60.0) -> FileLock:
        """The index's lock file."""
        return FileLock(self.lock_path, timeout)

    @contextlib.contextmanager
    def update(self, timeout: float = 60.0) -> Iterator[IndexState]:
        """Read-modify-write under the index lock; nothing is written if the body raises."""
        with self.lock(timeout):
            state = self.read()
            yield state
            self.write(state)
