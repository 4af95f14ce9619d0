"""The working-tree commands through the CLI (click's CliRunner), as git and DVC users expect
them: ``diff`` (working tree, ``--staged``, revisions), ``status``, ``restore`` and
``checkout [REF] -- PATHS``, rows coming back in the order of the file that was added,
merge conflicts shown row by row and marked in the file, and the commit author taken from
the git config."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from demoai import porcelain as P
from demoai.store.git.repo import Repository
from tests.conftest import rows

PROMPT = "template: 'Q: {{q}}'\nparameters: {temperature: 0.2}\n"


def jsonl(data: list[dict]) -> str:
    """Rows as DemoAI writes a JSONL file (one ``json.dumps`` per line)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data)


def csv_bytes(data: list[dict]) -> bytes:
    """Rows as DemoAI writes a CSV file (pyarrow, strings quoted)."""
    import io
    buf = io.BytesIO()
    pacsv.write_csv(pa.Table.from_pylist(data), buf,
                    write_options=pacsv.WriteOptions(quoting_style="needed"))
    return buf.getvalue()


def tables_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / ".demoai" / "tables").rglob("*")
                  if p.is_file())


def commit_two(tmp_dir, cli, *, key: str | None = "id") -> tuple[str, str]:
    """d.jsonl (60 rows) and p.prompt.yaml committed."""
    cli("init")
    tmp_dir.gen({"d.jsonl": jsonl(rows(60)), "p.prompt.yaml": PROMPT})
    cli("add", "d.jsonl", *(("--key", key) if key else ()))
    cli("add", "p.prompt.yaml")
    cli("commit", "-m", "one")
    return jsonl(rows(60)), PROMPT


def edited(data: list[dict], i: int, text: str) -> list[dict]:
    out = [dict(r) for r in data]
    out[i]["response"] = text
    return out


# ----------------------------------------------------------------------------- diff / status

def test_diff_without_add_shows_the_working_tree(tmp_dir, cli) -> None:
    """git's diff: working tree vs index, --staged/--cached index vs HEAD, REV working tree
    vs REV, A B two commits."""
    commit_two(tmp_dir, cli)
    (tmp_dir / "d.jsonl").write_text(jsonl(edited(rows(60), 30, "fixed")))
    (tmp_dir / "p.prompt.yaml").write_text(PROMPT.replace("0.2", "0.7"))
    out = cli("diff").output
    assert "dataset d.jsonl (modified)" in out and '~ id=30: response: "answer 30" -> "fixed"' in out
    assert "+parameters: {temperature: 0.7}" in out
    assert cli("diff", "HEAD").output == out
    assert cli("diff", "--staged").output == "" and cli("diff", "--cached").output == ""
    d = json.loads(cli("diff", "--json").output)
    assert [(x["path"], x["added"], x["removed"], x["modified"]) for x in d] == [
        ("d.jsonl", 0, 0, 1), ("p.prompt.yaml", 1, 1, 0)]
    assert json.loads(cli("diff", "--json", "--", "d.jsonl").output)[0]["path"] == "d.jsonl"
    assert len(json.loads(cli("diff", "--json", "--path", "p.prompt.yaml").output)) == 1
    cli("add", "d.jsonl")
    # staged now: the working tree matches the index for it; the prompt is still unstaged
    assert [x["path"] for x in json.loads(cli("diff", "--json").output)] == ["p.prompt.yaml"]
    staged = json.loads(cli("diff", "--staged", "--json").output)
    assert [(x["path"], x["modified"]) for x in staged] == [("d.jsonl", 1)]
    assert {x["path"] for x in json.loads(cli("diff", "HEAD", "--json").output)} == {
        "d.jsonl", "p.prompt.yaml"}
    cli("commit", "-m", "two")
    two = json.loads(cli("diff", "HEAD~1", "HEAD", "--json").output)
    assert [(x["path"], x["modified"]) for x in two] == [("d.jsonl", 1)]
    assert json.loads(cli("diff", "HEAD~1..HEAD", "--json").output) == two


