"""The verbs end to end on real temporary repositories (dulwich + Lance + chunk packs),
checked with the real ``git`` binary where history is concerned."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from demoai import errors as E
from demoai import porcelain as P
from demoai.store.git.repo import Repository
from tests.conftest import rows

PROMPT = """name: qa
template: |
  Question: {{question}}
  Answer:
parameters:
  temperature: 0.0
  max_tokens: 16
"""


def git(repo: Repository, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "--git-dir", str(repo.control / "git"), *args],
                          capture_output=True, text=True)


def snapshot_dir(root: Path) -> dict[str, bytes]:
    """Every file under .demoai (for 'repository untouched' checks)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted((root / ".demoai").rglob("*"))
            if p.is_file() and "locks" not in p.parts}


def test_init_add_commit_read_by_git(repo: Repository, tmp_dir) -> None:
    tmp_dir.gen({"data/train.jsonl": rows(50), "prompts/qa.prompt.yaml": PROMPT,
                 "models/tiny.gguf": b"GGUF" + bytes(range(256)) * 400})
    res = P.add(repo, ["data/train.jsonl"], key="id") + P.add(repo, ["prompts", "models"])
    assert {r.path: r.kind for r in res} == {"data/train.jsonl": "dataset",
                                             "prompts/qa.prompt.yaml": "prompt", "models/tiny.gguf": "model"}
    c1 = P.commit(repo, "first")
    assert git(repo, "fsck", "--full").returncode == 0
    assert git(repo, "fsck", "--full").stdout.strip() == ""
    logged = git(repo, "log", "--format=%H %s").stdout.split()
    assert logged[:2] == [c1, "first"]
    manifest = json.loads(git(repo, "show", "HEAD:data/train.jsonl").stdout)
    assert manifest["kind"] == "dataset" and manifest["rows"] == 50 and manifest["key"] == "id"
    lineage = json.loads(git(repo, "show", "HEAD:.demoai/lineage.json").stdout)
    assert set(lineage["inputs"]) == {"data/train.jsonl", "prompts/qa.prompt.yaml", "models/tiny.gguf"}
    assert lineage["environment"]["python"] and "dulwich" in lineage["environment"]["packages"]
    with pytest.raises(E.NothingToCommit):
        P.commit(repo, "again")


def test_identical_content_identical_id(repo: Repository, tmp_dir) -> None:
    tmp_dir.gen({"a.jsonl": rows(20), "b.jsonl": list(reversed(rows(20)))})
    import pyarrow as pa
    import pyarrow.csv as pacsv
    pacsv.write_csv(pa.Table.from_pylist(rows(20)), str(tmp_dir / "c.csv"))
    res = {r.path: r.artifact.digest for r in P.add(repo, ["a.jsonl", "b.jsonl", "c.csv"])}
    assert res["a.jsonl"] == res["b.jsonl"] == res["c.csv"]


