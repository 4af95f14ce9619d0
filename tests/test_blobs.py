"""Tests of the content-addressed chunk store (demoai.store.blobs.chunks)."""
from __future__ import annotations

import json
import multiprocessing
import os
import random
from pathlib import Path

import pytest
from pyfastcdc.cy import FastCDC

from demoai.errors import IntegrityError, InvalidArtifact, LockTimeout, MissingObject
from demoai.store.blobs.chunks import (AVG_CHUNK, MAX_CHUNK, MIN_CHUNK, BlobManifest, MemoryBlobStore,
                                chunk_boundaries, compute_manifest)
from demoai.store.blobs.packs import DiskBlobStore

MiB = 1 << 20


def rand_bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def compressible(n: int, seed: int = 1) -> bytes:
    # Few distinct bytes: zstd shrinks it a lot, so chunks are stored compressed.
    r = random.Random(seed)
    return bytes(r.choice(b"ACGT") for _ in range(n))


@pytest.fixture(params=["memory", "disk"])
def store(request, tmp_path):
    return MemoryBlobStore() if request.param == "memory" else DiskBlobStore(tmp_path / "blobs")


def pack_files(root: Path, ext: str = ".pack") -> list[Path]:
    return sorted((root / "packs").glob(f"pack-*{ext}"))


# ------------------------------------------------------------------ basics


@pytest.mark.parametrize("data", [b"", b"x", rand_bytes(100_000), compressible(300_000),
                                  rand_bytes(3 * MiB, seed=5)])
def test_roundtrip(store, data, tmp_path):
    m = store.put_bytes(data)
    assert m.size == len(data) and sum(n for _, n in m.chunks) == len(data)
    assert store.read_bytes(m) == data
    out = tmp_path / "out" / "file.bin"
    store.write_to(m, out)
    assert out.read_bytes() == data
    assert BlobManifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert store.verify() == []


def test_put_file_matches_put_bytes_and_reports_progress(store, tmp_path):
    data = rand_bytes(6 * MiB, seed=2) + compressible(MiB)
    path = tmp_path / "weights.gguf"
    path.write_bytes(data)
    seen = []
    m = store.put_file(path, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(data), len(data))
    assert all(a <= b for (a, _), (b, _) in zip(seen, seen[1:]))
    assert m == store.put_bytes(data) == compute_manifest(path) == compute_manifest(data)
    import blake3
    assert m.digest == "blake3:" + blake3.blake3(data).hexdigest()
    got = []
    store.write_to(m, tmp_path / "copy", progress=lambda d, t: got.append(d))
    assert got[-1] == len(data) and (tmp_path / "copy").read_bytes() == data


def test_chunk_sizes_and_compression_flags(tmp_path):
    s = DiskBlobStore(tmp_path)
    data = rand_bytes(8 * MiB)
    m = s.put_bytes(data)
    sizes = [n for _, n in m.chunks]
    assert max(sizes) <= MAX_CHUNK and min(sizes[:-1]) >= MIN_CHUNK
    assert 48 * 1024 < len(data) / len(sizes) < 80 * 1024
    # Random data is stored raw: packs are barely larger than the data.
    assert s.stored_bytes() < len(data) * 1.01
    s2 = DiskBlobStore(tmp_path / "z")
    text = compressible(2 * MiB)
    s2.put_bytes(text)
    assert s2.stored_bytes() < len(text) * 0.5


def test_zstd_level_none_stores_raw(tmp_path):
    s = DiskBlobStore(tmp_path, zstd_level=None)
    text = compressible(MiB)
    m = s.put_bytes(text)
    assert s.stored_bytes() > len(text) and s.read_bytes(m) == text
    assert DiskBlobStore(tmp_path).read_bytes(m) == text  # reads never depend on the level


def test_manifest_from_dict_rejects_garbage():
    with pytest.raises(InvalidArtifact):
        BlobManifest.from_dict({"digest": "blake3:00", "size": 5, "chunks": [["ab", 4]]})
    with pytest.raises(InvalidArtifact):
        BlobManifest.from_dict({"size": 1})


# ------------------------------------------------------------------ chunking


def sequential(buf: bytes) -> list[int]:
    pos = [0]
    for c in FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK).cut_buf(buf):
        pos.append(pos[-1] + c.length)
    return pos


