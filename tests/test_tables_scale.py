"""Datasets at any size: row-hash side files (a version costs what it changes) and
streaming ingest (batches, bounded memory), checked against the whole-table path."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import demoai.store.tables.ingest as ingest_mod
import demoai.store.tables.rowhash as rowhash_mod
import demoai.store.tables.write as write_mod
from demoai.errors import InvalidArtifact
from demoai.store.tables.io import content_digest, read_file, row_hashes
from demoai.store.tables.rowhash import is_rowhash_file
from demoai.store.tables.store import TableStore
from demoai.store.tables.stream import open_source, table_source


def make(n: int, start: int = 0, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n)
    return pa.table({"id": pa.array(ids, pa.int64()),
                     "text": pa.array([f"row {i} {'x' * int(k)}" for i, k in
                                       zip(ids, rng.integers(0, 40, n))]),
                     "score": pa.array(rng.random(n))})


def edit(t: pa.Table, frac: float = 0.01, seed: int = 1) -> pa.Table:
    """1% of rows get a new text, 0.5% are deleted, 0.5% appended."""
    rng = np.random.default_rng(seed)
    n = t.num_rows
    pick = rng.permutation(n)
    mod, dele = pick[:int(n * frac)], pick[int(n * frac):int(n * frac * 1.5)]
    text = t["text"].to_pylist()
    for i in mod:
        text[i] = text[i] + " edited"
    keep = np.ones(n, bool)
    keep[dele] = False
    t2 = t.set_column(1, "text", pa.array(text)).filter(pa.array(keep))
    return pa.concat_tables([t2, make(int(n * frac * 0.5), start=10 * n, seed=seed)])


def with_bad_keys(v2: pa.Table, bad: str) -> pa.Table:
    """``v2`` with a repeated base key (two batches apart), a repeated new key, or a null."""
    ids = v2["id"].to_pylist()
    if bad == "repeat_base_key":      # two batches apart, both keys in the base
        ids[5500] = ids[10]
    elif bad == "repeat_new_key":     # a key the base lacks, twice
        ids[-1] = ids[-2]
    else:
        ids[4000] = None
    return v2.set_column(0, "id", pa.array(ids, pa.int64()))


@pytest.fixture()
def small_batches(monkeypatch):
    """A 64 MiB budget: 2 MiB batches, so a few MB of file is several batches."""
    monkeypatch.setenv("DEMOAI_TABLE_MEMORY_MB", "64")


@pytest.fixture()
def hashed_rows(monkeypatch):
    """Count the rows every row-hash call of the table store hashes."""
    seen = []

    def counting(t):
        seen.append(t.num_rows)
        return row_hashes(t)
    for mod in (ingest_mod, rowhash_mod, write_mod):
        monkeypatch.setattr(mod, "row_hashes", counting)
    return seen


def test_side_files_hold_the_version_hashes(tmp_path):
    store = TableStore(tmp_path / "s")
    t = make(3000)
    ref = store.write_source(table_source(t, batch_rows=700), key="id")
    side = [r for r in ref.files if is_rowhash_file(r)]
    assert side, "a new version lists its row-hash side files"
    ds = store._checked(ref)
    got = store.version_hashes(ds, store._dir_for(ref), ref.files)
    assert np.array_equal(got, row_hashes(store.read(ref, ordered=False)))
    assert ref.digest == content_digest(t, "id")
    assert store.verify(ref) == []


def test_delta_hashes_the_change_not_the_base(tmp_path, hashed_rows):
    store = TableStore(tmp_path / "s")
    v1 = make(20_000)
    r1 = store.write(v1, key="id")
    v2 = edit(v1)
    hashed_rows.clear()
    r2 = store.write_source(table_source(v2, batch_rows=4096), key="id", base=r1)
    # the new rows are hashed once, the new fragment's rows once more: never the base
    assert sum(hashed_rows) <= v2.num_rows + 400
    assert r2.digest == content_digest(v2, "id")
    assert (r2.delta["modified"], r2.delta["removed"], r2.delta["added"]) == (200, 100, 100)
    assert store.read(r2).equals(v2.cast(store.read(r2).schema))
    # the in-memory path agrees, and hashes no more than the new table and its change
    hashed_rows.clear()
    store2 = TableStore(tmp_path / "s2")
    b1 = store2.write(v1, key="id")
    hashed_rows.clear()
    b2 = store2.write(v2, key="id", base=b1)
    assert sum(hashed_rows) <= v2.num_rows + 400
    assert (b2.digest, b2.delta) == (r2.digest, r2.delta)
    assert store.diff(r1, r2).to_dict()["modified"] == 200
    assert store.verify(r2, base=r1) == []


def test_unkeyed_delta_and_repeated_rows(tmp_path):
    store = TableStore(tmp_path / "s")
    v1 = make(5000).drop_columns(["id"])
    r1 = store.write_source(table_source(v1, 1000))
    v2 = pa.concat_tables([v1.slice(0, 4900), v1.slice(0, 3),
                           make(50, seed=9).drop_columns(["id"])])
    r2 = store.write_source(table_source(v2, 1000), base=r1)
    assert r2.digest == content_digest(v2)
    assert r2.table_id == r1.table_id and r2.version > r1.version
    assert store.read(r2).equals(v2.cast(store.read(r2).schema))
    assert store.verify(r2) == []


def test_base_without_side_files_still_works(tmp_path):
    store = TableStore(tmp_path / "s")
    v1 = make(4000)
    r1 = store.write(v1, key="id")
    uri = store._dir_for(r1)
    old = {k: v for k, v in r1.files.items() if not is_rowhash_file(k)}
    for rel in set(r1.files) - set(old):
        (uri / rel).unlink()       # as stored before side files existed
    from dataclasses import replace
    r1 = replace(r1, files=old)
    v2 = edit(v1)
    r2 = store.write_source(table_source(v2, 1000), key="id", base=r1)
    assert r2.digest == content_digest(v2, "id")
    assert store.read(r2).equals(v2.cast(store.read(r2).schema))


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_streamed_file_equals_whole_file(tmp_path, small_batches, fmt):
    t = make(60_000)
    p = tmp_path / f"d.{fmt}"
    if fmt == "parquet":
        pq.write_table(t, p, row_group_size=5000)
    elif fmt == "csv":
        pacsv.write_csv(t, p)
    else:
        p.write_text("".join(json.dumps(r) + "\n" for r in t.to_pylist()))
    src = open_source(p, fmt)
    n_batches = sum(1 for _ in src.batches())
    assert n_batches > 1, "a file bigger than a batch is read in batches"
    store = TableStore(tmp_path / "s")
    ref = store.write_source(src, key="id")
    assert ref.digest == content_digest(read_file(p, fmt), "id")
    v2 = edit(read_file(p, fmt))
    p2 = tmp_path / f"e.{fmt}"
    if fmt == "parquet":
        pq.write_table(v2, p2, row_group_size=5000)
    elif fmt == "csv":
        pacsv.write_csv(v2, p2)
    else:
        p2.write_text("".join(json.dumps(r) + "\n" for r in v2.to_pylist()))
    r2 = store.write_source(open_source(p2, fmt), key="id", base=ref)
    assert r2.digest == content_digest(read_file(p2, fmt), "id")
    assert r2.delta["modified"] == 600


def test_bad_line_late_in_a_streamed_csv_is_named(tmp_path, small_batches):
    t = make(60_000).drop_columns(["score"])
    p = tmp_path / "d.csv"
    pacsv.write_csv(t, p)
    lines = p.read_bytes().split(b"\n")
    lines[50_000] = b"7,too,many,fields"
    p.write_bytes(b"\n".join(lines))
    store = TableStore(tmp_path / "s")
    with pytest.raises(InvalidArtifact) as e:
        store.write_source(open_source(p, "csv"), key="id")
    assert "line 50001" in str(e.value)   # lines[0] is the header, line 1
    assert not list((tmp_path / "s").glob("*.lance")), "nothing half-written"


def test_invalid_utf8_in_a_later_parquet_batch_names_its_row(tmp_path, small_batches):
    vals = [b"ok %d" % i + b"y" * 60 for i in range(80_000)]
    vals[70_001] = b"\xff\xfe bad"
    arr = pa.array(vals, pa.binary()).view(pa.string())
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"v": arr}), p, row_group_size=4000)
    store = TableStore(tmp_path / "s")
    with pytest.raises(InvalidArtifact) as e:
        store.write_source(open_source(p, "parquet"))
    assert "row 70002" in str(e.value)
    assert not list((tmp_path / "s").glob("*.lance"))


def test_type_widening_later_in_jsonl_rereads_whole(tmp_path, small_batches):
    rows = [{"id": i, "v": i} for i in range(150_000)] + [{"id": -1, "v": 0.5}]
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = TableStore(tmp_path / "s")
    ref = store.write_source(open_source(p, "jsonl"), key="id")
    whole = read_file(p, "jsonl")
    assert ref.digest == content_digest(whole, "id")
    assert store.read(ref)["v"].type == whole["v"].type


def test_gc_drops_side_files_of_dead_versions(tmp_path):
    store = TableStore(tmp_path / "s")
    v1 = make(3000)
    r1 = store.write(v1, key="id")
    r2 = store.write(make(3000, seed=5).drop_columns(["score"]), key="id", base=r1)  # rewrite
    side1 = [r for r in r1.files if is_rowhash_file(r) and r not in r2.files]
    assert side1
    store.gc([r2], grace_seconds=0)
    uri = store._dir_for(r2)
    assert not any((uri / r).exists() for r in side1)
    assert store.verify(r2) == []


def test_import_path_streams(tmp_path, small_batches, monkeypatch):
    """``demoai add`` of a dataset goes through the streaming writer."""
    from demoai.store.kinds.dataset import DatasetHandler
    calls = []
    real = TableStore.write_source

    def spy(self, source, **kw):
        calls.append(source)
        return real(self, source, **kw)
    monkeypatch.setattr(TableStore, "write_source", spy)

    class Repo:
        tables = TableStore(tmp_path / "s")
    p = tmp_path / "d.parquet"
    pq.write_table(make(30_000), p, row_group_size=3000)
    ds = DatasetHandler().import_path(Repo(), Path(p), key="id")
    assert calls and ds.rows == 30_000
    assert ds.digest == content_digest(make(30_000), "id")


def test_diff_across_lineages_reads_only_changed_rows(tmp_path, monkeypatch):
    store = TableStore(tmp_path / "s")
    v1 = make(6000)
    v2 = edit(v1)
    r1 = store.write(v1, key="id")
    r2 = store.write(v2, key="id")          # a separate lineage: no shared fragments
    assert r1.table_id != r2.table_id

    def no_full_read(*a, **k):
        raise AssertionError("diff read a whole version")
    monkeypatch.setattr(TableStore, "read", no_full_read)
    d = store.diff(r1, r2)
    assert (d.modified, d.removed, d.added) == (60, 30, 30)


# -- change-proportional deltas by integer key; new tables spilled to disk -------------------

@pytest.fixture()
def spill_always(monkeypatch):
    """Every new table spills its hashes and keys to disk, whatever its size."""
    monkeypatch.setattr(ingest_mod, "spill_threshold", lambda: 0)


def shuffled(t: pa.Table, seed: int = 3) -> pa.Table:
    return t.take(pa.array(np.random.default_rng(seed).permutation(t.num_rows)))


def test_keyed_delta_matches_the_whole_table_path(tmp_path, monkeypatch):
    """An integer-keyed delta streamed in batches (keys looked up batch by batch, the
    file order derived from the plan: no whole-table key match or sort) gives the
    whole-table writer's digest, delta, row order and stored rows, for a file in key
    order and for one shuffled (its order is recorded and read back)."""
    def whole_table(*a, **k):
        raise AssertionError("the streamed keyed delta matched or sorted every key")
    v1 = make(20_000)
    for i, v2 in enumerate((edit(v1), shuffled(edit(v1)))):
        a, b = TableStore(tmp_path / f"a{i}"), TableStore(tmp_path / f"b{i}")
        ra, rb = a.write(v1, key="id"), b.write(v1, key="id")
        wa = a.write(v2, key="id", base=ra)
        with monkeypatch.context() as m:
            for name in ("plan_keyed", "perm_by_keys", "check_keys"):
                m.setattr(ingest_mod, name, whole_table)
            wb = b.write_source(table_source(v2, batch_rows=3000), key="id", base=rb)
        assert (wb.digest, wb.delta, wb.order["digest"]) == (wa.digest, wa.delta, wa.order["digest"])
        assert wb.table_id == rb.table_id and wb.version > rb.version
        assert b.read(wb).equals(v2.cast(b.read(wb).schema)), "file order read back"
        assert b.verify(wb, base=rb) == []
        # only the changed rows were written: the new fragment holds 200 edited + 100 new
        ds = b._checked(wb)
        assert sum(f.metadata.physical_rows for f in ds.get_fragments()) == 20_000 + 300


def test_keyed_delta_onto_a_shuffled_base(tmp_path):
    v1 = shuffled(make(8000), seed=7)
    store = TableStore(tmp_path / "s")
    r1 = store.write_source(table_source(v1, 1000), key="id")
    v2 = edit(v1)
    r2 = store.write_source(table_source(v2, 1000), key="id", base=r1)
    assert r2.digest == content_digest(v2, "id")
    assert store.read(r2).equals(v2.cast(store.read(r2).schema))
    assert (r2.delta["modified"], r2.delta["removed"], r2.delta["added"]) == (80, 40, 40)


@pytest.mark.parametrize("bad", ["repeat_base_key", "repeat_new_key", "null"])
def test_keyed_delta_refuses_bad_keys_and_writes_nothing(tmp_path, bad):
    v1 = make(6000)
    store = TableStore(tmp_path / "s")
    r1 = store.write(v1, key="id")
    v2 = with_bad_keys(edit(v1), bad)
    before = store.stored_bytes()
    with pytest.raises(InvalidArtifact, match="null" if bad == "null" else "duplicate values"):
        store.write_source(table_source(v2, 1000), key="id", base=r1)
    assert store.stored_bytes() == before
    assert len(list(store._checked(r1).versions())) == 1


def test_spilled_new_table_equals_the_in_memory_one(tmp_path, spill_always):
    t = shuffled(make(30_000))
    store = TableStore(tmp_path / "s")
    ref = store.write_source(table_source(t, 4000), key="id")
    mem = TableStore(tmp_path / "m").write(t, key="id")
    assert (ref.digest, ref.order["digest"]) == (mem.digest, mem.order["digest"])
    assert ref.digest == content_digest(t, "id")
    ds = store._checked(ref)
    side = store.version_hashes(ds, store._dir_for(ref), ref.files)
    assert np.array_equal(side, row_hashes(t))
    assert not any((tmp_path / "s" / "_spill").iterdir()), "spill files removed"
    # the same rows in another order: the stored lineage, with this file's order
    again = store.write_source(table_source(shuffled(t, 9), 4000), key="id")
    assert again.table_id == ref.table_id
    assert store.read(again).equals(shuffled(t, 9).cast(store.read(again).schema))
    # unkeyed tables spill their hashes alone
    u = t.drop_columns(["id"])
    assert store.write_source(table_source(u, 4000)).digest == content_digest(u)


@pytest.mark.parametrize("bad", ["repeat", "null"])
def test_spilled_new_table_refuses_bad_keys(tmp_path, spill_always, bad):
    t = make(20_000)
    ids = t["id"].to_pylist()
    if bad == "repeat":
        ids[19_000] = ids[3]
    else:
        ids[12_000] = None
    t = t.set_column(0, "id", pa.array(ids, pa.int64()))
    store = TableStore(tmp_path / "s")
    with pytest.raises(InvalidArtifact) as e:
        store.write_source(table_source(t, 3000), key="id")
    if bad == "repeat":
        assert "duplicate values" in str(e.value) and "[3]" in str(e.value)
    else:
        assert "1 null value(s)" in str(e.value)
    assert not list((tmp_path / "s").glob("*.lance")), "nothing half-written"
    assert not any((tmp_path / "s" / "_spill").iterdir())


def test_delta_perm_from_the_plan_and_its_refusals():
    from demoai.store.tables.keyplan import KeyMatcher, delta_perm
    base_keys = np.array([5, 1, 9, 3, 7], dtype=np.int64)          # scan order, not sorted
    base_h = np.arange(10, dtype=np.uint64).reshape(5, 2)
    m = KeyMatcher(base_keys, base_h)
    file_keys = np.array([3, 11, 5, 9], dtype=np.int64)             # 1, 7 gone; 11 new
    new_h = np.array([base_h[3], [99, 99], base_h[0], [42, 42]], dtype=np.uint64)  # 9 edited
    changed = m.probe(pa.array(file_keys), new_h)
    assert changed.tolist() == [False, True, False, True]
    plan = m.plan()
    assert (plan.dele.tolist(), plan.upsert.tolist()) == ([1, 4], [1, 3])
    assert (plan.edit_a.tolist(), plan.edit_b.tolist()) == ([2], [3])
    assert m.file_keys().tolist() == file_keys.tolist()
    # Lance's scan after the delta: the survivors (5, 3) in base order, then the upserts
    final = np.array([5, 3, 9, 11], dtype=np.int64)
    perm = delta_perm(base_keys, file_keys, m.base_positions(), plan, final)
    assert final[perm].tolist() == file_keys.tolist()
    # any other shape is refused (the caller then matches keys in full)
    assert delta_perm(base_keys, file_keys, m.base_positions(), plan,
                      np.array([3, 5, 9, 11], dtype=np.int64)) is None
    assert delta_perm(base_keys, file_keys, m.base_positions(), plan, final[:3]) is None


def test_spilled_keyed_delta_equals_the_in_memory_one(tmp_path, spill_always):
    """A delta whose new hashes are spilled to disk: same digest, delta and order as the
    whole-table writer; also when nothing changed, and when most rows changed (a full
    new version from a second pass, side files from the spill)."""
    v1 = make(12_000)
    mem = TableStore(tmp_path / "m")
    m1 = mem.write(v1, key="id")
    store = TableStore(tmp_path / "s")
    r1 = store.write_source(table_source(v1, 2000), key="id")
    for v2 in (shuffled(edit(v1)), shuffled(v1, 4), make(12_000, seed=8)):
        want = mem.write(v2, key="id", base=m1)
        got = store.write_source(table_source(v2, 2000), key="id", base=r1)
        assert (got.digest, got.delta, got.order["digest"]) == \
            (want.digest, want.delta, want.order["digest"])
        assert store.read(got).equals(v2.cast(store.read(got).schema))
        assert store.verify(got) == []
    assert not any((tmp_path / "s" / "_spill").iterdir())


def test_gc_removes_what_a_killed_ingest_spilled(tmp_path):
    store = TableStore(tmp_path / "s")
    ref = store.write(make(100), key="id")
    left = tmp_path / "s" / "_spill" / "0123abcd"
    left.mkdir(parents=True)
    (left / "order.bin").write_bytes(b"x" * 64)
    store.gc([ref], grace_seconds=3600)
    assert left.exists(), "a writer may still be using it"
    store.gc([ref], grace_seconds=0)
    assert not left.exists()


def test_a_new_version_of_an_empty_unkeyed_table(tmp_path) -> None:
    """An unkeyed table that held no rows takes rows in its next version (the hash lookup
    against an empty base found nothing, and must not index into it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from demoai import porcelain as P
    repo = P.init(tmp_path / "r")
    f = repo.root / "t.parquet"
    schema = pa.schema([("a", pa.string())])
    pq.write_table(pa.table({"a": pa.array([], pa.string())}, schema=schema), f)
    P.add(repo, [f])
    P.commit(repo, "empty")
    pq.write_table(pa.table({"a": ["x", "y"]}, schema=schema), f)
    P.add(repo, [f])
    P.commit(repo, "two rows")
    assert repo.artifacts(repo.head_commit())["t.parquet"].rows == 2


# -- keyed deltas too large to match in memory: matched a key bucket at a time --------------

@pytest.fixture()
def partitioned(monkeypatch):
    """Every keyed delta goes through the key buckets (partdelta.py); counts the matches."""
    import demoai.store.tables.partdelta as part_mod
    monkeypatch.setattr(ingest_mod, "spill_threshold", lambda: 0)
    import demoai.store.tables.write as write_mod
    monkeypatch.setattr(write_mod, "DELETE_SLICE", 7)    # deletions in several Lance calls
    calls = []
    real = part_mod.PartitionedDeltaMixin._partitioned_write

    def counting(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)
    monkeypatch.setattr(part_mod.PartitionedDeltaMixin, "_partitioned_write", counting)
    # the file order comes from the plan and Lance metadata, never from a whole-key match
    monkeypatch.setattr(part_mod.PartitionedDeltaMixin, "_perm_from_keys", staticmethod(
        lambda *a: pytest.fail("the new version's shape was not recognised")))
    return calls


@pytest.mark.parametrize("shuffle_base", [False, True])
def test_partitioned_delta_equals_the_in_memory_one(tmp_path, partitioned, shuffle_base):
    """Digest, delta record, row order and rows as the whole-table writer, for edits
    (shuffled file), nothing changed (same order, another order), another key type
    width, and most rows changed (a full version from a second pass)."""
    v1 = shuffled(make(12_000), 5) if shuffle_base else make(12_000)
    mem = TableStore(tmp_path / "m")
    m1 = mem.write(v1, key="id")
    store = TableStore(tmp_path / "s")
    r1 = store.write_source(table_source(v1, 2000), key="id")
    cases = [edit(v1), shuffled(edit(v1, seed=3)), v1, shuffled(v1, 4), make(12_000, seed=8)]
    for v2 in cases:
        want = mem.write(v2, key="id", base=m1)
        got = store.write_source(table_source(v2, 2000), key="id", base=r1)
        assert (got.digest, got.delta, got.order["digest"], got.rows) == \
            (want.digest, want.delta, want.order["digest"], want.rows)
        assert store.read(got).equals(v2.cast(store.read(got).schema))
        assert store.verify(got) == []
    assert len(partitioned) == len(cases)
    assert got.delta is None                     # most rows changed: written whole
    assert not any((tmp_path / "s" / "_spill").iterdir())


@pytest.mark.parametrize("bad", ["repeat_base_key", "repeat_new_key", "null"])
def test_partitioned_delta_refuses_bad_keys_and_writes_nothing(tmp_path, partitioned, bad):
    v1 = make(6000)
    store = TableStore(tmp_path / "s")
    r1 = store.write(v1, key="id")
    v2 = with_bad_keys(edit(v1), bad)
    before = store.stored_bytes()
    with pytest.raises(InvalidArtifact, match="null" if bad == "null" else "duplicate values"):
        store.write_source(table_source(v2, 1000), key="id", base=r1)
    assert store.stored_bytes() == before and not any((store.root / "_spill").iterdir())
    assert len(list(store._checked(r1).versions())) == 1


def test_partitioned_delta_of_a_delta(tmp_path, partitioned):
    """A base that is itself a delta (deletion vectors, an upserted fragment, an order
    file): positions and hashes come from every fragment, less the deleted rows."""
    v1 = make(9000)
    store = TableStore(tmp_path / "s")
    mem = TableStore(tmp_path / "m")
    r = store.write_source(table_source(v1, 2000), key="id")
    m = mem.write(v1, key="id")
    for seed in (1, 2, 3):
        v = edit(v1, seed=seed)
        ids = v["id"].to_numpy().copy()
        ids[-45:] = seed * 1_000_000 + np.arange(45)   # appended keys new on every round
        v = shuffled(v.set_column(0, "id", pa.array(ids)), seed)
        r = store.write_source(table_source(v, 1500), key="id", base=r)
        m = mem.write(v, key="id", base=m)
        assert (r.digest, r.delta, r.order["digest"]) == (m.digest, m.delta, m.order["digest"])
        assert store.read(r).equals(v.cast(store.read(r).schema))
        v1 = v


def test_partitioned_delta_with_empty_buckets(tmp_path, partitioned):
    """A few rows leave most key buckets empty on one side or both."""
    v1 = make(40)
    mem, store = TableStore(tmp_path / "m"), TableStore(tmp_path / "s")
    m1, r1 = mem.write(v1, key="id"), store.write(v1, key="id")
    v2 = pa.concat_tables([edit(v1, frac=0.05).slice(0, 38), make(2, start=500, seed=4)])
    want = mem.write(v2, key="id", base=m1)
    got = store.write_source(table_source(v2, 16), key="id", base=r1)
    assert (got.digest, got.delta, got.order["digest"]) == \
        (want.digest, want.delta, want.order["digest"])
    assert partitioned


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_checkout_streams_batches_in_file_order(tmp_path, fmt):
    """A version's rows come out a batch at a time in the order of the file it was made
    from (a delta onto a shuffled base: the stored order is not the file order), and the
    file written from the batches equals the file written from the whole table."""
    from demoai.store.tables.io import write_batches, write_file
    store = TableStore(tmp_path / "s")
    r1 = store.write_source(table_source(shuffled(make(6000), seed=5), 1000), key="id")
    v2 = edit(store.read(r1))
    r2 = store.write_source(table_source(v2, 1000), key="id", base=r1)
    assert store.order_of(r2) is not None                  # the permuted case
    for ref in (r1, r2):
        whole = store.read(ref)
        batches = list(store.read_batches(ref, batch_rows=700))
        assert max(b.num_rows for b in batches) <= 700
        assert pa.Table.from_batches(batches).equals(whole)
        a, b = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
        write_file(whole, a)
        write_batches(whole.schema, store.read_batches(ref, batch_rows=700), b)
        assert read_file(b)[0].equals(read_file(a)[0])


def test_take_by_batch_equals_arrow_take_on_tables_of_many_chunks() -> None:
    from demoai.store.tables.write import take_by_batch
    rng = np.random.default_rng(3)
    schema = pa.schema({"id": pa.int64(), "text": pa.string(), "tags": pa.list_(pa.int64())})
    batches = [pa.record_batch({"id": np.arange(s, s + n),
                                "text": [f"row {i}" * (i % 5) for i in range(s, s + n)],
                                "tags": [[i, i + 1] if i % 3 else None for i in range(s, s + n)]},
                               schema=schema)
               for s, n in ((0, 700), (700, 1), (701, 0), (701, 1300))]
    table = pa.Table.from_batches(batches, schema=schema)
    assert table.column("text").num_chunks == 4
    for idx in (np.sort(rng.choice(2001, 300, replace=False)), rng.choice(2001, 300, replace=False),
                rng.integers(0, 2001, 500), np.array([2000, 0, 700, 700]), np.zeros(0, dtype=np.int64)):
        got = take_by_batch(table, idx)
        assert got.equals(table.take(pa.array(idx, type=pa.int64())))
    for bad in (np.array([5, 2001]), np.array([-1, 3])):
        with pytest.raises(IndexError):
            take_by_batch(table, bad)


def test_a_small_permuted_version_is_read_by_one_scan_a_large_one_by_takes(tmp_path, monkeypatch):
    """A version whose data fits an eighth of the memory bound is scanned once and put in
    file order by slicing (Lance's dataset take cost 50 s on a 100k-row delta); past that
    it is taken a slice at a time. Both give the file's rows in order, in small batches."""
    import lance

    import demoai.store.tables.store as store_mod
    store = TableStore(tmp_path / "s")
    r1 = store.write_source(table_source(shuffled(make(6000), seed=5), 1000), key="id")
    v2 = edit(store.read(r1))
    r2 = store.write_source(table_source(v2, 1000), key="id", base=r1)
    assert store.order_of(r2) is not None
    real_take, takes = lance.LanceDataset.take, []

    def counting(self, *a, **k):
        takes.append(1)
        return real_take(self, *a, **k)
    monkeypatch.setattr(lance.LanceDataset, "take", counting)
    for budget, took in ((1 << 30, False), (1, True)):
        monkeypatch.setattr(store_mod, "memory_budget", lambda b=budget: b)
        takes.clear()
        batches = list(store.read_batches(r2, batch_rows=700))
        assert max(b.num_rows for b in batches) <= 700
        assert pa.Table.from_batches(batches).equals(v2.cast(batches[0].schema))
        assert bool(takes) is took
