"""``demoai model pull``: a model or adapter from a real hub on 127.0.0.1, committed on the
current branch at the same path with lineage naming the remote commit; only chunks the
local store lacks travel; a missing name or rev is a typed error that lists what the hub
has; a failed pull leaves no commit and the working tree as it was."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from demoai import errors as E
from demoai import porcelain as P
from demoai.cli import main
from demoai.porcelain import model as M
from demoai.store import Repository
from tests.helpers.hub import HubServer, running_hub

pytestmark = pytest.mark.timeout(180)


def write_gguf(path: Path, seed: int, patch: int | None = None) -> Path:
    """A small real GGUF (llama, 2 blocks, ~1.5 MB of float32 tensors); ``patch`` rewrites
    one row of the second tensor, so two versions share all but a chunk or two."""
    import gguf
    rng = np.random.default_rng(seed)
    tensors = {f"blk.{i}.attn_q.weight": rng.standard_normal((96, 2048), dtype=np.float32)
               for i in range(2)}
    if patch is not None:
        tensors["blk.1.attn_q.weight"][40] = patch
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_block_count(2)
    w.add_context_length(64)
    for name, t in tensors.items():
        w.add_tensor(name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    with running_hub(tmp_path_factory.mktemp("hub") / "data") as server:
        yield server


@pytest.fixture
def token(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> str:
    t = hub.tokens["alice"]["write"]
    monkeypatch.setenv("DEMOAI_TOKEN", t)       # what the CLI reads (`demoai login` otherwise)
    return t


def source_repo(tmp_path: Path, hub: HubServer, name: str) -> Repository:
    """A repository with models/tiny.gguf (v1, tagged v1; the commit that added it is
    ``src.model_commit``) and an adapter, pushed to the hub."""
    src = P.init(tmp_path / "src")
    write_gguf(tmp_path / "w" / "tiny.gguf", seed=1)
    src.model_commit = M.import_model(src, tmp_path / "w" / "tiny.gguf", dest="models/tiny.gguf").commit
    ad = tmp_path / "w" / "lora"
    ad.mkdir()
    (ad / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "base_model_name_or_path": "models/tiny.gguf",
         "target_modules": ["q_proj"]}))
    (ad / "adapter_model.safetensors").write_bytes(bytes(np.random.default_rng(3).bytes(4000)))
    M.import_model(src, ad, dest="adapters/lora")
    P.tag(src, "v1")
    P.remote_add(src, "origin", hub.repo_url("alice", name))
    P.push(src, "origin", all_refs=True, token=hub.tokens["alice"]["write"])
    return src


def dest_repo(tmp_path: Path, hub: HubServer, name: str) -> Repository:
    dst = P.init(tmp_path / "dst")
    (dst.root / "notes.prompt.yaml").write_text("name: n\ntemplate: hi\n")
    P.add(dst, [dst.root / "notes.prompt.yaml"])
    P.commit(dst, "first")
    P.remote_add(dst, "origin", hub.repo_url("alice", name))
    return dst


def test_pull_commits_model_with_lineage_and_sends_only_missing_chunks(tmp_path, hub, token,
                                                                       monkeypatch):
    src = source_repo(tmp_path, hub, "pull1")
    v1_commit = src.head_commit()
    dst = dest_repo(tmp_path, hub, "pull1")
    head0 = dst.head_commit()

    r = M.pull_model(dst, "origin", "tiny", token=token)
    assert r.path == r.remote_path == "models/tiny.gguf" and r.kind == "model"
    assert r.remote_commit == v1_commit and r.ref == "refs/heads/main"
    assert r.chunks > 10 and r.chunks_received == r.chunks          # nothing was here yet
    assert r.bytes_received >= r.size * 0.9
    got = dst.workpath("models/tiny.gguf").read_bytes()
    assert got == src.workpath("models/tiny.gguf").read_bytes()
    assert dst.artifact_at("HEAD", "models/tiny.gguf").digest == src.artifact_at("HEAD", "models/tiny.gguf").digest
    info = dst.commit_info(r.commit)
    assert list(info.parents) == [head0]                                 # on the current branch
    lin = dst.lineage(r.commit)
    assert lin["parameters"]["pull"]["commit"] == v1_commit
    assert lin["parameters"]["pull"]["url"] == hub.repo_url("alice", "pull1")
    assert lin["parameters"]["pull"]["added_in"] == src.model_commit   # the remote commit that made it
    assert lin["inputs"]["models/tiny.gguf"] == r.digest
    assert [c["path"] for c in lin["changes"]] == ["models/tiny.gguf"]  # only that path
    assert not dst.has_object(v1_commit)       # remote history is not half-fetched into the store
    st = P.status(dst)
    assert (st["staged"], st["unstaged"], st["untracked"]) == ([], [], []), st
    assert P.fsck(dst)["ok"]

    # Pulling again: nothing new, nothing committed, nothing sent.
    again = M.pull_model(dst, "origin", "models/tiny.gguf", token=token)
    assert again.commit is None and again.chunks_received == 0

    # v2 changes one row: only the chunks around it travel.
    write_gguf(tmp_path / "w" / "tiny.gguf", seed=1, patch=7)
    v2 = M.import_model(src, tmp_path / "w" / "tiny.gguf", dest="models/tiny.gguf")
    P.push(src, "origin", token=token)
    r2 = M.pull_model(dst, "origin", "tiny.gguf", token=token)
    assert r2.remote_commit == v2.commit and r2.digest == v2.digest
    assert 0 < r2.chunks_received <= 4 < r2.chunks
    assert r2.bytes_received < r2.size / 3
    assert dst.workpath("models/tiny.gguf").read_bytes() == src.workpath("models/tiny.gguf").read_bytes()

    # --rev picks a tag: v1 again, as a new commit on top.
    r3 = M.pull_model(dst, "origin", "tiny", rev="v1", token=token)
    assert r3.ref == "refs/tags/v1" and r3.remote_commit == v1_commit and r3.chunks_received == 0
    assert dst.artifact_at("HEAD", "models/tiny.gguf").digest == r.digest

    # model show lists it, with where it came from.
    monkeypatch.chdir(dst.root)
    out = CliRunner().invoke(main, ["model", "show", "tiny", "--json"])
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output)
    assert shown["path"] == "models/tiny.gguf" and shown["lineage"]["commit"] == r3.commit
    assert shown["lineage"]["pulled_from"]["commit"] == v1_commit
    text = CliRunner().invoke(main, ["model", "show", "tiny"])
    assert text.exit_code == 0 and "pulled from" in text.output and v1_commit[:12] in text.output


def test_pull_adapter_through_the_cli(tmp_path, hub, token, monkeypatch):
    src = source_repo(tmp_path, hub, "pull2")
    dst = dest_repo(tmp_path, hub, "pull2")
    monkeypatch.chdir(dst.root)
    res = CliRunner().invoke(main, ["model", "pull", "origin", "lora", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert got["path"] == "adapters/lora" and got["kind"] == "adapter" and got["commit"]
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        assert (dst.root / "adapters/lora" / f).read_bytes() == (src.root / "adapters/lora" / f).read_bytes()
    res = CliRunner().invoke(main, ["model", "list", "--json"])
    assert [r["path"] for r in json.loads(res.output)] == ["adapters/lora"]
    res = CliRunner().invoke(main, ["model", "pull", "origin", "lora", "--as", "adapters/other"])
    assert res.exit_code == 0 and "0 of" in res.output, res.output   # every chunk was here


def test_missing_name_or_rev_is_typed_and_lists_what_the_remote_has(tmp_path, hub, token, monkeypatch):
    source_repo(tmp_path, hub, "pull3")
    dst = dest_repo(tmp_path, hub, "pull3")
    head = dst.head_commit()
    with pytest.raises(E.PathNotFound) as e:
        M.pull_model(dst, "origin", "nope", token=token)
    assert e.value.fields["available"] == ["adapters/lora", "models/tiny.gguf"]
    assert "models/tiny.gguf" in str(e.value)
    with pytest.raises(E.RefNotFound) as e:
        M.pull_model(dst, "origin", "tiny", rev="nope", token=token)
    assert e.value.fields["available"] == ["main", "v1"]
    monkeypatch.chdir(dst.root)
    res = CliRunner().invoke(main, ["model", "pull", "origin", "nope", "--json"])
    assert res.exit_code == 1
    err = json.loads(res.stderr.strip().splitlines()[-1])["error"]
    assert err["code"] == "path_not_found" and "adapters/lora" in err["message"]
    assert dst.head_commit() == head and not (dst.root / "models").exists()
    assert not list((dst.control / "tmp").glob("pull-*"))       # the scratch copy is gone


def test_failed_pull_leaves_nothing_half_done(tmp_path, hub, token, monkeypatch):
    source_repo(tmp_path, hub, "pull4")
    dst = dest_repo(tmp_path, hub, "pull4")
    head = dst.head_commit()

    # A chunk corrupted on the wire: refused before any file is written.
    from demoai.http.hub import HttpEndpoint
    from demoai.store.transfer import decode_chunk_frame, encode_chunk_frame
    real = HttpEndpoint.chunk_frames

    def corrupt(self, ids):
        for frame in real(self, ids):
            recs = decode_chunk_frame(frame)
            cid, payload, n, flags = recs[0]
            recs[0] = (cid, payload[:-1] + bytes([payload[-1] ^ 1]), n, flags)
            yield encode_chunk_frame(recs)
    monkeypatch.setattr(HttpEndpoint, "chunk_frames", corrupt)
    with pytest.raises(E.IntegrityError):
        M.pull_model(dst, "origin", "tiny", token=token)
    assert dst.head_commit() == head and not dst.workpath("models/tiny.gguf").exists()
    monkeypatch.undo()

    # A commit that fails after the file was written: the file and the index go back.
    monkeypatch.setenv("DEMOAI_TOKEN", token)
    M.pull_model(dst, "origin", "tiny", rev="v1", token=token)
    before = dst.workpath("models/tiny.gguf").read_bytes()
    index_before = dst.index.read().entries
    head = dst.head_commit()
    write_gguf(tmp_path / "w2" / "tiny.gguf", seed=9)
    src2 = Repository(tmp_path / "src")
    M.import_model(src2, tmp_path / "w2" / "tiny.gguf", dest="models/tiny.gguf")
    P.push(src2, "origin", token=token)

    def boom(*a, **k):
        raise E.LockTimeout("simulated")
    monkeypatch.setattr(M, "commit", boom)
    with pytest.raises(E.LockTimeout):
        M.pull_model(dst, "origin", "tiny", token=token)
    assert dst.head_commit() == head
    assert dst.workpath("models/tiny.gguf").read_bytes() == before
    assert dst.index.read().entries == index_before

    # Local edits are never overwritten without --force.
    monkeypatch.undo()
    dst.workpath("models/tiny.gguf").write_bytes(b"GGUF local edit")
    with pytest.raises(E.DirtyWorkingTree):
        M.pull_model(dst, "origin", "tiny", token=token)
    assert dst.workpath("models/tiny.gguf").read_bytes() == b"GGUF local edit"
    r = M.pull_model(dst, "origin", "tiny", token=token, force=True)
    assert r.commit and dst.workpath("models/tiny.gguf").read_bytes() == (tmp_path / "w2" / "tiny.gguf").read_bytes()
