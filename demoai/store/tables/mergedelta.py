"""Merging another branch's changes into ours as a delta: a cost in proportion to the change.

:meth:`MergeDeltaMixin.merge_into` is the three-way merge of
:meth:`~demoai.store.tables.compare.CompareMixin.merge3` followed by the write of its
result onto our version, without reading or writing the rows neither side touched:

1. each side's changes against the base (rows added, removed and modified by key) come
   from Lance metadata or the row-hash side files, reading only the changed rows
   (:meth:`~demoai.store.tables.compare.CompareMixin._changes`);
2. the keyed decisions are :func:`~demoai.store.tables.diff.resolve_keyed`'s, the very
   rules ``merge3`` applies (conflicts, ``prefer``), so conflicts are the same;
3. the result differs from ours only at keys the other side touched: those rows are
   hashed and compared with our row hashes (the side files), and only the rows that
   differ are written onto our version as a delta (deletion vectors, one fragment through
   ``merge_insert``), exactly the delta ``write(merged, base=ours)`` writes;
4. the content digest comes from the new version's side files, the row order (ours,
   then the rows only they have, in their order) from one scan of the key column.

The ref, digest, delta record and row order are those of ``merge3`` + ``write``. Unkeyed
tables, a changed schema, versions without side files and merges that rewrite most rows
take that path itself.

:class:`MergeDeltaMixin` is part of :class:`~demoai.store.tables.store.TableStore`.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from demoai.store.tables.diff import (KeyedMerge, MergeResult, cells_changed, match_keys,
                                      resolve_keyed)
from demoai.store.tables.io import canonical_schema, digest_from_hashes, row_hashes
from demoai.store.tables.order import perm_by_keys, sequence_digest
from demoai.store.tables.ref import TableRef
from demoai.store.tables.write import OVERWRITE_FRACTION, delete_row_ids, take_by_batch, take_scan

__all__ = ["MergeDeltaMixin"]


class _Shape(NamedTuple):
    schema: pa.Schema
    num_rows: int


class _Plan(NamedTuple):
    dele: np.ndarray        # scan positions in ours to delete
    rows: pa.Table          # rows to upsert (stored schema)
    edit_a: np.ndarray      # scan positions in ours of the edited rows ...
    edit_b: np.ndarray      # ... and their rows in ``rows``
    fresh: np.ndarray       # rows of ``rows`` whose key ours lacks


class MergeDeltaMixin:
    """Three-way merges written as deltas (part of ``TableStore``)."""

    def merge_into(self, base: TableRef, ours: TableRef, theirs: TableRef, *,
                   key: str | None, prefer: str | None = None,
                   sides: bool = False) -> MergeResult:
        """Merge ``theirs`` into ``ours`` (both descending from ``base``) and store the
        result as a new version on our lineage: ``ref`` of the result names it (``table``
        is None). Conflicts and ``prefer`` as :meth:`merge3`; with conflicts left (no
        ``prefer``) nothing is written, and ``sides`` asks for the merge as each side
        would resolve it (conflict markers need them: whole tables, read then).

        The written version equals ``write(merge3(...).table, key=key, base=ours)`` in
        digest, rows, delta record and row order, at a cost in proportion to the two
        sides' changes (see the module docstring)."""
        if prefer not in (None, "ours", "theirs"):
            raise ValueError("prefer must be None, 'ours' or 'theirs'")
        if self._merge_delta_fits(base, ours, theirs, key):
            co = self._changes(base, ours, key, True)
            ct = self._changes(base, theirs, key, True)
            km = resolve_keyed(co, ct, key, prefer)
            if km.conflicts and prefer is None:
                if sides:
                    full = self.merge3(base, ours, theirs, key=key)
                    return MergeResult(None, full.conflicts, None, full.stats, full.sides)
                return MergeResult(None, km.conflicts, None, km.stats)
            ref = self._merge_write(ours, theirs, key, km)
            if ref is not None:
                return MergeResult(None, km.conflicts, ref, {**km.stats, "method": "delta"})
        res = self.merge3(base, ours, theirs, key=key, prefer=prefer)
        if res.table is None:
            return res
        ref = self.write(res.table, key=key, base=ours)
        return MergeResult(None, res.conflicts, ref, {**res.stats, "method": "full"}, res.sides)

    def _merge_delta_fits(self, base: TableRef, ours: TableRef, theirs: TableRef,
                          key: str | None) -> bool:
        """Whether the delta path applies: keyed, three distinct contents, one schema."""
        if key is None or len({base.digest, ours.digest, theirs.digest}) < 3:
            return False
        s = [canonical_schema(r.arrow_schema()) for r in (base, ours, theirs)]
        return s[0] == s[1] == s[2] and key in ours.arrow_schema().names

    def _merge_write(self, ours: TableRef, theirs: TableRef, key: str,
                     km: KeyedMerge) -> TableRef | None:
        """Write the merge decided in ``km`` onto ``ours``; None when the delta path does
        not apply after all (no side files, most rows changed, no recorded order)."""
        schema = ours.arrow_schema()
        uri = self._dir_for(ours)
        with self._lock(ours.table_id):
            ds = self._checked(ours)
            stored = ds.schema
            ours_h = self.version_hashes(ds, uri, ours.files)
            if ours_h is None or ours.order is None:
                return None
            scan = ds.to_table(columns=[key], with_row_id=True)
            okeys, rowids = scan[key].combine_chunks(), scan["_rowid"].to_numpy()
            del scan
            plan = self._merge_plan(km, key, schema, stored, okeys, ours_h)
            n_fresh = len(plan.fresh)
            n_change = len(plan.dele) + len(plan.rows)
            rows = ours.rows - len(plan.dele) + n_fresh
            if n_change == 0:
                return ours   # the merge holds our rows, in our order
            if n_change > OVERWRITE_FRACTION * max(ours.rows, rows, 1):
                return None
            old = take_scan(ds, plan.edit_a, stored)
            cells = cells_changed(old, take_by_batch(plan.rows, plan.edit_b))
            del old
            names = stored.names
            delta = {"base": ours.digest, "key": key, "added": n_fresh,
                     "removed": len(plan.dele), "modified": int(cells.any(axis=1).sum()),
                     "columns": {c: int(n) for c, n in zip(names, cells.sum(axis=0)) if n}}
            keep = np.ones(len(okeys), dtype=bool)
            keep[plan.dele] = False
            fresh_keys = plan.rows[key].combine_chunks().take(
                pa.array(plan.fresh, type=pa.int64()))
            file_keys = self._merged_file_keys(ours, theirs, key, okeys, keep, fresh_keys)
            del keep
            if lance.dataset(str(uri)).version != ours.version:
                ds.restore()   # branch from an older version: it becomes the latest
            delete_row_ids(str(uri), rowids[plan.dele])
            if plan.rows.num_rows:
                # merge_insert keeps the stable _rowid of edited rows
                lance.dataset(str(uri)).merge_insert(key).when_matched_update_all() \
                    .when_not_matched_insert_all().execute(plan.rows)
            final = lance.dataset(str(uri))
            self.store_row_hashes(final, uri, stored)
            final_h = self.version_hashes(final, uri,
                                          dict.fromkeys(self._version_files(final, uri), ""))
            if final_h is None:
                final_h = row_hashes(final.to_table(columns=names).cast(stored))
            digest = digest_from_hashes(schema, key, final_h)
            ref = self._make_ref(final, uri, ours.table_id, _Shape(schema, rows), digest, key,
                                 ours.files, delta)
            perm = perm_by_keys(final.to_table(columns=[key])[key], file_keys)
            ref = self.with_order(ref, perm, sequence_digest(final_h[perm]))
        self.digests.record(ref)
        return ref

    @staticmethod
    def _merge_plan(km: KeyedMerge, key: str, schema: pa.Schema, stored: pa.Schema,
                    okeys: pa.Array, ours_h: np.ndarray) -> _Plan:
        """The rows that make ours the merge: only keys the other side touched can differ
        from ours; of those, rows the merge drops and rows whose hash is not ours'."""
        added = {r[key]: r for r in km.added}
        touched = list(km.theirs_keys)
        merged: list[Any] = [None if k in km.deleted else km.replaced.get(k, added.get(k))
                             for k in touched]
        opos = np.full(len(touched), -1, dtype=np.int64)
        if touched:
            pa_, pb_, _, _ = match_keys(okeys, pa.array(touched, type=okeys.type))
            opos[pb_] = pa_
        present = np.array([m is not None for m in merged], dtype=bool)
        dele = np.sort(opos[~present & (opos >= 0)])
        idx = np.flatnonzero(present)
        cand = pa.Table.from_pylist([merged[i] for i in idx], schema=schema).cast(stored)
        h = row_hashes(cand) if cand.num_rows else np.zeros((0, 2), dtype=np.uint64)
        at = opos[idx]
        same = np.zeros(len(idx), dtype=bool)
        mine = at >= 0
        if mine.any():
            same[mine] = (ours_h[at[mine]] == h[mine]).all(axis=1)
        up = np.flatnonzero(~same)
        rows = take_by_batch(cand, up)
        at = at[up]
        edit_b = np.flatnonzero(at >= 0)
        return _Plan(dele, rows, at[edit_b], edit_b, np.flatnonzero(at < 0))

    def _merged_file_keys(self, ours: TableRef, theirs: TableRef, key: str, okeys: pa.Array,
                          keep: np.ndarray, fresh_keys: pa.Array) -> pa.Array:
        """The merge's keys in its file order (``merge3``'s): our file order without the
        dropped rows, then the rows we lack in the order of their file."""
        perm = self.order_of(ours)
        if perm is None:
            kept = okeys.filter(pa.array(keep))
        else:
            kept = okeys.take(pa.array(perm, type=pa.int64())).filter(pa.array(keep[perm]))
        if len(fresh_keys) == 0:
            return kept
        their_keys = self.read(theirs, columns=[key])[key].combine_chunks()
        where = pc.index_in(fresh_keys, value_set=their_keys.cast(fresh_keys.type))
        rank = where.cast(pa.int64()).fill_null(np.iinfo(np.int64).max).to_numpy(
            zero_copy_only=False)
        order = np.argsort(rank, kind="stable")
        return pa.concat_arrays([kept, fresh_keys.take(pa.array(order, type=pa.int64()))
                                 .cast(kept.type)])
