"""Writing a table version from a stream of batches (:mod:`demoai.store.tables.stream`),
in memory that does not grow with the table.

A new lineage: each batch is checked and hashed on its way into Lance's writer; what is
kept is the row hashes and the key column (for the digest, the key check and the side
files of :mod:`~demoai.store.tables.rowhash`). A delta onto a version with side files:
one pass over the batches keeps only the rows whose hash the base does not hold (edited
and new rows), then the plan is made from the base's side files and key column exactly
as :meth:`~demoai.store.tables.write.WriteMixin.write` makes it, and only the change is
written. When most rows changed the version is written whole from a second pass. Other
cases (no side files on the base, a changed schema) read the table whole and go through
:meth:`~demoai.store.tables.write.WriteMixin.write`. Digests, deltas and row orders are
the same as that method's for the same rows.

:class:`IngestMixin` is part of :class:`~demoai.store.tables.store.TableStore`.
"""
from __future__ import annotations

import queue
import threading
import uuid
from dataclasses import replace
from typing import Iterator, NamedTuple

import lance
import numpy as np
import pyarrow as pa

from demoai.errors import InvalidArtifact
from demoai.store.tables.diff import (cells_changed, check_keys, keys_usable, multiset_minus,
                                      plan_keyed)
from demoai.store.tables.io import canonical_schema, digest_from_hashes, row_hashes
from demoai.store.tables.order import hash_order, perm_by_hashes, perm_by_keys, sequence_digest
from demoai.store.tables.ref import TableRef, schema_meta
from demoai.store.tables.stream import BatchSource, Reread
from demoai.store.tables.write import (OVERWRITE_FRACTION, Progress, check_table, report,
                                       take_scan)

__all__ = ["IngestMixin"]


class _Shape(NamedTuple):
    schema: pa.Schema
    num_rows: int


class _Fallback(Exception):
    """The stream cannot be written as one: read the table whole."""


def _keys(parts: list, schema: pa.Schema, key: str | None) -> pa.ChunkedArray | None:
    return pa.chunked_array(parts, type=schema.field(key).type) if key else None


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.uint64)