def test_working_tree_diff_stores_nothing(tmp_dir, cli) -> None:
    commit_two(tmp_dir, cli)
    before = tables_files(tmp_dir)
    data = edited(rows(60), 3, "x")
    del data[10]
    data.append({"id": 500, "prompt": "p", "response": "r", "label": "a"})
    (tmp_dir / "d.jsonl").write_text(jsonl(data))
    d = json.loads(cli("diff", "--json").output)[0]
    assert (d["added"], d["removed"], d["modified"]) == (1, 1, 1)
    assert d["samples"]["added"][0]["id"] == 500 and d["samples"]["removed"][0]["id"] == 10
    assert tables_files(tmp_dir) == before


def test_status_sees_edits_by_content(tmp_dir, cli) -> None:
    """An edit of the same size and mtime right after a commit is seen; rewriting the same
    bytes is not a change, and the index learns the file's new stat."""
    commit_two(tmp_dir, cli)
    text = jsonl(rows(60))
    p = tmp_dir / "d.jsonl"
    st = p.stat()
    p.write_text(text.replace("answer 30", "answer 31"))          # same size
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))             # and the same mtime
    status = json.loads(cli("status", "--json").output)
    assert status["unstaged"] == [{"path": "d.jsonl", "change": "modified"}]
    assert "modified  d.jsonl" in cli("status").output
    p.write_text(text)                                           # back to what was committed
    assert json.loads(cli("status", "--json").output)["unstaged"] == []
    # found clean by its bytes: the index keeps the file's new stat, so the next status
    # trusts it instead of hashing the file again (git's index refresh)
    st = p.stat()
    index = json.loads((tmp_dir / ".demoai" / "index.json").read_text())
    assert index["stat"]["d.jsonl"]["fp"][:2] == [st.st_size, st.st_mtime_ns]
    p.unlink()
    assert json.loads(cli("status", "--json").output)["unstaged"] == [
        {"path": "d.jsonl", "change": "deleted"}]


def test_diff_tells_a_reorder_and_a_reformat(tmp_dir, cli) -> None:
    commit_two(tmp_dir, cli)
    (tmp_dir / "d.jsonl").write_text(jsonl(list(reversed(rows(60)))))
    out = cli("diff").output
    assert "+0 -0 ~0" in out and "the same rows, in another order" in out
    (tmp_dir / "d.jsonl").write_text("".join(json.dumps(r, separators=(",", ":")) + "\n"
                                             for r in rows(60)))
    assert "only the file's formatting differs" in cli("diff").output


def test_diff_names_rows_by_key_and_says_what_was_left_out(tmp_dir, cli) -> None:
    commit_two(tmp_dir, cli)
    data = [dict(r, response=f"new {r['id']}") if r["id"] < 8 else r for r in rows(60)]
    data += rows(7, start=100)
    (tmp_dir / "d.jsonl").write_text(jsonl(data))
    out = cli("diff").output
    assert out.count("  ~ id=") == 5 and "~ id=0: response:" in out
    assert "… and 3 more modified rows" in out and "… and 2 more added rows" in out
    cli("add", "d.jsonl")
    assert "… and 3 more modified rows" in cli("diff", "--staged").output


# ----------------------------------------------------------------------------- restore

def test_checkout_dashdash_restores_one_file(tmp_dir, cli) -> None:
    v1, prompt = commit_two(tmp_dir, cli)
    head = json.loads(cli("log", "--json").output)[0]["id"]
    (tmp_dir / "d.jsonl").write_text(jsonl(edited(rows(60), 1, "oops")))
    (tmp_dir / "p.prompt.yaml").write_text(prompt + "# keep me\n")
    assert "Updated 1 path from the index" in cli("checkout", "--", "d.jsonl").output
    assert (tmp_dir / "d.jsonl").read_text() == v1
    assert (tmp_dir / "p.prompt.yaml").read_text().endswith("# keep me\n")   # not touched
    st = json.loads(cli("status", "--json").output)
    assert st["unstaged"] == [{"path": "p.prompt.yaml", "change": "modified"}]
    # a path where a revision could stand: taken as a path (git does the same)
    (tmp_dir / "d.jsonl").write_text("junk\n")
    cli("checkout", "--force", "d.jsonl")
    assert (tmp_dir / "d.jsonl").read_text() == v1
    assert json.loads(cli("log", "--json").output)[0]["id"] == head      # HEAD never moved
    assert cli("status", "--json").output and json.loads(cli("status", "--json").output)["branch"] == "main"
    res = cli("checkout", "--", "nope.jsonl", code=1)
    assert "nope.jsonl did not match" in res.output and res.output.count("\n") == 1


