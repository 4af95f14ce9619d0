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
