"""Writing table versions: a new lineage, or a delta onto any version of one.

A table is checked first (column names Lance would misread, Arrow data it could not read
back, a usable key). A new lineage is written by Lance while the rows are hashed in
parallel; content a store already holds is not written again. A version with a ``base`` is
a delta: rows are matched (by key, else by content hash) and only changes are written
(deletion vectors, ``merge_insert`` for edits, which keeps their stable ``_rowid``, appends
for new rows), unless most rows changed, when a full new version is cheaper.

:class:`WriteMixin` is part of :class:`~demoai.store.tables.store.TableStore`.
"""
from __future__ import annotations

import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import lance
import numpy as np
import pyarrow as pa

from demoai.errors import IntegrityError, InvalidArtifact
from demoai.store.tables.diff import (cells_changed, check_keys, keys_usable, multiset_minus,
                                      plan_keyed)
from demoai.store.tables.io import canonical_schema, check_arrow_data, digest_from_hashes, row_hashes
from demoai.store.tables.order import perm_by_hashes, perm_by_keys, sequence_digest
from demoai.store.tables.ref import TableRef, schema_meta

__all__ = ["WriteMixin", "Progress", "report", "RESERVED_COLUMNS", "OVERWRITE_FRACTION",
           "check_table", "take_scan", "take_by_batch", "row_ids_at", "delete_row_ids",
           "DELETE_SLICE"]

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: ``hash``, ``write``, ``verify``."""

RESERVED_COLUMNS = frozenset({"_rowid", "_rowaddr", "_rowoffset", "_row_offset", "_distance",
                              "_score", "_row_created_at_version",
                              "_row_last_updated_at_version", "_fragid"})
OVERWRITE_FRACTION = 0.5   # above this share of changed rows a full rewrite is cheaper
_TAKE_SLICE = 1024


def report(progress: Progress | None, stage: str, done: int, total: int) -> None:
    """Call ``progress`` (when there is one) with a stage's position."""
    if progress is not None:
        progress(stage, done, total)


def _hashed(table: pa.Table, progress: Progress | None) -> np.ndarray:
    """:func:`row_hashes` of ``table``, reported as the ``hash`` stage."""
    report(progress, "hash", 0, table.num_rows)
    hashes = row_hashes(table)
    report(progress, "hash", table.num_rows, table.num_rows)
    return hashes


