"""Keyed deltas of tables too large to match in memory: both sides partitioned by key on disk.

A delta onto a stored version matches each row of the new file to the base row with its
key and compares their row hashes (:mod:`~demoai.store.tables.keyplan` does it with the
base's keys and hashes in memory: 24 bytes a base row, plus 8 a new row). Past
:func:`~demoai.store.tables.spill.spill_threshold` rows this module does the same
matching a bucket at a time, so memory does not grow with the table:

1. the base's integer keys (one narrow scan, a fragment at a time), scan positions and
   row hashes (its side files, :mod:`~demoai.store.tables.rowhash`) go to one of
   :data:`~demoai.store.tables.spill.BUCKETS` files by a mix of the key (32 bytes a row);
2. one pass over the new file hashes its rows (into a
   :class:`~demoai.store.tables.spill.HashSpill`, for the digests) and puts each row's
   key, file position and hash into the bucket of its key;
3. each pair of buckets is matched in memory: keys repeated in the file (they meet in one
   bucket), base rows gone, rows new or edited, and for each unchanged row its base
   position, which is all the file order needs: Lance keeps the surviving base rows in
   scan order, so such a row's new place is its base position less the base rows removed
   before it;
4. a second pass over the file picks the rows to write (edited and new: in proportion to
   the change), which are written as :mod:`~demoai.store.tables.ingest` writes them.

Memory: two buckets, the file order (8 bytes a row, as the order file is made of it; on
disk while Lance writes) and the change. Digests, delta record and row order are those of the in-memory path.

:class:`PartitionedDeltaMixin` is part of :class:`~demoai.store.tables.store.TableStore`.
"""
from __future__ import annotations

import ctypes
import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Callable, NamedTuple

import lance
import numpy as np
import pyarrow as pa

from demoai.errors import InvalidArtifact
from demoai.store.tables.diff import cells_changed, int_keys
from demoai.store.tables.io import row_hashes
from demoai.store.tables.lancemeta import deleted_offsets, fragments
from demoai.store.tables.keyplan import sorted_lookup
from demoai.store.tables.order import perm_by_keys
from demoai.store.tables.ref import TableRef, schema_meta
from demoai.store.tables.rowhash import decode_hashes, rowhash_rel
from demoai.store.tables.spill import BUCKETS, SPILL_DIR, HashSpill
from demoai.store.tables.stream import BatchSource, grouped, prefetch
from demoai.store.tables.write import (OVERWRITE_FRACTION, Progress, delete_row_ids, report,
                                       row_ids_at, take_by_batch, take_scan)

__all__ = ["PartitionedDeltaMixin", "KeyBuckets", "RECORD"]

RECORD = np.dtype([("k", "<i8"), ("p", "<i8"), ("hi", "<u8"), ("lo", "<u8")])
"""One row in a bucket: key, position (base scan or file), row hash."""
_SHIFT = np.uint64(64 - 6)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_BLOCK = 1 << 20
assert BUCKETS == 64


class _Shape(NamedTuple):
    schema: pa.Schema
    num_rows: int


class KeyBuckets:
    """Records (key, position, hash) scattered by key into :data:`BUCKETS` files."""

    def __init__(self, folder: Path, prefix: str) -> None:
        self.folder, self.prefix = folder, prefix
        folder.mkdir(parents=True, exist_ok=True)
        self._files = [open(self._path(i), "wb") for i in range(BUCKETS)]
        self.rows = 0

    def _path(self, i: int) -> Path:
        return self.folder / f"{self.prefix}{i:02x}.bin"

    def add(self, keys: np.ndarray, pos: np.ndarray, h: np.ndarray) -> None:
        """The next rows: int64 keys, positions and ``(n, 2)`` hashes."""
        rec = np.empty(len(keys), dtype=RECORD)
        rec["k"], rec["p"], rec["hi"], rec["lo"] = keys, pos, h[:, 0], h[:, 1]
        bucket = ((keys.astype("<i8", copy=False).view("<u8") * _MIX) >> _SHIFT).astype(np.intp)
        order = np.argsort(bucket, kind="stable")
        ends = np.cumsum(np.bincount(bucket, minlength=BUCKETS))
        start = 0
        for i, end in enumerate(ends):
            if end > start:
                self._files[i].write(rec[order[start:end]].tobytes())
            start = end
        self.rows += len(keys)

    def close(self) -> None:
        """Close the files (they stay until the folder is removed)."""
        for f in self._files:
            if not f.closed:
                f.close()

    def bucket(self, i: int) -> np.ndarray:
        """The records of bucket ``i``."""
        self.close()
        return np.fromfile(self._path(i), dtype=RECORD)