def test_checkout_rev_dashdash_takes_that_version(tmp_dir, cli) -> None:
    v1, _ = commit_two(tmp_dir, cli)
    v2 = jsonl(edited(rows(60), 5, "second"))
    (tmp_dir / "d.jsonl").write_text(v2)
    cli("add", "d.jsonl")
    cli("commit", "-m", "two")
    assert "Updated 1 path from HEAD~1" in cli("checkout", "HEAD~1", "--", "d.jsonl").output
    assert (tmp_dir / "d.jsonl").read_text() == v1
    st = json.loads(cli("status", "--json").output)
    assert st["staged"] == [{"path": "d.jsonl", "change": "modified"}] and st["unstaged"] == []
    cli("checkout", "HEAD", "d.jsonl")          # REF PATH without --, as git reads it
    assert (tmp_dir / "d.jsonl").read_text() == v2
    assert json.loads(cli("status", "--json").output)["staged"] == []


def test_restore_worktree_staged_and_source(tmp_dir, cli) -> None:
    v1, prompt = commit_two(tmp_dir, cli)
    v2 = jsonl(edited(rows(60), 5, "second"))
    (tmp_dir / "d.jsonl").write_text(v2)
    cli("add", "d.jsonl")
    # --staged: the index back to HEAD, the file as it is
    out = cli("restore", "--staged", "d.jsonl").output
    assert "restored  d.jsonl  (index from HEAD)" in out
    assert (tmp_dir / "d.jsonl").read_text() == v2
    st = json.loads(cli("status", "--json").output)
    assert st["staged"] == [] and st["unstaged"] == [{"path": "d.jsonl", "change": "modified"}]
    # default: the working file from the index
    cli("restore", "d.jsonl")
    assert (tmp_dir / "d.jsonl").read_text() == v1
    assert json.loads(cli("status", "--json").output)["unstaged"] == []
    # -S -W: both from HEAD
    (tmp_dir / "d.jsonl").write_text(v2)
    cli("add", "d.jsonl")
    cli("restore", "-S", "-W", "d.jsonl")
    assert (tmp_dir / "d.jsonl").read_text() == v1
    st = json.loads(cli("status", "--json").output)
    assert st["staged"] == [] and st["unstaged"] == []
    # --source REF, working tree only: the index keeps its entry, the file differs from it
    (tmp_dir / "d.jsonl").write_text(v2)
    cli("add", "d.jsonl")
    cli("commit", "-m", "two")
    cli("restore", "--source", "HEAD~1", "d.jsonl")
    assert (tmp_dir / "d.jsonl").read_text() == v1
    st = json.loads(cli("status", "--json").output)
    assert st["staged"] == [] and st["unstaged"] == [{"path": "d.jsonl", "change": "modified"}]
    # a newly added path: --staged unstages it and keeps the file
    tmp_dir.gen({"new.prompt.yaml": PROMPT})
    cli("add", "new.prompt.yaml")
    res = json.loads(cli("restore", "--staged", "new.prompt.yaml", "--json").output)
    assert res["index_dropped"] == ["new.prompt.yaml"] and (tmp_dir / "new.prompt.yaml").exists()
    assert "new.prompt.yaml" in json.loads(cli("status", "--json").output)["untracked"]
    # a folder stands for what is tracked under it
    (tmp_dir / "p.prompt.yaml").write_text("changed: 1\n")
    cli("restore", ".")
    assert (tmp_dir / "p.prompt.yaml").read_text() == prompt


