"""Row hashes kept with the data: a new version costs in proportion to the change.

Every Lance data file a version is written with gets a side file
``data/demoai-rowhash-<data file stem>.bin`` holding the 128-bit row hash
(:func:`~demoai.store.tables.io.row_hashes`) of each of its physical rows, in file order.
Lance never rewrites a data file, so neither is its side file rewritten: a delta that
edits 1% of the rows adds side files for its new fragments only (16 bytes a changed row).
The hashes of a whole version, in scan order, are the side files of its fragments with the
rows its deletion vectors hide left out (:meth:`RowHashMixin.version_hashes`), read
without opening a data page. So writing a delta onto a version, diffing two versions
and checking a re-import need the stored table's key column and these files, not its
rows.

The files sit in Lance's ``data/`` folder (which alternates share and the sync protocol
carries; Lance's own files end in ``.lance`` and its cleanup leaves others alone) and are
listed in a ref's ``files`` like Lance's own: hash-checked on reads, sent by push and
fetch, repaired and kept by gc the same way. Versions written before side files existed
have none; they are read and hashed as before (:meth:`RowHashMixin.version_hashes`
answers None).

:class:`RowHashMixin` is part of :class:`~demoai.store.tables.store.TableStore`.
"""
from __future__ import annotations

import struct
from pathlib import Path

import lance
import numpy as np
import pyarrow as pa

from demoai.errors import IntegrityError
from demoai.store.fsutil import atomic_write
from demoai.store.tables.io import row_hashes
from demoai.store.tables.lancemeta import deleted_offsets, fragments

__all__ = ["RowHashMixin", "ROWHASH_PREFIX", "is_rowhash_file", "rowhash_rel",
           "encode_hashes", "decode_hashes"]

ROWHASH_PREFIX = "data/demoai-rowhash-"
_MAGIC = b"DMAIRWH1"


def is_rowhash_file(rel: str) -> bool:
    """Whether ``rel`` (a file of a table version) is a row-hash side file."""
    return rel.startswith(ROWHASH_PREFIX) and rel.endswith(".bin")


def rowhash_rel(data_path: str) -> str:
    """The side file of the Lance data file ``data_path`` (as a fragment lists it)."""
    stem = Path(data_path).name
    stem = stem[:-len(".lance")] if stem.endswith(".lance") else stem
    return f"{ROWHASH_PREFIX}{stem}.bin"


def encode_hashes(hashes: np.ndarray) -> bytes:
    """A side file's bytes: magic, row count, the ``(n, 2)`` little-endian u64 hashes
    (MD5 output does not compress)."""
    body = np.ascontiguousarray(hashes, dtype="<u8").tobytes()
    return _MAGIC + struct.pack("<Q", len(hashes)) + body


def decode_hashes(data: bytes, rows: int) -> np.ndarray:
    """The ``(rows, 2)`` hashes of a side file; IntegrityError if the bytes are not one."""
    if data[:8] != _MAGIC or len(data) < 16:
        raise IntegrityError("row hash file: bad header")
    (n,) = struct.unpack("<Q", data[8:16])
    if n != rows or len(data) != 16 + 16 * n:
        raise IntegrityError(f"row hash file: {n} rows, the fragment has {rows}")
    return np.frombuffer(data, dtype="<u8", offset=16).reshape(n, 2).astype(np.uint64,
                                                                             copy=False)


def _single_file(frag) -> str | None:
    files = frag.metadata.files
    return files[0].path if len(files) == 1 else None


class RowHashMixin:
    """Writing and reading row-hash side files (part of ``TableStore``)."""

    def store_row_hashes(self, ds: lance.LanceDataset, uri: Path, schema: pa.Schema,
                         fresh: np.ndarray | None = None) -> int:
        """Write the side file of every fragment of ``ds`` that has none. ``fresh``: the
        hashes of exactly those fragments' physical rows, in fragment order (a version
        just written from a table whose hashes are known); without it their rows are
        read back and hashed (a delta's new fragments: a cost in proportion to the
        change). Fragments made of several data files get none (the version then reads
        as one without side files). Returns the rows hashed by reading."""
        todo = []
        for frag in ds.get_fragments():
            path = _single_file(frag)
            if path is not None and not (uri / rowhash_rel(path)).exists():
                todo.append((frag, path))
        if fresh is not None and not self._fresh_fits(todo, fresh, schema):
            fresh = None
        read, at = 0, 0
        for frag, path in todo:
            n = frag.metadata.physical_rows
            if fresh is not None:
                h = fresh[at:at + n]
                at += n
            else:
                if frag.metadata.deletion_file is not None:
                    continue   # rows already hidden cannot be read back: no side file
                rows = frag.to_table(columns=schema.names)
                if rows.num_rows != n:
                    continue
                h = row_hashes(rows.cast(schema) if rows.schema != schema else rows)
                read += n
            atomic_write(uri / rowhash_rel(path), encode_hashes(h))
        return read

    @staticmethod
    def _fresh_fits(todo: list, fresh: np.ndarray, schema: pa.Schema) -> bool:
        """Whether ``fresh`` lines up with the fragments in ``todo``: the row counts add
        up, and the first and last row of each fragment hash to the hashes it would get."""
        if len(fresh) != sum(f.metadata.physical_rows for f, _ in todo):
            return False
        at = 0
        for frag, _ in todo:
            n = frag.metadata.physical_rows
            if n:
                ends = sorted({0, n - 1})
                rows = frag.take(ends, columns=schema.names)
                rows = rows.cast(schema) if rows.schema != schema else rows
                if not np.array_equal(row_hashes(rows), fresh[[at + e for e in ends]]):
                    return False
            at += n
        return True

    def rowhash_files(self, ds: lance.LanceDataset, uri: Path) -> list[str]:
        """The side files of ``ds``'s fragments that exist (relative names)."""
        out = []
        for frag in ds.get_fragments():
            path = _single_file(frag)
            if path is not None and (uri / rowhash_rel(path)).exists():
                out.append(rowhash_rel(path))
        return out

    def version_hashes(self, ds: lance.LanceDataset, uri: Path,
                       files: dict[str, str]) -> np.ndarray | None:
        """The row hashes of the checked-out version ``ds`` in scan order, from side files
        listed in ``files`` (the version's recorded files, already hash-checked) and the
        deletion vectors; None when a fragment has no side file (or a deletion file this
        module does not decode)."""
        parts = []   # the side files are read first, then copied once into the result
        for fr in fragments(ds):
            path = _single_file(fr.frag)
            rel = rowhash_rel(path) if path is not None else None
            if rel is None or rel not in files:
                return None
            try:
                h = decode_hashes((uri / rel).read_bytes(), fr.physical)
            except OSError:
                return None
            dead = deleted_offsets(uri, fr)
            if dead is None:
                return None
            if len(dead):
                keep = np.ones(fr.physical, dtype=bool)
                keep[dead] = False
                h = h[keep]
            parts.append(h)
        if not parts:
            return np.zeros((0, 2), dtype=np.uint64)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
