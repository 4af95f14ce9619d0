"""Hostile repositories, damaged objects and unreadable data, attacked as an adversary would.

Hostile trees are built with dulwich directly (names no honest client writes), pushed to a
real hub process through the protocol's own client, or planted in the hub's storage as a
hub from before these checks would hold them, then cloned. Damaged objects are real
flipped bytes in real chunk packs.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dulwich.objects import Blob, Tree

from demoai import errors as E
from demoai import porcelain as P
from demoai.http.hub import HttpEndpoint
from demoai.objects import Prompt, encode_manifest
from demoai.store.git.repo import Repository
from demoai.store.transfer import LocalEndpoint
from tests.helpers.hub import HubServer, running_hub

pytestmark = pytest.mark.timeout(180)

PROMPT = "name: qa\ntemplate: |\n  Q: {{q}}\n  A:\n"
EVIL = "owned = true\n"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    with running_hub(tmp_path_factory.mktemp("hub") / "data") as server:
        yield server


def _tree(objs: list, entries: dict[bytes, object]) -> Tree:
    """A git tree from ``{name: bytes (a file) | dict (a folder)}``, objects into ``objs``."""
    t = Tree()
    for name, v in entries.items():
        if isinstance(v, dict):
            sub = _tree(objs, v)
            t.add(name, 0o040000, sub.id)
        else:
            b = Blob.from_string(v)
            objs.append(b)
            t.add(name, 0o100644, b.id)
    objs.append(t)
    return t


def hostile_commit(repo: Repository, parent: str | None, entries: dict[bytes, object]) -> str:
    """A commit whose root tree holds ``entries`` beside a normal lineage record."""
    objs: list = []
    root = _tree(objs, {**entries, b".demoai": {b"lineage.json": b"{}\n"}})
    repo.add_objects(objs)
    return repo.make_commit(root.id.decode(), [parent] if parent else [], "hostile")


def evil_prompt() -> bytes:
    return encode_manifest(Prompt.from_text(EVIL.replace("owned = true", "name: x\ntemplate: owned")))


def variants(outside: Path) -> dict[str, dict[bytes, object]]:
    """Every hostile shape the audit found, plus the rest of the rule's cases."""
    m = evil_prompt()
    return {
        "dotdot-folder": {b"..": {b"x.prompt.yaml": m}},
        "dotdot-in-name": {b"../x.prompt.yaml": m},
        "control-folder-in-name": {b".demoai/x.prompt.yaml": m},
        "control-folder-case": {b".DeMoAi": {b"x.prompt.yaml": m}},
        "control-folder-nested": {b"data": {b".demoai": {b"x.prompt.yaml": m}}},
        "absolute": {str(outside / "abs" / "x.prompt.yaml").encode(): m},
        "absolute-dotfile": {str(outside / ".bashrc").encode(): m},
        "backslash": {b"a\\x.prompt.yaml": m},
        "drive-letter": {b"C:": {b"x.prompt.yaml": m}},
        "dot": {b".": {b"x.prompt.yaml": m}},
        "git-folder": {b".git": {b"config": m}},
    }


def _files_under(p: Path) -> set[str]:
    return {str(q.relative_to(p)) for q in p.rglob("*")} if p.exists() else set()


# ----------------------------------------------------------------------------- hostile trees

def test_hub_refuses_hostile_trees_at_push(hub: HubServer, tmp_path: Path) -> None:
    """Each hostile tree, sent through the protocol as a malicious client would (the
    honest client refuses to even plan it), is refused with ``UnsafePath``; the ref never
    moves, so no other user can clone it."""
    token = hub.tokens["alice"]["write"]
    root = tmp_path / "src"
    root.mkdir()
    repo = P.init(root)
    (root / "qa.prompt.yaml").write_text(PROMPT)
    P.add(repo, [root / "qa.prompt.yaml"])
    base = P.commit(repo, "base")
    P.remote_add(repo, "origin", hub.repo_url("alice", "hostile"))
    P.push(repo, "origin", token=token, private=False)
    outside = tmp_path / "outside"
    for name, entries in variants(outside).items():
        bad = hostile_commit(repo, base, entries)
        with pytest.raises(E.UnsafePath):       # the honest client will not send it
            LocalEndpoint(repo).needs([bad], [base])
        ids = [o for o in _all_new_ids(repo, bad, base)]
        ep = HttpEndpoint(hub.repo_url("alice", "hostile"), token)
        try:
            with pytest.raises(E.UnsafePath):
                for frame in LocalEndpoint(repo).git_frames(ids):
                    ep.put_git(frame)
                ep.update_refs([{"ref": "refs/heads/main", "old": base, "new": bad}])
            assert ep.refs()["refs"] == {"refs/heads/main": base}, name
        finally:
            ep.close()
    assert not outside.exists()
    repo.close()