def test_restore_is_all_or_nothing(tmp_dir, cli) -> None:
    """A damaged object fails the restore before any file is written: the prompt (first in
    path order) is not restored either, and the index is untouched."""
    cli("init")
    tmp_dir.gen({"a.prompt.yaml": PROMPT, "z.jsonl": jsonl(rows(60))})
    cli("add", "z.jsonl", "--key", "id")
    cli("add", "a.prompt.yaml")
    cli("commit", "-m", "one")
    tmp_dir.gen({"a.prompt.yaml": PROMPT.replace("0.2", "0.3"),
                 "z.jsonl": jsonl(edited(rows(60), 5, "second"))})
    cli("add", ".")
    cli("commit", "-m", "two")
    repo = Repository(tmp_dir)
    ref = json.loads(repo.blob_at(repo.resolve("HEAD~1"), "z.jsonl"))["table"]
    data = next(r for r in ref["files"] if r.startswith("data/") and r.endswith(".lance"))
    f = tmp_dir / ".demoai" / "tables" / f"{ref['table_id']}.lance" / data
    raw = f.read_bytes()
    f.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    before = {p: (tmp_dir / p).read_bytes() for p in ("a.prompt.yaml", "z.jsonl")}
    index = (tmp_dir / ".demoai" / "index.json").read_bytes()
    res = cli("restore", "--source", "HEAD~1", "-S", "-W", "a.prompt.yaml", "z.jsonl", code=1)
    assert "BLAKE3 mismatch" in res.output and res.output.startswith("error:")
    assert {p: (tmp_dir / p).read_bytes() for p in before} == before
    assert (tmp_dir / ".demoai" / "index.json").read_bytes() == index
    assert not list((tmp_dir / ".demoai" / "tmp").glob("sync-*"))
    cli("restore", "--source", "HEAD~1", "a.prompt.yaml")      # an intact object restores
    assert (tmp_dir / "a.prompt.yaml").read_text() == PROMPT


def test_a_killed_restore_is_finished_by_the_next_command(tmp_dir, cli, monkeypatch) -> None:
    """Killed after its journal is written, a restore is finished (files and index) by the
    next command, as a killed checkout is."""
    import demoai.store.git.worktree as worktree
    from demoai.porcelain.restore import restore

    v1, _ = commit_two(tmp_dir, cli)
    (tmp_dir / "d.jsonl").write_text(jsonl(edited(rows(60), 5, "second")))
    cli("add", "d.jsonl")

    def killed(repo, plan):
        raise KeyboardInterrupt

    with monkeypatch.context() as m, Repository(tmp_dir) as repo, pytest.raises(KeyboardInterrupt):
        m.setattr(worktree, "apply_sync", killed)
        restore(repo, ["d.jsonl"], staged=True, worktree=True)
    assert (tmp_dir / ".demoai" / worktree.JOURNAL).exists()
    st = json.loads(cli("status", "--json").output)
    assert st["staged"] == [] and st["unstaged"] == [] and st["interrupted"] is None
    assert (tmp_dir / "d.jsonl").read_text() == v1
    assert not (tmp_dir / ".demoai" / worktree.JOURNAL).exists()


def test_restore_never_writes_through_a_symlinked_folder(tmp_dir, cli, tmp_path_factory) -> None:
    cli("init")
    tmp_dir.gen({"data/d.jsonl": jsonl(rows(5))})
    cli("add", "data/d.jsonl")
    cli("commit", "-m", "one")
    outside = tmp_path_factory.mktemp("outside")
    import shutil
    shutil.rmtree(tmp_dir / "data")
    (tmp_dir / "data").symlink_to(outside, target_is_directory=True)
    res = cli("restore", "data/d.jsonl", code=1)
    assert "leaves the working tree" in res.output
    assert list(outside.iterdir()) == []


# ----------------------------------------------------------------------------- row order

def _round_trip(tmp_dir, cli, name: str, v1: bytes, v2: bytes, key: str | None) -> None:
    cli("init")
    (tmp_dir / name).write_bytes(v1)
    cli("add", name, *(("--key", key) if key else ()))
    cli("commit", "-m", "one")
    (tmp_dir / name).write_bytes(v2)
    cli("add", name)
    cli("commit", "-m", "two")
    cli("checkout", "HEAD~1")
    assert (tmp_dir / name).read_bytes() == v1
    cli("checkout", "main")
    assert (tmp_dir / name).read_bytes() == v2
    cli("export", f"{name}@main~1", f"old-{name}")
    assert (tmp_dir / f"old-{name}").read_bytes() == v1
    cli("export", f"{name}@main", f"new-{name}")
    assert (tmp_dir / f"new-{name}").read_bytes() == v2


