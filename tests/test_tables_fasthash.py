"""Keyed deltas with cached fingerprints: only changed rows are MD5-hashed, the sorted
hashes are merged instead of sorted, and the digest, delta and rows are the same as
without the cache (demoai/store/tables/fasthash.py)."""
from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import demoai.store.tables.fasthash as fasthash_mod
import demoai.store.tables.ingest as ingest_mod
from demoai.store.tables.fasthash import (FastHashCache, fast_hashes, fast_ok, merged_sorted,
                                          row_and_fast_hashes)
from demoai.store.tables.io import content_digest, row_hashes, sort_hashes
from demoai.store.tables.store import TableStore
from demoai.store.tables.stream import table_source


def make(n: int, start: int = 0, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + n)
    return pa.table({"id": pa.array(ids, pa.int64()),
                     "text": pa.array([f"row {i} {'x' * int(k)}" for i, k in
                                       zip(ids, rng.integers(0, 40, n))]),
                     "label": pa.array(rng.integers(0, 5, n), pa.int32()),
                     "note": pa.array([None if i % 7 == 0 else f"n{i % 11}" for i in ids])})


def edit(t: pa.Table, seed: int = 1) -> pa.Table:
    """1% of rows get a new text (one of them only a NULL -> '' change), 0.5% are deleted,
    0.5% appended, and the file is shuffled."""
    rng = np.random.default_rng(seed)
    n = t.num_rows
    pick = rng.permutation(n)
    mod, dele = pick[:n // 100], pick[n // 100:n // 100 + n // 200]
    text, note = t["text"].to_pylist(), t["note"].to_pylist()
    for i in mod[1:]:
        text[i] = text[i] + " edited"
    j = int(np.flatnonzero(np.array([v is None for v in note]))[0])
    note[j] = ""     # NULL -> empty text: a change the fingerprint must see
    keep = np.ones(n, bool)
    keep[dele] = False
    t2 = (t.set_column(1, "text", pa.array(text)).set_column(3, "note", pa.array(note, pa.string()))
          .filter(pa.array(keep)))
    t3 = pa.concat_tables([t2, make(n // 200, start=10 * n * seed, seed=seed)])
    return t3.take(pa.array(rng.permutation(t3.num_rows)))


@pytest.fixture()
def md5_rows(monkeypatch):
    """The rows the ingest MD5-hashes."""
    seen: list[int] = []

    def counting(t):
        seen.append(t.num_rows)
        return row_hashes(t)

    def counting_both(t):
        seen.append(t.num_rows)
        return row_and_fast_hashes(t)
    monkeypatch.setattr(ingest_mod, "row_hashes", counting)
    monkeypatch.setattr(ingest_mod, "row_and_fast_hashes", counting_both)
    return seen


def _sorted_calls(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = ingest_mod.digest_from_hashes

    def counting(schema, key, hashes):
        calls.append(len(hashes))
        return real(schema, key, hashes)
    monkeypatch.setattr(ingest_mod, "digest_from_hashes", counting)
    return calls


def test_keyed_delta_hashes_only_changed_rows_and_merges_the_sorted_hashes(tmp_path: Path, md5_rows,
                                                                          monkeypatch) -> None:
    v1 = make(20_000)
    store = TableStore(tmp_path / "s")
    r1 = store.write_source(table_source(v1, 3000), key="id")
    assert md5_rows and sum(md5_rows) == 20_000
    cache_files = list((tmp_path / "s" / "_cache" / "fasthash").glob("*.bin"))
    assert len(cache_files) == 1
    md5_rows.clear()
    sorts = _sorted_calls(monkeypatch)
    v2 = edit(v1)
    r2 = store.write_source(table_source(v2, 3000), key="id", base=r1)
    # 200 edited (one of them NULL -> '') and 100 new rows hashed, not 20,000; no full sort
    assert sum(md5_rows) == 300
    assert sorts == []
    assert r2.digest == content_digest(v2, "id")
    assert (r2.delta["modified"], r2.delta["removed"], r2.delta["added"]) == (200, 100, 100)
    assert r2.delta["columns"] == {"text": 199, "note": 1}
    assert store.read(r2).equals(v2.cast(store.read(r2).schema))
    assert store.verify(r2, base=r1) == []
    # the same rows through the path without a cache: same digest, delta and order
    plain = TableStore(tmp_path / "p")
    p1 = plain.write(v1, key="id")
    p2 = plain.write(v2, key="id", base=p1)
    assert (p2.digest, p2.delta, p2.order["digest"]) == (r2.digest, r2.delta, r2.order["digest"])
    # and a third version builds on the second's cache
    md5_rows.clear()
    v3 = edit(v2, seed=5)
    r3 = store.write_source(table_source(v3, 3000), key="id", base=r2)
    assert r3.digest == content_digest(v3, "id")
    assert 0 < sum(md5_rows) <= 300 and sorts == []


def test_a_cache_for_other_rows_or_another_duckdb_is_not_used(tmp_path: Path, md5_rows,
                                                               monkeypatch) -> None:
    v1 = make(5000)
    v2 = edit(v1)
    for case in ("other rows", "other duckdb", "torn file"):
        store = TableStore(tmp_path / case)
        r1 = store.write_source(table_source(v1, 1000), key="id")
        (path,) = (tmp_path / case / "_cache" / "fasthash").glob("*.bin")
        with monkeypatch.context() as m:
            if case == "other rows":   # the checksum names other row hashes
                data = bytearray(path.read_bytes())
                (vlen,) = struct.unpack_from("<H", data, len(fasthash_mod._MAGIC))
                data[len(fasthash_mod._MAGIC) + 2 + vlen] ^= 1   # first byte of the checksum
                path.write_bytes(bytes(data))
            elif case == "other duckdb":
                m.setattr(fasthash_mod, "_duckdb_version", lambda: "0.0.0-other")
            else:
                path.write_bytes(path.read_bytes()[:-5])
            md5_rows.clear()
            r2 = store.write_source(table_source(v2, 1000), key="id", base=r1)
        assert sum(md5_rows) == v2.num_rows, case   # every row hashed, as without a cache
        assert r2.digest == content_digest(v2, "id"), case


def test_floats_and_nested_columns_keep_no_fingerprints(tmp_path: Path) -> None:
    assert fast_ok(make(3).schema)
    assert not fast_ok(make(3).append_column("x", pa.array([0.0, -0.0, 1.5])).schema)
    assert not fast_ok(pa.schema({"id": pa.int64(), "tags": pa.list_(pa.string())}))
    t = make(2000).append_column("score", pa.array(np.linspace(0, 1, 2000)))
    store = TableStore(tmp_path / "s")
    store.write_source(table_source(t, 500), key="id")
    assert not list((tmp_path / "s" / "_cache" / "fasthash").glob("*.bin"))


def test_fingerprints_see_every_kind_of_change() -> None:
    t = pa.table({"id": [1, 2, 3, 4], "s": ["a", "bc", None, ""], "b": [b"x", None, b"", b"y"],
                  "d": pa.array([1, 2, 3, 4], pa.date32())})
    f = fast_hashes(t)
    assert len(set(f.tolist())) == 4
    for col, vals in (("s", ["a", "b", None, ""]), ("s", ["a", "bc", "", ""]),
                      ("b", [b"x", b"", b"", b"y"]), ("d", pa.array([1, 2, 3, 5], pa.date32()))):
        arr = pa.array(vals, t.schema.field(col).type) if isinstance(vals, list) else vals
        g = fast_hashes(t.set_column(t.schema.get_field_index(col), col, arr))
        assert (g != f).sum() == 1, col


def test_merged_sorted_equals_a_full_sort() -> None:
    rng = np.random.default_rng(11)
    base = rng.integers(0, 2**63, size=(5000, 2), dtype=np.int64).astype(np.uint64)
    base_sorted = sort_hashes(base)
    gone = rng.choice(5000, 300, replace=False)
    added = rng.integers(0, 2**63, size=(250, 2), dtype=np.int64).astype(np.uint64)
    got = merged_sorted(base_sorted, base[gone], added)
    keep = np.ones(5000, bool)
    keep[gone] = False
    want = sort_hashes(np.concatenate([base[keep], added]))
    assert got is not None and np.array_equal(got, want)
    assert np.array_equal(merged_sorted(base_sorted, base[:0], added[:0]), base_sorted)
    # what it cannot place for certain, it refuses (the caller sorts)
    tie = base_sorted[10].copy()
    tie[1] ^= 1
    assert merged_sorted(base_sorted, base[:0], tie[None, :]) is None          # shares a high word
    assert merged_sorted(base_sorted, added[:1], added[:0]) is None           # not in the base
    assert merged_sorted(base_sorted, base_sorted[[3, 3]], added[:0]) is None  # removed twice


def test_cache_keeps_the_newest_files_per_table(tmp_path: Path) -> None:
    cache = FastHashCache(tmp_path)
    h = np.arange(8, dtype=np.uint64).reshape(4, 2)
    for v in range(1, 10):
        cache.save("t", f"blake3:{v:02x}" + "0" * 62, h, np.arange(4, dtype=np.uint64))
        time.sleep(0.01)
    kept = sorted(int(p.name.split(".")[1][:2], 16) for p in (tmp_path / "fasthash").glob("t.*.bin"))
    assert len(kept) == fasthash_mod._KEEP and kept[-1] == 9
    got = cache.load("t", "blake3:09" + "0" * 62, h)
    assert got is not None and np.array_equal(got.fast, np.arange(4)) and got.sorted is None
    assert cache.load("t", "blake3:09" + "0" * 62, h[::-1].copy()) is None
    assert cache.load("t", "blake3:06" + "0" * 62, h) is None      # trimmed (only the newest stay)



def test_gc_drops_the_cache_of_a_deleted_lineage(tmp_path: Path) -> None:
    store = TableStore(tmp_path / "s")
    ref = store.write_source(table_source(make(1000), 500), key="id")
    folder = tmp_path / "s" / "_cache" / "fasthash"
    assert len(list(folder.glob("*.bin"))) == 1
    store.gc([ref], grace_seconds=0)
    assert len(list(folder.glob("*.bin"))) == 1      # live: kept
    store.gc([], grace_seconds=0)
    assert not list(folder.glob("*.bin"))



def test_wider_or_narrower_types_of_the_same_values_fingerprint_alike() -> None:
    t = make(50)
    wide = t.cast(pa.schema({"id": pa.int64(), "text": pa.large_string(), "label": pa.int64(),
                             "note": pa.large_string()}))
    narrow = t.cast(pa.schema({"id": pa.int32(), "text": pa.string(), "label": pa.int8(),
                               "note": pa.string()}))
    assert np.array_equal(fast_hashes(t), fast_hashes(wide))
    assert np.array_equal(fast_hashes(t), fast_hashes(narrow))


def test_tables_past_the_row_limit_keep_no_fingerprints(tmp_path: Path, md5_rows, monkeypatch) -> None:
    """Fingerprints and sorted hashes cost memory in a delta (48 bytes a row): past
    fast_rows_limit() rows (2M at the default 1 GiB bound) they are neither kept nor used."""
    assert fasthash_mod.fast_rows_limit() == (1 << 30) // 512
    monkeypatch.setattr(ingest_mod, "fast_rows_limit", lambda: 999)
    store = TableStore(tmp_path / "s")
    v1 = make(1000)
    r1 = store.write_source(table_source(v1, 500), key="id")
    assert not list((tmp_path / "s" / "_cache" / "fasthash").glob("*.bin"))
    md5_rows.clear()
    v2 = edit(v1)
    r2 = store.write_source(table_source(v2, 500), key="id", base=r1)
    assert sum(md5_rows) == v2.num_rows and r2.digest == content_digest(v2, "id")


def test_one_scan_gives_both_hashes() -> None:
    t = make(3000).cast(pa.schema({"id": pa.int32(), "text": pa.large_string(), "label": pa.int32(),
                                   "note": pa.string()}))
    h, f = row_and_fast_hashes(t)
    assert np.array_equal(h, row_hashes(t)) and np.array_equal(f, fast_hashes(t))
    assert np.array_equal(f, fast_hashes(make(3000)))