class WriteMixin:
    """Writing versions (part of ``TableStore``: uses its folders, locks, file lists and
    verified reads)."""

    def write(self, table: pa.Table, *, key: str | None = None, base: TableRef | None = None,
              progress: Progress | None = None) -> TableRef:
        """Store ``table`` and return its ref.

        Without ``base`` a new lineage (random table id) is created, unless a live table
        with the same content digest exists, whose ref is returned. With ``base`` the new
        version is a delta on base's lineage (base may be any version, not just the
        latest); if the content equals base's, base itself is returned (with ``table``'s
        row order recorded, when it differs). ``key`` names a unique, non-null column used
        to match rows (edits become in-place updates).

        Every ref returned records ``table``'s row order (:mod:`~demoai.store.tables.order`),
        which reads in file order give back; the content digest ignores it.
        """
        table = check_table(table, key)
        if base is None:
            return self._write_new(table, key, progress)
        hashes = _hashed(table, progress)
        digest = digest_from_hashes(table.schema, key, hashes)
        seq = sequence_digest(hashes)
        if digest == base.digest:
            return self._same_rows(base, table, hashes, seq, key)
        ref = self._write_delta(table, hashes, key, base, digest, progress)
        report(progress, "write", table.num_rows, table.num_rows)
        self.digests.record(ref)
        return ref

    def _write_new(self, table: pa.Table, key: str | None,
                   progress: Progress | None) -> TableRef:
        """A new lineage. Lance encodes the rows in one thread while DuckDB hashes them in
        another (both native, both release the GIL), so the two costs overlap instead of
        adding up. When the digest then names a stored table, that one is returned and
        the folder just written is removed; so is a folder whose write failed. Content
        that may be stored already (a stored table has its schema, key and row count) is
        hashed first instead, and not written at all when it is."""
        n = table.num_rows
        hashes = None
        if self.digests.may_hold(table.schema, key, n):
            hashes = _hashed(table, progress)
            found = self.digests.lookup(digest_from_hashes(table.schema, key, hashes))
            if found is not None:
                return self._same_rows(found, table, hashes, sequence_digest(hashes), key)
        table_id = uuid.uuid4().hex
        uri = self._uri(table_id)
        with self._lock(table_id):
            report(progress, "write", 0, n)
            try:
                with ThreadPoolExecutor(1, thread_name_prefix="demoai-table-write") as pool:
                    written = pool.submit(lance.write_dataset, table, str(uri), mode="create",
                                          enable_stable_row_ids=True)
                    try:
                        if hashes is None:
                            hashes = _hashed(table, progress)
                    finally:
                        ds = written.result()
                digest = digest_from_hashes(table.schema, key, hashes)
                found = self.digests.lookup(digest)
                if found is None:
                    self.store_row_hashes(ds, uri, table.schema, hashes)
                # Lance keeps the order rows were written in: the scan order is the file's
                ref = found or self.with_order(
                    self._make_ref(ds, uri, table_id, table, digest, key, {}), None,
                    sequence_digest(hashes))
            except BaseException:
                self._discard_new(table_id)
                raise
            if found is not None:
                self._discard_new(table_id)
                return self._same_rows(found, table, hashes, sequence_digest(hashes), key)
        report(progress, "write", n, n)
        self.digests.record(ref)
        return ref

    def _discard_new(self, table_id: str) -> None:
        """Remove a lineage this process just created and nobody else knows the id of."""
        shutil.rmtree(self._uri(table_id), ignore_errors=True)
        (self.root / f"{table_id}.lock").unlink(missing_ok=True)

    def _make_ref(self, ds: lance.LanceDataset, uri: Path, table_id: str, table: Any,
                  digest: str, key: str | None, known: dict[str, str],
                  delta: dict | None = None) -> TableRef:
        rows = ds.count_rows()
        if rows != table.num_rows:
            raise IntegrityError(f"table {table_id} v{ds.version}: wrote {rows} rows, "
                                 f"expected {table.num_rows}", table_id=table_id)
        files = self._hash_files(uri, self._version_files(ds, uri), known)
        return TableRef(table_id, ds.version, rows, digest, key, schema_meta(table.schema), files,
                        delta)

    def _write_delta(self, table: pa.Table, hashes: np.ndarray, key: str | None,
                     base: TableRef, digest: str, progress: Progress | None) -> TableRef:
        uri = self._dir_for(base)
        with self._lock(base.table_id):
            ds_base = self._checked(base)  # never build on corrupt files
            stored = ds_base.schema
            data = None
            if canonical_schema(stored) == canonical_schema(table.schema):
                try:
                    data = table.cast(stored)
                except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
                    data = None
            if data is None:  # schema changed: a full new version of the lineage
                return self._overwrite(uri, base, table, digest, key, progress, hashes)
            # The base's rows are not read: its row hashes come from the side files kept
            # with its data (rowhash.py), its keys and row ids from one narrow scan. Only
            # the edited rows are fetched, to count changed cells. Versions stored
            # without side files are read and hashed whole.
            names = stored.names
            base_h = self.version_hashes(ds_base, uri, base.files)
            has_key = key is not None and key in names
            cols = names if base_h is None else ([key] if has_key else [])
            scan = ds_base.to_table(columns=cols, with_row_id=True)
            rowids = scan["_rowid"].to_numpy()
            if base_h is None:
                base_h = row_hashes(scan.select(names))
            seq = sequence_digest(hashes)
            keyed = has_key and keys_usable(scan.select([key]), key)
            base_keys = scan[key] if keyed else None
            del scan
            delta = None
            if keyed:
                dele, upsert, edit_a, edit_b = plan_keyed(base_keys, base_h, table[key], hashes)
                cells = cells_changed(take_scan(ds_base, edit_a, stored),
                                      take_by_batch(data.select(names), edit_b))
                delta = {"base": base.digest, "key": key, "added": len(upsert) - len(edit_b),
                         "removed": len(dele), "modified": int(cells.any(axis=1).sum()),
                         "columns": {c: int(n) for c, n in zip(names, cells.sum(axis=0)) if n}}
            else:  # rows as a multiset: delete what is gone, append what is new
                dele, upsert = multiset_minus(base_h, hashes)
            n_change = len(dele) + len(upsert)
            if n_change == 0:  # same rows; only key or exact types differ
                same = replace(base, digest=digest, key=key, rows=table.num_rows,
                               schema=schema_meta(table.schema), delta=None)
                perm = (perm_by_keys(base_keys, table[key]) if keyed
                        else perm_by_hashes(base_h, hashes))
                return self.with_order(same, perm, seq)
            if n_change > OVERWRITE_FRACTION * max(base.rows, table.num_rows, 1):
                return self._overwrite(uri, base, table, digest, key, progress, hashes)
            report(progress, "write", 0, n_change)
            if lance.dataset(str(uri)).version != base.version:
                ds_base.restore()  # branch from an older version: it becomes the latest
            delete_row_ids(str(uri), rowids[dele])
            if len(upsert):
                rows = take_by_batch(data, np.sort(upsert))
                ds = lance.dataset(str(uri))
                if keyed:
                    # merge_insert keeps the stable _rowid of edited rows
                    ds.merge_insert(key).when_matched_update_all() \
                      .when_not_matched_insert_all().execute(rows)
                else:
                    ds.insert(rows)
            final = lance.dataset(str(uri))
            self.store_row_hashes(final, uri, data.schema)   # the new fragments' rows only
            ref = self._make_ref(final, uri, base.table_id, table, digest, key, base.files,
                                 delta)
            if keyed:
                perm = perm_by_keys(final.to_table(columns=[key])[key], table[key])
            else:
                final_h = self.version_hashes(final, uri, ref.files)
                perm = (perm_by_hashes(final_h, hashes) if final_h is not None
                        else self._delta_perm(final, rowids, base_h, hashes, data.schema))
            return self.with_order(ref, perm, seq)

    def _delta_perm(self, final: lance.LanceDataset, base_rowids: np.ndarray,
                    base_h: np.ndarray, hashes: np.ndarray, schema: pa.Schema) -> np.ndarray:
        """The file order of an unkeyed delta version: rows kept from the base are known
        by their stable row id (their hashes were computed already); only the rows the
        delta appended are read and hashed."""
        rid = final.to_table(columns=[], with_row_id=True)["_rowid"].to_numpy()
        sort = np.argsort(base_rowids, kind="stable")
        pos = np.searchsorted(base_rowids, rid, sorter=sort)
        pos = np.minimum(pos, max(len(base_rowids) - 1, 0))
        known = (base_rowids[sort[pos]] == rid) if len(base_rowids) else np.zeros(len(rid), bool)
        scan_h = np.empty((len(rid), 2), dtype=np.uint64)
        scan_h[known] = base_h[sort[pos[known]]]
        fresh = np.flatnonzero(~known)
        if len(fresh):
            rows = final.take(fresh, columns=schema.names)
            scan_h[fresh] = row_hashes(rows.cast(schema) if rows.schema != schema else rows)
        return perm_by_hashes(scan_h, hashes)

    def _overwrite(self, uri: Path, base: TableRef, table: pa.Table, digest: str,
                   key: str | None, progress: Progress | None, hashes: np.ndarray) -> TableRef:
        report(progress, "write", 0, table.num_rows)
        ds = lance.write_dataset(table, str(uri), mode="overwrite", enable_stable_row_ids=True)
        self.store_row_hashes(ds, uri, table.schema, hashes)
        ref = self._make_ref(ds, uri, base.table_id, table, digest, key, base.files)
        return self.with_order(ref, None, sequence_digest(hashes))