@pytest.mark.parametrize("key", ["id", None])
def test_rows_come_back_in_file_order_jsonl(tmp_dir, cli, key) -> None:
    data = rows(80)
    v2 = edited(data, 1, "edited first")             # an edit near the top ...
    v2 = edited(v2, 40, "edited middle")             # ... and in the middle
    del v2[60]
    v2.insert(20, {"id": 999, "prompt": "inserted", "response": "in the middle", "label": "b"})
    _round_trip(tmp_dir, cli, "d.jsonl", jsonl(data).encode(), jsonl(v2).encode(), key)
    shown = json.loads(cli("show", "HEAD:d.jsonl", "--json").output)["preview"]
    assert [r["id"] for r in shown] == [r["id"] for r in v2[:5]]
    assert shown[1]["response"] == "edited first"
    repo = Repository(tmp_dir)
    art = repo.artifact_at("HEAD", "d.jsonl")
    assert art.digest == P.add(repo, ["d.jsonl"])[0].artifact.digest   # digest: order-free


def test_rows_come_back_in_file_order_csv(tmp_dir, cli) -> None:
    data = [{"id": i, "text": f"row, {i}", "score": i / 4} for i in range(50)]
    v2 = [dict(r) for r in data]
    v2[25]["text"] = 'say "hi"'
    v2 = v2[:10] + [v2[45]] + v2[10:45] + v2[46:]          # a row moved up
    _round_trip(tmp_dir, cli, "d.csv", csv_bytes(data), csv_bytes(v2), "id")


def test_a_reorder_alone_is_a_new_version(tmp_dir, cli) -> None:
    commit_two(tmp_dir, cli)
    shuffled = sorted(rows(60), key=lambda r: r["response"])
    (tmp_dir / "d.jsonl").write_text(jsonl(shuffled))
    assert "modified" in cli("add", "d.jsonl").output
    cli("commit", "-m", "sorted")
    assert "the same rows, in another order" in cli("diff", "HEAD~1", "HEAD").output
    cli("checkout", "HEAD~1")
    assert (tmp_dir / "d.jsonl").read_text() == jsonl(rows(60))
    cli("checkout", "main")
    assert (tmp_dir / "d.jsonl").read_text() == jsonl(shuffled)


def test_row_order_costs_in_proportion_to_the_edit(tmp_path) -> None:
    """A version that edits 1% of 20,000 rows stores its order in a few hundred bytes; the
    order file is hash-checked, kept by gc while a ref needs it, and checked by fsck."""
    from demoai.errors import IntegrityError
    from demoai.store.tables.store import TableStore
    store = TableStore(tmp_path / "t")
    n = 20_000
    t = pa.table({"id": list(range(n)), "text": [f"text {i}" for i in range(n)]})
    r1 = store.write(t, key="id")
    assert "file" not in r1.order                        # scan order is the file's
    texts = t["text"].to_pylist()
    for i in range(0, n, 100):
        texts[i] = texts[i] + " edited"
    t2 = t.set_column(1, "text", pa.array(texts))
    r2 = store.write(t2, key="id", base=r1)
    rel = r2.order["file"]
    size = (store.table_path(r1.table_id) / rel).stat().st_size
    assert size < 2_000, size
    assert store.read(r2).equals(t2) and store.verify(r2) == []
    assert store.diff(r1, r2).modified == n // 100
    store.gc([r1], grace_seconds=0)
    assert not (store.table_path(r1.table_id) / rel).exists()
    r2 = store.write(t2, key="id", base=r1)
    store.gc([r2], grace_seconds=0)
    assert store.read(r2).equals(t2)
    f = store.table_path(r1.table_id) / r2.order["file"]
    f.write_bytes(f.read_bytes()[:-1] + b"\0")
    with pytest.raises(IntegrityError):
        store.read(r2)
    assert any(r2.order["file"] in p and "BLAKE3 mismatch" in p for p in store.verify(r2))


