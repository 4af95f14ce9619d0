"""Writing a table version from a stream of batches (:mod:`demoai.store.tables.stream`).

A new lineage: each batch is checked and hashed on its way into Lance's writer; what is
kept is the row hashes and the key column (for the digest, the key check and the side
files of :mod:`~demoai.store.tables.rowhash`), in memory for tables up to
:func:`~demoai.store.tables.spill.spill_threshold` rows and on disk beyond it
(:mod:`~demoai.store.tables.spill`), so memory does not grow with the table.

A delta onto a version with side files: one pass over the batches (read and decoded in
a second thread while this one hashes) keeps only the rows the base does not hold as
they are, edited and new rows (:mod:`~demoai.store.tables.keyplan`): with an integer
key, looked up among the base's keys, which gives the plan, the key check and the new
file order without a whole-table sort; otherwise by hash, with the plan made from the
base's side files and key column exactly as :meth:`~demoai.store.tables.write.WriteMixin.write`
makes it. Only the change is written: deletion vectors (removed rows and the old values
of edited ones), one appended fragment of edited and new rows, their side file;
the base's data files are neither rewritten nor re-read (one narrow scan of its key
column and row ids; the edited rows' old values, to count changed cells, are read while
the digest sorts). When most rows changed the version is written whole from a second
pass. Other cases (no side files on the base, a changed schema) read the table whole and
go through :meth:`~demoai.store.tables.write.WriteMixin.write`. Digests, deltas and row
orders are the same as that method's for the same rows. Past
:func:`~demoai.store.tables.spill.spill_threshold` rows, a delta by an integer key the base
was stored with is matched a key bucket at a time on disk instead
(:mod:`~demoai.store.tables.partdelta`), so its memory does not grow with the table.

:class:`IngestMixin` is part of :class:`~demoai.store.tables.store.TableStore`.
"""
from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from typing import Iterator, NamedTuple

import lance
import numpy as np
import pyarrow as pa

from demoai.errors import InvalidArtifact
from demoai.store.tables.diff import (cells_changed, check_keys, int_keys, keys_usable,
                                      multiset_minus, plan_keyed)
from demoai.store.tables.io import (canonical_schema, digest_from_hashes, digest_from_sorted,
                                    row_hashes, sort_hashes)
from demoai.store.tables.order import perm_by_hashes, perm_by_keys, sequence_digest
from demoai.store.tables.ref import TableRef, schema_meta
from demoai.store.tables.fasthash import (FastHashCache, fast_hashes, fast_ok, fast_rows_limit,
                                          merged_sorted, row_and_fast_hashes)
from demoai.store.tables.keyplan import (HashMatcher, KeyMatcher, KeyPlan, KeysNotClean,
                                         delta_perm, int_key_type)
from demoai.store.tables.spill import HashSpill, spill_threshold
from demoai.store.tables.stream import BatchSource, Reread, grouped, prefetch
from demoai.store.tables.write import (OVERWRITE_FRACTION, Progress, check_table,
                                       delete_row_ids, report, row_ids_at, take_by_batch, take_scan)

__all__ = ["IngestMixin"]


class _Shape(NamedTuple):
    schema: pa.Schema
    num_rows: int


class _Pass(NamedTuple):
    h: np.ndarray                    # every row's hash, in file order
    kept: list                       # the rows the base lacks (tables), unless too_many
    kept_idx: list                   # their file positions
    too_many: bool
    plan: KeyPlan | None             # a KeyMatcher's plan
    keys: list | None                # a HashMatcher's key chunks
    file_keys: np.ndarray | None     # a KeyMatcher's keys in file order
    bpos: np.ndarray | None          # and the base position of each file row (-1: none)
    spill: HashSpill | None          # the hashes on disk instead of in ``h`` (large files)
    fast: np.ndarray | None = None   # every row's fingerprint (fasthash.py), when made


class _Later:
    """``fn(*args)`` running in a thread (native work that releases the GIL); ``result()``
    waits for it and raises what it raised."""

    def __init__(self, fn, *args) -> None:
        self._out: list = []
        self._thread = threading.Thread(target=self._run, args=(fn, args),
                                        name="demoai-table-take", daemon=True)
        self._thread.start()

    def _run(self, fn, args) -> None:
        try:
            self._out.append((fn(*args), None))
        except BaseException as e:   # noqa: BLE001 - raised again in result()
            self._out.append((None, e))

    def result(self):
        """The value ``fn`` returned."""
        self._thread.join()
        value, err = self._out[0]
        if err is not None:
            raise err
        return value