class _Match(NamedTuple):
    dele: np.ndarray      # base positions gone
    upsert: np.ndarray    # file positions to write (edited and new)
    edit_a: np.ndarray    # base positions edited ...
    edit_b: np.ndarray    # ... and their file positions
    same_f: np.ndarray    # file positions unchanged ...
    same_b: np.ndarray    # ... and their base positions


def _match(b: np.ndarray, n: np.ndarray) -> tuple[_Match, list]:
    """Match one bucket pair; the second value lists keys the file repeats (up to 3)."""
    nk = n["k"]
    order = np.argsort(nk, kind="stable")
    ks = nk[order]
    rep = ks[1:][ks[1:] == ks[:-1]]
    dups = np.unique(rep)[:3].tolist() if len(rep) else []
    bo = np.argsort(b["k"], kind="stable")
    pos, found = sorted_lookup(b["k"][bo], nk, order)
    at = bo[pos] if len(b) else pos   # an empty bucket: nothing found, any index
    same = (found & (b["hi"][at] == n["hi"]) & (b["lo"][at] == n["lo"]) if len(b)
            else np.zeros(len(n), dtype=bool))
    seen = np.zeros(len(b), dtype=bool)
    seen[at[found]] = True
    edit = found & ~same
    return _Match(b["p"][~seen], n["p"][~same], b["p"][at[edit]], n["p"][edit],
                  n["p"][same], b["p"][at[same]]), dups