def test_row_order_travels_with_push_and_fetch(tmp_path) -> None:
    """Divergent versions of one dataset, each with its own order file, meet in one
    repository (a Lance alternate); every commit checks out byte-identical."""
    from demoai.store.git.worktree import sync_worktree
    from demoai.store.transfer import LocalEndpoint, transfer

    def sync(src: Repository, dst: Repository) -> None:
        a, b = LocalEndpoint(src), LocalEndpoint(dst)
        mine, theirs = a.refs()["refs"], b.refs()["refs"]
        have = [s for s in theirs.values() if s.encode() in src.git.object_store]
        transfer(a, b, list(mine.values()), have)

    def clone(src: Repository, path: Path, branch: str = "main") -> Repository:
        dst = Repository.init(path)
        sync(src, dst)
        tip = src.ref_value(f"refs/heads/{branch}")
        dst.set_ref(f"refs/heads/{branch}", tip, None, "clone")
        dst.set_head(branch, tip)
        sync_worktree(dst, {}, dst.tree_entries(tip))
        return dst

    hub = P.init(tmp_path / "hub")
    (hub.root / "d.jsonl").write_text(jsonl(rows(200)))
    P.add(hub, [hub.root / "d.jsonl"], key="id")
    P.commit(hub, "one")
    a, b = clone(hub, tmp_path / "a"), clone(hub, tmp_path / "b")
    texts = {}
    for repo, i in ((a, 17), (b, 123)):
        texts[repo.root.name] = jsonl(edited(rows(200), i, f"edited by {repo.root.name}"))
        (repo.root / "d.jsonl").write_text(texts[repo.root.name])
        P.add(repo, [repo.root / "d.jsonl"])
        P.commit(repo, f"edit {i}")
    sync(b, a)                       # b's version lands in an alternate of a's lineage
    assert any("~" in p.name for p in (a.control / "tables").glob("*.lance"))
    c = clone(a, tmp_path / "c")
    for repo, tip, want in ((a, b.head_commit(), texts["b"]), (c, a.head_commit(), texts["a"])):
        P.checkout(repo, tip, force=True)
        assert (repo.root / "d.jsonl").read_text() == want
        assert P.fsck(repo)["ok"]


# ----------------------------------------------------------------------------- merge

def _conflicting_branches(tmp_dir, cli, n_conflicts: int = 1, name: str = "d.jsonl",
                          write=lambda p, d: p.write_text(jsonl(d))) -> list[dict]:
    cli("init")
    base = rows(40)
    write(tmp_dir / name, base)
    tmp_dir.gen({"p.prompt.yaml": PROMPT})
    cli("add", name, "--key", "id")
    cli("add", "p.prompt.yaml")
    cli("commit", "-m", "base")
    cli("checkout", "-b", "exp")
    theirs = [dict(r, response="theirs") if r["id"] < n_conflicts + 2 and r["id"] >= 2 else r
              for r in base]
    write(tmp_dir / name, theirs)
    cli("add", name)
    cli("commit", "-m", "exp")
    cli("checkout", "main")
    ours = [dict(r, response="ours") if r["id"] < n_conflicts + 2 and r["id"] >= 2 else r
            for r in base]
    ours[30]["label"] = "clean edit"
    write(tmp_dir / name, ours)
    cli("add", name)
    cli("commit", "-m", "main")
    return ours


def test_merge_conflict_shows_rows_and_marks_the_file(tmp_dir, cli) -> None:
    ours = _conflicting_branches(tmp_dir, cli)
    res = cli("merge", "exp", code=1)
    assert 'CONFLICT (dataset): d.jsonl: 1 conflicting row(s)' in res.output
    assert 'id=2  response: base "answer 2" | ours "ours" | theirs "theirs"' in res.output
    assert res.output.count("merge --abort") == 1 and res.output.count("error:") == 1
    text = (tmp_dir / "d.jsonl").read_text().splitlines()
    at = text.index("<<<<<<< HEAD")
    assert text[at + 1:at + 5] == [json.dumps(ours[2]), "=======",
                                   json.dumps(dict(ours[2], response="theirs")), ">>>>>>> exp"]
    # every other line is the merged row as checkout writes it (here: ours, in our order)
    others = text[:at] + text[at + 5:]
    assert others == jsonl(ours[:2] + ours[3:]).splitlines()
    again = cli("merge", "--show-conflicts").output
    assert 'id=2  response: base "answer 2" | ours "ours" | theirs "theirs"' in again
    res = cli("add", "d.jsonl", code=1)
    assert f"line {at + 1}: unresolved merge conflict" in res.output
    res = cli("commit", "-m", "merge", code=1)
    assert res.output.count("merge --abort") == 1 and "d.jsonl" in res.output
    # resolve: keep their row
    resolved = text[:at] + [text[at + 3]] + text[at + 5:]
    (tmp_dir / "d.jsonl").write_text("\n".join(resolved) + "\n")
    cli("add", "d.jsonl")
    assert "every conflict is resolved" in cli("merge", "--show-conflicts").output
    cli("commit", "-m", "merge exp")
    got = {r["id"]: r for r in json.loads(cli("query", "SELECT * FROM table('d.jsonl')", "--json").output)}
    assert got[2]["response"] == "theirs" and got[30]["label"] == "clean edit"
    assert (tmp_dir / "d.jsonl").read_text() == "\n".join(resolved) + "\n"


