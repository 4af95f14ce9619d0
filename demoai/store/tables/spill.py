"""Row hashes and keys of a table too large to hold in memory, kept on disk while it
streams in, so that a new lineage of any size is written in bounded memory.

What a new version needs of all its rows at once is little: the content digest (the row
hashes *sorted*), the sequence digest (the hashes in file order), the row-hash side files
(the hashes in file order, a fragment at a time) and the key check (no key twice). A
:class:`HashSpill` writes each batch's hashes to one file in file order, and again into
one of :data:`BUCKETS` files by the top bits of the hash: the buckets in order, each
sorted, are the sorted hashes, one bucket in memory at a time. Integer keys go into
buckets by a mix of their value, and a key repeated anywhere meets its twin in one
bucket. Memory: one bucket (1/64 of 24 bytes a row) plus what is being read.

The files sit in the store's ``_spill/`` folder (same disk as the table) and are removed
when the version is written or fails. Tables whose hashes and keys fit
:func:`spill_threshold` never spill.
"""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from demoai.errors import InvalidArtifact
from demoai.store.tables.io import digest_from_sorted
from demoai.store.tables.order import hash_order, sequence_digest_blocks
from demoai.store.tables.stream import memory_budget

__all__ = ["HashSpill", "BUCKETS", "spill_threshold", "SPILL_DIR"]

BUCKETS = 64
_SHIFT = np.uint64(64 - 6)
_MIX = np.uint64(0x9E3779B97F4A7C15)   # Fibonacci hashing: spreads runs of keys evenly
_BLOCK = 1 << 20
SPILL_DIR = "_spill"


def spill_threshold() -> int:
    """Rows above which a new table's hashes and keys (24 bytes a row) go to disk: an
    eighth of the ingest memory bound (:func:`~demoai.store.tables.stream.memory_budget`;
    5.6M rows at the default 1 GiB)."""
    return memory_budget() // 8 // 24


class HashSpill:
    """Row hashes (and integer keys) of a streamed table, on disk (see the module
    docstring). Use as a context manager: the files go when it closes."""

    def __init__(self, root: Path, keyed: bool) -> None:
        self.folder = root / SPILL_DIR / uuid.uuid4().hex
        self.folder.mkdir(parents=True)
        self.rows = 0
        self._seq = open(self.folder / "order.bin", "wb")
        self._keys = open(self.folder / "keys.bin", "wb") if keyed else None
        self._hb = [open(self.folder / f"h{i:02x}.bin", "wb") for i in range(BUCKETS)]
        self._kb = ([open(self.folder / f"k{i:02x}.bin", "wb") for i in range(BUCKETS)]
                    if keyed else [])

    def __enter__(self) -> "HashSpill":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close and remove the files."""
        self._flush()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _flush(self) -> None:
        for f in [self._seq, *([self._keys] if self._keys else []), *self._hb, *self._kb]:
            if not f.closed:
                f.close()

    @staticmethod
    def _scatter(files: list, values: np.ndarray, bucket: np.ndarray) -> None:
        order = np.argsort(bucket, kind="stable")
        ends = np.cumsum(np.bincount(bucket, minlength=BUCKETS))
        start = 0
        for i, end in enumerate(ends):
            if end > start:
                files[i].write(values[order[start:end]].tobytes())
            start = end

    def add(self, hashes: np.ndarray, keys: np.ndarray | None = None) -> None:
        """The next batch's ``(n, 2)`` row hashes and, for a keyed spill, its int64 keys."""
        h = np.ascontiguousarray(hashes, dtype="<u8")
        self._seq.write(h.tobytes())
        self._scatter(self._hb, h, (h[:, 0] >> _SHIFT).astype(np.intp))
        if self._keys is not None and keys is not None:
            k = np.ascontiguousarray(keys, dtype="<i8")
            self._keys.write(k.tobytes())
            mixed = k.view("<u8") * _MIX
            self._scatter(self._kb, k, (mixed >> _SHIFT).astype(np.intp))
        self.rows += len(h)

    def _bucket(self, name: str, dtype: str, width: int) -> np.ndarray:
        a = np.fromfile(self.folder / name, dtype=dtype)
        return a.reshape(-1, width) if width > 1 else a

    def digest(self, schema: pa.Schema, key: str | None) -> str:
        """The content digest (:func:`~demoai.store.tables.io.digest_from_hashes`)."""
        self._flush()

        def blocks() -> Iterator[np.ndarray]:
            for i in range(BUCKETS):
                h = self._bucket(f"h{i:02x}.bin", "<u8", 2)
                if len(h):
                    yield h[hash_order(h)]
        return digest_from_sorted(schema, key, self.rows, blocks())

    def sequence(self) -> str:
        """The sequence digest (:func:`~demoai.store.tables.order.sequence_digest`)."""
        self._flush()
        return sequence_digest_blocks(self.rows, (self.hashes(s, _BLOCK)
                                                  for s in range(0, self.rows, _BLOCK)))

    def check_keys(self, key: str) -> None:
        """InvalidArtifact (as :func:`~demoai.store.tables.diff.check_keys` words it) when
        a key repeats."""
        self._flush()
        dups: list[int] = []
        for i in range(BUCKETS):
            k = np.sort(self._bucket(f"k{i:02x}.bin", "<i8", 1))
            if len(k) > 1:
                dups.extend(np.unique(k[1:][k[1:] == k[:-1]])[:3 - len(dups)].tolist())
            if len(dups) >= 3:
                break
        if dups:
            raise InvalidArtifact(f"key column {key!r} has duplicate values in the table "
                                  f"(e.g. {dups!r}); a key must be unique", key=key,
                                  examples=dups)

    def hashes(self, start: int, n: int) -> np.ndarray:
        """Rows ``start`` .. ``start + n`` of the hashes, in file order."""
        self._flush()
        n = max(0, min(n, self.rows - start))
        return np.fromfile(self.folder / "order.bin", dtype="<u8", count=2 * n,
                           offset=16 * start).reshape(n, 2).astype(np.uint64, copy=False)

    def keys(self) -> np.ndarray:
        """Every key, in file order (for the rare paths that need them all)."""
        self._flush()
        return np.fromfile(self.folder / "keys.bin", dtype="<i8")

    def view(self) -> "SpilledHashes":
        """The hashes in file order as a read-only sequence (slices read from disk)."""
        return SpilledHashes(self)


class SpilledHashes:
    """``len()`` and indexing (a slice, or a list of positions) of a spill's hashes in
    file order: what :meth:`~demoai.store.tables.rowhash.RowHashMixin.store_row_hashes`
    reads of the fresh hashes."""

    def __init__(self, spill: HashSpill) -> None:
        self._spill = spill

    def __len__(self) -> int:
        return self._spill.rows

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, slice):
            start, stop, step = idx.indices(self._spill.rows)
            if step != 1:
                raise IndexError("spilled hashes: only contiguous slices")
            return self._spill.hashes(start, stop - start)
        return np.concatenate([self._spill.hashes(int(i), 1) for i in idx])
