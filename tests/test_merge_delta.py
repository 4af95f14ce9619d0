"""Merges written as deltas (TableStore.merge_into) equal merge3 + write of the whole
result: digest, rows, row order, delta record, conflicts; and they read only the change."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from demoai.store.tables.store import TableStore


def make(n: int, start: int = 0, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n)
    return pa.table({"id": pa.array(ids, pa.int64()),
                     "prompt": [f"p{i} {rng.integers(1000)}" for i in ids],
                     "response": [f"r{i}" for i in ids],
                     "score": rng.random(n)})


def edit(t: pa.Table, *, modify=(), delete=(), add: pa.Table | None = None,
         column: str = "response", tag: str = "EDITED") -> pa.Table:
    col = t[column].to_pylist()
    ids = t["id"].to_pylist()
    where = {k: i for i, k in enumerate(ids)}
    for k in modify:
        i = where[k]
        col[i] = f"{col[i]} {tag}" if isinstance(col[i], str) else col[i] + 1.5
    t = t.set_column(t.schema.get_field_index(column), column, pa.array(col, t[column].type))
    keep = np.array([k not in set(delete) for k in ids], dtype=bool)
    t = t.filter(pa.array(keep))
    return pa.concat_tables([t, add.cast(t.schema)]) if add is not None else t


def shuffled(t: pa.Table, seed: int = 1) -> pa.Table:
    return t.take(pa.array(np.random.default_rng(seed).permutation(t.num_rows)))


def both_ways(tmp_path, base_t: pa.Table, ours_t: pa.Table, theirs_t: pa.Table,
              key: str | None = "id", prefer: str | None = None):
    """The merge by merge_into and by merge3 + write, each in its own store."""
    out = []
    for name in ("delta", "full"):
        store = TableStore(tmp_path / name)
        base = store.write(base_t, key=key)
        ours = store.write(ours_t, key=key, base=base)
        theirs = store.write(theirs_t, key=key, base=base)
        if name == "delta":
            res = store.merge_into(base, ours, theirs, key=key, prefer=prefer)
            ref = res.ref
        else:
            res = store.merge3(base, ours, theirs, key=key, prefer=prefer)
            ref = store.write(res.table, key=key, base=ours) if res.table is not None else None
        out.append((store, res, ref))
    return out


def assert_same(delta, full, method="delta"):
    (sd, rd, refd), (sf, rf, reff) = delta, full
    assert rd.conflicts == rf.conflicts
    assert rd.stats.get("method") == method
    assert refd.digest == reff.digest and refd.rows == reff.rows
    assert refd.delta == reff.delta
    assert (refd.order or {}).get("digest") == (reff.order or {}).get("digest")
    assert sd.read(refd).equals(sf.read(reff))   # same rows in the same file order


def test_both_sides_edit_different_rows(tmp_path):
    t = make(3000)
    o = edit(t, modify=range(0, 3000, 97), delete=[5, 6])
    th = edit(t, modify=range(1, 3000, 89), column="prompt", delete=[7],
              add=make(4, start=3000, seed=5))
    d, f = both_ways(tmp_path, t, o, th)
    assert_same(d, f)
    assert d[2].delta["added"] == 4 and d[2].delta["removed"] == 1
    assert d[2].delta["columns"] == {"prompt": len(range(1, 3000, 89))}


def test_same_row_different_columns_and_shuffled_files(tmp_path):
    t = make(2000)
    o = shuffled(edit(t, modify=[3, 4, 50]), 2)
    th = shuffled(edit(t, modify=[3, 4, 60], column="prompt", add=make(3, start=2000, seed=4)), 3)
    d, f = both_ways(tmp_path, t, o, th)
    assert_same(d, f)
    got = {r["id"]: r for r in d[0].read(d[2]).to_pylist()}
    assert got[3]["response"].endswith("EDITED") and got[3]["prompt"].endswith("EDITED")


def test_both_delete_and_both_make_the_same_edit(tmp_path):
    t = make(1500)
    o = edit(t, modify=[10, 11], delete=[20, 21, 22])
    th = edit(t, modify=[10, 12], delete=[21, 22, 23])
    d, f = both_ways(tmp_path, t, o, th)
    assert_same(d, f)
    assert d[2].delta["removed"] == 1 and d[2].rows == 1500 - 4


def test_theirs_changes_already_ours_keeps_our_version(tmp_path):
    t = make(800)
    o = edit(t, modify=[1, 2, 3], delete=[9])
    th = edit(t, modify=[2], delete=[9])
    d, f = both_ways(tmp_path, t, o, th)
    assert d[2].digest == f[2].digest
    ours = d[0].write(o, key="id", base=d[0].write(t, key="id"))
    assert d[2].digest == ours.digest


@pytest.mark.parametrize("prefer", ["ours", "theirs"])
def test_conflicts_resolved_by_a_side(tmp_path, prefer):
    t = make(1200)
    o = edit(t, modify=[5, 8, 30], delete=[7], add=make(2, start=1200, seed=1))
    th = edit(edit(t, modify=[5, 7, 31], tag="THEIRS"), delete=[8],
              add=make(3, start=1200, seed=2))
    d, f = both_ways(tmp_path, t, o, th, prefer=prefer)
    assert len(d[1].conflicts) == 5    # cell 5, 7 and 8 delete/modify, 1200 and 1201 added
    assert_same(d, f)


def test_conflicts_without_a_side_write_nothing(tmp_path):
    t = make(500)
    store = TableStore(tmp_path / "s")
    base = store.write(t, key="id")
    ours = store.write(edit(t, modify=[5]), key="id", base=base)
    theirs = store.write(edit(t, modify=[5], tag="THEIRS"), key="id", base=base)
    versions = len(store.scanner_dataset(ours).versions())
    res = store.merge_into(base, ours, theirs, key="id")
    old = store.merge3(base, ours, theirs, key="id")
    assert res.ref is None and res.conflicts == old.conflicts and not res.sides
    assert len(store.scanner_dataset(ours).versions()) == versions
    with_sides = store.merge_into(base, ours, theirs, key="id", sides=True)
    assert with_sides.sides["theirs"].equals(old.sides["theirs"])


def test_schema_change_and_unkeyed_take_the_full_path(tmp_path):
    t = make(400)
    store = TableStore(tmp_path / "s")
    base = store.write(t, key="id")
    ours = store.write(edit(t, modify=[1]), key="id", base=base)
    theirs = store.write(t.append_column("extra", pa.array(range(400))), key="id", base=base)
    res = store.merge_into(base, ours, theirs, key="id")
    assert res.ref is None and "schema changed" in res.conflicts[0]["reason"]
    u = t.drop_columns(["id"])
    d, f = both_ways(tmp_path / "u", u, edit(t, modify=[1]).drop_columns(["id"]),
                     edit(t, modify=[2], delete=[3]).drop_columns(["id"]), key=None)
    assert_same(d, f, method="full")


def test_reads_only_the_change(tmp_path, monkeypatch):
    """No whole-table read and no hashing of unchanged rows: what the delta costs."""
    import demoai.store.tables.io as tio
    import demoai.store.tables.mergedelta as md
    t = make(20_000)
    store = TableStore(tmp_path / "s")
    base = store.write(t, key="id")
    ours = store.write(edit(t, modify=range(0, 20_000, 200)), key="id", base=base)
    theirs = store.write(edit(t, modify=range(1, 20_000, 200), column="prompt"), key="id",
                         base=base)
    hashed = []
    real = tio.row_hashes

    def counting(table):
        hashed.append(table.num_rows)
        return real(table)
    monkeypatch.setattr(md, "row_hashes", counting)
    monkeypatch.setattr(TableStore, "read", lambda *a, **k: pytest.fail("read the whole table"))
    res = store.merge_into(base, ours, theirs, key="id")
    assert res.stats["method"] == "delta" and sum(hashed) <= 2 * 100
    monkeypatch.undo()
    assert res.ref.delta["modified"] == 100 and res.ref.delta["columns"] == {"prompt": 100}
    rows = {r["id"]: r for r in store.read(res.ref).to_pylist()}
    assert rows[0]["response"].endswith("EDITED") and rows[1]["prompt"].endswith("EDITED")
    assert store.diff(ours, res.ref).modified == 100