def test_merge_conflicts_csv_many_rows_and_abort(tmp_dir, cli) -> None:
    def write(p: Path, d: list[dict]) -> None:
        p.write_bytes(csv_bytes(d))
    ours = _conflicting_branches(tmp_dir, cli, n_conflicts=25, name="d.csv", write=write)
    res = cli("merge", "exp", code=1)
    assert "25 conflicting row(s)" in res.output and res.output.count(" | theirs ") == 20
    assert "… and 5 more conflicting rows" in res.output
    st = json.loads(cli("merge", "--show-conflicts", "--json").output)
    assert st["conflicts"][0]["count"] == 25 and st["merge_ref"] == "exp"
    text = (tmp_dir / "d.csv").read_text()
    assert text.count("<<<<<<< HEAD\n") == 25 and text.startswith('"id","prompt"')
    assert "Merging exp" in cli("status").output
    cli("merge", "--abort")
    assert (tmp_dir / "d.csv").read_bytes() == csv_bytes(ours)
    assert json.loads(cli("status", "--json").output)["unstaged"] == []


# ----------------------------------------------------------------------------- author

def _author(tmp_dir, cli) -> tuple[str, str]:
    cli("commit", "--allow-empty", "-m", "x")
    out = subprocess.run(["git", "--git-dir", str(tmp_dir / ".demoai" / "git"), "log", "-1",
                          "--format=%an <%ae>|%cn <%ce>"], capture_output=True, text=True,
                         check=True).stdout.strip()
    author, committer = out.split("|")
    return author, committer


def test_commit_author_comes_from_git_config(tmp_dir, cli, monkeypatch) -> None:
    for var in ("DEMOAI_AUTHOR", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL", "EMAIL", "GIT_CONFIG_GLOBAL"):
        monkeypatch.delenv(var, raising=False)
    home = Path(os.environ["HOME"])
    xdg = Path(os.environ["XDG_CONFIG_HOME"]) / "git"
    xdg.mkdir(parents=True)
    (xdg / "config").write_text("[user]\n\tname = Xdg Person\n\temail = xdg@example.com\n")
    cli("init")
    assert _author(tmp_dir, cli) == ("Xdg Person <xdg@example.com>",) * 2
    (home / ".gitconfig").write_text("[user]\n\tname = Ada Lovelace\n\temail = ada@example.com\n")
    assert _author(tmp_dir, cli) == ("Ada Lovelace <ada@example.com>",) * 2
    assert json.loads(cli("log", "--json").output)[0]["author"] == "Ada Lovelace <ada@example.com>"
    with open(tmp_dir / ".demoai" / "git" / "config", "a") as f:   # the repository's own
        f.write("[user]\n\tname = Repo Person\n")
    assert _author(tmp_dir, cli) == ("Repo Person <ada@example.com>",) * 2
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Env Author")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "committer@example.com")
    assert _author(tmp_dir, cli) == ("Env Author <ada@example.com>",
                                     "Repo Person <committer@example.com>")
    monkeypatch.setenv("DEMOAI_AUTHOR", "Demo Author <demo@example.com>")
    assert _author(tmp_dir, cli) == ("Demo Author <demo@example.com>",) * 2


def test_commit_author_fallback_without_any_config(tmp_dir, cli, monkeypatch) -> None:
    for var in ("DEMOAI_AUTHOR", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                "GIT_COMMITTER_EMAIL", "EMAIL", "GIT_CONFIG_GLOBAL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("USER", "someone")
    cli("init")
    assert _author(tmp_dir, cli)[0] == "someone <someone@localhost>"
