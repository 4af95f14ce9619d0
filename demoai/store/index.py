"""The staging area: the full set of manifests the next commit will hold.

Like git's index it is a snapshot, not a list of changes: after a commit or checkout it
equals the commit's tree. It also caches, per working-tree path, the (size, mtime)
under which the file was last imported, so ``status`` can skip re-hashing unchanged files.
Writes happen under a lock and replace the file atomically.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from demoai.errors import RepositoryError
from demoai.objects import Artifact, decode_manifest, encode_manifest
from demoai.store.fsutil import FileLock, atomic_write

__all__ = ["Index", "IndexState"]


@dataclass
class IndexState:
    """Staged manifests (path -> canonical manifest bytes) and the stat cache."""

    entries: dict[str, bytes] = field(default_factory=dict)
    stat: dict[str, list[Any]] = field(default_factory=dict)   # path -> [size, mtime_ns, digest]

    def artifacts(self) -> dict[str, Artifact]:
        return {p: decode_manifest(b, p) for p, b in self.entries.items()}

    def stage(self, path: str, art: Artifact, stat: list[Any] | None = None) -> None:
        self.entries[path] = encode_manifest(art)
        if stat is not None:
            self.stat[path] = stat

    def unstage(self, path: str) -> None:
        self.entries.pop(path, None)
        self.stat.pop(path, None)


class Index:
    """The index file of one repository."""

    def __init__(self, path: Path, lock_path: Path) -> None:
        self.path = path
        self.lock_path = lock_path

    def read(self) -> IndexState:
        try:
            raw = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return IndexState()
        except ValueError as e:
            raise RepositoryError(f"index {self.path} is corrupt: {e}") from None
        return IndexState(entries={p: m.encode() for p, m in raw.get("entries", {}).items()},
                          stat=raw.get("stat", {}))

    def write(self, state: IndexState) -> None:
        data = {"version": 1, "entries": {p: b.decode() for p, b in sorted(state.entries.items())},
                "stat": state.stat}
        atomic_write(self.path, json.dumps(data).encode())

    def lock(self, timeout: float = 60.0) -> FileLock:
        return FileLock(self.lock_path, timeout)

    @contextlib.contextmanager
    def update(self, timeout: float = 60.0) -> Iterator[IndexState]:
        """Read-modify-write under the index lock; nothing is written if the body raises."""
        with self.lock(timeout):
            state = self.read()
            yield state
            self.write(state)