def test_typed_diff_dataset_prompt_model(repo: Repository, tmp_dir) -> None:
    import random
    rnd = random.Random(1)
    blob = bytearray(b"GGUF" + rnd.randbytes(3_000_000))
    tmp_dir.gen({"d.jsonl": rows(200), "qa.prompt.yaml": PROMPT, "m.gguf": bytes(blob)})
    P.add(repo, ["d.jsonl"], key="id")
    P.add(repo, ["qa.prompt.yaml", "m.gguf"])
    P.commit(repo, "v1")
    data = rows(200)
    data[3]["response"] = "changed"
    data[7]["label"] = "b"
    del data[10]
    data.append({"id": 999, "prompt": "new", "response": "row", "label": "a"})
    tmp_dir.gen({"d.jsonl": data, "qa.prompt.yaml": PROMPT.replace("Answer:", "Short answer:")})
    for i in range(1_000_000, 1_100_000):
        blob[i] = rnd.randrange(256)
    (tmp_dir / "m.gguf").write_bytes(bytes(blob))
    P.add(repo, ["d.jsonl", "qa.prompt.yaml", "m.gguf"])
    assert P.diff(repo) == []      # the working tree holds what was added
    changes = {d["path"]: d for d in P.diff(repo, staged=True)}
    d = changes["d.jsonl"]
    assert (d["added"], d["removed"], d["modified"]) == (1, 1, 2)
    mods = {m["key"]: m["changed"] for m in d["samples"]["modified"]}
    assert mods == {3: ["response"], 7: ["label"]}
    assert d["column_changes"] == {"response": 1, "label": 1}
    p = changes["qa.prompt.yaml"]
    assert (p["added"], p["removed"]) == (1, 1) and "+  Short answer:" in p["text"]
    m = changes["m.gguf"]
    assert m["kind"] == "model" and 0 < m["changed_share"] < 0.3
    stat = P.diff(repo, staged=True, stat=True)
    assert [(s["path"], s["added"], s["removed"], s["modified"]) for s in stat][0] == ("d.jsonl", 1, 1, 2)
    P.commit(repo, "v2")
    assert {x["path"] for x in P.diff(repo, "HEAD~1", "HEAD")} == {"d.jsonl", "qa.prompt.yaml", "m.gguf"}


def test_branch_checkout_restores_files(repo: Repository, tmp_dir) -> None:
    tmp_dir.gen({"d.jsonl": rows(10), "qa.prompt.yaml": PROMPT})
    P.add(repo, ["."])
    P.commit(repo, "base")
    P.checkout(repo, "exp", create=True)
    tmp_dir.gen({"qa.prompt.yaml": PROMPT.replace("0.0", "0.5")})
    P.add(repo, ["qa.prompt.yaml"])
    P.commit(repo, "exp change")
    P.checkout(repo, "main")
    assert (tmp_dir / "qa.prompt.yaml").read_text() == PROMPT
    assert P.status(repo)["staged"] == [] and P.status(repo)["unstaged"] == []
    (tmp_dir / "qa.prompt.yaml").write_text(PROMPT + "# local edit\n")
    with pytest.raises(E.DirtyWorkingTree):
        P.checkout(repo, "exp")
    P.checkout(repo, "exp", force=True)
    assert "0.5" in (tmp_dir / "qa.prompt.yaml").read_text()
    P.checkout(repo, "main")
    (tmp_dir / "d.jsonl").unlink()
    P.checkout(repo, "exp", force=True)
    assert len((tmp_dir / "d.jsonl").read_text().splitlines()) == 10


def test_merge_fast_forward_and_three_way(repo: Repository, tmp_dir) -> None:
    tmp_dir.gen({"d.jsonl": rows(30), "qa.prompt.yaml": PROMPT})
    P.add(repo, ["d.jsonl"], key="id")
    P.add(repo, ["qa.prompt.yaml"])
    base = P.commit(repo, "base")
    P.checkout(repo, "exp", create=True)
    d = rows(30)
    d[1]["label"] = "exp"
    tmp_dir.gen({"d.jsonl": d, "qa.prompt.yaml": PROMPT.replace("name: qa", "name: qa-exp")})
    P.add(repo, ["."])
    P.commit(repo, "exp")
    P.checkout(repo, "main")
    assert P.merge(repo, "main")["status"] == "up-to-date"
    d2 = rows(30)
    d2[1]["response"] = "main answer"     # same row, other column: merges cell by cell
    d2.append({"id": 500, "prompt": "p", "response": "r", "label": "a"})
    tmp_dir.gen({"d.jsonl": d2, "qa.prompt.yaml": PROMPT.replace("max_tokens: 16", "max_tokens: 32")})
    P.add(repo, ["."])
    P.commit(repo, "main side")
    res = P.merge(repo, "exp")
    assert res["status"] == "merged"
    info = repo.commit_info(res["commit"])
    assert len(info.parents) == 2
    got = {r["id"]: r for r in P.query(repo, "SELECT * FROM table('d.jsonl')").to_pylist()}
    assert got[1]["label"] == "exp" and got[1]["response"] == "main answer" and 500 in got
    text = (tmp_dir / "qa.prompt.yaml").read_text()
    assert "name: qa-exp" in text and "max_tokens: 32" in text
    assert git(repo, "fsck", "--full").returncode == 0
    # a branch forked at the base fast-forwards
    P.fork(repo, base, "old")
    P.checkout(repo, "old")
    assert P.merge(repo, "main")["status"] == "fast-forward"
    assert repo.head_commit() == res["commit"]


