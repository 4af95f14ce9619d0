"""The hub and the sync protocol against real hub processes on 127.0.0.1.

Every hub here is a separate OS process serving ``demoai.hub.app.create_app`` with uvicorn
(:mod:`tests.helpers.hub`), so a test can SIGKILL it mid-transfer and start it again on
the same data directory. Clients are the real porcelain (``push``, ``clone``, ``fetch``,
``pull``), the real CLI (click's ``CliRunner``) and, where a test must send what no honest
client sends (a corrupted chunk, a forged ref name, an oversized body), the protocol's own
client :class:`demoai.http.hub.HttpEndpoint` or a raw ``http.client`` connection.

Most tests share one module-scoped hub (users ``alice`` and ``bob``) and each works in a
repository of its own name; the tests that kill a hub start their own.
"""
from __future__ import annotations

import http.client
import json
import random
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from demoai import errors as E
from demoai import porcelain as P
from demoai.hub.app import MAX_BODY, Hub
from demoai.http.hub import HttpEndpoint, HubClient
from demoai.store.git.repo import Repository
from demoai.store.transfer import (FRAME_BYTES, ID_BATCH, PART_BYTES, LocalEndpoint,
                                   decode_chunk_frame, encode_chunk_frame, encode_git_frame,
                                   transfer)
from tests.helpers.hub import HubServer, dir_bytes, make_user
from tests.helpers.tiny import agent_yaml

# Every test is bounded (the module's longest takes ~10 s on 2 cores), so a hub that stops
# answering fails the run instead of hanging it.
pytestmark = pytest.mark.timeout(180)

PROMPT = """name: qa
template: |
  Question: {{question}}
  Answer:
parameters:
  temperature: 0.0
  max_tokens: 16
"""
ADAPTER_CONFIG = json.dumps({"peft_type": "LORA", "r": 8, "lora_alpha": 16,
                             "base_model_name_or_path": "smollm2", "target_modules": ["q_proj"]})
VOCAB = ["".join(random.Random(i).choice("abcdefghijklmnopqrstuvwxyz")
                 for _ in range(2 + i % 8)) for i in range(3000)]


# ----------------------------------------------------------------------------- helpers

def model_bytes(n: int, seed: int) -> bytearray:
    """A GGUF-like file: the magic, then ``n`` incompressible (seeded) bytes."""
    data = bytearray(np.random.default_rng(seed).bytes(n))
    data[:4] = b"GGUF"
    return data