def take_scan(ds: lance.LanceDataset, idx: np.ndarray, schema: pa.Schema) -> pa.Table:
    """Rows ``idx`` (scan positions) of ``ds`` in ``idx`` order, cast to ``schema``."""
    if len(idx) == 0:
        return schema.empty_table()
    order = np.argsort(idx, kind="stable")
    # in slices of sorted positions: Lance decodes the pages a slice touches, so peak
    # memory follows the slice (10k rows of 1M: +36 MB in slices of 1024, +82 MB at once)
    # at no cost in time
    want = idx[order]
    parts = [ds.take(want[s:s + _TAKE_SLICE], columns=schema.names)
             for s in range(0, len(want), _TAKE_SLICE)]
    rows = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    rows = take_by_batch(rows, back)
    return rows.cast(schema) if rows.schema != schema else rows


def take_by_batch(table: pa.Table, idx: np.ndarray) -> pa.Table:
    """``table.take(idx)``, a record batch at a time, for taking a small share of a table.
    Arrow's take over a table of many chunks copies whole string columns together first
    (measured here: ~20-160 ms per 128k-row table of four columns to take 2% of it); per
    batch it copies only the rows taken. (A whole permutation is faster through Arrow:
    1M rows, 0.4-1.4 s against 2.1-2.4 s.) IndexError for a position outside the table,
    as ``take`` raises."""
    idx = np.asarray(idx, dtype=np.int64)
    batches = table.to_batches()
    if len(batches) <= 1 or len(idx) == 0 or table.num_columns == 0:
        return table.take(pa.array(idx, type=pa.int64()))
    order = None
    want = idx
    if len(idx) > 1 and not np.all(idx[1:] >= idx[:-1]):
        order = np.argsort(idx, kind="stable")
        want = idx[order]
    if want[0] < 0 or want[-1] >= table.num_rows:
        raise IndexError(f"row {int(want[0] if want[0] < 0 else want[-1])} is outside a "
                         f"table of {table.num_rows} rows")
    parts, off = [], 0
    for b in batches:
        lo, hi = np.searchsorted(want, [off, off + b.num_rows])
        if hi > lo:
            parts.append(b.take(pa.array(want[lo:hi] - off, type=pa.int64())))
        off += b.num_rows
    out = pa.Table.from_batches(parts, schema=table.schema)
    if order is None:
        return out
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return out.combine_chunks().take(pa.array(back, type=pa.int64()))


