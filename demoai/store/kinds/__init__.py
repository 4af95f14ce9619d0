"""Turning working-tree files into stored artifacts and back, one handler per kind.

``import_path`` reads a file or folder, stores its bulk bytes (chunks or a Lance table
version, as a delta onto the previous version of the same path when there is one) and
returns the typed artifact whose manifest goes into the index. ``materialize`` writes an
artifact back out, verified. ``live_objects`` names what artifacts keep alive (for gc).

What differs by kind lives in one :class:`KindHandler` per kind, one module each
(``dataset``, ``prompt``, ``agent``, ``model``, ``adapter``, ``eval``, ``session``; the
shared parts of text and file-set kinds in ``text`` and ``fileset``); :func:`handler_for`
finds the one for a kind. A new kind is an object module in ``demoai/objects/`` and a
handler module here, registered with :func:`register_handler`.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from demoai.errors import InvalidArtifact, UnknownKind
from demoai.objects import Artifact, detect_kind
from demoai.store.kinds.base import (KindHandler, Live, Progress, artifacts_using, handler_for,
                                     handlers, register_handler)
from demoai.store.kinds.dataset import load_table

if TYPE_CHECKING:
    from demoai.store.git.repo import Repository
    from demoai.store.tables import TableRef

__all__ = ["import_path", "materialize", "load_table", "live_objects", "KindHandler",
           "handler_for", "handlers", "register_handler", "artifacts_using", "Live"]


def import_path(repo: "Repository", path: Path, *, kind: str | None = None, key: str | None = None,
                base: Artifact | None = None, progress: Progress = None) -> Artifact:
    """Store the file/folder at ``path`` as an artifact of ``kind`` (detected when None).

    ``base`` is the artifact previously staged at the same path: a dataset is then
    written as a delta onto its table, and its key column is kept unless ``key`` is given.
    """
    kind = kind or detect_kind(path)
    h = handlers().get(kind)
    if key is not None and not (h is not None and h.keyed):
        raise InvalidArtifact("--key applies to datasets only")
    if h is None:
        raise UnknownKind(f"unknown kind {kind!r}", kind=kind)
    return h.import_path(repo, path, key=key, base=base, progress=progress)


def materialize(repo: "Repository", art: Artifact, out: Path, progress: Progress = None) -> Path:
    """Write ``art`` to ``out`` (a file, or a folder for multi-file artifacts), verified."""
    return handler_for(art).materialize(repo, art, Path(out), progress=progress)


def live_objects(arts: Iterable[Artifact]) -> tuple[set[str], list["TableRef"]]:
    """Chunk ids and table versions the given artifacts need (for gc)."""
    chunks: set[str] = set()
    tables: list["TableRef"] = []
    for a in arts:
        c, t = handler_for(a).live_objects(a)
        chunks |= c
        tables.extend(t)
    return chunks, tables