def text_rows(n: int, seed: int = 0, start: int = 0) -> list[dict[str, Any]]:
    """Keyed chat rows with text of realistic length (~200 bytes a row)."""
    rnd = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(rnd.choice(VOCAB) for _ in range(k))
    return [{"id": i, "prompt": text(12) + "?", "response": text(rnd.randint(10, 50)) + ".",
             "label": rnd.choice(["helpful", "harmless", "refusal"])} for i in range(start, start + n)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def put_file(path: Path, data: bytes) -> None:
    """Write ``data`` as a new inode (a store may have linked the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.write_bytes(bytes(data))


def git(git_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "--git-dir", str(git_dir), *args], capture_output=True, text=True,
                          timeout=120)


def hub_repo(hub: HubServer, owner: str, name: str) -> Repository:
    """The hub's own copy of ``owner/name``, opened as an ordinary repository."""
    return Repository(hub.repo_path(owner, name))


def hub_refs(hub: HubServer, owner: str, name: str) -> dict[str, str]:
    with hub_repo(hub, owner, name) as r:
        return r.refs()


def listing(root: Path) -> dict[str, int]:
    """Every file under ``root`` and its size, lock files aside (taking a lock is no write)."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))
            if p.is_file() and "lock" not in p.name}


def hub_snapshot(hub: HubServer, owner: str, name: str) -> dict[str, Any]:
    """What a refused request must leave as it was: refs, chunk ids, every stored file."""
    with hub_repo(hub, owner, name) as r:
        return {"refs": r.refs(), "chunks": set(r.blobs.iter_chunk_ids()),
                "files": listing(hub.repo_path(owner, name))}


def local_table_file(repo: Repository, tid: str, rel: str, digest: str) -> Path:
    find = getattr(repo.tables, "find_file", None)
    p = find(tid, rel, digest) if find else repo.tables.table_path(tid) / rel
    assert p is not None and p.exists(), (tid, rel)
    return p


def new_repo(root: Path, hub: HubServer | None = None, name: str | None = None) -> Repository:
    root.mkdir(parents=True, exist_ok=True)
    repo = P.init(root)
    if hub is not None:
        P.remote_add(repo, "origin", hub.repo_url("alice", name))
    return repo


def commit_files(repo: Repository, files: dict[str, Any], message: str, key: str | None = None) -> str:
    """Write ``files`` (rows -> JSONL dataset, str -> text, bytes -> binary), add, commit."""
    paths = []
    for rel, content in files.items():
        p = repo.root / rel
        if isinstance(content, list):
            write_jsonl(p, content)
        elif isinstance(content, (bytes, bytearray)):
            put_file(p, content)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content)
        paths.append(p)
    datasets = [p for p in paths if p.suffix == ".jsonl"]
    if datasets:
        P.add(repo, datasets, key=key)
    others = [p for p in paths if p.suffix != ".jsonl"]
    if others:
        P.add(repo, others)
    return P.commit(repo, message)


def threaded(fn, *args: Any, **kw: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``fn`` in a thread; the dict gets ``result`` or ``error``."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn(*args, **kw)
        except BaseException as e:  # noqa: BLE001 (handed to the test, which asserts on it)
            out["error"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    """One hub for the module: users alice and bob, each with a write and a read token."""
    server = HubServer(tmp_path_factory.mktemp("hub") / "data")
    server.tokens = {"alice": make_user(server.data, "alice"), "bob": make_user(server.data, "bob")}
    server.start()
    yield server
    server.stop()


@pytest.fixture
def alice(hub: HubServer) -> str:
    return hub.tokens["alice"]["write"]


# ----------------------------------------------------------------------------- round trip

def test_cli_push_clone_roundtrip(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole user path through the CLI, hub included: `demoai hub user add`, `hub token
    create`, `hub serve`, `remote add`, `login`, `push --all`, `clone`, `fsck`, `log`. The
    clone holds the same commits, the same artifact digests and byte-identical files."""
    data = tmp_path / "hubdata"
    cli("hub", "user", "add", "--data", str(data), "alice")
    token = json.loads(cli("hub", "token", "create", "--data", str(data), "--user", "alice",
                           "--json").output)["token"]
    server = HubServer(data, cli=True).start()
    try:
        src = tmp_path / "src"
        src.mkdir()
        monkeypatch.chdir(src)
        cli("init")
        originals = {
            "data/train.jsonl": text_rows(400, seed=1),
            "prompts/qa.prompt.yaml": PROMPT,
            "models/tiny.gguf": model_bytes(3 << 20, seed=2),
            "adapters/lora/adapter_config.json": ADAPTER_CONFIG,
            "adapters/lora/adapter_model.safetensors": model_bytes(300_000, seed=3),
        }
        for rel, content in originals.items():
            p = src / rel
            if isinstance(content, list):
                write_jsonl(p, content)
            elif isinstance(content, bytearray):
                put_file(p, content)
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(content)
        cli("add", "data/train.jsonl", "--key", "id")
        cli("add", "prompts", "models", "adapters/lora")
        cli("commit", "-m", "import data, prompt, model and adapter")
        cli("tag", "v1", "-m", "first")
        cli("branch", "experiment")
        rows2 = text_rows(400, seed=1)
        rows2[7]["response"] = "edited"
        write_jsonl(src / "data/train.jsonl", rows2)
        m2 = model_bytes(3 << 20, seed=2)
        m2[1 << 20:(1 << 20) + 4096] = bytes(4096)
        put_file(src / "models/tiny.gguf", m2)
        cli("add", "data/train.jsonl", "models/tiny.gguf")
        cli("commit", "-m", "edit a row and the model")
        originals.update({"data/train.jsonl": rows2, "models/tiny.gguf": m2})
        files = {rel: (src / rel).read_bytes() for rel in originals}

        url = server.repo_url("alice", "tour")
        cli("remote", "add", "origin", url)
        assert "as alice (write)" in cli("login", server.url, "--token", token).output
        out = cli("push", "--all").output
        assert "created" in out and "refs/heads/main" in out and "refs/tags/v1" in out
        assert "everything up to date" in cli("push", "--all").output

        monkeypatch.chdir(tmp_path)
        assert "cloned into" in cli("clone", url, "copy").output
        dst = tmp_path / "copy"
        monkeypatch.chdir(dst)
        assert json.loads(cli("fsck", "--json").output)["ok"]
        g = git(dst / ".demoai" / "git", "fsck", "--full")
        assert g.returncode == 0 and "error" not in g.stderr.lower(), g.stderr
        logged = cli("log").output
        assert "edit a row and the model" in logged and "import data, prompt" in logged

        with Repository(src) as a, Repository(dst) as b:
            ra, rb = a.refs(), b.refs()
            assert rb["refs/heads/main"] == ra["refs/heads/main"] == b.head_commit()
            assert rb["refs/remotes/origin/experiment"] == ra["refs/heads/experiment"]
            assert rb["refs/tags/v1"] == ra["refs/tags/v1"]
            commits = [c.id for c in a.walk(ra["refs/heads/main"])]
            assert [c.id for c in b.walk(rb["refs/heads/main"])] == commits and len(commits) == 2
            for c in commits:
                arts_a, arts_b = a.artifacts(c), b.artifacts(c)
                assert set(arts_a) == set(originals) - {"adapters/lora/adapter_config.json",
                                                        "adapters/lora/adapter_model.safetensors"} | {"adapters/lora"}
                assert {p: x.digest for p, x in arts_b.items()} == {p: x.digest for p, x in arts_a.items()}
        for rel, content in files.items():
            if rel.endswith(".jsonl"):
                # a dataset is checked out as its rows (README: same rows, stored order)
                got = [json.loads(x) for x in (dst / rel).read_text().splitlines()]
                assert sorted(got, key=lambda r: r["id"]) == rows2
            else:
                assert (dst / rel).read_bytes() == content, rel
        # an unedited dataset version comes back byte for byte, from the clone and the hub
        with Repository(dst) as b:
            P.export(b, "data/train.jsonl@v1", tmp_path / "v1.jsonl")
        assert (tmp_path / "v1.jsonl").read_bytes() == b"".join(
            json.dumps(r).encode() + b"\n" for r in text_rows(400, seed=1))
        # the hub's own copy is a sound repository too
        with hub_repo(server, "alice", "tour") as h:
            assert P.fsck(h)["ok"]
    finally:
        server.stop()


# ----------------------------------------------------------------------------- sessions

AGENT = agent_yaml(max_steps=2)


def test_agent_session_push_clone_replay_and_fetch_growth(hub: HubServer, alice: str, tmp_path: Path) -> None:
    """A real SmolLM2 session (namespace sandbox) travels to the hub and into a clone,
    where `recorded` replay sees the same events and fsck checks the chain; after the
    session grows by a real step, fetch fast-forwards it."""
    pytest.importorskip("llama_cpp")
    if subprocess.run(["which", "bwrap"], capture_output=True).returncode:
        pytest.skip("bubblewrap is not installed")
    from demoai.store.sessions import log as S
    from demoai.runtime.agent import continue_session, run_agent
    from demoai.runtime.replay import replay_recorded

    src = new_repo(tmp_path / "src", hub, "agent")
    commit_files(src, {"agents/t.agent.yaml": AGENT}, "agent")
    res = run_agent(src, "agents/t.agent.yaml", task="Create hello.txt containing hello, then finish.",
                    name="run1")
    assert res["steps"] >= 1
    pushed = P.push(src, "origin", all_refs=True, token=alice)
    assert {u["ref"] for u in pushed["updated"]} == {"refs/heads/main", "refs/sessions/run1"}

    dst = tmp_path / "dst"
    P.clone(hub.repo_url("alice", "agent"), dst, token=alice)
    with Repository(dst) as c:
        ids = [e.id for e in S.open_session(src, "run1").events()]
        assert [e.id for e in S.open_session(c, "run1").events()] == ids
        rec = replay_recorded(c, "run1")
        assert rec["verified"] and rec["events"] == len(ids)
        assert rec["head"] == replay_recorded(src, "run1")["head"]
        checked = P.fsck(c)
        assert checked["ok"], checked["problems"]
        assert checked["counts"]["sessions"] == 1

        # the session grows at the source (one more real step), is pushed, and fetched
        before = c.ref_value("refs/sessions/run1")
        grown = continue_session(src, "run1", max_steps=1)
        assert grown["steps"] > res["steps"]
        P.push(src, "origin", ["session:run1"], token=alice)
        fetched = P.fetch(c, "origin", token=alice)
        assert {"ref": "refs/sessions/run1", "old": before,
                "new": src.ref_value("refs/sessions/run1")} in fetched["updated"]
        ids2 = [e.id for e in S.open_session(src, "run1").events()]
        assert len(ids2) > len(ids) and ids2[:len(ids)] == ids
        assert [e.id for e in S.open_session(c, "run1").events()] == ids2
        assert replay_recorded(c, "run1")["events"] == len(ids2)
        assert P.fsck(c)["ok"]
    src.close()


# ----------------------------------------------------------------------------- incremental

def test_incremental_dataset_push_sends_about_the_edit(hub: HubServer, alice: str, tmp_path: Path) -> None:
    """A 1% row edit of a 20,000-row keyed dataset: the second push sends, and adds on the
    hub's disk, at most 3% of what the first did."""
    repo = new_repo(tmp_path / "src", hub, "inc-data")
    rows = text_rows(20_000, seed=7)
    commit_files(repo, {"d.jsonl": rows}, "v1", key="id")
    where = hub.repo_path("alice", "inc-data")
    first = P.push(repo, "origin", token=alice)["stats"]
    disk1 = dir_bytes(where)
    for i in random.Random(8).sample(range(len(rows)), len(rows) // 100):
        rows[i]["response"] = "edited: " + rows[i]["response"][::-1]
    c2 = commit_files(repo, {"d.jsonl": rows}, "v2: 1% of rows edited", key="id")
    second = P.push(repo, "origin", token=alice)["stats"]
    disk2 = dir_bytes(where)

    assert first["file_bytes_sent"] > 2_000_000          # the table really travelled
    assert 0 < second["bytes_sent"] <= 0.03 * first["bytes_sent"], (second, first)
    assert 0 < second["file_bytes_sent"] <= 0.03 * first["file_bytes_sent"]
    assert second["chunks_sent"] == 0 and second["files_sent"] < second["files"]
    assert 0 < disk2 - disk1 <= 0.03 * disk1, (disk1, disk2)
    assert hub_refs(hub, "alice", "inc-data")["refs/heads/main"] == c2
    with hub_repo(hub, "alice", "inc-data") as h:
        assert h.artifact_at(c2, "d.jsonl").digest == repo.artifact_at(c2, "d.jsonl").digest
    repo.close()


def test_incremental_model_push_sends_about_the_edit(hub: HubServer, alice: str, tmp_path: Path) -> None:
    """1 MiB rewritten in a 64 MiB model file: the second push sends, and adds on the hub's
    disk, at most 3% of what the first did. (64 MiB because 1 MiB is already 5% of 20 MB.)"""
    repo = new_repo(tmp_path / "src", hub, "inc-model")
    data = model_bytes(64 << 20, seed=11)
    commit_files(repo, {"m.gguf": data}, "v1")
    where = hub.repo_path("alice", "inc-model")
    first = P.push(repo, "origin", token=alice)["stats"]
    disk1 = dir_bytes(where)
    data[30 << 20:31 << 20] = np.random.default_rng(12).bytes(1 << 20)
    c2 = commit_files(repo, {"m.gguf": data}, "v2: 1 MiB rewritten")
    second = P.push(repo, "origin", token=alice)["stats"]
    disk2 = dir_bytes(where)

    assert first["bytes_sent"] >= 64 << 20 and first["chunks_sent"] == first["chunks"]
    assert (1 << 20) <= second["bytes_sent"] <= 0.03 * first["bytes_sent"], (second, first)
    assert 0 < second["chunks_sent"] <= 0.03 * first["chunks_sent"]
    assert (1 << 20) <= disk2 - disk1 <= 0.03 * disk1, (disk1, disk2)
    assert hub_refs(hub, "alice", "inc-model")["refs/heads/main"] == c2
    repo.close()


# ----------------------------------------------------------------------------- pull / fetch

def test_pull_fast_forward_non_fast_forward_and_force(hub: HubServer, alice: str, tmp_path: Path) -> None:
    """A second clone pulls a new commit (fast-forward); a push that would drop the hub's
    commit is refused by the client and by the hub (NonFastForward; a stale ``old`` is a
    RefConflict), and accepted with force."""
    url = hub.repo_url("alice", "pp")
    a = new_repo(tmp_path / "a", hub, "pp")
    c1 = commit_files(a, {"d.jsonl": text_rows(50), "p.prompt.yaml": PROMPT}, "one", key="id")
    P.push(a, "origin", token=alice)
    P.clone(url, tmp_path / "b", token=alice)
    P.clone(url, tmp_path / "c", token=alice)
    b, c = Repository(tmp_path / "b"), Repository(tmp_path / "c")

    # a second clone pulls a new commit: a fast-forward, files rewritten
    c2 = commit_files(a, {"p.prompt.yaml": PROMPT.replace("0.0", "0.7")}, "two")
    P.push(a, "origin", token=alice)
    merged = P.pull(b, "origin", token=alice)["merge"]
    assert merged["status"] == "fast-forward" and b.head_commit() == c2
    assert (b.root / "p.prompt.yaml").read_text() == PROMPT.replace("0.0", "0.7")

    # c committed on the old tip: its push is refused, on the client and on the hub
    c3 = commit_files(c, {"p.prompt.yaml": PROMPT.replace("0.0", "0.3")}, "three")
    with pytest.raises(E.NonFastForward):
        P.push(c, "origin", token=alice)
    ep = HttpEndpoint(url, alice)
    try:
        transfer(LocalEndpoint(c), ep, [c3], [c1])       # the objects may arrive ...
        with pytest.raises(E.NonFastForward):             # ... the ref may not move back
            ep.update_refs([{"ref": "refs/heads/main", "old": c2, "new": c3}])
        with pytest.raises(E.RefConflict):                # a stale `old` is a CAS failure
            ep.update_refs([{"ref": "refs/heads/main", "old": c1, "new": c3}], force=True)
    finally:
        ep.close()
    assert hub_refs(hub, "alice", "pp")["refs/heads/main"] == c2

    # --force moves it
    forced = P.push(c, "origin", force=True, token=alice)
    assert forced["updated"] == [{"ref": "refs/heads/main", "old": c2, "new": c3}]
    assert hub_refs(hub, "alice", "pp")["refs/heads/main"] == c3
    f = P.fetch(b, "origin", token=alice)
    assert {"ref": "refs/remotes/origin/main", "old": c2, "new": c3} in f["updated"]
    for r in (a, b, c):
        r.close()


def test_fetch_fast_forwards_a_session_that_grew(hub: HubServer, alice: str, tmp_path: Path) -> None:
    """Session refs travel too: fetch creates one, then fast-forwards it as it grows (no
    model needed: the steps are written with the session log API the runtime uses)."""
    from demoai.store.sessions import log as S
    a = new_repo(tmp_path / "a", hub, "sess")
    commit_files(a, {"p.prompt.yaml": PROMPT}, "one")
    log = S.create_session(a, "s1", agent="blake3:" + "2" * 64, meta={}, start={"task": "t"})
    log.append("note", text="step one")
    log.commit_step()
    P.push(a, "origin", all_refs=True, token=alice)
    b = Repository(P.clone(hub.repo_url("alice", "sess"), tmp_path / "b", token=alice)["path"])
    assert [e.id for e in S.open_session(b, "s1").events()] == [e.id for e in log.events()]
    old = b.ref_value("refs/sessions/s1")
    for k in range(3):
        log.append("note", text=f"more {k}")
        log.commit_step()
    log.close()
    P.push(a, "origin", ["session:s1"], token=alice)
    res = P.fetch(b, "origin", token=alice)
    assert res["updated"] == [{"ref": "refs/sessions/s1", "old": old, "new": a.ref_value("refs/sessions/s1")}]
    events = S.open_session(b, "s1").events()
    assert [e.id for e in events] == [e.id for e in S.open_session(a, "s1").events()] and len(events) == 5
    assert P.fsck(b)["ok"]
    a.close()
    b.close()


# ----------------------------------------------------------------------------- interruption

def test_interrupted_push_resumes_after_hub_crash(tmp_path: Path) -> None:
    """SIGKILL the hub while a 96 MiB model is on its way: the push fails with a typed
    RemoteError; after a restart the push sends only what had not landed, and both sides
    are sound. A table file half uploaded before the crash resumes from its offset."""
    size = 96 << 20
    server = HubServer(tmp_path / "hubdata")
    tokens = make_user(server.data, "alice")
    server.start()
    try:
        url = server.repo_url("alice", "big")
        repo = new_repo(tmp_path / "src")
        head = commit_files(repo, {"big.gguf": model_bytes(size, seed=21), "d.jsonl": text_rows(20_000, seed=4)},
                            "big model and a dataset", key="id")
        needs = LocalEndpoint(repo).needs([head], [])
        ep = HttpEndpoint(url, tokens["write"])
        ep.create()

        # a table file half uploaded (the first part of a push that stopped there)
        tid, rel, digest = max(needs.files, key=lambda f: local_table_file(repo, *f).stat().st_size)
        blob = local_table_file(repo, tid, rel, digest).read_bytes()
        half = min(len(blob) // 2, PART_BYTES)
        assert ep.upload_part(digest, 0, blob[:half]) == half

        # the push, slowed down between frames so the kill lands mid-transfer
        def slow(stage: str, done: int, total: int) -> None:
            if stage == "chunks" and done:
                time.sleep(0.15)
        t, out = threaded(P.push, repo, url, token=tokens["write"], progress=slow)
        packs = server.repo_path("alice", "big") / ".demoai" / "chunks" / "packs"
        deadline = time.monotonic() + 60
        while not list(packs.glob("*.idx")):
            assert time.monotonic() < deadline and t.is_alive(), "no pack landed on the hub"
            time.sleep(0.005)
        server.kill()
        t.join(timeout=120)
        assert not t.is_alive()
        # the hub is gone: the retries give up with the connection-level error itself
        assert type(out.get("error")) is E.RemoteError, out

        server.start()
        assert ep.upload_offset(digest) == half              # the part survived the crash
        with hub_repo(server, "alice", "big") as h:
            landed = set(h.blobs.iter_chunk_ids())
            assert h.refs() == {} and P.fsck(h)["ok"]           # nothing half-named
        assert 0 < len(landed & set(needs.chunks)) < len(needs.chunks)

        res = P.push(repo, url, token=tokens["write"])
        stats = res["stats"]
        assert res["updated"] == [{"ref": "refs/heads/main", "old": None, "new": head}]
        assert stats["chunks_sent"] == len(set(needs.chunks) - landed)     # only the rest
        assert stats["bytes_sent"] < 0.95 * size
        sizes = {f: local_table_file(repo, *f).stat().st_size for f in needs.files}
        assert stats["file_bytes_sent"] == sum(sizes.values()) - half
        assert P.fsck(repo)["ok"]
        with hub_repo(server, "alice", "big") as h:
            checked = P.fsck(h)
            assert checked["ok"], checked["problems"]
            assert h.refs()["refs/heads/main"] == head
        ep.close()
        repo.close()
    finally:
        server.stop()


# ----------------------------------------------------------------------------- integrity

def test_corrupted_frames_and_incomplete_ref_updates_are_refused(hub: HubServer, alice: str, tmp_path: Path) -> None:
    """Chunks, git objects and table files that do not hash to their ids are refused
    (IntegrityError) and leave nothing behind; a ref naming objects, chunks or files the hub
    lacks does not move (MissingObject)."""
    repo = new_repo(tmp_path / "src", hub, "integrity")
    c1 = commit_files(repo, {"m.gguf": model_bytes(1 << 20, seed=31)}, "one")
    P.push(repo, "origin", token=alice)
    c2 = commit_files(repo, {"m.gguf": model_bytes(2 << 20, seed=32), "d.jsonl": text_rows(200)},
                      "two", key="id")
    needs = LocalEndpoint(repo).needs([c2], [c1])
    before = hub_snapshot(hub, "alice", "integrity")
    new_chunks = [c for c in needs.chunks if c not in before["chunks"]]
    assert len(new_chunks) >= 2
    frames = [decode_chunk_frame(f) for f in LocalEndpoint(repo).chunk_frames(new_chunks[:2])]
    (id1, pay1, n1, fl1), (id2, pay2, n2, fl2) = frames[0][:2]
    ep = HttpEndpoint(hub.repo_url("alice", "integrity"), alice)
    try:
        flipped = bytes([pay2[0] ^ 1]) + pay2[1:]
        bad_frames = [
            encode_chunk_frame([(id2, flipped, n2, fl2)]),               # payload altered
            encode_chunk_frame([(id1, pay1, n1, fl1), (id2, flipped, n2, fl2)]),  # one bad of two
            encode_chunk_frame([(id1, pay2, n2, fl2)]),                  # another chunk's bytes
        ]
        for frame in bad_frames:
            with pytest.raises(E.IntegrityError):
                ep.put_chunks(frame)
        with pytest.raises(E.ProtocolError):                             # truncated frame
            ep.put_chunks(encode_chunk_frame([(id1, pay1, n1, fl1)])[:-10])

        blob = b"not what the id says"
        wrong = "0123456789abcdef0123456789abcdef01234567"
        with pytest.raises(E.IntegrityError):
            ep.put_git(encode_git_frame([(wrong, 3, blob)]))
        real = repo.git.object_store.get_raw(c2.encode())[1]
        with pytest.raises(E.IntegrityError):                            # a real commit, a forged id
            ep.put_git(encode_git_frame([(c1, 1, real)]))
        with pytest.raises(E.ProtocolError):
            ep.put_git(b"\x28\xb5\x2f\xfd garbage")
        # a table file whose bytes do not hash to its name is not installed, and the
        # received part is dropped so that a retry starts clean
        tid, rel, digest = needs.files[0]
        real_bytes = local_table_file(repo, tid, rel, digest).read_bytes()
        ep.upload_part(digest, 0, real_bytes[:-1] + bytes([real_bytes[-1] ^ 1]))
        with pytest.raises(E.IntegrityError):
            ep.finish_upload(tid, rel, digest)
        assert ep.upload_offset(digest) == 0
        assert ep.missing_files(needs.files) == needs.files
        assert hub_snapshot(hub, "alice", "integrity") == before
        assert ep.missing_git([wrong, c2]) == [wrong, c2]

        # a ref update naming objects the hub lacks is refused and the ref stays
        with pytest.raises(E.MissingObject):
            ep.update_refs([{"ref": "refs/heads/main", "old": c1, "new": c2}])
        # the git objects arrive, the chunks do not: still refused (check_complete)
        for frame in LocalEndpoint(repo).git_frames(needs.git):
            ep.put_git(frame)
        with pytest.raises(E.MissingObject):
            ep.update_refs([{"ref": "refs/heads/main", "old": c1, "new": c2}])
        with pytest.raises(E.MissingObject):
            ep.update_refs([{"ref": "refs/heads/other", "old": None, "new": c2}], force=True)
        after = hub_snapshot(hub, "alice", "integrity")
        assert after["refs"] == before["refs"] == {"refs/heads/main": c1}
        assert after["chunks"] == before["chunks"]
        # an honest push completes it
        assert P.push(repo, "origin", token=alice)["updated"][0]["new"] == c2
        with hub_repo(hub, "alice", "integrity") as h:
            assert P.fsck(h)["ok"]
    finally:
        ep.close()
        repo.close()


# ----------------------------------------------------------------------------- access

def _probe(url: str, token: str, op: str) -> type[BaseException] | None:
    """Run one protocol call as ``token`` ("" = anonymous); the error type, or None."""
    ep = HttpEndpoint(url, token)
    some = "a" * 40
    try:
        if op == "refs":
            ep.refs()
        elif op == "needs":
            ep.needs([some], [])
        elif op == "git/get":
            list(ep.git_frames([some]))
        elif op == "chunks/missing":
            ep.missing_chunks(["b" * 64])
        elif op == "git/put":
            ep.put_git(encode_git_frame([]))
        elif op == "chunks/put":
            ep.put_chunks(encode_chunk_frame([]))
        elif op == "refs/update":
            ep.update_refs([{"ref": "refs/heads/x", "old": None, "new": None}])
        elif op == "upload":
            ep.upload_part("c" * 64, 0, b"x")
        return None
    except E.DemoAIError as e:
        return type(e)
    finally:
        ep.close()


READS = ["refs", "needs", "git/get", "chunks/missing"]
WRITES = ["git/put", "chunks/put", "refs/update", "upload"]


def test_access_private_and_public_repositories(hub: HubServer, alice: str, tmp_path: Path) -> None:
    """Who may read and write, as hub/app.py documents it: a private repository is 404 to
    everyone but its owner (names do not leak), a bad token 401, a read token or another
    user writing 403; a public one is readable by anyone, writable by its owner only."""
    repo = new_repo(tmp_path / "src")
    head = commit_files(repo, {"p.prompt.yaml": PROMPT}, "one")
    P.push(repo, hub.repo_url("alice", "secret"), token=alice)
    P.push(repo, hub.repo_url("alice", "open"), token=alice, private=False)
    t = hub.tokens
    who = {"anonymous": "", "wrong": "dmai_not-a-token", "bob": t["bob"]["write"],
           "alice-read": t["alice"]["read"]}
    private = hub.repo_url("alice", "secret")
    public = hub.repo_url("alice", "open")
    expect = {
        (private, "anonymous"): (E.RemoteNotFound, E.AuthenticationRequired),   # as a missing repo
        (private, "wrong"): (E.AuthenticationRequired, E.AuthenticationRequired),
        (private, "bob"): (E.RemoteNotFound, E.RemoteNotFound),
        (private, "alice-read"): (None, E.PermissionDenied),
        (public, "anonymous"): (None, E.AuthenticationRequired),
        (public, "wrong"): (E.AuthenticationRequired, E.AuthenticationRequired),
        (public, "bob"): (None, E.PermissionDenied),
        (public, "alice-read"): (None, E.PermissionDenied),
    }
    got = {}
    for (url, name), (read, write) in expect.items():
        for op in READS:
            got[(url, name, op)] = _probe(url, who[name], op)
        for op in WRITES:
            got[(url, name, op)] = _probe(url, who[name], op)
    want = {(url, name, op): (read if op in READS else write)
            for (url, name), (read, write) in expect.items() for op in READS + WRITES}
    # MissingObject is the hub answering a read of an object it lacks: access was granted
    got = {k: (None if v is E.MissingObject else v) for k, v in got.items()}
    assert got == want
    for op in WRITES:                                   # the owner's write token may write
        assert _probe(private, alice, op) in (None, E.MissingObject)

    # through the porcelain: clone and push see the same typed errors
    P.clone(public, tmp_path / "anon-clone", token="")
    assert Repository(tmp_path / "anon-clone").head_commit() == head
    with pytest.raises(E.RemoteNotFound):
        P.clone(private, tmp_path / "anon-private", token="")
    assert not (tmp_path / "anon-private").exists()
    c2 = commit_files(repo, {"p.prompt.yaml": PROMPT + "# more\n"}, "two")
    with pytest.raises(E.PermissionDenied):
        P.push(repo, private, token=who["alice-read"])
    with pytest.raises(E.AuthenticationRequired):
        P.push(repo, public, token="")
    with pytest.raises(E.PermissionDenied):
        P.push(repo, public, token=who["bob"])
    with pytest.raises(E.AuthenticationRequired):
        P.push(repo, private, token=who["wrong"])
    # bob pushing to alice's private URL neither writes there nor creates a repo of his own
    with pytest.raises((E.RemoteNotFound, E.PermissionDenied)):
        P.push(repo, private, token=who["bob"])
    assert Hub.open(hub.data).meta.get_repo("bob", "secret") is None
    assert hub_refs(hub, "alice", "secret")["refs/heads/main"] == head != c2
    assert hub_refs(hub, "alice", "open")["refs/heads/main"] == head
    repo.close()


# ----------------------------------------------------------------------------- malformed

def _raw(hub: HubServer, method: str, path: str, token: str, body: bytes | None = None) -> tuple[int, dict]:
    """A request whose path goes out exactly as written (httpx would normalize `..`)."""
    c = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=30)
    try:
        c.request(method, path, body=body, headers={"Authorization": f"Bearer {token}",
                                                    "Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
    finally:
        c.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, {}


BAD_NAMES = ["..", "%2e%2e", "%2E%2E", ".hidden", "-dash", "a" * 65, "x.git", "x.lock", "a..b", "%00x", "a%20b"]


def test_malformed_repository_names_are_refused(hub: HubServer, alice: str) -> None:
    """Owner and repository names that could leave ``repos/`` (``..``, encoded dots,
    slashes) or are otherwise invalid get 400 invalid_ref_name (or no route), and nothing
    is created on the hub's disk or in its metadata."""
    repos_before = {r.full_name for r in Hub.open(hub.data).meta.repos()}
    files_before = listing(hub.data / "repos")
    for bad in BAD_NAMES:
        for owner, name in (("alice", bad), (bad, "x"), (bad, bad)):
            for method, route, body in (("GET", "refs", None), ("POST", "git/put", b""),
                                        ("POST", "refs", b'{"updates": []}')):
                status, data = _raw(hub, method, f"/api/v1/repos/{owner}/{name}/{route}", alice, body)
                assert status == 400 and data["error"]["code"] == "invalid_ref_name", (owner, name, route, data)
    # slashes cannot be smuggled into a name: an encoded one finds no route at all
    for path in ("/api/v1/repos/alice/a%2Fb/refs", "/api/v1/repos/alice%2F..%2Fbob/x/refs",
                 "/api/v1/repos/alice/../../x/refs"):
        status, _ = _raw(hub, "GET", path, alice)
        assert status in (400, 404), path
    for bad in ("..", ".hidden", "x.lock", "a" * 65):       # refused before any request, too
        with pytest.raises(E.InvalidRefName):
            HttpEndpoint(f"{hub.url}/alice/{bad}", alice)
    client = HubClient(hub.url, alice)
    try:
        for bad in ("..", ".hidden", "a/b", "../bob/x", "x.lock", "x.git", ""):
            with pytest.raises(E.InvalidRefName):
                client.json("POST", "/api/v1/repos", {"name": bad})
        with pytest.raises(E.ProtocolError):     # over the length bound: a validation error
            client.json("POST", "/api/v1/repos", {"name": "a" * 65})
    finally:
        client.close()
    assert {r.full_name for r in Hub.open(hub.data).meta.repos()} == repos_before
    assert listing(hub.data / "repos") == files_before


BAD_REFS = ["refs/heads/../../x", "refs/heads/../../../../etc/x", "refs/remotes/origin/x", "HEAD",
            "refs/heads/a b", "refs/heads/a.lock", "refs/heads/", "refs/heads/a..b", "refs/x",
            "refs/heads/a\\b", "refs/heads/~x", "refs/heads/x:y", "refs/heads//x", "/refs/heads/x",
            "refs/heads/.x", "refs/heads/x.", "refs/heads/a@{1}", "refs/heads/\u00e9\n"]


def test_ref_injection_and_table_path_escapes_are_refused(hub: HubServer, alice: str, tmp_path: Path) -> None:
    """Ref updates outside refs/heads|tags|sessions or with invalid names, and table file
    names escaping their table folder, are 400s; no ref moves and no file lands anywhere
    but the uploads folder."""
    repo = new_repo(tmp_path / "src", hub, "refs")
    head = commit_files(repo, {"d.jsonl": text_rows(30)}, "one", key="id")
    P.push(repo, "origin", token=alice)
    before = hub_snapshot(hub, "alice", "refs")
    outside = set(listing(hub.data))
    ep = HttpEndpoint(hub.repo_url("alice", "refs"), alice)
    try:
        for bad in BAD_REFS:
            for updates in ([{"ref": bad, "old": None, "new": head}],
                            # a valid update beside a bad one: all or none
                            [{"ref": "refs/heads/fine", "old": None, "new": head},
                             {"ref": bad, "old": None, "new": head}]):
                with pytest.raises(E.InvalidRefName):
                    ep.update_refs(updates, force=True)
        with pytest.raises(E.InvalidRefName):       # deleting HEAD is no better
            ep.update_refs([{"ref": "HEAD", "old": head, "new": None}], force=True)

        tid, rel, digest = LocalEndpoint(repo).needs([head], []).files[0]
        for bad_rel in ("../x", "data/../../x", "data/../../../../../tmp/x", "/etc/passwd", "data/./x",
                        "data/x/..", "other/x", "data\\..\\x", "data/", "data//x"):
            with pytest.raises(E.ProtocolError):
                ep.missing_files([(tid, bad_rel, digest)])
            with pytest.raises(E.ProtocolError):
                ep.client.request("POST", ep.prefix + "/files/read", json_body={
                    "table_id": tid, "rel": bad_rel, "digest": digest, "offset": 0, "length": 10})
            with pytest.raises(E.ProtocolError):
                ep.finish_upload(tid, bad_rel, digest)
        for bad_tid in ("../" + tid[3:], tid.upper(), tid + "x"):
            with pytest.raises(E.ProtocolError):
                ep.missing_files([(bad_tid, rel, digest)])
        # a complete, verified upload still cannot be installed outside its table folder
        import blake3
        payload = b"escape attempt"
        h = blake3.blake3(payload).hexdigest()
        ep.upload_part(h, 0, payload)
        with pytest.raises(E.ProtocolError):
            ep.finish_upload(tid, "data/../../../../x", h)
        for bad_digest in ("../" + "a" * 61, "A" * 64, "a" * 63):
            with pytest.raises((E.ProtocolError, E.RemoteNotFound)):
                ep.upload_offset(bad_digest)
    finally:
        ep.close()
    after = hub_snapshot(hub, "alice", "refs")
    assert after["refs"] == before["refs"] == {"refs/heads/main": head}
    new_files = set(after["files"]) - set(before["files"])
    assert all(f.startswith(".demoai/uploads/") for f in new_files), new_files
    assert set(listing(hub.data)) - outside <= {f"repos/alice/refs/{f}" for f in new_files}
    repo.close()


# ----------------------------------------------------------------------------- size bounds

def test_oversized_bodies_and_id_lists_are_refused(hub: HubServer, alice: str, tmp_path: Path) -> None:
    """A body over the hub's limit is 413 RequestTooLarge (with or without Content-Length);
    frames, parts and id lists over the protocol's bounds are 4xx ProtocolErrors."""
    repo = new_repo(tmp_path / "src", hub, "sizes")
    commit_files(repo, {"p.prompt.yaml": PROMPT}, "one")
    P.push(repo, "origin", token=alice)
    before = hub_snapshot(hub, "alice", "sizes")
    ep = HttpEndpoint(hub.repo_url("alice", "sizes"), alice)
    try:
        big = b"\0" * (MAX_BODY + 1)
        with pytest.raises(E.RequestTooLarge) as e:
            ep.put_chunks(big)
        assert e.value.limit == MAX_BODY
        with pytest.raises(E.RequestTooLarge):
            ep.put_git(big)
        with pytest.raises(E.RequestTooLarge):
            ep.upload_part("d" * 64, 0, big)
        # a body without a Content-Length is counted as it streams
        def stream():
            for _ in range(MAX_BODY // (1 << 20) + 2):
                yield b"\0" * (1 << 20)
        r = httpx.post(ep.client.base + ep.prefix + "/chunks/put", content=stream(), timeout=60,
                       headers={"Authorization": f"Bearer {alice}"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        # under the body bound but over the protocol's own bounds
        with pytest.raises(E.ProtocolError):
            ep.put_chunks(b"\0" * (FRAME_BYTES + (2 << 20)))
        with pytest.raises(E.ProtocolError):
            ep.upload_part("d" * 64, 0, b"\0" * (PART_BYTES + 1))
        # id lists over their bounds
        with pytest.raises(E.ProtocolError):
            ep.missing_git(["0" * 40] * (ID_BATCH + 1))
        with pytest.raises(E.ProtocolError):
            ep.missing_chunks(["0" * 64] * (ID_BATCH + 1))
        with pytest.raises(E.ProtocolError):
            ep.needs(["0" * 40] * 10_001, [])
        for route, ids in (("/git/get", ["0" * 40]), ("/chunks/get", ["0" * 64])):
            with pytest.raises(E.ProtocolError):      # the client batches; a raw request does not
                ep.client.request("POST", ep.prefix + route, json_body={"ids": ids * (ID_BATCH + 1)})
        assert ep.refs()["refs"] == before["refs"]      # the hub is still answering
    finally:
        ep.close()
    assert hub_snapshot(hub, "alice", "sizes") == before
    repo.close()


# ----------------------------------------------------------------------------- concurrency

def test_concurrent_pushes_to_one_branch_one_wins_none_lost(hub: HubServer, alice: str, tmp_path: Path) -> None:
    """Two clones push different commits to main at the same instant: exactly one wins,
    the other gets NonFastForward or RefConflict; after it pulls and pushes again the
    hub's history holds both commits."""
    url = hub.repo_url("alice", "race")
    a = new_repo(tmp_path / "a", hub, "race")
    base = commit_files(a, {"p.prompt.yaml": PROMPT, "d.jsonl": text_rows(100)}, "base", key="id")
    P.push(a, "origin", token=alice)
    a.close()
    for round_ in range(2):
        b = Repository(P.clone(url, tmp_path / f"b{round_}", token=alice)["path"])
        c = Repository(P.clone(url, tmp_path / f"c{round_}", token=alice)["path"])
        cb = commit_files(b, {f"b{round_}.prompt.yaml": PROMPT.replace("qa", f"b{round_}")}, f"b {round_}")
        cc = commit_files(c, {"m.gguf": model_bytes(2 << 20, seed=40 + round_)}, f"c {round_}")
        gate = threading.Barrier(2, timeout=30)

        def go(repo: Repository) -> dict:
            gate.wait()
            return P.push(repo, "origin", token=alice)
        runs = [threaded(go, b), threaded(go, c)]
        for t, _ in runs:
            t.join(timeout=120)
            assert not t.is_alive()
        outcomes = [out for _, out in runs]
        won = [i for i, o in enumerate(outcomes) if "result" in o]
        assert len(won) == 1, outcomes
        loser = outcomes[1 - won[0]]["error"]
        assert isinstance(loser, (E.NonFastForward, E.RefConflict)), loser
        winner, other = (b, c) if won[0] == 0 else (c, b)
        assert hub_refs(hub, "alice", "race")["refs/heads/main"] == winner.head_commit()
        # the loser merges and pushes: both commits are in the hub's history
        assert P.pull(other, "origin", token=alice)["merge"]["status"] == "merged"
        P.push(other, "origin", token=alice)
        tip = hub_refs(hub, "alice", "race")["refs/heads/main"]
        with hub_repo(hub, "alice", "race") as h:
            history = {ci.id for ci in h.walk(tip)}
        assert {cb, cc, base} <= history and tip == other.head_commit()
        b.close()
        c.close()


def test_concurrent_pushes_of_one_new_dataset_both_succeed(hub: HubServer, alice: str, tmp_path: Path) -> None:
    """Two pushes upload the same 10 MB table file side by side (two branches of one
    commit): their parts interleave and both finish; neither fails on the other's install."""
    a = new_repo(tmp_path / "a")
    head = commit_files(a, {"d.jsonl": text_rows(100_000, seed=3)}, "one", key="id")
    a.set_ref("refs/heads/x", head, None, "test: a second branch")
    files = LocalEndpoint(a).needs([head], []).files
    assert max(local_table_file(a, *f).stat().st_size for f in files) > PART_BYTES   # two parts
    a.close()
    for round_ in range(3):
        url = hub.repo_url("alice", f"twins{round_}")
        ep = HttpEndpoint(url, alice)
        ep.create()
        ep.close()
        gate = threading.Barrier(2, timeout=30)

        def go(ref: str) -> dict:
            with Repository(tmp_path / "a") as r:   # a repository object per thread
                gate.wait()
                return P.push(r, url, [ref], token=alice)
        runs = [threaded(go, "main"), threaded(go, "x")]
        for t, _ in runs:
            t.join(timeout=120)
            assert not t.is_alive()
        assert all("result" in out for _, out in runs), [out.get("error") for _, out in runs]
        assert hub_refs(hub, "alice", f"twins{round_}") == {"refs/heads/main": head, "refs/heads/x": head}
        with hub_repo(hub, "alice", f"twins{round_}") as h:
            checked = P.fsck(h)
            assert checked["ok"], checked["problems"]
            assert not list((h.control / "uploads").glob("*.part"))   # no part left behind