@pytest.mark.parametrize("kind", ["random", "zeros", "pattern", "mixed"])
def test_parallel_boundaries_equal_sequential(kind):
    n = 12 * MiB + 12345
    if kind == "random":
        buf = rand_bytes(n, seed=3)
    elif kind == "zeros":  # no content-defined cut at all: segments never resynchronise
        buf = bytes(n)
    elif kind == "pattern":
        buf = (rand_bytes(4093, seed=4) * (n // 4093 + 1))[:n]
    else:
        r = rand_bytes(n, seed=6)
        buf = b"".join(r[i:i + MiB] if (i // MiB) % 2 else bytes(MiB) for i in range(0, n, MiB))
    want = sequential(buf)
    for segs in (2, 3, 7):
        assert chunk_boundaries(buf, segs) == want
    assert chunk_boundaries(buf) == want


# ------------------------------------------------------------------ dedup and locality


def test_dedup(store):
    data = rand_bytes(4 * MiB, seed=7)
    store.put_bytes(data)
    before = store.stored_bytes()
    store.put_bytes(data)
    assert store.stored_bytes() == before
    doubled = store.put_bytes(data + data)  # the second half dedups against the first
    assert store.stored_bytes() - before < 3 * MAX_CHUNK
    assert store.read_bytes(doubled) == data + data


def test_edit_locality(tmp_path):
    s = DiskBlobStore(tmp_path)
    data = bytearray(rand_bytes(20 * MiB, seed=8))
    m1 = s.put_bytes(bytes(data))
    before = s.stored_bytes()
    mid = len(data) // 2
    data[mid:mid + MiB] = rand_bytes(MiB, seed=9)
    m2 = s.put_bytes(bytes(data))
    added = s.stored_bytes() - before
    # The edited MiB itself, plus the unchanged head of the chunk where the edit starts and
    # the unchanged tail before the chunkers resynchronise (each < one max-size chunk), plus
    # one new idx (header, 49 bytes per new chunk, checksum) and the 8-byte pack header.
    new_chunks = len(set(m2.chunks) - set(m1.chunks))
    bound = MiB + 2 * MAX_CHUNK + 8 + 8 + 49 * new_chunks + 32
    assert added <= bound, (added, bound)
    assert s.read_bytes(m2) == bytes(data) and s.read_bytes(m1) != bytes(data)


# ------------------------------------------------------------------ integrity


def flip_byte(path: Path, offset: int) -> None:
    b = bytearray(path.read_bytes())
    b[offset] ^= 0xFF
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("data", [rand_bytes(2 * MiB, seed=10), compressible(MiB)])
def test_flipped_byte_is_detected(tmp_path, data):
    s = DiskBlobStore(tmp_path)
    m = s.put_bytes(data)
    (pack,) = pack_files(tmp_path)
    flip_byte(pack, pack.stat().st_size // 2)
    fresh = DiskBlobStore(tmp_path)  # no cached state
    with pytest.raises(IntegrityError) as e:
        fresh.read_bytes(m)
    assert pack.name in str(e.value) and e.value.chunk in {c for c, _ in m.chunks}
    with pytest.raises(IntegrityError):
        fresh.write_to(m, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    problems = fresh.verify()
    assert len(problems) == 1 and pack.name in problems[0] and e.value.chunk in problems[0]
    assert fresh.verify([e.value.chunk]) == problems


def test_corrupt_idx_is_reported_and_kept(tmp_path):
    s = DiskBlobStore(tmp_path)
    m = s.put_bytes(rand_bytes(MiB, seed=11))
    (idx,) = pack_files(tmp_path, ".idx")
    flip_byte(idx, 20)
    fresh = DiskBlobStore(tmp_path)
    assert any(idx.name in p for p in fresh.verify())
    with pytest.raises(MissingObject):
        fresh.read_bytes(m)
    fresh.gc(set())
    assert idx.exists() and idx.with_suffix(".pack").exists()  # gc never drops what it can't read


def test_missing_chunk(store):
    m = store.put_bytes(rand_bytes(MiB, seed=12))
    ghost = "ab" * 32
    bad = BlobManifest(m.digest, m.size + 10, m.chunks + ((ghost, 10),))
    with pytest.raises(MissingObject) as e:
        store.read_bytes(bad)
    assert ghost in str(e.value) and isinstance(e.value, KeyError)
    with pytest.raises(MissingObject):
        store.get_chunk(ghost)
    ids = [c for c, _ in m.chunks]
    assert store.missing_chunks(ids + [ghost, ghost]) == [ghost]
    assert not store.has_chunk(ghost) and store.has_chunk(ids[0])
    assert store.verify([ids[0], ghost]) == [f"chunk {ghost}: missing"]


def test_put_chunk_verifies_id(store):
    import blake3
    data = b"chunk from a remote"
    cid = blake3.blake3(data).hexdigest()
    with pytest.raises(IntegrityError):
        store.put_chunk(cid, data + b"!")
    assert not store.has_chunk(cid)
    store.put_chunk(cid, data)
    store.put_chunk(cid, data)  # idempotent
    assert store.get_chunk(cid) == data and list(store.iter_chunk_ids()) == [cid]


# ------------------------------------------------------------------ gc


def test_gc_keeps_live_removes_dead(store):
    a, b = rand_bytes(3 * MiB, seed=13), rand_bytes(2 * MiB, seed=14)
    ma, mb = store.put_bytes(a), store.put_bytes(b)
    before = store.stored_bytes()
    live = {c for c, _ in ma.chunks}
    res = store.gc(live)
    assert res["removed_chunks"] == len({c for c, _ in mb.chunks})
    assert res["freed_bytes"] >= 2 * MiB * 0.99
    assert store.stored_bytes() == before - res["freed_bytes"]
    assert store.read_bytes(ma) == a
    b_ids = list(dict.fromkeys(c for c, _ in mb.chunks))
    assert store.missing_chunks(c for c, _ in mb.chunks) == b_ids
    assert store.verify() == []
    assert store.gc(lambda: live)["removed_chunks"] == 0


def test_gc_rewrites_mixed_pack_and_cleans_garbage(tmp_path):
    s = DiskBlobStore(tmp_path)
    a, b = rand_bytes(2 * MiB, seed=15), rand_bytes(2 * MiB, seed=16)
    assert s.put_chunks([]) == 0 and pack_files(tmp_path) == []  # nothing new, no pack
    m = s.put_bytes(a + b)  # one pack holding chunks of both halves
    mb = s.put_bytes(b)     # dedups against it except around the junction
    packs_dir = tmp_path / "packs"
    (packs_dir / "pack-0000000000000000.pack").write_bytes(b"garbage of a crashed writer")
    (packs_dir / ".tmp-pack-x.pack-1-2").write_bytes(b"tmp")
    live = {c for c, _ in mb.chunks}
    s.gc(live)
    names = sorted(p.name for p in packs_dir.iterdir())
    assert "pack-0000000000000000.pack" not in names
    assert not any(n.startswith(".tmp") for n in names)
    assert s.read_bytes(mb) == b and s.verify() == []
    assert s.missing_chunks(c for c, _ in m.chunks)  # chunks only in a+b are gone
    fresh = DiskBlobStore(tmp_path)
    assert fresh.read_bytes(mb) == b


def test_gc_waits_for_writers(tmp_path):
    s = DiskBlobStore(tmp_path, lock_timeout=0.2)
    m = s.put_bytes(rand_bytes(MiB, seed=17))
    with s.write_lock():  # as a put (or a put + ref update) would hold it
        with pytest.raises(LockTimeout):
            s.gc(set())
        s.put_bytes(b"writers share the lock")
    assert s.read_bytes(m) == rand_bytes(MiB, seed=17)


# ------------------------------------------------------------------ multi-process


def _child_put(root: str, path: str, out: str) -> None:
    m = DiskBlobStore(root).put_file(path)
    Path(out).write_text(json.dumps(m.to_dict()))


def test_concurrent_writers(tmp_path):
    root = tmp_path / "store"
    DiskBlobStore(root)
    files = []
    for i in range(2):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(rand_bytes(8 * MiB, seed=20 + i) + rand_bytes(MiB, seed=99))  # shared tail
        files.append(p)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_child_put, args=(str(root), str(p), str(p) + ".json"))
             for p in files]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join(60)
        assert pr.exitcode == 0
    s = DiskBlobStore(root)
    for p in files:
        m = BlobManifest.from_dict(json.loads(Path(str(p) + ".json").read_text()))
        assert s.read_bytes(m) == p.read_bytes()
    assert len(pack_files(root)) == 2 and s.verify() == []


def test_other_instance_sees_new_packs_and_ignores_pack_without_idx(tmp_path):
    reader, writer = DiskBlobStore(tmp_path), DiskBlobStore(tmp_path)
    assert list(reader.iter_chunk_ids()) == []
    m = writer.put_bytes(rand_bytes(MiB, seed=30))
    assert reader.read_bytes(m) == rand_bytes(MiB, seed=30)  # a miss triggers a refresh
    # A pack whose idx never landed (writer crashed before the commit point) is invisible.
    orphan = writer.put_bytes(rand_bytes(MiB, seed=31))
    newest = max(pack_files(tmp_path, ".idx"), key=lambda p: p.stat().st_mtime_ns)
    os.unlink(newest)
    fresh = DiskBlobStore(tmp_path)
    with pytest.raises(MissingObject):
        fresh.read_bytes(orphan)
    assert fresh.verify() == [] and set(fresh.iter_chunk_ids()) == {c for c, _ in m.chunks}
    fresh.gc({c for c, _ in m.chunks})
    assert len(pack_files(tmp_path)) == 1