def test_merge_conflicts_refused_until_resolved(repo: Repository, tmp_dir) -> None:
    tmp_dir.gen({"d.jsonl": rows(10), "qa.prompt.yaml": PROMPT})
    P.add(repo, ["d.jsonl"], key="id")
    P.add(repo, ["qa.prompt.yaml"])
    P.commit(repo, "base")
    P.checkout(repo, "exp", create=True)
    d = rows(10)
    d[2]["response"] = "theirs"
    tmp_dir.gen({"d.jsonl": d, "qa.prompt.yaml": PROMPT.replace("temperature: 0.0", "temperature: 0.9")})
    P.add(repo, ["."])
    P.commit(repo, "exp")
    P.checkout(repo, "main")
    d = rows(10)
    d[2]["response"] = "ours"
    tmp_dir.gen({"d.jsonl": d, "qa.prompt.yaml": PROMPT.replace("temperature: 0.0", "temperature: 0.1")})
    P.add(repo, ["."])
    head = P.commit(repo, "main")
    with pytest.raises(E.MergeConflict) as exc:
        P.merge(repo, "exp")
    paths = {c["path"]: c for c in exc.value.conflicts}
    assert set(paths) == {"d.jsonl", "qa.prompt.yaml"}
    assert paths["d.jsonl"]["rows"][0]["key"] == 2
    text = (tmp_dir / "qa.prompt.yaml").read_text()
    assert "<<<<<<< HEAD" in text and ">>>>>>> exp" in text
    with pytest.raises(E.MergeConflict):
        P.commit(repo, "merge")
    assert repo.head_commit() == head
    tmp_dir.gen({"qa.prompt.yaml": PROMPT.replace("temperature: 0.0", "temperature: 0.5"), "d.jsonl": d})
    P.add(repo, ["qa.prompt.yaml", "d.jsonl"])
    merged = P.commit(repo, "merge exp")
    assert len(repo.commit_info(merged).parents) == 2
    assert repo.merge_state() is None


def test_merge_abort(repo: Repository, tmp_dir) -> None:
    tmp_dir.gen({"qa.prompt.yaml": PROMPT})
    P.add(repo, ["qa.prompt.yaml"])
    P.commit(repo, "base")
    P.checkout(repo, "exp", create=True)
    tmp_dir.gen({"qa.prompt.yaml": PROMPT.replace("qa", "x")})
    P.add(repo, ["qa.prompt.yaml"])
    P.commit(repo, "exp")
    P.checkout(repo, "main")
    tmp_dir.gen({"qa.prompt.yaml": PROMPT.replace("qa", "y")})
    P.add(repo, ["qa.prompt.yaml"])
    P.commit(repo, "main")
    with pytest.raises(E.MergeConflict):
        P.merge(repo, "exp")
    P.abort_merge(repo)
    assert (tmp_dir / "qa.prompt.yaml").read_text() == PROMPT.replace("qa", "y")
    assert P.status(repo)["merging"] is None and P.status(repo)["unstaged"] == []


