"""Comparing and merging table versions, row by row.

Versions of one lineage in one folder are compared from Lance metadata (fragment lists,
deletion files, row-id sequences; :mod:`demoai.store.tables.lancemeta`), never a data page,
to find the rows they do not share, then only those rows are read; stable ``_rowid`` values
pair rows edited in place. A version written as a delta answers from its record, reading
only the sampled rows. Other pairs (different lineages, schema changes, mostly rewritten
tables) fall back to a full row-hash comparison. Row matching and merging themselves are
:mod:`demoai.store.tables.diff`.

:class:`CompareMixin` is part of :class:`~demoai.store.tables.store.TableStore`.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from demoai.errors import InvalidArtifact
from demoai.store.tables.diff import (Changes, MergeResult, TableDiff, build_diff, cells_changed,
                                      check_keys, classify, key_order, match_keys, merge_keyed,
                                      merge_multiset, multiset_minus, schema_changes)
from demoai.store.tables.io import canonical_schema, canonical_type, row_hashes
from demoai.store.tables.lancemeta import candidates, take_picked, take_rows
from demoai.store.tables.order import sequence_digest
from demoai.store.tables.ref import TableRef, sub_schema
from demoai.store.tables.write import take_scan

__all__ = ["CompareMixin"]

_FULL_DIFF_ROWS = 200_000   # past this many candidate rows, and ...
_FULL_DIFF_FRACTION = 0.3   # ... this share of both tables, diff reads and hashes all rows


class CompareMixin:
    """Diffs and three-way merges (part of ``TableStore``: uses its verified reads)."""

    def diff(self, a: TableRef, b: TableRef, *, key: str | None = None, sample: int = 5,
             verify: bool = True) -> TableDiff:
        """Row-level changes from ``a`` to ``b``.

        ``key`` defaults to the refs' common key. Versions of one lineage are compared
        from Lance metadata at a cost that grows with the change, not the table; other
        pairs by hashing every row. Without a key, rows edited in place (same stable row
        id) count as modified; otherwise unkeyed rows are a multiset (removed + added).
        """
        key = key if key is not None else (a.key if a.key == b.key else None)
        sa, sb = a.arrow_schema(), b.arrow_schema()
        sch = schema_changes(sa, sb, a.key, b.key)
        if a.digest == b.digest or (a.table_id == b.table_id and a.version == b.version):
            if verify:
                self._checked(a)
                self._checked(b)
            seq_a, seq_b = ((r.order or {}).get("digest") for r in (a, b))
            return TableDiff(0, 0, 0, {"added": [], "removed": [], "modified": []}, {}, sch,
                             unchanged=b.rows, key=key, method="identical",
                             reordered=bool(seq_a and seq_b and seq_a != seq_b))
        recorded = self._diff_recorded(a, b, key, sample, sch, verify)
        if recorded is not None:
            return recorded
        ch = self._changes(a, b, key, verify)
        return build_diff(ch, sample=sample, schema_changes=sch, rows_b=b.rows)

    def diff_table(self, a: TableRef, table: pa.Table, *, key: str | None = None,
                   sample: int = 5) -> TableDiff:
        """Row-level changes from the stored version ``a`` to ``table``, rows that are not
        stored (a working file read for ``demoai diff``): every row of both is hashed, and
        nothing is written. ``reordered`` tells when the rows are the same but their order
        is not the one ``a`` records."""
        sa, sb = a.arrow_schema(), table.schema
        sch = schema_changes(sa, sb, a.key, key)
        common = _common_columns(sa, sb, key)
        ta_ = self.read(a, columns=common, ordered=False)
        tb_ = table.select(common)
        ha, hb = row_hashes(ta_), row_hashes(tb_)
        ia, ib = multiset_minus(ha, hb)
        ch = classify(ta_.take(pa.array(ia, type=pa.int64())),
                      tb_.take(pa.array(ib, type=pa.int64())), key, method="full", matched=True)
        td = build_diff(ch, sample=sample, schema_changes=sch, rows_b=table.num_rows)
        if td.is_empty and len(common) == len(sb.names) == len(sa.names):
            seq = (a.order or {}).get("digest")
            td.reordered = bool(seq) and sequence_digest(hb) != seq
        return td

    def _diff_recorded(self, a: TableRef, b: TableRef, key: str | None, sample: int,
                       sch: list[str], verify: bool) -> TableDiff | None:
        """The diff of ``b`` against the version it was written on, from ``b.delta``.

        Which rows changed comes from Lance metadata and the key column alone; the
        per-column counts were recorded when ``b`` was written (when every modified row
        was in memory anyway), so only the sampled rows are read whole. Any disagreement
        between the record and the metadata returns None: the diff is then computed.
        """
        d = b.delta
        if (not d or key is None or d.get("key") != key or d.get("base") != a.digest
                or a.table_id != b.table_id or self._dir_for(a) != self._dir_for(b)):
            return None
        sa, sb = a.arrow_schema(), b.arrow_schema()
        if canonical_schema(sa) != canonical_schema(sb):
            return None
        with self._verified([a, b] if verify else []):
            dsa, dsb = self._checked(a, False), self._checked(b, False)
            picks_a, picks_b = candidates(self._dir_for(a), dsa, dsb)
            ka, _ = take_rows(dsa, picks_a, [key], False)
            kb, _ = take_rows(dsb, picks_b, [key], False)
            ka, kb = ka[key].combine_chunks(), kb[key].combine_chunks()
            check_keys(ka, key, "the old version")
            check_keys(kb, key, "the new version")
            mod_a, mod_b, only_a, only_b = match_keys(ka, kb)
            if (len(only_b), len(only_a), len(mod_b)) != (d["added"], d["removed"],
                                                          d["modified"]):
                return None
            k = max(sample, 0)
            order = key_order(pc.take(kb, pa.array(mod_b, type=pa.int64())))[:k]
            mod_a, mod_b = mod_a[order], mod_b[order]
            only_a = only_a[key_order(pc.take(ka, pa.array(only_a, type=pa.int64())))[:k]]
            only_b = only_b[key_order(pc.take(kb, pa.array(only_b, type=pa.int64())))[:k]]
            columns = sb.names
            cast_a, cast_b = sub_schema(a, columns), sub_schema(b, columns)
            before = take_picked(dsa, picks_a, mod_a, columns).cast(cast_a)
            after = take_picked(dsb, picks_b, mod_b, columns).cast(cast_b)
            removed = take_picked(dsa, picks_a, only_a, columns).cast(cast_a)
            added = take_picked(dsb, picks_b, only_b, columns).cast(cast_b)
        changed = cells_changed(before, after)
        mods = [{"key": af[key], "before": bf, "after": af,
                 "changed": [c for c, x in zip(columns, flags) if x]}
                for bf, af, flags in zip(before.to_pylist(), after.to_pylist(), changed)]
        if not all(m["changed"] for m in mods):
            return None  # a "modified" sample with no changed cell: the record is not this diff
        samples = {"added": added.to_pylist(), "removed": removed.to_pylist(), "modified": mods}
        return TableDiff(added=d["added"], removed=d["removed"], modified=d["modified"],
                         samples=samples,
                         column_changes={c: int(d["columns"][c]) for c in columns
                                         if d["columns"].get(c)},
                         schema_changes=sch,
                         unchanged=max(b.rows - d["added"] - d["modified"], 0), key=key,
                         method="recorded")

    @contextlib.contextmanager
    def _verified(self, refs: list[TableRef]) -> Iterator[None]:
        """Hash the files of ``refs`` in the background while the body reads them: nothing
        read leaves the block before the check has passed, and a failed check's
        IntegrityError wins over any error of the body."""
        errors: list[BaseException] = []

        def run() -> None:
            try:
                for ref in refs:
                    self._verify(ref)
            except BaseException as e:  # noqa: BLE001 - raised by the waiting thread
                errors.append(e)

        check = None
        if refs:
            check = threading.Thread(target=run, name="demoai-table-verify", daemon=True)
            check.start()
        try:
            yield
        finally:
            if check is not None:
                check.join()
                if errors:
                    raise errors[0]

    def _changes(self, a: TableRef, b: TableRef, key: str | None, verify: bool) -> Changes:
        sa, sb = a.arrow_schema(), b.arrow_schema()
        common = _common_columns(sa, sb, key)
        # Row ids pair rows only inside one folder: an alternate allocated its own.
        if (a.table_id == b.table_id and canonical_schema(sa) == canonical_schema(sb)
                and self._dir_for(a) == self._dir_for(b)):
            fast = self._changes_fast(a, b, key, common, verify)
            if fast is not None:
                return fast
        kept = self._changes_by_side_files(a, b, key, common, verify)
        if kept is not None:
            return kept
        ta_ = self.read(a, columns=common, verify=verify, ordered=False)   # rows as a multiset
        tb_ = self.read(b, columns=common, verify=verify, ordered=False)
        ia, ib = multiset_minus(row_hashes(ta_), row_hashes(tb_))
        return classify(ta_.take(pa.array(ia, type=pa.int64())),
                        tb_.take(pa.array(ib, type=pa.int64())), key, method="full",
                        matched=True)

    def _changes_by_side_files(self, a: TableRef, b: TableRef, key: str | None,
                               columns: list[str], verify: bool) -> Changes | None:
        """Rows of two versions that share a schema (any lineages or folders) matched by
        the row hashes their side files keep: only the rows that differ are read. None
        when either version has no side files."""
        sa, sb = a.arrow_schema(), b.arrow_schema()
        if not (canonical_schema(sa) == canonical_schema(sb) and len(columns) == len(sa)):
            return None
        dsa, dsb = self._checked(a, verify), self._checked(b, verify)
        ha = self.version_hashes(dsa, self._dir_for(a), a.files)
        hb = self.version_hashes(dsb, self._dir_for(b), b.files) if ha is not None else None
        if hb is None:
            return None
        ia, ib = multiset_minus(ha, hb)
        ta = take_scan(dsa, ia, sub_schema(a, columns))
        tb = take_scan(dsb, ib, sub_schema(b, columns))
        return classify(ta, tb, key, method="full", matched=True)

    def _changes_fast(self, a: TableRef, b: TableRef, key: str | None, columns: list[str],
                      verify: bool) -> Changes | None:
        with self._verified([a, b] if verify else []):
            dsa, dsb = self._checked(a, False), self._checked(b, False)
            picks_a, picks_b = candidates(self._dir_for(a), dsa, dsb)
            n = sum(len(p[1]) for p in picks_a) + sum(len(p[1]) for p in picks_b)
            if n > _FULL_DIFF_ROWS and n > _FULL_DIFF_FRACTION * (a.rows + b.rows):
                picks_a = None  # most rows differ (e.g. a rewrite): one full read is cheaper
            else:
                ta, rid_a = take_rows(dsa, picks_a, columns, key is None)
                tb, rid_b = take_rows(dsb, picks_b, columns, key is None)
        if picks_a is None:
            return None
        ta, tb = ta.cast(sub_schema(a, columns)), tb.cast(sub_schema(b, columns))
        return classify(ta, tb, key, rid_a, rid_b, method="metadata")

    def merge3(self, base: TableRef, ours: TableRef, theirs: TableRef, *, key: str | None,
               prefer: str | None = None) -> MergeResult:
        """Row-level three-way merge of two versions descending from ``base``.

        Keyed: cell-level (edits to different columns of a row merge; the same cell
        changed differently, or delete vs modify, is a conflict). Unkeyed: a multiset
        merge that applies the removals and additions of both sides (no conflicts).
        With conflicts ``table`` is None unless ``prefer`` ("ours"/"theirs") picks a side.
        """
        if prefer not in (None, "ours", "theirs"):
            raise ValueError("prefer must be None, 'ours' or 'theirs'")
        for r in (ours, theirs):
            if r.digest == base.digest:
                other = theirs if r is ours else ours
                return MergeResult(self.read(other), [], other, {"trivial": True})
        if ours.digest == theirs.digest:
            return MergeResult(self.read(ours), [], ours, {"trivial": True})
        s = [canonical_schema(r.arrow_schema()) for r in (base, ours, theirs)]
        if not (s[0] == s[1] == s[2]):
            return MergeResult(None, [{"key": None, "column": None, "base": None, "ours": None,
                                       "theirs": None, "reason": "schema changed; "
                                       "row-level merge needs one schema on all sides"}])
        co = self._changes(base, ours, key, True)
        ct = self._changes(base, theirs, key, True)
        base_tbl = self.read(base)
        sides: dict[str, pa.Table] = {}
        if key is not None:
            table, conflicts, stats = merge_keyed(base_tbl, co, ct, key, prefer)
            if conflicts and prefer is None:
                # what each side's file would hold: for conflict markers in the working file
                for side in ("ours", "theirs"):
                    t_side = merge_keyed(base_tbl, co, ct, key, side)[0]
                    sides[side] = self._in_order_of(ours, theirs, t_side.cast(ours.arrow_schema()), key)
        else:
            (table, stats), conflicts = merge_multiset(base_tbl, co, ct), []
        if table is not None:
            table = table.cast(ours.arrow_schema())
            if key is not None:
                table = self._in_order_of(ours, theirs, table, key)
        return MergeResult(table, conflicts, None, stats, sides)

    def _in_order_of(self, ours: TableRef, theirs: TableRef, table: pa.Table,
                     key: str) -> pa.Table:
        """``table`` (a keyed merge result) in the row order of our file; rows we do not
        have (added by them) follow in the order of theirs."""
        if table.num_rows == 0:
            return table
        keys = table[key].combine_chunks()
        rank = np.full(table.num_rows, np.iinfo(np.int64).max, dtype=np.int64)
        for offset, ref in ((0, ours), (ours.rows, theirs)):
            side = self.read(ref, columns=[key])[key].combine_chunks()
            where = pc.index_in(keys, value_set=side.cast(keys.type))
            found = where.is_valid().to_numpy(zero_copy_only=False)
            pos = where.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64) + offset
            rank = np.where(found & (rank == np.iinfo(np.int64).max), pos, rank)
        order = np.argsort(rank, kind="stable")
        if np.array_equal(order, np.arange(len(order))):
            return table
        return table.take(pa.array(order, type=pa.int64()))


def _common_columns(sa: pa.Schema, sb: pa.Schema, key: str | None) -> list[str]:
    """The columns two versions share with one type (in ``sb``'s order): what rows are
    compared on. The key must be among them, and there must be some."""
    types_a = {f.name: canonical_type(f.type) for f in sa}
    common = [f.name for f in sb if types_a.get(f.name) == canonical_type(f.type)]
    if key is not None and key not in common:
        raise InvalidArtifact(f"key column {key!r} is not in both versions with one type",
                              key=key)
    if not common:
        raise InvalidArtifact("the two versions share no column to compare")
    return common
