"""Row-level diff and three-way merge of tables, on Arrow data (no storage here).

:class:`~demoai.store.tables.store.TableStore` finds *candidate* rows (rows of one version not
physically present in the other: from Lance metadata when both versions share a
lineage, or from a full row-hash comparison otherwise) and hands them to
:func:`classify`, which decides what each candidate is:

* keyed: a key on both sides is *modified* (or unchanged, if the rows are equal); a key
  on one side only is *removed* / *added*. Keys must be unique and non-null.
* unkeyed: rows are a multiset. Two candidates with the same stable Lance ``_rowid``
  are the same row edited in place (*modified*); everything else pairs up by content
  and what is left is *removed* / *added*.

Small candidate sets are compared with Arrow kernels and Python values only, so a
metadata diff never loads DuckDB (and stays small in memory); large ones use the
DuckDB row hashes of :mod:`demoai.store.tables.io`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from demoai.errors import InvalidArtifact
from demoai.store.tables.io import canonical_type, jsonable, one_line, row_hashes

# Diff and merge make many small, short-lived arrays; the system allocator returns their
# memory at once, where Arrow's default (mimalloc) keeps several MB of segments per thread.
_POOL = pa.system_memory_pool()

__all__ = ["TableDiff", "MergeResult", "Changes", "classify", "multiset_minus", "int_keys",
           "build_diff", "check_keys", "keys_usable", "key_order", "match_keys", "plan_keyed",
           "cells_changed", "schema_changes", "merge_keyed", "merge_multiset", "resolve_keyed",
           "KeyedMerge"]


@dataclass
class TableDiff:
    """What changed between two versions of a table.

    ``samples`` holds up to ``sample`` rows of each kind: ``{"added": [row], "removed":
    [row], "modified": [{"key", "before", "after", "changed"}]}``; ``column_changes``
    counts modified cells per column (columns with none are left out).
    """

    added: int
    removed: int
    modified: int
    samples: dict
    column_changes: dict[str, int]
    schema_changes: list[str]
    unchanged: int = 0
    key: str | None = None
    method: str = "metadata"  # "metadata" (Lance fragments + row ids), "full" or "identical"
    reordered: bool = False   # the same rows, in another order (known when content is equal)

    @property
    def is_empty(self) -> bool:
        """True when no row and no schema changed."""
        return not (self.added or self.removed or self.modified or self.schema_changes)

    def to_dict(self) -> dict:
        """A JSON-ready form (cell values made JSON-safe: bytes base64, dates ISO)."""
        return {"added": self.added, "removed": self.removed, "modified": self.modified,
                "unchanged": self.unchanged, "key": self.key, "method": self.method,
                "reordered": self.reordered,
                "column_changes": dict(self.column_changes),
                "schema_changes": list(self.schema_changes), "samples": jsonable(self.samples)}


@dataclass
class MergeResult:
    """The outcome of a three-way merge.

    ``table`` is the merged rows, or None when there are conflicts (unless a ``prefer``
    side resolved them). ``ref`` is set when the result is exactly one input version, so
    no write is needed, and by ``merge_into`` (which writes the result itself and leaves
    ``table`` None) to the version written. Each conflict is a dict: ``{"key", "column", "base", "ours",
    "theirs"}`` (``column`` None for a whole-row conflict such as delete vs modify).
    With conflicts (keyed), ``sides`` holds the merge as each side would resolve them
    (``"ours"``, ``"theirs"``), in our file's row order: what conflict markers show.
    """

    table: pa.Table | None
    conflicts: list[dict] = field(default_factory=list)
    ref: Any = None
    stats: dict = field(default_factory=dict)
    sides: dict = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """True when the merge had no conflicts."""
        return not self.conflicts


@dataclass
class Changes:
    """Every changed row between two versions, as row indices into the candidate tables
    ``ta`` (rows from a) and ``tb`` (rows from b); tables are materialised on demand."""

    columns: list[str]
    key: str | None
    ta: pa.Table
    tb: pa.Table
    only_a: np.ndarray           # removed: rows of ta
    only_b: np.ndarray           # added: rows of tb
    mod_a: np.ndarray            # modified: rows of ta ...
    mod_b: np.ndarray            # ... and the matching rows of tb
    changed: np.ndarray          # (modified, len(columns)) bool: which cells differ
    method: str = "metadata"

    @staticmethod
    def _rows(t: pa.Table, idx: np.ndarray, limit: int | None = None) -> pa.Table:
        idx = idx if limit is None else idx[:limit]
        return pc.take(t, pa.array(idx, type=pa.int64()), memory_pool=_POOL)

    @property
    def removed(self) -> pa.Table:
        """Rows only in the old version."""
        return self._rows(self.ta, self.only_a)

    @property
    def added(self) -> pa.Table:
        """Rows only in the new version."""
        return self._rows(self.tb, self.only_b)

    @property
    def before(self) -> pa.Table:
        """Modified rows as they were."""
        return self._rows(self.ta, self.mod_a)

    @property
    def after(self) -> pa.Table:
        """Modified rows as they are now, in the order of :attr:`before`."""
        return self._rows(self.tb, self.mod_b)


# ----------------------------------------------------------------------------- helpers

def multiset_minus(ha: np.ndarray, hb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of rows of ``a`` not matched in ``b`` and vice versa (hash multisets)."""
    if len(ha) == 0 or len(hb) == 0:
        return np.arange(len(ha)), np.arange(len(hb))
    ta = pa.table({"hi": ha[:, 0], "lo": ha[:, 1], "i": np.arange(len(ha))})
    tb = pa.table({"hi": hb[:, 0], "lo": hb[:, 1], "i": np.arange(len(hb))})
    import duckdb  # imported late: the Lance-metadata diff never needs it

    con = duckdb.connect()
    try:
        con.register("ta", ta)
        con.register("tb", tb)
        q = """
        WITH a AS (SELECT hi, lo, i, row_number() OVER (PARTITION BY hi, lo ORDER BY i) rn
                   FROM ta),
             b AS (SELECT hi, lo, i, row_number() OVER (PARTITION BY hi, lo ORDER BY i) rn
                   FROM tb)
        SELECT 0 AS side, a.i FROM a ANTI JOIN b ON a.hi = b.hi AND a.lo = b.lo AND a.rn = b.rn
        UNION ALL
        SELECT 1 AS side, b.i FROM b ANTI JOIN a ON a.hi = b.hi AND a.lo = b.lo AND a.rn = b.rn
        """
        res = con.sql(q).to_arrow_table()
    finally:
        con.close()
    side = res["side"].to_numpy()
    idx = res["i"].to_numpy()
    return np.sort(idx[side == 0]), np.sort(idx[side == 1])