def _all_new_ids(repo: Repository, new: str, base: str) -> list[str]:
    """Git object ids of ``new`` that ``base`` lacks (without the path checks)."""
    store = repo.git.object_store
    have: set[bytes] = set()

    def walk(tid: bytes, out: set[bytes]) -> None:
        out.add(tid)
        for e in store[tid].iteritems():
            if e.mode & 0o040000:
                walk(e.sha, out)
            else:
                out.add(e.sha)
    walk(store[base.encode()].tree, have)
    mine: set[bytes] = set()
    walk(store[new.encode()].tree, mine)
    return [new] + [i.decode() for i in mine - have]


def test_clone_of_a_hostile_repository_writes_nothing_outside(hub: HubServer, tmp_path: Path) -> None:
    """A hub that holds a hostile tree (planted in its storage, as a hub without these
    checks would have accepted it): ``clone`` refuses it, writes nothing outside the clone
    folder and leaves no clone behind; ``fsck`` on the hub's copy names the tree."""
    token = hub.tokens["alice"]["write"]
    outside = tmp_path / "outside"
    for i, (name, entries) in enumerate(variants(outside).items()):
        src = tmp_path / f"src{i}"
        src.mkdir()
        repo = P.init(src)
        (src / "qa.prompt.yaml").write_text(PROMPT)
        P.add(repo, [src / "qa.prompt.yaml"])
        base = P.commit(repo, "base")
        P.push(repo, hub.repo_url("alice", f"planted{i}"), token=token, private=False)
        repo.close()
        with Repository(hub.repo_path("alice", f"planted{i}")) as h:
            bad = hostile_commit(h, base, entries)
            h.set_ref("refs/heads/main", bad, base, "planted")
            report = P.fsck(h)
            assert not report["ok"] and any("unsafe" in p or "reserved" in p or "mode" in p
                                            for p in report["problems"]), (name, report)
        before = _files_under(tmp_path)
        dest = tmp_path / f"clone{i}"
        with pytest.raises(E.UnsafePath):
            P.clone(hub.repo_url("alice", f"planted{i}"), dest, token=token)
        assert not dest.exists(), name
        assert _files_under(tmp_path) == before, name
    assert not outside.exists()


def test_checkout_never_writes_through_hostile_names_or_symlinked_folders(repo: Repository, tmp_dir: Path) -> None:
    """Defence in depth below the transfer checks: the working-tree writer itself refuses a
    hostile tree that is already in the object store (HEAD does not move), and a tracked
    path whose folder is a symlink leading out of the work tree."""
    (tmp_dir / "qa.prompt.yaml").write_text(PROMPT)
    P.add(repo, [tmp_dir / "qa.prompt.yaml"])
    base = P.commit(repo, "base")
    outside = tmp_dir.parent / f"{tmp_dir.name}-outside"
    for name, entries in variants(outside).items():
        bad = hostile_commit(repo, base, entries)
        with pytest.raises(E.UnsafePath):
            P.checkout(repo, bad)
        assert repo.head_commit() == base and repo.current_branch() == "main", name
    assert not outside.exists()
    # a folder replaced by a symlink to somewhere else: nothing is written through it
    (tmp_dir / "data").mkdir()
    (tmp_dir / "data" / "p.prompt.yaml").write_text(PROMPT.replace("qa", "p"))
    P.add(repo, [tmp_dir / "data" / "p.prompt.yaml"])
    with_data = P.commit(repo, "data")
    P.checkout(repo, "side", create=True)
    P.rm(repo, ["data/p.prompt.yaml"])
    P.commit(repo, "no data")
    import shutil
    shutil.rmtree(tmp_dir / "data", ignore_errors=True)
    outside.mkdir()
    os.symlink(outside, tmp_dir / "data")
    with pytest.raises(E.UnsafePath):
        P.checkout(repo, with_data)
    assert list(outside.iterdir()) == []
    assert repo.current_branch() == "side"


def test_fsck_reports_hostile_trees(repo: Repository, tmp_dir: Path) -> None:
    (tmp_dir / "qa.prompt.yaml").write_text(PROMPT)
    P.add(repo, [tmp_dir / "qa.prompt.yaml"])
    base = P.commit(repo, "base")
    assert P.fsck(repo)["ok"]
    bad = hostile_commit(repo, base, {b"..": {b"x.prompt.yaml": evil_prompt()}})
    repo.set_ref("refs/heads/evil", bad, None, "test")
    report = P.fsck(repo)
    assert not report["ok"]
    assert any("'..'" in p for p in report["problems"]), report["problems"]