class PartitionedDeltaMixin:
    """Keyed deltas matched a key bucket at a time (part of ``TableStore``)."""

    def _partition_base(self, ds: lance.LanceDataset, uri: Path, files: dict[str, str],
                        key: str, out: KeyBuckets) -> bool:
        """The base's keys, scan positions and hashes into ``out``; False when a fragment
        has no side file (or keys that are not integers without nulls)."""
        for fr in fragments(ds):
            paths = fr.frag.metadata.files
            rel = rowhash_rel(paths[0].path) if len(paths) == 1 else None
            if rel is None or rel not in files:
                return False
            dead = deleted_offsets(uri, fr)
            if dead is None:
                return False
            h = decode_hashes((uri / rel).read_bytes(), fr.physical)
            if len(dead):
                keep = np.ones(fr.physical, dtype=bool)
                keep[dead] = False
                h = h[keep]
            keys = int_keys(fr.frag.to_table(columns=[key])[key])
            if keys is None or len(keys) != len(h):
                return False
            out.add(keys, np.arange(fr.start, fr.start + len(keys), dtype=np.int64), h)
        return True

    def _partitioned_delta(self, source: BatchSource, key: str, base: TableRef,
                           progress: Progress | None, uri: Path, ds_base: lance.LanceDataset,
                           stored: pa.Schema,
                           cast: Callable[[pa.Table], pa.Table]) -> TableRef | None:
        """The keyed delta of ``source`` onto ``base`` (see the module docstring); None
        when the base cannot be partitioned (the caller takes the in-memory path)."""
        folder = self.root / SPILL_DIR / uuid.uuid4().hex
        base_b = KeyBuckets(folder, "b")
        new_b = KeyBuckets(folder, "n")
        spill = None
        try:
            if not self._partition_base(ds_base, uri, base.files, key, base_b):
                return None
            spill = HashSpill(self.root, keyed=False)
            nulls, off = 0, 0
            for t in prefetch(cast(g) for g in grouped(source.batches())):
                h = row_hashes(t)
                spill.add(h)
                kc = t.column(key)
                nulls += kc.null_count
                k = int_keys(kc) if not kc.null_count else None
                if k is not None:
                    new_b.add(k, np.arange(off, off + len(k), dtype=np.int64), h)
                off += len(h)
                report(progress, "hash", off, max(off, source.rows or 0))
            if nulls:
                raise InvalidArtifact(f"key column {key!r} has {nulls} null value(s) in the "
                                      "table", key=key)
            _trim()
            return self._partitioned_write(source, key, base, progress, uri, ds_base, stored,
                                           base_b, new_b, spill, off, folder)
        finally:
            base_b.close()
            new_b.close()
            if spill is not None:
                spill.close()
            shutil.rmtree(folder, ignore_errors=True)

    def _partitioned_write(self, source, key, base, progress, uri, ds_base, stored, base_b,
                           new_b, spill, n_rows, folder: Path) -> TableRef:
        """Match the buckets, then write what changed (see the module docstring)."""
        perm = np.full(n_rows, -1, dtype=np.int64)
        parts: dict[str, list] = {f: [] for f in ("dele", "upsert", "edit_a", "edit_b")}
        dups: list = []
        for i in range(BUCKETS):
            m, d = _match(base_b.bucket(i), new_b.bucket(i))
            dups.extend(d[:3 - len(dups)])
            for f in parts:
                parts[f].append(getattr(m, f))
            perm[m.same_f] = m.same_b
        if dups:
            raise InvalidArtifact(f"key column {key!r} has duplicate values in the table "
                                  f"(e.g. {dups!r}); a key must be unique", key=key,
                                  examples=dups)
        dele, upsert, edit_a, edit_b = (np.concatenate(parts[f]).astype(np.int64)
                                        for f in ("dele", "upsert", "edit_a", "edit_b"))
        del parts
        upsert.sort()
        dele.sort()
        removed = np.sort(np.concatenate([dele, edit_a]))
        n_alive = base.rows - len(removed)
        for s in range(0, n_rows, _BLOCK):   # a kept row's place: base position less removals
            blk = perm[s:s + _BLOCK]
            kept = blk >= 0
            blk[kept] -= np.searchsorted(removed, blk[kept])
        digest, seq = spill.digest(source.schema, key), spill.sequence()
        n_change = len(dele) + len(upsert)
        if n_change == 0:
            if digest == base.digest and (base.order or {}).get("digest") == seq:
                return base
            same = base if digest == base.digest else replace(
                base, digest=digest, key=key, rows=n_rows, schema=schema_meta(source.schema),
                delta=None)
            return self.with_order(same, perm, seq)
        if n_change > OVERWRITE_FRACTION * max(base.rows, n_rows, 1):
            del perm
            return self._overwrite_stream(uri, base, source, stored, digest, key, spill.view(),
                                          progress, seq)
        # the order waits on disk while the rows are picked and Lance writes
        perm.tofile(folder / "perm.bin")
        del perm
        rows = self._pick(source, upsert, stored)
        _trim()
        old = take_scan(ds_base, edit_a, stored)
        cells = cells_changed(old, take_by_batch(rows, np.searchsorted(upsert, edit_b)))
        del old
        names = stored.names
        delta = {"base": base.digest, "key": key, "added": len(upsert) - len(edit_b),
                 "removed": len(dele), "modified": int(cells.any(axis=1).sum()),
                 "columns": {c: int(n) for c, n in zip(names, cells.sum(axis=0)) if n}}
        # An edit is the old row deleted and the new one appended: what Lance's merge_insert
        # does, without its hash join over every key of the base (~0.5 GB at 20M rows).
        dele_ids = row_ids_at(ds_base, removed)   # one scan of the row ids
        report(progress, "write", 0, n_change)
        if lance.dataset(str(uri)).version != base.version:
            ds_base.restore()
        delete_row_ids(str(uri), dele_ids)
        if rows.num_rows:
            lance.write_dataset(rows, str(uri), mode="append")
        final = lance.dataset(str(uri))
        self.store_row_hashes(final, uri, stored)
        ref = self._make_ref(final, uri, base.table_id, _Shape(source.schema, n_rows), digest,
                             key, base.files, delta)
        report(progress, "write", n_change, n_change)
        up_keys = int_keys(rows[key])
        del rows
        _trim()
        perm = np.fromfile(folder / "perm.bin", dtype=np.int64)
        if not self._place_upserts(final, key, ds_base, uri, removed, n_alive, perm, upsert,
                                   up_keys):
            perm = self._perm_from_keys(final, source, key)
        return self.with_order(ref, perm, seq)

    @staticmethod
    def _place_upserts(final: lance.LanceDataset, key: str, ds_base: lance.LanceDataset,
                       uri: Path, removed: np.ndarray, n_alive: int, perm: np.ndarray,
                       upsert: np.ndarray, up_keys: np.ndarray) -> bool:
        """Fill the file order's upserted rows from the final version's new fragments,
        after checking from Lance metadata alone (no scan of the table) that the final
        version is the base's fragments, in order, with exactly the ``removed`` rows
        deleted, then new fragments holding the upserted keys; False when it is not."""
        tail = _fresh_tail_keys(final, key, ds_base, uri, removed)
        if tail is None or len(tail) != len(upsert):
            return False
        order = np.argsort(tail, kind="stable")
        pos, found = sorted_lookup(tail[order], up_keys)
        if not found.all():
            return False
        perm[upsert] = n_alive + order[pos]
        return bool(all((perm[s:s + _BLOCK] >= 0).all() for s in range(0, len(perm), _BLOCK)))

    @staticmethod
    def _perm_from_keys(final: lance.LanceDataset, source: BatchSource,
                        key: str) -> np.ndarray:
        """The file order by matching keys whole (a version of an unexpected shape)."""
        file_keys = pa.chunked_array([b.column(source.schema.get_field_index(key))
                                      for b in source.batches()])
        return perm_by_keys(final.to_table(columns=[key])[key], file_keys)


