"""Tests of versioned tables: formats, digests, delta storage, diff, merge, integrity, gc."""
from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from demoai.errors import IntegrityError, InvalidArtifact, MissingObject
from demoai.store.tables.lancemeta import fragments, roaring_u32, row_id_sequence
from demoai.store.tables.store import TableRef, TableStore, content_digest, read_file, write_file

N = 4000


def make_table(n: int = N, seed: int = 0, start: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n)
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "prompt": [f"prompt {i} {rng.integers(1000)}" for i in ids],
        "response": [f"response {i}" for i in ids],
        "score": rng.random(n),
    })


def edit(t: pa.Table, *, modify=(), delete=(), add: pa.Table | None = None,
         column: str = "response") -> pa.Table:
    """v2 of ``t``: rows (by position) modified in ``column``, deleted, rows appended."""
    col = t[column].to_pylist()
    for i in modify:
        col[i] = f"{col[i]} EDITED"
    t = t.set_column(t.schema.get_field_index(column), column, pa.array(col, t[column].type))
    keep = np.ones(t.num_rows, dtype=bool)
    keep[list(delete)] = False
    t = t.filter(pa.array(keep))
    return pa.concat_tables([t, add.cast(t.schema)]) if add is not None else t


def shuffled(t: pa.Table, seed: int = 1) -> pa.Table:
    return t.take(pa.array(np.random.default_rng(seed).permutation(t.num_rows)))


@pytest.fixture
def store(tmp_path) -> TableStore:
    return TableStore(tmp_path / "tables")