def test_query_any_ref_and_commits(repo: Repository, tmp_dir) -> None:
    tmp_dir.gen({"data/train.jsonl": rows(10)})
    P.add(repo, ["data/train.jsonl"])
    P.commit(repo, "ten")
    tmp_dir.gen({"data/train.jsonl": rows(15)})
    P.add(repo, ["data/train.jsonl"])
    P.commit(repo, "fifteen")
    t = P.query(repo, "SELECT (SELECT count(*) FROM table('data/train.jsonl')) a, "
                      "(SELECT count(*) FROM table('data/train.jsonl', 'main~1')) b")
    assert t.to_pylist() == [{"a": 15, "b": 10}]
    c = P.query(repo, "SELECT message, command, len(parents) AS np FROM commits ORDER BY time, np")
    assert [r["message"] for r in c.to_pylist()] == ["ten", "fifteen"] or \
        sorted(r["message"] for r in c.to_pylist()) == ["fifteen", "ten"]
    with pytest.raises(E.QueryError):
        P.query(repo, "SELEC nonsense")
    with pytest.raises(E.RefNotFound):
        P.query(repo, "SELECT * FROM table('data/train.jsonl', 'nope')")


def test_export_and_show(repo: Repository, tmp_dir) -> None:
    gguf = b"GGUF" + bytes(range(256)) * 1000
    tmp_dir.gen({"d.jsonl": rows(5), "m.gguf": gguf, "qa.prompt.yaml": PROMPT})
    P.add(repo, ["."])
    P.commit(repo, "c")
    P.export(repo, "m.gguf@HEAD", tmp_dir / "out.gguf")
    assert (tmp_dir / "out.gguf").read_bytes() == gguf
    P.export(repo, "d.jsonl", tmp_dir / "out.parquet")
    import pyarrow.parquet as pq
    assert pq.read_table(tmp_dir / "out.parquet").num_rows == 5
    s = P.show(repo, "HEAD:d.jsonl")
    assert s["kind"] == "dataset" and len(s["preview"]) == 5
    assert P.show(repo, "HEAD:qa.prompt.yaml")["text"] == PROMPT
    c = P.show(repo, "HEAD")
    assert {x["path"] for x in c["changes"]} == {"d.jsonl", "m.gguf", "qa.prompt.yaml"}


@pytest.mark.parametrize("name,content,err", [
    ("bad.jsonl", '{"a": 1}\n{"a": 2\n', E.InvalidArtifact),
    ("bad.csv", 'a,b\n1,2\n3,4,5\n', E.InvalidArtifact),
    ("bad.parquet", b"PAR1 not really", E.InvalidArtifact),
    ("bad.prompt.yaml", "template: [unclosed\n", E.InvalidArtifact),
    ("schema.prompt.yaml", "template: 'hi {{x}}'\nvariables: [y]\n", E.InvalidArtifact),
    ("params.prompt.yaml", "template: hi\nparameters: {temperature: 9}\n", E.InvalidArtifact),
    ("weird.bin", b"\x00\x01", E.UnknownKind),
    ("fake.gguf", b"NOPE....", E.InvalidArtifact),
])
def test_bad_input_leaves_repo_untouched(repo: Repository, tmp_dir, name: str, content, err) -> None:
    tmp_dir.gen({"good.jsonl": rows(3)})
    P.add(repo, ["good.jsonl"])
    P.commit(repo, "good")
    before = snapshot_dir(tmp_dir)
    tmp_dir.gen({name: content})
    with pytest.raises(err):
        P.add(repo, [name])
    assert snapshot_dir(tmp_dir) == before


def test_bad_key_and_unknown_ref(repo: Repository, tmp_dir) -> None:
    tmp_dir.gen({"d.jsonl": [{"id": 1}, {"id": 1}]})
    with pytest.raises(E.InvalidArtifact):
        P.add(repo, ["d.jsonl"], key="id")
    with pytest.raises(E.InvalidArtifact):
        P.add(repo, ["d.jsonl"], key="missing")
    with pytest.raises(E.RefNotFound):
        P.show(repo, "nope")
    with pytest.raises(E.InvalidRefName):
        P.branch(repo, "../escape")


