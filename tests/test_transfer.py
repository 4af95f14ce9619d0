"""The sync protocol between two repositories on disk (no HTTP): what is planned and sent,
verification on receipt, resumable uploads, divergent dataset versions, gc with alternates.
The HTTP side (hub routes, auth, killed servers) is tested in test_hub.py."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from demoai import porcelain as P
from demoai.errors import IntegrityError, MissingObject, NonFastForward, ProtocolError, RefConflict
from demoai.store.git.repo import Repository
from demoai.store.transfer import (LocalEndpoint, check_table_file, decode_chunk_frame,
                                   encode_chunk_frame, encode_git_frame, transfer)


def _rows(n: int, start: int = 0, tag: str = "v1") -> str:
    return "".join(json.dumps({"id": i, "text": f"{tag} row {i}"}) + "\n" for i in range(start, start + n))


def _make(path: Path, rows: int = 500, model: bytes | None = None) -> Repository:
    path.mkdir(parents=True, exist_ok=True)
    repo = P.init(path)
    (path / "d.jsonl").write_text(_rows(rows))
    (path / "m.gguf").write_bytes(model if model is not None else b"GGUF" + os.urandom(600_000))
    P.add(repo, [path / "d.jsonl"], key="id")
    P.add(repo, [path / "m.gguf"])
    P.commit(repo, "one")
    return repo


def _sync(src: Repository, dst: Repository) -> dict:
    """Push every shareable ref of ``src`` into ``dst`` the way a hub receives it."""
    a, b = LocalEndpoint(src), LocalEndpoint(dst)
    mine, theirs = a.refs()["refs"], b.refs()["refs"]
    store = src.git.object_store
    stats = transfer(a, b, list(mine.values()), [s for s in theirs.values() if s.encode() in store])
    b.update_refs([{"ref": r, "old": theirs.get(r), "new": s} for r, s in mine.items() if theirs.get(r) != s])
    return stats


def _clone(src: Repository, path: Path) -> Repository:
    dst = Repository.init(path)
    _sync(src, dst)
    tip = dst.ref_value("refs/heads/main")
    from demoai.store.git.worktree import sync_worktree
    dst.set_head("main", tip)
    sync_worktree(dst, {}, dst.tree_entries(tip))
    return dst


def test_full_then_incremental_transfer_is_complete_and_minimal(tmp_path: Path) -> None:
    a = _make(tmp_path / "a")
    b = Repository.init(tmp_path / "b")
    first = _sync(a, b)
    assert first["chunks_sent"] == first["chunks"] > 5 and first["files_sent"] == first["files"] >= 2
    assert P.fsck(b)["ok"]
    assert subprocess.run(["git", "--git-dir", str(b.control / "git"), "fsck", "--full"],
                          capture_output=True).returncode == 0
    assert {p: x.digest for p, x in b.artifacts(b.ref_value("refs/heads/main")).items()} == \
        {p: x.digest for p, x in a.artifacts(a.head_commit()).items()}
    again = _sync(a, b)
    assert again["git_sent"] == again["chunks_sent"] == again["files_sent"] == 0
    # a small edit: only the new commit, its manifests and the new table version's files travel
    with open(a.root / "d.jsonl", "a") as f:
        f.write(_rows(3, 10_000, "new"))
    P.add(a, [a.root / "d.jsonl"])
    P.commit(a, "two")
    inc = _sync(a, b)
    assert inc["chunks_sent"] == 0 and 0 < inc["files_sent"] <= 4 and inc["git_sent"] <= 6
    assert P.fsck(b)["ok"]


def test_every_received_object_is_verified(tmp_path: Path) -> None:
    a = _make(tmp_path / "a")
    b = LocalEndpoint(Repository.init(tmp_path / "b"))
    cid = sorted(a.blobs.iter_chunk_ids())[0]
    payload, raw_len, flags = a.blobs.get_stored(cid)
    bad = bytearray(payload)
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(IntegrityError):
        b.put_chunks(encode_chunk_frame([(cid, bytes(bad), raw_len, flags)]))
    assert b.missing_chunks([cid]) == [cid]
    head = a.head_commit()
    type_num, raw = a.git.object_store.get_raw(head.encode())
    with pytest.raises(IntegrityError):
        b.put_git(encode_git_frame([("0" * 40, type_num, raw)]))
    with pytest.raises(ProtocolError):
        b.put_git(b"not a frame")
    with pytest.raises(ProtocolError):
        decode_chunk_frame(encode_chunk_frame([(cid, payload, raw_len, flags)])[:-5])
    # a ref whose objects never arrived does not move
    with pytest.raises(MissingObject):
        b.update_refs([{"ref": "refs/heads/main", "old": None, "new": head}])
    assert b.repo.ref_value("refs/heads/main") is None


def test_table_file_upload_resumes_and_a_wrong_file_is_refused(tmp_path: Path) -> None:
    a = _make(tmp_path / "a", rows=3000)
    b = LocalEndpoint(Repository.init(tmp_path / "b"))
    needs = LocalEndpoint(a).needs([a.head_commit()], [])
    tid, rel, digest = max(needs.files, key=lambda f: a.tables.find_file(*f).stat().st_size)
    data = a.tables.find_file(tid, rel, digest).read_bytes()
    half = len(data) // 2
    assert b.upload_part(digest, 0, data[:half]) == half
    assert b.upload_offset(digest) == half          # what arrived survives the interruption
    with pytest.raises(RefConflict):
        b.upload_part(digest, 0, data[:10])          # a part at the wrong offset is refused
    b.upload_part(digest, half, data[half:])
    b.finish_upload(tid, rel, digest)
    assert b.repo.tables.find_file(tid, rel, digest) is not None
    other = "ab" * 32
    b.upload_part(other, 0, b"junk")
    with pytest.raises(IntegrityError):
        b.finish_upload(tid, "data/x.lance", other)
    assert b.upload_offset(other) == 0 and b.repo.tables.find_file(tid, "data/x.lance", other) is None
    for name in ("../x", "data/../../x", "/etc/passwd", "data//x", "_versions/.."):
        with pytest.raises(ProtocolError):
            check_table_file(tid, name, digest)


def test_a_part_damaged_on_the_receiver_is_sent_again(tmp_path: Path) -> None:
    """Parts are synced once, at finish: bytes a crash of the receiver garbled (zeros where
    a part should be, at the right length) hash wrong there, and the same transfer starts
    that file over instead of failing."""
    a = _make(tmp_path / "a", rows=3000)
    b = LocalEndpoint(Repository.init(tmp_path / "b"))
    needs = LocalEndpoint(a).needs([a.head_commit()], [])
    tid, rel, digest = max(needs.files, key=lambda f: a.tables.find_file(*f).stat().st_size)
    data = a.tables.find_file(tid, rel, digest).read_bytes()
    b.upload_part(digest, 0, b"\0" * (len(data) // 2))      # what a lost page cache leaves
    stats = transfer(LocalEndpoint(a), b, [a.head_commit()], [])
    assert stats["files_sent"] == len(needs.files)
    assert b.repo.tables.find_file(tid, rel, digest).read_bytes() == data
    assert stats["file_bytes_sent"] == sum(a.tables.find_file(*f).stat().st_size
                                           for f in needs.files) + len(data) - len(data) // 2


def test_divergent_versions_of_one_dataset_meet_through_alternates(tmp_path: Path) -> None:
    hub = _make(tmp_path / "hub")
    a = _clone(hub, tmp_path / "a")
    b = _clone(hub, tmp_path / "b")
    for repo, tag in ((a, "from-a"), (b, "from-b")):
        with open(repo.root / "d.jsonl", "a") as f:
            f.write(_rows(2, 50_000 if tag == "from-a" else 60_000, tag))
        P.add(repo, [repo.root / "d.jsonl"])
        P.commit(repo, tag)
    _sync(a, hub)
    # b's new version has the same Lance version number as a's: it must not collide
    hub_ep = LocalEndpoint(hub)
    with pytest.raises(NonFastForward):
        _sync(b, hub)
    transfer(hub_ep, LocalEndpoint(b), [hub.ref_value("refs/heads/main")], [b.head_commit()])
    b.set_ref("refs/remotes/hub/main", hub.ref_value("refs/heads/main"), None, "test")
    assert any("~" in p.name for p in (b.control / "tables").glob("*.lance"))
    P.merge(b, "refs/remotes/hub/main")
    rows = P.query(b, "SELECT text FROM table('d.jsonl', 'HEAD') WHERE id >= 50000 ORDER BY id").column(0).to_pylist()
    assert rows == ["from-a row 50000", "from-a row 50001", "from-b row 60000", "from-b row 60001"]
    assert P.fsck(b)["ok"]
    _sync(b, hub)
    assert P.fsck(hub)["ok"]
    # a third clone gets both histories, and can build on either side's version
    c = _clone(hub, tmp_path / "c")
    assert P.fsck(c)["ok"]
    P.checkout(c, "HEAD^1", force=True)
    assert P.query(c, "SELECT count(*) FROM table('d.jsonl', 'HEAD') WHERE id >= 50000").column(0)[0].as_py() == 2
    with open(c.root / "d.jsonl", "a") as f:
        f.write(_rows(1, 70_000, "from-c"))
    P.add(c, [c.root / "d.jsonl"])
    P.commit(c, "c on b's side")
    assert P.fsck(c)["ok"]
    # gc keeps every version a ref reaches, alternates included
    P.gc(c)
    assert P.fsck(c)["ok"]
    for rev in ("main", "HEAD", "main^1", "main^2"):
        P.query(c, f"SELECT count(*) FROM table('d.jsonl', '{rev}')")