def flip_byte(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------- formats

@pytest.mark.parametrize("ext", ["jsonl", "csv", "tsv", "parquet"])
def test_roundtrip_formats(tmp_path, ext):
    t = pa.table({"id": [1, 2, 3, 4], "s": ["a", "", None, 'x,"y"\nz'],
                  "f": [1.5, None, 2.0, float("nan")], "b": [True, False, None, True]})
    p = tmp_path / f"t.{ext}"
    write_file(t, p)
    back = read_file(p)
    assert back.column_names == t.column_names
    assert content_digest(back) == content_digest(t)
    assert not list(tmp_path.glob(".tmp-*"))  # atomic write leaves no temp file


def test_read_hf_saved_dataset(tmp_path):
    t = make_table(50)
    folder = tmp_path / "hf"
    folder.mkdir()
    for i, part in enumerate([t.slice(0, 20), t.slice(20)]):
        with pa.OSFile(str(folder / f"data-0000{i}-of-00002.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, part.schema) as w:
                w.write_table(part)
    (folder / "state.json").write_text(json.dumps({"_data_files": [
        {"filename": "data-00000-of-00002.arrow"}, {"filename": "data-00001-of-00002.arrow"}],
        "_fingerprint": "x", "_split": None}))
    (folder / "dataset_info.json").write_text("{}")
    back = read_file(folder)
    assert back.num_rows == 50 and content_digest(back) == content_digest(t)
    (tmp_path / "dd").mkdir()
    (tmp_path / "dd" / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    with pytest.raises(InvalidArtifact, match="DatasetDict"):
        read_file(tmp_path / "dd")


def test_malformed_jsonl_names_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, oops}\n')
    with pytest.raises(InvalidArtifact, match=r"bad.jsonl: line 3"):
        read_file(p)
    p.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(InvalidArtifact, match="line 2: expected a JSON object"):
        read_file(p)


def test_jsonl_mixed_types_in_late_rows(tmp_path):
    p = tmp_path / "mixed.jsonl"
    p.write_text("".join('{"a": %d}\n' % i for i in range(3)) + '{"a": "x"}\n')
    with pytest.raises(InvalidArtifact, match="mixed.jsonl"):
        read_file(p)


def test_malformed_csv_names_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("a,b\n1,2\n3,4\n5,6,7\n")
    with pytest.raises(InvalidArtifact, match=r"bad.csv: line 4: expected 2 fields, got 3"):
        read_file(p)


def test_malformed_parquet(tmp_path):
    p = tmp_path / "bad.parquet"
    pq.write_table(make_table(10), p)
    p.write_bytes(p.read_bytes()[:-20])
    with pytest.raises(InvalidArtifact, match="bad.parquet"):
        read_file(p)
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(InvalidArtifact, match="unknown table format"):
        read_file(tmp_path / "x.xlsx")


# ----------------------------------------------------------------------------- digest

def test_digest_is_order_and_format_insensitive(tmp_path):
    t = make_table(500)
    d = content_digest(t, "id")
    assert content_digest(shuffled(t), "id") == d
    large = t.cast(pa.schema([("id", pa.int64()), ("prompt", pa.large_string()),
                              ("response", pa.string()), ("score", pa.float64())]))
    assert content_digest(pa.Table.from_batches(large.to_batches(max_chunksize=7)), "id") == d
    dict_enc = t.set_column(2, "response", pc.dictionary_encode(t["response"]))
    assert content_digest(dict_enc, "id") == d
    for ext in ("jsonl", "parquet", "csv"):
        write_file(shuffled(t, 3), tmp_path / f"t.{ext}")
        assert content_digest(read_file(tmp_path / f"t.{ext}"), "id") == d, ext
    # what does change it
    assert content_digest(t, None) != d
    assert content_digest(edit(t, modify=[5]), "id") != d
    assert content_digest(t.rename_columns(["id", "p", "response", "score"]), "id") != d
    assert content_digest(pa.concat_tables([t, t.slice(0, 1)]), "id") != d  # multiset
    # stable across processes (no salted hashes)
    assert content_digest(pa.table({"a": [1, 2], "s": ["x", None]})) == \
        content_digest(pa.table({"a": [2, 1], "s": [None, "x"]}))


def test_digest_cells_are_unambiguous():
    a = pa.table({"x": ["ab", ""], "y": ["", "c"]})
    b = pa.table({"x": ["a", ""], "y": ["b", "c"]})
    c = pa.table({"x": [None, ""], "y": ["", "c"]})
    assert len({content_digest(a), content_digest(b), content_digest(c)}) == 3


def test_digest_many_types():
    t = pa.table({
        "ts": pa.array([dt.datetime(2020, 1, 1), None], pa.timestamp("us", tz="UTC")),
        "d": pa.array([dt.date(2020, 1, 1), None]),
        "lst": pa.array([[1, 2], None]), "st": pa.array([{"a": 1}, None]),
        "bin": pa.array([b"\x00", b""]), "f16": pa.array([1, 2], pa.float16()),
        "lf16": pa.array([[1], [2]], pa.list_(pa.float16())),
    })
    assert content_digest(t) == content_digest(t.take(pa.array([1, 0])))


# ----------------------------------------------------------------------------- write/read

def test_write_read_roundtrip_exact_types(store):
    t = pa.table({"id": pa.array([1, 2, 3], pa.int32()),
                  "s": pa.array(["a", None, "c"], pa.large_string()),
                  "ts": pa.array([dt.datetime(2021, 5, 1)] * 3, pa.timestamp("ms")),
                  "tags": pa.array([["x"], [], None]),
                  "meta": pa.array([{"k": 1}, None, {"k": 3}])})
    ref = store.write(t, key="id")
    assert ref.rows == 3 and ref.digest == content_digest(t, "id")
    back = store.read(ref)
    assert back.schema == t.schema and back.equals(t)
    assert store.read(ref, columns=["s"]).column_names == ["s"]
    assert all(not c.startswith("_") for c in back.column_names)
    assert TableRef.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref
    assert ref.schema["fields"][1] == {"name": "s", "type": "string", "nullable": True}


def test_identical_content_returns_same_ref(store):
    t = make_table(300)
    r1 = store.write(t, key="id")
    # digest index: the same version, nothing written but the shuffled file's row order
    r1s = store.write(shuffled(t), key="id")
    assert (r1s.table_id, r1s.version, r1s.digest) == (r1.table_id, r1.version, r1.digest)
    assert r1s.order != r1.order and store.read(r1s).equals(shuffled(t))
    assert store.write(t, key="id", base=r1) is r1           # same content as base, same order
    assert store.write(shuffled(t), key="id", base=r1) == r1s  # same content, the new order
    # stored content is found before anything is written; new content of the same shape,
    # written while the rows are hashed, still gets its own lineage; no folder or lock of
    # a discarded write is left behind
    other = edit(t, modify=[5])
    r2 = store.write(other, key="id")
    assert r2.table_id != r1.table_id and store.write(other, key="id") == r2
    assert sorted(p.name for p in store.root.glob("*.lance")) == sorted(
        f"{r.table_id}.lance" for r in (r1, r2))
    assert sorted(p.name for p in store.root.glob("*.lock")) == sorted(
        f"{r.table_id}.lock" for r in (r1, r2))
    store.gc([r2], grace_seconds=0)
    assert store.write(t, key="id").table_id not in (r1.table_id, r2.table_id)


def test_invalid_tables_and_keys(store):
    with pytest.raises(InvalidArtifact, match="duplicate values"):
        store.write(pa.table({"id": [1, 2, 2]}), key="id")
    with pytest.raises(InvalidArtifact, match="null"):
        store.write(pa.table({"id": [1, None]}), key="id")
    with pytest.raises(InvalidArtifact, match="not in table columns"):
        store.write(pa.table({"a": [1]}), key="id")
    with pytest.raises(InvalidArtifact, match="reserved"):
        store.write(pa.table({"_rowid": [1]}))
    with pytest.raises(InvalidArtifact, match="cannot contain"):
        store.write(pa.table({"a.b": [1]}))
    with pytest.raises(InvalidArtifact, match="malformed"):
        TableRef.from_dict({"table_id": "../x"})


# ----------------------------------------------------------------------------- delta + diff

def test_keyed_delta_diff_exact(store):
    t1 = make_table()
    t2 = edit(t1, modify=range(0, 400, 4), delete=range(1000, 1050),
              add=make_table(50, seed=9, start=N))
    r1 = store.write(t1, key="id")
    size1 = store.stored_bytes(r1.table_id)
    r2 = store.write(shuffled(t2), key="id", base=r1)
    assert r2.table_id == r1.table_id and r2.version > r1.version and r2.rows == t2.num_rows
    # only the change is stored: 150 of 4000 rows (3.75%) -> far less than a copy
    assert store.stored_bytes(r1.table_id) - size1 < 0.25 * size1
    assert r2.delta == {"base": r1.digest, "key": "id", "added": 50, "removed": 50,
                        "modified": 100, "columns": {"response": 100}}
    assert TableRef.from_dict(json.loads(json.dumps(r2.to_dict()))) == r2
    d = store.diff(r1, r2)
    assert (d.added, d.removed, d.modified, d.method) == (50, 50, 100, "recorded")
    # the record only saves reading the modified rows: computing it gives the same diff
    computed = store.diff(r1, replace(r2, delta=None))
    assert computed.method == "metadata"
    assert {**d.to_dict(), "method": None} == {**computed.to_dict(), "method": None}
    assert d.column_changes == {"response": 100}
    assert d.unchanged == t2.num_rows - 150
    m = d.samples["modified"][0]
    assert m["key"] == 0 and m["changed"] == ["response"]
    assert m["after"]["response"] == m["before"]["response"] + " EDITED"
    assert [r["id"] for r in d.samples["removed"]] == list(range(1000, 1005))
    assert [r["id"] for r in d.samples["added"]] == list(range(N, N + 5))
    json.dumps(d.to_dict())
    back = store.diff(r2, r1)
    assert (back.added, back.removed, back.modified) == (50, 50, 100)
    assert content_digest(store.read(r2), "id") == r2.digest
    assert content_digest(store.read(r1), "id") == r1.digest


def test_delta_record_is_checked(store):
    """A record that disagrees with the rows is never believed silently: row counts are
    checked against Lance metadata on every diff (falling back to computing), column
    counts by verify (fsck), and a malformed record is refused when a manifest is read."""
    t1 = make_table()
    r1 = store.write(t1, key="id")
    r2 = store.write(edit(t1, modify=range(0, 40, 2), delete=range(500, 510)), key="id", base=r1)
    assert store.verify(r2, base=r1) == []
    wrong_rows = replace(r2, delta={**r2.delta, "modified": 21})
    assert store.diff(r1, wrong_rows).method == "metadata"
    assert store.diff(r1, wrong_rows).modified == 20
    wrong_cols = replace(r2, delta={**r2.delta, "columns": {"response": 3}})
    problems = store.verify(wrong_cols, base=r1)
    assert len(problems) == 1 and "recorded delta" in problems[0]
    other_base = replace(r2, delta={**r2.delta, "base": "blake3:" + "0" * 64})
    assert store.diff(r1, other_base).method == "metadata"
    with pytest.raises(InvalidArtifact, match="malformed"):
        TableRef.from_dict({**r2.to_dict(), "delta": {**r2.delta, "added": -1}})


def test_unkeyed_delta_diff_is_multiset(store):
    t1 = make_table().drop_columns(["id"])
    t2 = edit(t1, modify=range(10), delete=range(100, 130), add=make_table(20, 5)
              .drop_columns(["id"]))
    t2 = pa.concat_tables([t2, t1.slice(3000, 2)])  # duplicates of existing rows
    r1 = store.write(t1)
    r2 = store.write(t2, base=r1)
    d = store.diff(r1, r2)
    assert (d.added, d.removed, d.modified) == (10 + 20 + 2, 10 + 30, 0)
    assert content_digest(store.read(r2)) == r2.digest


def test_diff_fast_path_matches_full_hash_path(store):
    t1 = make_table()
    t2 = edit(t1, modify=range(7, 900, 9), delete=range(2000, 2200, 2),
              add=make_table(33, seed=4, start=N))
    other = TableStore(store.root.parent / "other")
    for key in ("id", None):
        r1 = store.write(t1, key=key)
        r2 = store.write(t2, key=key, base=r1)
        o1, o2 = other.write(t1, key=key), other.write(t2, key=key)  # two lineages
        rec, fast, full = (store.diff(r1, r2), store.diff(r1, replace(r2, delta=None)),
                           other.diff(o1, o2))
        assert (rec.method, fast.method, full.method) == (
            "recorded" if key else "metadata", "metadata", "full")
        got = [(d.added, d.removed, d.modified, d.column_changes) for d in (rec, fast, full)]
        assert got[0] == got[1] == got[2] == ([(33, 100, 100, {"response": 100})] if key else
                                              [(133, 200, 0, {})])[0]
        assert rec.samples == fast.samples
    x = store.write(edit(t2, add=make_table(1, 5, start=N + 100)), key="id")  # new lineage
    r1 = store.write(t1, key="id")
    cross = store.diff(r1, x)
    assert (cross.added, cross.removed, cross.modified, cross.method) == (34, 100, 100, "full")


def test_unkeyed_diff_uses_stable_row_ids(store):
    t1 = make_table(1000)
    r1 = store.write(t1, key="id")
    r2 = store.write(edit(t1, modify=range(20)), key="id", base=r1)  # in-place updates
    r3 = store.write(edit(t1, modify=range(20)), key=None, base=r2)  # same rows, no key
    assert (r3.version, r3.key) == (r2.version, None)
    d = store.diff(r1, r3)  # keys differ -> unkeyed; the _rowids still pair the edits
    assert (d.key, d.added, d.removed, d.modified) == (None, 0, 0, 20)
    assert d.samples["modified"][0]["changed"] == ["response"]


def test_progress_callback(store):
    seen = []
    store.write(make_table(100), progress=lambda stage, done, total: seen.append(stage))
    assert "hash" in seen and "write" in seen


def test_diff_on_branches(store):
    t1 = make_table()
    r1 = store.write(t1, key="id")
    a = edit(t1, modify=range(0, 50), delete=[3999])
    b = edit(t1, modify=range(25, 100), column="prompt", add=make_table(10, 7, start=N))
    ra = store.write(a, key="id", base=r1)
    rb = store.write(b, key="id", base=r1)  # base is no longer the latest version
    rc = store.write(edit(b, delete=range(0, 10)), key="id", base=rb)
    d = store.diff(ra, rb)
    # rows 0-24: only a changed them; 25-49: both (different columns); 50-99: only b
    assert (d.added, d.removed, d.modified) == (10 + 1, 0, 100)
    assert d.column_changes == {"prompt": 75, "response": 50}
    d = store.diff(r1, rb)
    assert (d.added, d.removed, d.modified) == (10, 0, 75)
    d = store.diff(ra, rc)
    assert (d.added, d.removed, d.modified) == (11, 10, 90)
    for r, t in ((ra, a), (rb, b), (r1, t1)):
        assert content_digest(store.read(r), "id") == content_digest(t, "id")
        assert store.verify(r) == []


def test_schema_change_is_a_full_version(store):
    t1 = make_table(200)
    r1 = store.write(t1, key="id")
    t2 = t1.append_column("lang", pa.array(["en"] * 200))
    r2 = store.write(t2, key="id", base=r1)
    assert r2.table_id == r1.table_id
    d = store.diff(r1, r2)
    assert d.schema_changes == ["added column 'lang' (string)"]
    assert (d.added, d.removed, d.modified) == (0, 0, 0)
    assert store.read(r2).equals(t2)


def test_diff_rejects_duplicate_keys(store):
    t = pa.table({"k": [1, 1, 2], "v": ["a", "b", "c"]})
    r1 = store.write(t)
    r2 = store.write(pa.table({"k": [1, 2, 2], "v": ["a", "c", "d"]}), base=r1)
    with pytest.raises(InvalidArtifact, match="duplicate"):
        store.diff(r1, r2, key="k")


# ----------------------------------------------------------------------------- integrity

def test_flipped_byte_in_data_file_is_detected(store):
    ref = store.write(make_table(1000), key="id")
    data = next(p for p in ref.files if p.startswith("data/"))
    flip_byte(store.table_path(ref.table_id) / data)
    with pytest.raises(IntegrityError, match=data.split("/")[-1]):
        store.read(ref)
    problems = store.verify(ref)
    assert len(problems) == 1 and data in problems[0] and "mismatch" in problems[0]
    with pytest.raises(IntegrityError):
        store.scanner_dataset(ref)


@pytest.mark.parametrize("kind", ["_versions/", "_deletions/"])
def test_flipped_byte_in_manifest_or_deletion_file(store, kind):
    t = make_table(500)
    r1 = store.write(t, key="id")
    r2 = store.write(edit(t, delete=[1, 2, 3]), key="id", base=r1)
    rel = next(p for p in r2.files if p.startswith(kind))
    flip_byte(store.table_path(r2.table_id) / rel, at=10)
    with pytest.raises(IntegrityError):
        store.read(r2)
    with pytest.raises(IntegrityError):
        store.diff(r1, r2)
    assert any(rel in p for p in store.verify(r2))
    assert store.verify(r1) == []  # r1 shares neither the manifest nor a deletion file


def test_missing_file_is_missing_object(store):
    ref = store.write(make_table(100), key="id")
    data = next(p for p in ref.files if p.startswith("data/"))
    (store.table_path(ref.table_id) / data).unlink()
    with pytest.raises(MissingObject):
        store.read(ref)
    assert "missing" in store.verify(ref)[0]


def test_files_of_and_scanner_dataset(store):
    ref = store.write(make_table(100), key="id")
    files = store.files_of(ref)
    assert all((store.root / p).is_file() for p in files)
    con = duckdb.connect()
    con.register("t", store.scanner_dataset(ref))
    assert con.sql("SELECT count(*), max(id) FROM t").fetchall() == [(100, 99)]


# ----------------------------------------------------------------------------- merge

def test_merge_keyed_clean(store):
    t = make_table(300)
    base = store.write(t, key="id")
    ours = store.write(edit(t, modify=[1, 2], delete=[10], column="prompt"), key="id", base=base)
    theirs = store.write(edit(t, modify=[2, 3], add=make_table(2, 3, start=300)), key="id",
                         base=base)
    res = store.merge3(base, ours, theirs, key="id")
    assert res.clean and res.table is not None
    got = {r["id"]: r for r in res.table.to_pylist()}
    assert len(got) == 300 - 1 + 2 and 10 not in got and 300 in got and 301 in got
    assert got[2]["prompt"].endswith("EDITED") and got[2]["response"].endswith("EDITED")
    assert got[1]["prompt"].endswith("EDITED") and got[3]["response"].endswith("EDITED")
    assert res.table.schema == t.schema


def test_merge_keyed_conflicts(store):
    t = make_table(100)
    base = store.write(t, key="id")
    o = edit(t, modify=[5], column="response", delete=[7])
    th = t.set_column(2, "response", pa.array([r + (" THEIRS" if i == 5 else "")
                                               for i, r in enumerate(t["response"].to_pylist())]))
    th = edit(th, modify=[7])
    ours, theirs = store.write(o, key="id", base=base), store.write(th, key="id", base=base)
    res = store.merge3(base, ours, theirs, key="id")
    assert res.table is None
    kinds = sorted((c["key"], c["column"]) for c in res.conflicts)
    assert kinds == [(5, "response"), (7, None)]
    cell = next(c for c in res.conflicts if c["key"] == 5)
    assert cell["base"] == "response 5" and cell["ours"].endswith("EDITED") \
        and cell["theirs"].endswith("THEIRS")
    res = store.merge3(base, ours, theirs, key="id", prefer="theirs")
    got = {r["id"]: r for r in res.table.to_pylist()}
    assert got[5]["response"].endswith("THEIRS") and got[7]["response"].endswith("EDITED")


def test_merge_unkeyed_multiset(store):
    t = make_table(200).drop_columns(["id"])
    base = store.write(t)
    ours = store.write(edit(t, delete=[0, 1, 2]), base=base)
    theirs = store.write(edit(t, delete=[2, 3], add=make_table(4, 8).drop_columns(["id"])),
                         base=base)
    res = store.merge3(base, ours, theirs, key=None)
    expected = edit(t, delete=[0, 1, 2, 3], add=make_table(4, 8).drop_columns(["id"]))
    assert res.clean and content_digest(res.table) == content_digest(expected)
    trivial = store.merge3(base, base, theirs, key=None)
    assert trivial.ref == theirs


# ----------------------------------------------------------------------------- gc, locks

def test_gc_keeps_live_versions(store):
    t = make_table(1000)
    r1 = store.write(t, key="id")
    r2 = store.write(edit(t, modify=range(100)), key="id", base=r1)
    r3 = store.write(edit(t, delete=range(50)), key="id", base=r1)   # branch from r1
    dead = store.write(make_table(100, seed=3).drop_columns(["score"]))
    before = store.stored_bytes()
    stats = store.gc([r1, r3], grace_seconds=0)
    assert stats["problems"] == [] and stats["tables_removed"] == 1
    assert stats["versions_removed"] >= 1 and store.stored_bytes() < before
    for r in (r1, r3):
        assert store.verify(r) == []
        assert store.read(r).num_rows == r.rows
    with pytest.raises(MissingObject):
        store.read(r2)
    with pytest.raises(MissingObject):
        store.read(dead)
    assert store.gc([r1, r3], grace_seconds=3600)["versions_removed"] == 0
    assert store.diff(r1, r3).removed == 50


def test_gc_grace_protects_recent(store):
    r1 = store.write(make_table(100))
    assert store.gc([], grace_seconds=3600)["tables_removed"] == 0
    assert store.read(r1).num_rows == 100


def test_concurrent_delta_writers(store):
    t = make_table(500)
    r1 = store.write(t, key="id")
    refs, errors = [], []

    def work(i):
        try:
            refs.append(store.write(edit(t, modify=[i * 10]), key="id", base=r1))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len({r.version for r in refs}) == 4
    for r in refs:
        assert store.verify(r) == []
        assert store.diff(r1, r).modified == 1


def test_roaring_run_containers():
    # cookie 12347 with 1 container, run flag set, key 0, cardinality 5: runs [3..5], [10..11]
    body = (12347).to_bytes(4, "little") + bytes([1]) + (0).to_bytes(2, "little") \
        + (4).to_bytes(2, "little") + (2).to_bytes(2, "little") \
        + b"".join(v.to_bytes(2, "little") for v in (3, 2, 10, 1))
    assert roaring_u32(body).tolist() == [3, 4, 5, 10, 11]


def test_row_id_sequences_decode_like_lance(tmp_path):
    import lance
    uri = str(tmp_path / "r.lance")
    n = 30000
    lance.write_dataset(pa.table({"id": np.arange(n), "v": np.zeros(n)}), uri,
                        enable_stable_row_ids=True, max_rows_per_file=12000)
    ups = np.arange(1, 20000, 7)

    def steps():
        yield lambda ds: ds.delete("id % 3 = 0")
        yield lambda ds: ds.merge_insert("id").when_matched_update_all() \
            .when_not_matched_insert_all().execute(pa.table({"id": ups, "v": np.ones(len(ups))}))
        yield lambda ds: ds.optimize.compact_files(target_rows_per_fragment=100000)
    for step in steps():
        step(lance.dataset(uri))
        for fr in fragments(lance.dataset(uri)):
            t = fr.frag.scanner(columns=[], with_row_id=True, with_row_address=True).to_table()
            seq = row_id_sequence(fr)
            assert seq is not None
            off = t["_rowaddr"].to_numpy() & np.uint64(0xFFFFFFFF)
            assert np.array_equal(seq[off], t["_rowid"].to_numpy())