def test_rm_and_tag(repo: Repository, tmp_dir) -> None:
    tmp_dir.gen({"a.jsonl": rows(2), "b.jsonl": rows(3)})
    P.add(repo, ["."])
    P.commit(repo, "two")
    P.tag(repo, "v1", message="annotated")
    P.rm(repo, ["a.jsonl"])
    assert not (tmp_dir / "a.jsonl").exists()
    P.commit(repo, "drop a")
    assert set(repo.artifacts(repo.head_commit())) == {"b.jsonl"}
    assert set(repo.artifacts(repo.resolve("v1"))) == {"a.jsonl", "b.jsonl"}
    assert git(repo, "cat-file", "-t", "refs/tags/v1").stdout.strip() == "tag"


def test_fsck_detects_flipped_bytes(repo: Repository, tmp_dir) -> None:
    tmp_dir.gen({"d.jsonl": rows(100), "m.gguf": b"GGUF" + bytes(range(256)) * 2000})
    P.add(repo, ["."])
    P.commit(repo, "c")
    assert P.fsck(repo)["ok"]
    pack = next((repo.control / "chunks").rglob("*.pack"))
    raw = bytearray(pack.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    pack.write_bytes(bytes(raw))
    res = P.fsck(repo)
    assert not res["ok"] and any("chunk" in p for p in res["problems"])
    with pytest.raises(E.IntegrityError):
        P.export(repo, "m.gguf", tmp_dir / "x.gguf")
    raw[len(raw) // 2] ^= 0xFF
    pack.write_bytes(bytes(raw))
    data_file = max((repo.control / "tables").rglob("*.lance"), key=lambda p: p.stat().st_size)
    raw = bytearray(data_file.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    data_file.write_bytes(bytes(raw))
    res = P.fsck(repo)
    assert not res["ok"] and any(data_file.name in p for p in res["problems"])
    with pytest.raises(E.IntegrityError):
        P.query(repo, "SELECT count(*) FROM table('d.jsonl')")


def test_gc_keeps_reachable_drops_rest(repo: Repository, tmp_dir) -> None:
    big = bytes((i * 7919) % 256 for i in range(2_000_000))
    tmp_dir.gen({"m.gguf": b"GGUF" + big})
    P.add(repo, ["m.gguf"])
    P.commit(repo, "keep")
    tmp_dir.gen({"m.gguf": b"GGUF" + bytes(reversed(big))})
    P.add(repo, ["m.gguf"])          # staged, then replaced: its chunks become garbage
    tmp_dir.gen({"m.gguf": b"GGUF" + big})
    P.add(repo, ["m.gguf"])
    before = repo.blobs.stored_bytes()
    P.gc(repo)
    assert repo.blobs.stored_bytes() < before
    assert P.fsck(repo)["ok"]
    P.export(repo, "m.gguf", tmp_dir / "back.gguf")
    assert (tmp_dir / "back.gguf").read_bytes() == b"GGUF" + big


def test_log_graph_after_merge(repo: Repository, tmp_dir) -> None:
    tmp_dir.gen({"a.prompt.yaml": PROMPT, "b.prompt.yaml": PROMPT})
    P.add(repo, ["."])
    P.commit(repo, "base")
    P.checkout(repo, "x", create=True)
    tmp_dir.gen({"a.prompt.yaml": PROMPT.replace("qa", "a")})
    P.add(repo, ["."])
    P.commit(repo, "on x")
    P.checkout(repo, "main")
    tmp_dir.gen({"b.prompt.yaml": PROMPT.replace("qa", "b")})
    P.add(repo, ["."])
    P.commit(repo, "on main")
    P.merge(repo, "x")
    entries = P.log(repo)
    assert [e["message"].strip() for e in entries][0].startswith("Merge x")
    assert len(entries) == 4
    lines = [prefix for prefix, ci in P.graph_lines(P.topo_order(repo, [repo.head_commit()]))]
    assert lines[0] == "*" and any("\\" in x for x in lines) and any("/" in x for x in lines)
    assert len(git(repo, "rev-list", "--all").stdout.split()) == 4