def test_manifest_file_names_are_checked(repo: Repository) -> None:
    """A model manifest is attacker-controlled too: its file names must be safe paths."""
    from demoai.objects import decode_manifest
    m = {"kind": "model", "format": "transformers", "digest": "x",
         "files": {"../../.bashrc": {"digest": "d", "size": 0, "chunks": []},
                   "config.json": {"digest": "e", "size": 0, "chunks": []}}}
    with pytest.raises(E.InvalidArtifact):
        decode_manifest(json.dumps(m).encode(), "m")


# ----------------------------------------------------------------------------- damaged objects

def _flip_byte_in_packs(root: Path) -> None:
    """Flip one byte in the middle of every chunk pack (past the header)."""
    packs = sorted((root / ".demoai" / "chunks" / "packs").glob("pack-*.pack"))
    assert packs
    for p in packs:
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0xFF
        p.write_bytes(bytes(data))


def test_damaged_chunk_never_locks_the_user_out_and_repair_takes_it_from_the_hub(
        hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout that needs a damaged chunk fails before HEAD or any file changes;
    status, log and fsck keep working; ``repair`` restores the chunk from the remote."""
    token = hub.tokens["alice"]["write"]
    root = tmp_path / "w"
    root.mkdir()
    monkeypatch.chdir(root)
    repo = P.init(root)
    rng = __import__("random").Random(5)
    (root / "m.gguf").write_bytes(b"GGUF" + rng.randbytes(600_000))
    (root / "d.jsonl").write_text("".join(json.dumps({"id": i, "t": f"row {i}"}) + "\n" for i in range(50)))
    P.add(repo, [root / "m.gguf", root / "d.jsonl"], key=None)
    first = P.commit(repo, "one")
    (root / "m.gguf").write_bytes(b"GGUF" + rng.randbytes(600_000))
    (root / "d.jsonl").write_text("".join(json.dumps({"id": i, "t": f"row {i}!"}) + "\n" for i in range(50)))
    P.add(repo, [root / "m.gguf", root / "d.jsonl"])
    P.commit(repo, "two")
    P.remote_add(repo, "origin", hub.repo_url("alice", "damaged"))
    P.push(repo, "origin", token=token)
    repo.close()
    before = {p: (root / p).read_bytes() for p in ("m.gguf", "d.jsonl")}
    _flip_byte_in_packs(root)
    repo = Repository(root)
    head = repo.head_commit()
    with pytest.raises(E.IntegrityError):
        P.checkout(repo, first)
    assert repo.head_commit() == head and repo.current_branch() == "main"
    assert {p: (root / p).read_bytes() for p in before} == before
    assert not (root / ".demoai" / "SYNC_PENDING.json").exists()
    assert not list((root / ".demoai" / "tmp").glob("sync-*"))
    st = P.status(repo)
    assert st["staged"] == [] and st["unstaged"] == [] and st["interrupted"] is None
    assert len(P.log(repo)) == 2
    report = P.fsck(repo)
    assert not report["ok"] and any("chunk" in p for p in report["problems"])
    fixed = P.repair(repo, "origin", token=token)
    assert fixed.ok and fixed.repaired_chunks and fixed.damaged_chunks == fixed.repaired_chunks
    assert P.fsck(repo)["ok"]
    P.checkout(repo, first)
    assert repo.head_commit() == first and (root / "m.gguf").read_bytes() != before["m.gguf"]
    repo.close()


def test_a_journal_that_cannot_be_replayed_blocks_nothing(repo: Repository, tmp_dir: Path, cli) -> None:
    """A pending switch whose objects are damaged (a journal from a killed process): read
    commands and fsck work, status says what happened, ``checkout --force`` resolves it."""
    rng = __import__("random").Random(9)
    (tmp_dir / "m.gguf").write_bytes(b"GGUF" + rng.randbytes(300_000))
    P.add(repo, [tmp_dir / "m.gguf"])
    first = P.commit(repo, "one")
    (tmp_dir / "m.gguf").write_bytes(b"GGUF" + rng.randbytes(300_000))
    P.add(repo, [tmp_dir / "m.gguf"])
    second = P.commit(repo, "two")
    repo.close()
    _flip_byte_in_packs(tmp_dir)
    # a process killed after moving HEAD to `first`, before the files followed (a journal
    # as written before staging existed: the sync must be redone from the damaged chunks)
    with Repository(tmp_dir) as r:
        r.set_ref("refs/heads/main", first, second, "killed checkout")
    (tmp_dir / ".demoai" / "SYNC_PENDING.json").write_text(json.dumps({"target": first}))
    for args, code in ((["log", "--oneline"], 0), (["fsck"], 1), (["show", "HEAD"], 0)):
        assert "Traceback" not in cli(*args, code=code).output
    st = cli("status").output
    assert "Interrupted checkout" in st and "checkout --force" in st
    assert (tmp_dir / ".demoai" / "SYNC_PENDING.json").exists()
    # still damaged: the forced checkout of the damaged commit fails cleanly and changes
    # nothing; one of an intact commit resolves the journal
    assert "Traceback" not in cli("checkout", "--force", "main", code=1).output
    cli("checkout", "--force", second)
    assert not (tmp_dir / ".demoai" / "SYNC_PENDING.json").exists()
    assert "Interrupted" not in cli("status").output


# ----------------------------------------------------------------------------- unreadable data

@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_invalid_utf8_is_refused_before_anything_is_written(repo: Repository, tmp_dir: Path, cli, fmt: str) -> None:
    """Text that is not UTF-8 is refused with the file's line (or row) and column; nothing
    is staged or stored, so nothing unreadable can be committed."""
    p = tmp_dir / f"bin.{fmt}"
    if fmt == "jsonl":
        p.write_bytes(b'{"id": 1, "v": "ok"}\n{"id": 2, "v": "\xff\xfe"}\n')
        where = "line 2"
    elif fmt == "csv":
        p.write_bytes(b"id,v\n1,ok\n2,\xff\xfe\n")
        where = "line 3"
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.table({"id": [1, 2], "v": pa.array([b"ok", b"\xff\xfe"]).view(pa.string())}), p)
        where = "row 2"
    tables = tmp_dir / ".demoai" / "tables"
    before = _files_under(tables)
    res = cli("add", str(p), "--key", "id", code=1)
    assert where in res.output and "'v'" in res.output and "UTF-8" in res.output, res.output
    assert "Traceback" not in res.output
    assert repo.index.read().entries == {}
    assert _files_under(tables) == before


def test_whatever_add_accepts_reads_back_identical(repo: Repository, tmp_dir: Path) -> None:
    """Odd but valid text (all of Unicode's planes, escapes, empty strings, nulls) reads back
    exactly as it went in."""
    rows = [{"id": 1, "v": "\u00e9\u4e2d\U0001F600"}, {"id": 2, "v": ""}, {"id": 3, "v": None},
            {"id": 4, "v": "tab\tnewline\nquote\"back\\slash"}, {"id": 5, "v": "\u2028\ufeff"}]
    p = tmp_dir / "ok.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    P.add(repo, [p], key="id")
    P.commit(repo, "ok")
    from demoai.store.kinds import load_table
    got = load_table(repo, repo.artifact_at("HEAD", "ok.jsonl")).sort_by("id").to_pylist()
    assert got == rows


def test_repair_cuts_damaged_chunks_again_from_intact_working_files(repo: Repository, tmp_dir: Path) -> None:
    """Without a remote, a damaged chunk whose bytes are still in an intact working file
    (HEAD's model) is restored from it; one only an older version held is reported."""
    rng = __import__("random").Random(3)
    (tmp_dir / "m.gguf").write_bytes(b"GGUF" + rng.randbytes(300_000))
    P.add(repo, [tmp_dir / "m.gguf"])
    P.commit(repo, "one")
    (tmp_dir / "m.gguf").write_bytes(b"GGUF" + rng.randbytes(300_000))
    P.add(repo, [tmp_dir / "m.gguf"])
    P.commit(repo, "two")
    repo.close()
    _flip_byte_in_packs(tmp_dir)
    with Repository(tmp_dir) as r:
        damaged = r.blobs.damaged_chunks()
        assert len(damaged) == 2
        head_chunks = {c for f in r.artifact_at("HEAD", "m.gguf").files.values() for c, _ in f["chunks"]}
        rep = P.repair(r)
        assert rep.repaired_chunks == sorted(set(damaged) & head_chunks) != []
        assert rep.unrepaired == [f"chunk {c}" for c in sorted(set(damaged) - head_chunks)]
        # the repaired chunk's pack was rewritten; the other damaged copy is still there
        assert r.blobs.damaged_chunks() == sorted(set(damaged) - head_chunks)
        problems = P.fsck(r)["problems"]
        assert problems and all(c not in " ".join(problems) for c in rep.repaired_chunks)