def _trim() -> None:
    """Hand freed memory back to the system: Arrow's pool and the C heap keep what a pass
    over a large file (or a Lance write) freed, which would count against the memory
    bound in the steps after it."""
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _fresh_tail_keys(final: lance.LanceDataset, key: str, ds_base: lance.LanceDataset,
                     uri: Path, removed: np.ndarray) -> np.ndarray | None:
    """The keys of the fragments ``final`` adds after the base's, in scan order, once
    each of the base's fragments is found in ``final`` in its place (same data files)
    with the base's deleted rows plus those of ``removed`` (sorted base scan positions)
    deleted (a fragment left with no row may be gone); None when ``final`` is not so."""
    fin = fragments(final)
    at = 0
    for fb in fragments(ds_base):
        dead = deleted_offsets(uri, fb)
        if dead is None:
            return None
        lo, hi = np.searchsorted(removed, [fb.start, fb.start + fb.live])
        live_at = np.delete(np.arange(fb.physical, dtype=np.int64), dead)
        want = np.union1d(dead, live_at[removed[lo:hi] - fb.start])
        if at < len(fin) and fin[at].files == fb.files:
            got = deleted_offsets(uri, fin[at])
            if got is None or not np.array_equal(got, want):
                return None
            at += 1
        elif len(want) != fb.physical:
            return None
    parts = []
    for fr in fin[at:]:
        k = int_keys(fr.frag.to_table(columns=[key])[key])
        if k is None:
            return None
        parts.append(k)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