DELETE_SLICE = 25_000  # row ids per Lance delete call (memory grows with the IN list)


def row_ids_at(ds: lance.LanceDataset, positions: np.ndarray) -> np.ndarray:
    """The stable row ids at sorted scan ``positions``, a batch at a time."""
    out, at = [], 0
    for batch in ds.to_batches(columns=[], with_row_id=True):
        n = batch.num_rows
        lo, hi = np.searchsorted(positions, [at, at + n])
        if hi > lo:
            ids = batch.column(batch.schema.get_field_index("_rowid")).to_numpy()
            out.append(ids[positions[lo:hi] - at])
        at += n
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint64)


def delete_row_ids(uri: str, ids: np.ndarray) -> None:
    """Delete the rows with stable row ids ``ids`` from the Lance dataset at ``uri``, in
    slices: one IN list of every id costs Lance ~0.8 KB of memory a row."""
    for i in range(0, len(ids), DELETE_SLICE):
        listed = ",".join(map(str, ids[i:i + DELETE_SLICE].tolist()))
        lance.dataset(uri).delete(f"_rowid IN ({listed})")


def check_table(table: Any, key: str | None) -> pa.Table:
    """``table`` as a pyarrow Table that can be stored with ``key``: InvalidArtifact for
    reserved, empty, dotted or repeated column names, Arrow data that would not read back
    (invalid UTF-8 included), or a key column that is missing, nested, null or repeated."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if not isinstance(table, pa.Table):
        raise InvalidArtifact(f"expected a pyarrow Table, got {type(table).__name__}")
    names = table.column_names
    if not names:
        raise InvalidArtifact("a table needs at least one column")
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise InvalidArtifact(f"duplicate column name(s): {dups}")
    bad = [n for n in names if n in RESERVED_COLUMNS or not n]
    if bad:
        raise InvalidArtifact(f"reserved or empty column name(s): {bad}")
    dotted = [n for n in names if "." in n]
    if dotted:  # Lance reads "a.b" as a path into a struct
        raise InvalidArtifact(f"column names cannot contain '.': {dotted}")
    # Lance stores what it is given and only fails when reading it back: whatever is
    # accepted must be readable, so the Arrow data is checked in full (UTF-8 included).
    check_arrow_data(table)
    if key is not None:
        if key not in names:
            raise InvalidArtifact(f"key column {key!r} not in table columns {names}", key=key)
        if pa.types.is_nested(table.schema.field(key).type):
            raise InvalidArtifact(f"key column {key!r} must be a scalar type", key=key)
        check_keys(table[key], key, "the table")
    return table