class _Fallback(Exception):
    """The stream cannot be written as one: read the table whole."""


def _cast_to(stored: pa.Schema):
    """A batch cast to the stored schema (a cast that fails: the table is read whole)."""
    def cast(t: pa.Table) -> pa.Table:
        try:
            return t.cast(stored)
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
            raise _Fallback() from None
    return cast


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
        schema = source.schema
        spill = spill_keys = None
        if source.rows is None or source.rows > spill_threshold():
            spill_keys = bool(key) and int_key_type(schema.field(key).type)
            spill = HashSpill(self.root, keyed=spill_keys)
        nulls = [0]
        failed: list[BaseException] = []
        # fingerprints for a later keyed delta (fasthash.py): 8 bytes a row, in memory
        fast: list[np.ndarray] | None = (
            [] if spill is None and key and int_key_type(schema.field(key).type)
            and fast_ok(schema) and (source.rows or 0) <= fast_rows_limit() else None)

        def hashed() -> Iterator[pa.RecordBatch]:
            # in prefetch's thread: reads, checks and hashes batch k+1 while Lance encodes k
            for g in grouped(source.batches()):
                if fast is not None:   # the fingerprints from the same scan as the hashes
                    h, f = row_and_fast_hashes(g)
                    fast.append(f)
                else:
                    h = row_hashes(g)
                if spill is None:
                    hashes.append(h)
                if key and spill_keys:
                    kc = g.column(key)
                    nulls[0] += kc.null_count
                    spill.add(h, int_keys(kc) if not kc.null_count else None)
                elif spill is not None:
                    spill.add(h)
                if key and not spill_keys:
                    keys.extend(g.column(key).chunks)
                yield from g.to_batches()

        def batches() -> Iterator[pa.RecordBatch]:
            done = 0
            try:
                for b in prefetch(hashed()):
                    done += b.num_rows
                    report(progress, "write", done, max(total, done))
                    yield b
            except Exception as e:   # Lance reports it as its own error: the caller raises ours
                failed.append(e)
                raise InvalidArtifact("the table could not be read") from None

        table_id = uuid.uuid4().hex
        uri = self._uri(table_id)
        try:
            return self._ingest_new_locked(source, key, progress, table_id, uri, spill,
                                           hashes, keys, nulls, batches, failed, fast)
        finally:
            if spill is not None:
                spill.close()

    def _ingest_new_locked(self, source, key, progress, table_id, uri, spill, hashes, keys,
                           nulls, batches, failed, fast) -> TableRef:
        schema, total = source.schema, source.rows or 0
        with self._lock(table_id):
            report(progress, "write", 0, total)
            try:
                stream = batches()
                try:
                    ds = lance.write_dataset(pa.RecordBatchReader.from_batches(schema, stream),
                                             str(uri), mode="create", enable_stable_row_ids=True)
                except Exception:
                    if failed:
                        raise failed[0] from None
                    raise
                finally:
                    stream.close()   # stops and joins the reading thread
                if failed:
                    raise failed[0]
                kcol = _keys(keys, schema, key) if key and keys else None
                if spill is None:
                    h = fresh = _concat(hashes)
                    if key:
                        check_keys(kcol, key, "the table")
                    srt = sort_hashes(h) if fast is not None else None
                    digest = (digest_from_sorted(schema, key, len(h), [srt]) if srt is not None
                              else digest_from_hashes(schema, key, h))
                    seq, rows = sequence_digest(h), len(h)
                else:
                    if key and nulls[0]:
                        raise InvalidArtifact(f"key column {key!r} has {nulls[0]} null value(s) "
                                              "in the table", key=key)
                    if key and kcol is not None:
                        check_keys(kcol, key, "the table")
                    elif key:
                        spill.check_keys(key)
                    digest, seq, rows = spill.digest(schema, key), spill.sequence(), spill.rows
                    fresh = spill.view()
                found = self.digests.lookup(digest)
                ref = None
                if found is None:
                    self.store_row_hashes(ds, uri, schema, fresh)
                    if fast is not None and spill is None:
                        FastHashCache(self.cache).save(table_id, digest, fresh,
                                                      np.concatenate(fast) if fast else
                                                      np.zeros(0, dtype=np.uint64), srt)
                    ref = self.with_order(self._make_ref(ds, uri, table_id, _Shape(schema, rows),
                                                         digest, key, {}), None, seq)
                elif spill is not None:   # stored already: the re-import's order, from disk
                    h = spill.hashes(0, spill.rows)
                    if key and kcol is None:
                        kcol = pa.chunked_array([pa.array(spill.keys())]).cast(
                            schema.field(key).type)
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
            if (key is not None and base.key == key and key in stored.names
                    and int_key_type(source.schema.field(key).type)
                    and max(source.rows or 0, base.rows) > spill_threshold()):
                # too large to match in memory: a key bucket at a time (partdelta.py)
                ref = self._partitioned_delta(source, key, base, progress, uri, ds_base,
                                              stored, _cast_to(stored))
                if ref is not None:
                    self.digests.record(ref)
                    return ref
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
        names = stored.names
        has_key = key is not None and key in names
        scan = ds_base.to_table(columns=[key] if has_key else [])
        # a base stored with this key was checked unique and non-null when written
        keyed = has_key and (base.key == key or keys_usable(scan.select([key]), key))
        base_keys = scan[key] if keyed else None
        del scan
        base_ints = (int_keys(base_keys) if keyed and int_key_type(source.schema.field(key).type)
                     else None)
        seen = cached = None
        if base_ints is not None:
            base_keys = None   # one copy of the keys (8 bytes a row) during the pass
            cached = (FastHashCache(self.cache).load(base.table_id, base.digest, base_h)
                      if fast_ok(stored) and max(len(base_h), source.rows or 0)
                      <= fast_rows_limit() else None)
            try:
                seen = self._delta_pass(source, stored, key, KeyMatcher(base_ints, base_h),
                                        base, progress, cached and cached.fast)
            except KeysNotClean:   # a null or repeated key: the full check names it
                seen = None
                base_keys = ds_base.to_table(columns=[key])[key]
        if seen is None:
            seen = self._delta_pass(source, stored, key, HashMatcher(base_h), base, progress)
        spill = seen.spill
        # handed over: freed as the callee goes
        held = [seen, base_h, base_keys, base_ints, cached if seen.fast is not None else None]
        del seen, base_h, base_keys, base_ints, cached
        try:
            return self._delta_write(source, key, base, progress, uri, ds_base, stored, keyed,
                                     held)
        finally:
            if spill is not None:
                spill.close()

    def _delta_write(self, source, key, base, progress, uri, ds_base, stored, keyed,
                     held: list) -> TableRef:
        """The plan, the delta record and the write of :meth:`_ingest_delta_locked`."""
        seen, base_h, base_keys, base_ints, cached = held
        held.clear()
        names = stored.names
        h, kept, kept_idx, too_many, plan, spill, fast = (
            seen.h, seen.kept, seen.kept_idx, seen.too_many, seen.plan, seen.spill, seen.fast)
        fkeys = bpos = before = None
        if plan is not None:
            fkeys, bpos = seen.file_keys, seen.bpos
            kcol = pa.chunked_array([pa.array(fkeys)]).cast(source.schema.field(key).type)
            if len(plan.edit_a):   # the base's edited rows are read while the digest sorts
                before = _Later(take_scan, ds_base, plan.edit_a, stored)
        else:
            kcol = _keys(seen.keys, stored, key)
            if key:
                if kcol.type != source.schema.field(key).type:
                    kcol = kcol.cast(source.schema.field(key).type)
                check_keys(kcol, key, "the table")
        del seen
        merged = None
        if spill is None and plan is not None and cached is not None and cached.sorted is not None:
            merged = self._merged_digest(source.schema, key, base, base_h, h, plan, cached.sorted)
        if merged is not None:
            digest, seq = merged[0], sequence_digest(h)
        elif spill is None:
            digest, seq = digest_from_hashes(source.schema, key, h), sequence_digest(h)
        else:
            digest, seq = spill.digest(source.schema, key), spill.sequence()
        n_rows = len(h) if spill is None else spill.rows
        shape = _Shape(source.schema, n_rows)
        if spill is not None and (digest == base.digest or not keyed):
            h = spill.hashes(0, n_rows)   # the rare paths that need them all
        if digest == base.digest:
            return self._same_rows(base, pa.table({key: kcol}) if key else None, h, seq, key)
        if plan is not None:
            dele, upsert, edit_a, edit_b = plan
        elif keyed:
            dele, upsert, edit_a, edit_b = plan_keyed(base_keys, base_h, kcol, h)
        else:
            dele, upsert = multiset_minus(base_h, h)
            edit_a = edit_b = np.zeros(0, dtype=np.int64)
        n_change = len(dele) + len(upsert)
        if n_change == 0:
            same = replace(base, digest=digest, key=key, rows=n_rows,
                           schema=schema_meta(source.schema), delta=None)
            if keyed and base_keys is None:
                base_keys = pa.array(base_ints)
            perm = (perm_by_keys(base_keys, kcol) if keyed else perm_by_hashes(base_h, h))
            return self.with_order(same, perm, seq)
        if too_many or n_change > OVERWRITE_FRACTION * max(base.rows, n_rows, 1):
            return self._overwrite_stream(uri, base, source, stored, digest, key,
                                          h if spill is None else spill.view(), progress, seq)
        # the new version's fingerprints in its scan order: the base's survivors', then the
        # appended rows' (checked against its row hashes when next loaded)
        if fast is not None and cached is not None and spill is None:
            alive = np.ones(len(base_h), dtype=bool)
            alive[dele] = False
            alive[edit_a] = False
            up = np.sort(upsert)
            FastHashCache(self.cache).save(base.table_id, digest,
                                           np.concatenate([base_h[alive], h[up]]),
                                           np.concatenate([cached.fast[alive], fast[up]]),
                                           merged[1] if merged is not None else None)
            del alive, up
        del cached, merged, fast
        # An edit is the old row deleted and the new one appended (as partdelta.py does):
        # Lance's merge_insert would build a hash table of every base key for it
        gone = np.sort(np.concatenate([dele, edit_a]) if keyed else dele)
        dele_ids = row_ids_at(ds_base, gone)
        del gone
        del base_keys, base_h
        kidx = np.concatenate(kept_idx) if kept_idx else np.zeros(0, dtype=np.int64)
        kept_t = (pa.concat_tables(kept) if kept else stored.empty_table())
        del kept
        upsert = np.sort(upsert)
        loc = np.minimum(np.searchsorted(kidx, upsert), max(len(kidx) - 1, 0))
        if len(upsert) and not (len(kidx) and np.array_equal(kidx[loc], upsert)):
            kept_t, kidx = self._pick(source, upsert, stored), upsert   # repeated rows
            loc = np.arange(len(upsert))
        rows = take_by_batch(kept_t, loc)
        delta = None
        if keyed:
            eb = np.searchsorted(upsert, edit_b)
            old = before.result() if before is not None else take_scan(ds_base, edit_a, stored)
            cells = cells_changed(old, take_by_batch(rows, eb))
            del old
            delta = {"base": base.digest, "key": key, "added": len(upsert) - len(edit_b),
                     "removed": len(dele), "modified": int(cells.any(axis=1).sum()),
                     "columns": {c: int(n) for c, n in zip(names, cells.sum(axis=0)) if n}}
        report(progress, "write", 0, n_change)
        if lance.dataset(str(uri)).version != base.version:
            ds_base.restore()
        delete_row_ids(str(uri), dele_ids)
        if len(upsert):
            lance.write_dataset(rows, str(uri), mode="append")
        final = lance.dataset(str(uri))
        self.store_row_hashes(final, uri, stored)
        ref = self._make_ref(final, uri, base.table_id, shape, digest, key, base.files, delta)
        report(progress, "write", n_change, n_change)
        if keyed:
            final_keys = final.to_table(columns=[key])[key]
            perm = None
            if fkeys is not None:
                final_ints = int_keys(final_keys)
                if final_ints is not None:
                    del final_keys   # one copy of the keys
                    perm = delta_perm(base_ints, fkeys, bpos,
                                      KeyPlan(dele, upsert, edit_a, edit_b), final_ints)
                    final_keys = pa.array(final_ints)
                del final_ints, bpos
            if perm is None:
                perm = perm_by_keys(final_keys, kcol)
        else:
            final_h = self.version_hashes(final, uri, ref.files)
            if final_h is None:
                final_h = row_hashes(final.to_table(columns=names).cast(stored))
            perm = perm_by_hashes(final_h, h)
        return self.with_order(ref, perm, seq)

    @staticmethod
    def _merged_digest(schema: pa.Schema, key: str | None, base: TableRef, base_h: np.ndarray,
                       h: np.ndarray, plan: KeyPlan,
                       base_sorted: np.ndarray) -> tuple[str, np.ndarray] | None:
        """(digest, sorted hashes) of the new version from the base's sorted hashes (the
        cache's, checked against the base's digest first) and the plan's changes; None
        when they cannot be used (the caller sorts every hash)."""
        if (len(base_sorted) != len(base_h)
                or digest_from_sorted(schema, base.key, len(base_sorted),
                                      [base_sorted]) != base.digest):
            return None
        gone = np.concatenate([plan.dele, plan.edit_a])
        srt = merged_sorted(base_sorted, base_h[gone], h[plan.upsert])
        if srt is None or len(srt) != len(h):
            return None
        return digest_from_sorted(schema, key, len(srt), [srt]), srt

    def _delta_pass(self, source: BatchSource, stored: pa.Schema, key: str | None,
                    matcher: "KeyMatcher | HashMatcher", base: TableRef,
                    progress: Progress | None, base_fast: np.ndarray | None = None) -> "_Pass":
        """One pass over the new file: every row hashed (with ``base_fast``, the base's
        cached fingerprints, only the rows they do not find), the rows ``matcher`` does not
        find in the base kept (unless more than :data:`OVERWRITE_FRACTION` of the base
        changed), and with a :class:`KeyMatcher` the plan."""
        by_key = isinstance(matcher, KeyMatcher)
        limit = OVERWRITE_FRACTION * max(base.rows, 1)
        spill = None
        if by_key and (source.rows is None or source.rows > spill_threshold()):
            spill = HashSpill(self.root, keyed=False)   # the new hashes go to disk
        all_h = (np.empty((source.rows, 2), dtype=np.uint64)
                 if source.rows and spill is None else None)

        try:
            return self._delta_batches(source, key, matcher, progress, _cast_to(stored), spill,
                                       all_h, limit, base_fast)
        except BaseException:
            if spill is not None:
                spill.close()
            raise

    def _delta_batches(self, source, key, matcher, progress, cast, spill, all_h,
                       limit, base_fast=None) -> "_Pass":
        """The loop of :meth:`_delta_pass`."""
        by_key = isinstance(matcher, KeyMatcher)
        fast = [] if by_key and base_fast is not None else None
        hashes, keys, kept, kept_idx = [], [], [], []
        kept_rows, off, too_many, filled = 0, 0, False, 0
        for t in prefetch(cast(g) for g in grouped(source.batches())):
            if fast is not None:   # only the rows the fingerprints do not find are hashed
                f = fast_hashes(t)
                new, h = matcher.probe_fast(t.column(key), f, base_fast,
                                            lambda idx, t=t: row_hashes(take_by_batch(t, idx)))
                fast.append(f)
            else:
                h = row_hashes(t)
            if spill is not None:
                spill.add(h)
            elif all_h is not None and not hashes and off + len(h) <= len(all_h):
                all_h[off:off + len(h)] = h   # no second copy of every hash at the end
                filled = off + len(h)
            else:
                hashes.append(h)
            if fast is not None:
                pass   # probed above
            elif by_key:
                new = matcher.probe(t.column(key), h)
            else:
                if key:
                    keys.extend(t.column(key).chunks)
                new = matcher.probe(h)
            cand = np.flatnonzero(new)
            kept_rows += len(cand)
            if kept_rows > limit:
                too_many, kept, kept_idx = True, [], []
            elif len(cand):
                kept.append(take_by_batch(t, cand))
                kept_idx.append(cand + off)
            off += len(h)
            report(progress, "hash", off, max(off, source.rows or 0))
        if spill is not None:
            h = None
        elif all_h is not None and not hashes and off == len(all_h):
            h = all_h
        else:   # the row count was not known, or was wrong
            h = _concat(([all_h[:filled]] if all_h is not None else []) + hashes)
        del hashes, all_h
        if not by_key:
            return _Pass(h, kept, kept_idx, too_many, None, keys, None, None, None)
        return _Pass(h, kept, kept_idx, too_many, matcher.plan(), None, matcher.file_keys(),
                     matcher.base_positions(), spill,
                     np.concatenate(fast) if fast else None)

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
                          digest: str, key: str | None, h, progress: Progress | None,
                          seq: str) -> TableRef:
        """A full new version of the lineage from a second pass over the stream (``h``:
        the hashes in file order, an array or a spill's view)."""
        report(progress, "write", 0, len(h))
        schema = source.schema
        ds = lance.write_dataset(pa.RecordBatchReader.from_batches(schema, source.batches()),
                                 str(uri), mode="overwrite", enable_stable_row_ids=True)
        self.store_row_hashes(ds, uri, schema, h)
        ref = self._make_ref(ds, uri, base.table_id, _Shape(schema, len(h)), digest, key,
                             base.files)
        return self.with_order(ref, None, seq)