class IngestMixin:
    """Streaming writes (part of ``TableStore``)."""

    def write_source(self, source: BatchSource, *, key: str | None = None,
                     base: TableRef | None = None, progress: Progress | None = None) -> TableRef:
        """Store the rows of ``source`` like :meth:`write` stores a table (same digest,
        delta and row order), reading it in batches: peak memory is the batches in
        flight, the row hashes and keys, and the changed rows of a delta."""
        check_table(source.schema.empty_table(), key)   # names and key column
        try:
            if base is None:
                return self._ingest_new(source, key, progress)
            return self._ingest_delta(source, key, base, progress)
        except Reread as r:
            return self.write(r.table, key=key, base=base, progress=progress)
        except _Fallback:
            table = pa.Table.from_batches(list(source.batches()), schema=source.schema)
            return self.write(table, key=key, base=base, progress=progress)

    def _ingest_new(self, source: BatchSource, key: str | None,
                    progress: Progress | None) -> TableRef:
        if source.rows == 0:
            raise _Fallback()
        hashes: list[np.ndarray] = []
        keys: list = []
        total = source.rows or 0

        failed: list[BaseException] = []
        ready: queue.Queue = queue.Queue(maxsize=2)   # bounds the batches in flight
        stop = threading.Event()

        def offer(item: pa.RecordBatch | None) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            # reads, checks and hashes batch k+1 while Lance encodes batch k
            try:
                for b in source.batches():
                    hashes.append(row_hashes(pa.Table.from_batches([b])))
                    if key:
                        keys.append(b.column(key))
                    if not offer(b):
                        return
            except BaseException as e:   # noqa: BLE001 - handed to the writer's thread
                failed.append(e)
            offer(None)

        def batches() -> Iterator[pa.RecordBatch]:
            done = 0
            while (b := ready.get()) is not None:
                done += b.num_rows
                report(progress, "write", done, max(total, done))
                yield b
            if failed:   # Lance reports it as its own error: the caller raises ours
                raise InvalidArtifact("the table could not be read")

        schema = source.schema
        table_id = uuid.uuid4().hex
        uri = self._uri(table_id)
        with self._lock(table_id):
            report(progress, "write", 0, total)
            producer = threading.Thread(target=produce, name="demoai-table-read", daemon=True)
            producer.start()
            try:
                try:
                    ds = lance.write_dataset(pa.RecordBatchReader.from_batches(schema, batches()),
                                             str(uri), mode="create", enable_stable_row_ids=True)
                except Exception:
                    if failed:
                        raise failed[0] from None
                    raise
                finally:
                    stop.set()
                    producer.join()
                if failed:
                    raise failed[0]
                h = _concat(hashes)
                kcol = _keys(keys, schema, key)
                if key:
                    check_keys(kcol, key, "the table")
                digest = digest_from_hashes(schema, key, h)
                seq = sequence_digest(h)
                found = self.digests.lookup(digest)
                ref = None
                if found is None:
                    self.store_row_hashes(ds, uri, schema, h)
                    ref = self.with_order(self._make_ref(ds, uri, table_id, _Shape(schema, len(h)),
                                                         digest, key, {}), None, seq)
            except BaseException:
                self._discard_new(table_id)
                raise
            if found is not None:
                self._discard_new(table_id)
        if found is not None:
            return self._same_rows(found, pa.table({key: kcol}) if key else None, h, seq, key)
        self.digests.record(ref)
        return ref

    def _ingest_delta(self, source: BatchSource, key: str | None, base: TableRef,
                      progress: Progress | None) -> TableRef:
        uri = self._dir_for(base)
        with self._lock(base.table_id):
            ds_base = self._checked(base)
            stored = ds_base.schema
            if canonical_schema(stored) != canonical_schema(source.schema):
                raise _Fallback()
            base_h = self.version_hashes(ds_base, uri, base.files)
            if base_h is None:
                raise _Fallback()
            box = [base_h]   # handed over, so the callee can free it when done with it
            del base_h
            ref = self._ingest_delta_locked(source, key, base, progress, uri, ds_base,
                                            stored, box)
        self.digests.record(ref)
        return ref

    def _ingest_delta_locked(self, source, key, base, progress, uri, ds_base, stored,
                             box: list) -> TableRef:
        base_h = box.pop()
        order = hash_order(base_h)
        bhi, blo = base_h[order, 0], base_h[order, 1]
        hashes, keys, kept, kept_idx = [], [], [], []
        kept_rows, off, too_many = 0, 0, False
        limit = OVERWRITE_FRACTION * max(base.rows, 1)
        for b in source.batches():
            try:
                t = pa.Table.from_batches([b]).cast(stored)
            except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
                raise _Fallback() from None
            h = row_hashes(t)
            hashes.append(h)
            if key:
                keys.append(b.column(key))
            if len(bhi):
                pos = np.minimum(np.searchsorted(bhi, h[:, 0]), len(bhi) - 1)
                new = ~((bhi[pos] == h[:, 0]) & (blo[pos] == h[:, 1]))
            else:
                new = np.ones(len(h), dtype=bool)
            cand = np.flatnonzero(new)
            kept_rows += len(cand)
            if kept_rows > limit:
                too_many, kept, kept_idx = True, [], []
            elif len(cand):
                kept.append(t.take(pa.array(cand, type=pa.int64())))
                kept_idx.append(cand + off)
            off += len(h)
            report(progress, "hash", off, max(off, source.rows or 0))
        del order, bhi, blo
        h = _concat(hashes)
        del hashes
        kcol = _keys(keys, source.schema, key)
        if key:
            check_keys(kcol, key, "the table")
        digest = digest_from_hashes(source.schema, key, h)
        seq = sequence_digest(h)
        shape = _Shape(source.schema, len(h))
        if digest == base.digest:
            return self._same_rows(base, pa.table({key: kcol}) if key else None, h, seq, key)
        names = stored.names
        has_key = key is not None and key in names
        scan = ds_base.to_table(columns=[key] if has_key else [], with_row_id=True)
        rowids = scan["_rowid"].to_numpy()
        # a base stored with this key was checked unique and non-null when written
        keyed = has_key and (base.key == key or keys_usable(scan.select([key]), key))
        base_keys = scan[key] if keyed else None
        del scan
        if keyed:
            dele, upsert, edit_a, edit_b = plan_keyed(base_keys, base_h, kcol, h)
        else:
            dele, upsert = multiset_minus(base_h, h)
            edit_a = edit_b = np.zeros(0, dtype=np.int64)
        n_change = len(dele) + len(upsert)
        if n_change == 0:
            same = replace(base, digest=digest, key=key, rows=len(h),
                           schema=schema_meta(source.schema), delta=None)
            perm = (perm_by_keys(base_keys, kcol) if keyed else perm_by_hashes(base_h, h))
            return self.with_order(same, perm, seq)
        if too_many or n_change > OVERWRITE_FRACTION * max(base.rows, len(h), 1):
            return self._overwrite_stream(uri, base, source, stored, digest, key, h, progress)
        dele_ids = rowids[dele]      # all the rest of the base's columns can go now
        del rowids, base_keys, base_h
        kidx = np.concatenate(kept_idx) if kept_idx else np.zeros(0, dtype=np.int64)
        kept_t = (pa.concat_tables(kept) if kept else stored.empty_table())
        del kept
        upsert = np.sort(upsert)
        loc = np.minimum(np.searchsorted(kidx, upsert), max(len(kidx) - 1, 0))
        if len(upsert) and not (len(kidx) and np.array_equal(kidx[loc], upsert)):
            kept_t, kidx = self._pick(source, upsert, stored), upsert   # repeated rows
            loc = np.arange(len(upsert))
        rows = kept_t.take(pa.array(loc, type=pa.int64()))
        delta = None
        if keyed:
            eb = np.searchsorted(upsert, edit_b)
            cells = cells_changed(take_scan(ds_base, edit_a, stored),
                                  rows.take(pa.array(eb, type=pa.int64())))
            delta = {"base": base.digest, "key": key, "added": len(upsert) - len(edit_b),
                     "removed": len(dele), "modified": int(cells.any(axis=1).sum()),
                     "columns": {c: int(n) for c, n in zip(names, cells.sum(axis=0)) if n}}
        report(progress, "write", 0, n_change)
        if lance.dataset(str(uri)).version != base.version:
            ds_base.restore()
        if len(dele):
            ids = ",".join(map(str, dele_ids.tolist()))
            lance.dataset(str(uri)).delete(f"_rowid IN ({ids})")
        if len(upsert):
            ds = lance.dataset(str(uri))
            if keyed:
                ds.merge_insert(key).when_matched_update_all() \
                  .when_not_matched_insert_all().execute(rows)
            else:
                ds.insert(rows)
        final = lance.dataset(str(uri))
        self.store_row_hashes(final, uri, stored)
        ref = self._make_ref(final, uri, base.table_id, shape, digest, key, base.files, delta)
        report(progress, "write", n_change, n_change)
        if keyed:
            perm = perm_by_keys(final.to_table(columns=[key])[key], kcol)
        else:
            final_h = self.version_hashes(final, uri, ref.files)
            if final_h is None:
                final_h = row_hashes(final.to_table(columns=names).cast(stored))
            perm = perm_by_hashes(final_h, h)
        return self.with_order(ref, perm, seq)

    @staticmethod
    def _pick(source: BatchSource, idx: np.ndarray, schema: pa.Schema) -> pa.Table:
        """Rows ``idx`` (sorted positions in the stream) from a second pass."""
        parts, off = [], 0
        for b in source.batches():
            lo, hi = np.searchsorted(idx, [off, off + b.num_rows])
            if hi > lo:
                t = pa.Table.from_batches([b]).cast(schema)
                parts.append(t.take(pa.array(idx[lo:hi] - off, type=pa.int64())))
            off += b.num_rows
        return pa.concat_tables(parts) if parts else schema.empty_table()

    def _overwrite_stream(self, uri, base: TableRef, source: BatchSource, stored: pa.Schema,
                          digest: str, key: str | None, h: np.ndarray,
                          progress: Progress | None) -> TableRef:
        """A full new version of the lineage from a second pass over the stream."""
        report(progress, "write", 0, len(h))
        schema = source.schema
        ds = lance.write_dataset(pa.RecordBatchReader.from_batches(schema, source.batches()),
                                 str(uri), mode="overwrite", enable_stable_row_ids=True)
        self.store_row_hashes(ds, uri, schema, h)
        ref = self._make_ref(ds, uri, base.table_id, _Shape(schema, len(h)), digest, key,
                             base.files)
        return self.with_order(ref, None, sequence_digest(h))