def int_keys(col: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """An integer key column without nulls as one int64 numpy array (None for other
    types): sorting it takes 8 bytes a row where Arrow's hash tables take several times
    that, so keyed checks and matches of many millions of rows stay small."""
    t = col.type
    if not (pa.types.is_integer(t) and not pa.types.is_uint64(t)) or col.null_count:
        return None
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    if not chunks:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([c.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
                           for c in chunks])


def _match_sorted(ka: np.ndarray, kb: np.ndarray) -> tuple[np.ndarray, ...]:
    order = np.argsort(ka, kind="stable")
    sa = ka[order]
    pos = np.searchsorted(sa, kb)
    pos_c = np.minimum(pos, max(len(sa) - 1, 0))
    found = (pos < len(sa)) & (sa[pos_c] == kb) if len(sa) else np.zeros(len(kb), bool)
    pb_ = np.flatnonzero(found)
    pa_ = order[pos_c[pb_]].astype(np.int64)
    in_b = np.zeros(len(ka), dtype=bool)
    in_b[pa_] = True
    return pa_, pb_, np.flatnonzero(~in_b), np.flatnonzero(~found)


def match_keys(ka: pa.Array, kb: pa.Array) -> tuple[np.ndarray, ...]:
    """Match two unique-key arrays: (paired a idx, paired b idx, a-only idx, b-only idx)."""
    na = int_keys(ka)
    nb = int_keys(kb) if na is not None else None
    if nb is not None:
        return _match_sorted(na, nb)
    if ka.type != kb.type:
        try:
            kb = kb.cast(ka.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise InvalidArtifact(f"cannot match keys of types {ka.type} and {kb.type}: "
                                  f"{one_line(e)}") from None
    try:
        where = pc.index_in(kb, value_set=ka, memory_pool=_POOL)  # hash lookup, no join
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise InvalidArtifact(f"cannot match rows on key of type {ka.type}: "
                              f"{one_line(e)}") from None
    found = pc.is_valid(where, memory_pool=_POOL).to_numpy(zero_copy_only=False)
    pb_ = np.flatnonzero(found)
    pa_ = pc.take(where, pa.array(pb_), memory_pool=_POOL).to_numpy().astype(np.int64)
    in_b = np.zeros(len(ka), dtype=bool)
    in_b[pa_] = True
    return pa_, pb_, np.flatnonzero(~in_b), np.flatnonzero(~found)


def check_keys(col: pa.ChunkedArray | pa.Array, key: str, where: str) -> None:
    """Raise InvalidArtifact if ``col`` (a key) has nulls or duplicates."""
    if col.null_count:
        raise InvalidArtifact(f"key column {key!r} has {col.null_count} null value(s) in {where}",
                              key=key)
    ints = int_keys(col)
    if ints is not None:
        ints.sort()
        if not np.any(ints[1:] == ints[:-1]):
            return
        del ints
    if pc.count_distinct(col, memory_pool=_POOL).as_py() != len(col):
        counts = pc.value_counts(col)
        dups = [c["values"] for c in counts.to_pylist() if c["counts"] > 1][:3]
        raise InvalidArtifact(f"key column {key!r} has duplicate values in {where} "
                              f"(e.g. {dups!r}); a key must be unique", key=key, examples=dups)


def keys_usable(t: pa.Table, key: str) -> bool:
    """True when column ``key`` of ``t`` can match rows: present, no nulls, unique."""
    if key not in t.column_names:
        return False
    col = t[key]
    ints = int_keys(col)
    if ints is not None:
        ints.sort()
        return not np.any(ints[1:] == ints[:-1])
    return col.null_count == 0 and pc.count_distinct(col, memory_pool=_POOL).as_py() == len(col)


def plan_keyed(base_keys: pa.ChunkedArray, base_h: np.ndarray, new_keys: pa.ChunkedArray,
               new_h: np.ndarray) -> tuple[np.ndarray, ...]:
    """(base rows to delete, new rows to upsert, edited rows of base, edited rows of new):
    deleted keys; edited + new keys; the pairs of rows whose key stayed but content changed."""
    pa_, pb_, deleted, inserted = match_keys(base_keys.combine_chunks(),
                                             new_keys.combine_chunks())
    differ = (base_h[pa_] != new_h[pb_]).any(axis=1)
    edit_a, edit_b = pa_[differ], pb_[differ]
    return np.sort(deleted), np.sort(np.concatenate([edit_b, inserted])), edit_a, edit_b


def key_order(keys: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The positions of ``keys`` in sorted key order."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return pc.sort_indices(keys, memory_pool=_POOL).to_numpy()


def _same_value(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return x == y or (math.isnan(x) and math.isnan(y))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same_value(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_same_value(a, b) for a, b in zip(x, y))
    return type(x) is type(y) and x == y if x is not None and y is not None else x is y


def cells_changed(before: pa.Table, after: pa.Table, ia: np.ndarray | None = None,
                  ib: np.ndarray | None = None, chunk: int = 4096) -> np.ndarray:
    """``(rows, columns)`` bool: which cells of two aligned tables differ (null == null,
    NaN == NaN); rows ``ia`` of ``before`` against rows ``ib`` of ``after`` if given.
    Arrow kernels where the type allows, Python values otherwise; a few thousand cells
    of one column at a time, so memory stays small whatever the number of changes."""
    if ia is None:
        ia = ib = np.arange(before.num_rows)
    out = np.zeros((len(ia), before.num_columns), dtype=bool)
    for j, name in enumerate(before.column_names):
        for s in range(0, len(ia), chunk):
            out[s:s + chunk, j] = _column_changed(before[name], after[name],
                                                  ia[s:s + chunk], ib[s:s + chunk])
    return out


def _column_changed(x: pa.ChunkedArray, y: pa.ChunkedArray, ia: np.ndarray,
                    ib: np.ndarray) -> np.ndarray:
    mp = {"memory_pool": _POOL}
    x = pc.take(x, pa.array(ia, type=pa.int64()), **mp).combine_chunks(**mp)
    y = pc.take(y, pa.array(ib, type=pa.int64()), **mp).combine_chunks(**mp)
    try:
        if y.type != x.type:
            y = y.cast(x.type, memory_pool=_POOL)
        same = pc.coalesce(pc.equal(x, y, **mp), False, **mp)
        same = pc.or_(same, pc.and_(pc.is_null(x, **mp), pc.is_null(y, **mp), **mp), **mp)
        if pa.types.is_floating(x.type):
            nan = pc.and_(pc.is_nan(x, **mp), pc.is_nan(y, **mp), **mp)
            same = pc.or_(same, pc.coalesce(nan, False, **mp), **mp)
        return ~same.to_numpy(zero_copy_only=False)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return np.array([not _same_value(a, b) for a, b in zip(x.to_pylist(), y.to_pylist())],
                        dtype=bool)


_SMALL = 200_000  # below this many candidate rows, multisets are matched in Python


def _row_keys(t: pa.Table) -> list[tuple]:
    """Hashable per-row keys (equal rows, equal keys) without DuckDB: floats by their bit
    pattern (so NaN matches NaN), nested values as JSON text, the rest as Python values."""
    cols = []
    for col in t.columns:
        col = col.combine_chunks(memory_pool=_POOL)
        if pa.types.is_floating(col.type):
            bits = np.asarray(col.cast(pa.float64()).fill_null(0.0)).view(np.int64).tolist()
            valid = col.is_valid().to_numpy(zero_copy_only=False).tolist()
            cols.append([b if v else None for b, v in zip(bits, valid)])
        elif pa.types.is_nested(col.type) or pa.types.is_dictionary(col.type):
            cols.append([json.dumps(jsonable(v), default=str) for v in col.to_pylist()])
        else:
            cols.append(col.to_pylist())
    return list(zip(*cols)) if cols else [()] * t.num_rows


def _multiset_minus_small(ta: pa.Table, tb: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """:func:`multiset_minus` on row values for small tables: no DuckDB needed."""
    pool: dict[tuple, list[int]] = {}
    for i, k in enumerate(_row_keys(ta)):
        pool.setdefault(k, []).append(i)
    matched_a = np.zeros(ta.num_rows, dtype=bool)
    unmatched_b = []
    for i, k in enumerate(_row_keys(tb)):
        lst = pool.get(k)
        if lst:
            matched_a[lst.pop()] = True
        else:
            unmatched_b.append(i)
    return np.flatnonzero(~matched_a), np.array(unmatched_b, dtype=np.int64)


def _rows_minus(ta: pa.Table, tb: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    if ta.num_rows + tb.num_rows <= _SMALL:
        return _multiset_minus_small(ta, tb)
    return multiset_minus(row_hashes(ta), row_hashes(tb))


# ----------------------------------------------------------------------------- classify

def classify(ta: pa.Table, tb: pa.Table, key: str | None,
             rid_a: np.ndarray | None = None, rid_b: np.ndarray | None = None,
             method: str = "metadata", matched: bool = False) -> Changes:
    """Sort candidate rows of ``a`` (``ta``) and ``b`` (``tb``) into removed/added/modified.

    Candidates may include rows that are in fact unchanged (moved by compaction, or
    deleted and re-added); those cancel out, unless ``matched`` says the caller already
    removed every pair of equal rows. ``rid_*`` are stable Lance row ids, used without a
    key to recognise rows edited in place.
    """
    columns = tb.column_names
    ta = ta.select(columns)
    if key is not None:
        check_keys(ta[key], key, "the old version")
        check_keys(tb[key], key, "the new version")
        pa_, pb_, only_a, only_b = match_keys(ta[key].combine_chunks(memory_pool=_POOL),
                                          tb[key].combine_chunks(memory_pool=_POOL))
    else:
        pa_ = pb_ = np.zeros(0, dtype=np.int64)
        only_a, only_b = np.arange(ta.num_rows), np.arange(tb.num_rows)
        if rid_a is not None and rid_b is not None and len(rid_a) and len(rid_b):
            pa_, pb_, only_a, only_b = match_keys(pa.array(rid_a), pa.array(rid_b))
        if not matched and len(only_a) and len(only_b):
            ma, mb = _rows_minus(ta.take(pa.array(only_a)), tb.take(pa.array(only_b)))
            only_a, only_b = only_a[ma], only_b[mb]
    changed = cells_changed(ta, tb, pa_, pb_)
    differ = changed.any(axis=1)
    pa_, pb_, changed = pa_[differ], pb_[differ], changed[differ]
    # Present in key order (keyed) or stored order (unkeyed): stable and readable.
    if key is not None:
        def keys(t: pa.Table, idx: np.ndarray) -> pa.ChunkedArray:
            return pc.take(t[key], pa.array(idx, type=pa.int64()), memory_pool=_POOL)
        order = key_order(keys(tb, pb_))
        only_a = only_a[key_order(keys(ta, only_a))]
        only_b = only_b[key_order(keys(tb, only_b))]
    else:
        order = np.argsort(pb_, kind="stable")
    return Changes(columns, key, ta, tb, only_a, only_b, pa_[order], pb_[order],
                   changed[order], method)


def build_diff(ch: Changes, *, sample: int, schema_changes: list[str], rows_b: int) -> TableDiff:
    """Summarise :class:`Changes` into counts, per-column counts and a few samples."""
    counts = ch.changed.sum(axis=0) if len(ch.changed) else np.zeros(len(ch.columns), int)
    column_changes = {c: int(n) for c, n in zip(ch.columns, counts) if n}
    k = max(sample, 0)
    mods = []
    before = ch._rows(ch.ta, ch.mod_a, k).to_pylist()
    after = ch._rows(ch.tb, ch.mod_b, k).to_pylist()
    for i, (bf, af) in enumerate(zip(before, after)):
        mods.append({"key": af.get(ch.key) if ch.key else None, "before": bf, "after": af,
                     "changed": [c for c, x in zip(ch.columns, ch.changed[i]) if x]})
    samples = {"added": ch._rows(ch.tb, ch.only_b, k).to_pylist(),
               "removed": ch._rows(ch.ta, ch.only_a, k).to_pylist(), "modified": mods}
    added, modified = len(ch.only_b), len(ch.mod_b)
    return TableDiff(added=added, removed=len(ch.only_a), modified=modified,
                     samples=samples, column_changes=column_changes,
                     schema_changes=schema_changes, unchanged=max(rows_b - added - modified, 0),
                     key=ch.key, method=ch.method)


def schema_changes(sa: pa.Schema, sb: pa.Schema, key_a: str | None,
                   key_b: str | None) -> list[str]:
    """Human-readable schema differences between two versions."""
    out = []
    ta = {f.name: canonical_type(f.type) for f in sa}
    tb = {f.name: canonical_type(f.type) for f in sb}
    for name in sb.names:
        if name not in ta:
            out.append(f"added column {name!r} ({tb[name]})")
        elif ta[name] != tb[name]:
            out.append(f"column {name!r} type {ta[name]} -> {tb[name]}")
    for name in sa.names:
        if name not in tb:
            out.append(f"removed column {name!r} ({ta[name]})")
    common_a = [n for n in sa.names if n in tb]
    common_b = [n for n in sb.names if n in ta]
    if common_a != common_b:
        out.append("column order changed")
    if key_a != key_b:
        out.append(f"key {key_a!r} -> {key_b!r}")
    return out


# ----------------------------------------------------------------------------- merge

def _side_changes(ch: Changes, key: str) -> dict:
    """key value -> ("del", None, None) | ("mod", after_row, changed cols) | ("add", row, None)."""
    out: dict = {}
    for k in ch.removed[key].to_pylist():
        out[k] = ("del", None, None)
    after = ch.after.to_pylist()
    for i, row in enumerate(after):
        out[row[key]] = ("mod", row, {c for c, x in zip(ch.columns, ch.changed[i]) if x})
    for row in ch.added.to_pylist():
        out[row[key]] = ("add", row, None)
    return out


@dataclass
class KeyedMerge:
    """What a keyed three-way merge decided, before any table is built: the keys the
    result drops (``deleted``), the rows it holds in place of base rows (``replaced``: key
    -> row), the rows it adds (``added``, in decision order), the conflicts and counts."""

    deleted: set
    replaced: dict
    added: list
    conflicts: list
    stats: dict
    theirs_keys: set    # every key the other side touched


def resolve_keyed(ours: Changes, theirs: Changes, key: str,
                  prefer: str | None = None) -> KeyedMerge:
    """Cell-level three-way decisions by key from the two sides' changes alone (rows
    neither side touched are not needed): see :func:`merge_keyed`."""
    o, t = _side_changes(ours, key), _side_changes(theirs, key)
    base_rows = {r[key]: r for r in ours.removed.to_pylist() + ours.before.to_pylist()
                 + theirs.removed.to_pylist() + theirs.before.to_pylist()}
    conflicts: list[dict] = []
    deleted: set = set()
    replaced: dict = {}
    added: list[dict] = []
    pick_theirs = prefer == "theirs"
    for k in list(o) + [k for k in t if k not in o]:
        so, st = o.get(k), t.get(k)
        b = base_rows.get(k)
        if so is None or st is None or (so[0] == "del" and st[0] == "del"):
            kind, row, _ = so or st
            if kind == "del":
                deleted.add(k)
            elif kind == "mod":
                replaced[k] = row
            else:
                added.append(row)
            continue
        if so[0] == "add" and st[0] == "add":
            if all(_same_value(so[1][c], st[1][c]) for c in ours.columns):
                added.append(so[1])
            else:
                conflicts.append({"key": k, "column": None, "base": None,
                                  "ours": so[1], "theirs": st[1], "reason": "added on both sides"})
                added.append(st[1] if pick_theirs else so[1])
            continue
        if "del" in (so[0], st[0]):
            conflicts.append({"key": k, "column": None, "base": b, "ours": so[1],
                              "theirs": st[1], "reason": "deleted on one side, "
                              "modified on the other"})
            win = st if pick_theirs else so
            (deleted.add(k) if win[0] == "del" else replaced.__setitem__(k, win[1]))
            continue
        row = dict(b)
        for c in ours.columns:
            co, ct = c in so[2], c in st[2]
            if co and ct and not _same_value(so[1][c], st[1][c]):
                conflicts.append({"key": k, "column": c, "base": b[c], "ours": so[1][c],
                                  "theirs": st[1][c]})
                row[c] = st[1][c] if pick_theirs else so[1][c]
            elif co:
                row[c] = so[1][c]
            elif ct:
                row[c] = st[1][c]
        replaced[k] = row
    stats = {"deleted": len(deleted), "modified": len(replaced), "added": len(added),
             "conflicts": len(conflicts)}
    return KeyedMerge(deleted, replaced, added, conflicts, stats, set(t))


def merge_keyed(base: pa.Table, ours: Changes, theirs: Changes, key: str,
                prefer: str | None = None) -> tuple[pa.Table | None, list[dict], dict]:
    """Cell-level three-way merge by key. Returns (table or None, conflicts, stats)."""
    km = resolve_keyed(ours, theirs, key, prefer)
    deleted, replaced, added, conflicts, stats = (km.deleted, km.replaced, km.added,
                                                  km.conflicts, km.stats)
    if conflicts and prefer is None:
        return None, conflicts, stats
    keys = base[key]
    touched = pa.array(list(deleted) + list(replaced), type=keys.type)
    n = base.num_rows
    idx = np.arange(n)
    keep = ~pc.is_in(keys, value_set=touched).to_numpy(zero_copy_only=False)
    parts = [base]
    if replaced:
        pos = {k: i for i, k in enumerate(keys.to_pylist()) if k in replaced}
        rep_keys = list(replaced)
        parts.append(pa.Table.from_pylist([replaced[k] for k in rep_keys], schema=base.schema))
        rep_pos = np.array([pos[k] for k in rep_keys], dtype=np.int64)
        idx[rep_pos] = n + np.arange(len(rep_keys))
        keep[rep_pos] = True  # modified rows stay where they were
    order = [idx[keep]]
    if added:
        start = n + len(replaced)
        parts.append(pa.Table.from_pylist(added, schema=base.schema))
        order.append(start + np.arange(len(added)))
    merged = pa.concat_tables(parts).take(pa.array(np.concatenate(order)))
    return merged, conflicts, stats


def _net(ch: Changes) -> tuple[dict, dict]:
    """Per-hash net change of one side (modified = removed + added in multiset terms)."""
    rem = pa.concat_tables([ch.removed, ch.before.select(ch.removed.column_names)])
    add = pa.concat_tables([ch.added, ch.after.select(ch.added.column_names)])
    delta: dict = {}
    rows: dict = {}
    for h in map(tuple, row_hashes(rem).tolist()):
        delta[h] = delta.get(h, 0) - 1
    for i, h in enumerate(map(tuple, row_hashes(add).tolist())):
        delta[h] = delta.get(h, 0) + 1
        rows.setdefault(h, (add, i))
    return delta, rows


def merge_multiset(base: pa.Table, ours: Changes, theirs: Changes) -> tuple[pa.Table, dict]:
    """Unkeyed three-way merge: removals and additions of both sides, never a conflict.

    For each distinct row, changes in the same direction take the larger one (both sides
    deleting the same row deletes it once); opposite changes add up.
    """
    do, ro = _net(ours)
    dt, rt = _net(theirs)
    final: dict = {}
    for h in set(do) | set(dt):
        a, b = do.get(h, 0), dt.get(h, 0)
        if a == 0 or b == 0 or (a > 0) != (b > 0):
            d = a + b
        else:
            d = max(a, b) if a > 0 else min(a, b)
        if d:
            final[h] = d
    bh = row_hashes(base)
    keep = np.ones(base.num_rows, dtype=bool)
    to_remove = {h: -d for h, d in final.items() if d < 0}
    if to_remove:
        his = np.array([h[0] for h in to_remove], dtype=np.uint64)
        cand = np.flatnonzero(np.isin(bh[:, 0], his))
        for i in cand[::-1]:  # drop the last copies first
            h = (int(bh[i, 0]), int(bh[i, 1]))
            if to_remove.get(h, 0) > 0:
                keep[i] = False
                to_remove[h] -= 1
    parts = [base.filter(pa.array(keep))]
    n_added = 0
    for h, d in final.items():
        if d > 0:
            src, i = ro.get(h) or rt[h]
            parts.append(src.slice(i, 1).select(base.column_names).cast(base.schema)
                         if d == 1 else pa.concat_tables([src.slice(i, 1)] * d)
                         .select(base.column_names).cast(base.schema))
            n_added += d
    merged = pa.concat_tables(parts)
    return merged, {"removed": int((~keep).sum()), "added": n_added, "conflicts": 0}
