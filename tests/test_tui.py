"""The Textual TUI (issue 16), through Textual's pilot (``App.run_test``) and snapshot tests
(pytest-textual-snapshot) on one fixed repository:

- two commits on main (a dataset with a modified, a removed and an added row; a reworded
  prompt; a model with 64 KiB rewritten), a branch merged back, a tag, two eval results of
  the embedded SmolLM2 (4 examples, 2 metrics), and a session with a fork;
- history: the graph of every ref (the same lanes as ``log --graph --all``), the commit pane
  (lineage, changed artifacts), filters by text, author, path and kind;
- typed diffs: changed cells, text diffs, chunk share, eval deltas with paired tests;
- datasets: rows read a page at a time (never the whole table, at most MAX_PAGES in memory),
  the end of the table reachable at once, the DuckDB query box;
- sessions: fork tree, timeline, workspace at a step; fork, continue and replay are confirmed
  and run through the porcelain; evaluations: leaderboard and failed-only examples;
- help, command palette, quit, and ``demoai tui`` itself.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

pytest.importorskip("textual")

from demoai import porcelain as P  # noqa: E402
from demoai.cli import main  # noqa: E402
from demoai.errors import PathNotFound, RemoteError  # noqa: E402
from demoai.porcelain import tui_data as T  # noqa: E402
from demoai.tui.app import DemoAIApp  # noqa: E402
from demoai.tui.widgets.rows import MAX_PAGES, PAGE, RowTable  # noqa: E402
from tests.helpers.pilot import run_async, widget_text  # noqa: E402

SIZE = (140, 42)
PROMPT = """name: qa
template: "Compute carefully: {{question}}"
variables: [question]
parameters: {temperature: 0, max_tokens: 8}
"""
AGENT = """name: files
system: You write files.
model: smollm2
tools: [write_file, finish]
max_steps: 3
"""
SUITE = """name: arith
task: generate
dataset: data/qa.jsonl
key: id
template: "{{question}} Answer with the number only."
reference: answer
parameters: {temperature: 0, max_tokens: MAXTOK}
metrics: [exact_match, contains]
"""


def _write_rows(p: Path, rows: list[dict[str, Any]]) -> None:
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _build(root: Path) -> dict[str, Any]:
    from demoai.store.sessions import log as S
    os.environ["DEMOAI_AUTHOR"] = "Test User <test@example.com>"
    os.environ["DEMOAI_LLM_THREADS"] = "1"
    repo = P.init(root)
    for d in ("data", "prompts", "agents", "models", "evals"):
        (root / d).mkdir()
    rows = [{"id": i, "question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(12)]
    _write_rows(root / "data/qa.jsonl", rows)
    (root / "prompts/qa.prompt.yaml").write_text(PROMPT)
    (root / "agents/files.agent.yaml").write_text(AGENT)
    model = bytearray(b"GGUF" + random.Random(1).randbytes(300_000))
    (root / "models/tiny.gguf").write_bytes(bytes(model))
    P.add(repo, [root / "data/qa.jsonl"], key="id")
    P.add(repo, [root / "prompts", root / "agents", root / "models"])
    c1 = P.commit(repo, "Import data, prompt, agent and model", command="demoai commit -m import")
    P.tag(repo, "v1", c1, message="first")

    rows[3]["answer"] = "six"
    rows = rows[:-1] + [{"id": 100, "question": "What is zebra?", "answer": "animal"}]
    _write_rows(root / "data/qa.jsonl", rows)
    (root / "prompts/qa.prompt.yaml").write_text(PROMPT.replace("carefully", "step by step"))
    model[100_000:165_536] = random.Random(2).randbytes(65_536)
    (root / "models/tiny.gguf").write_bytes(bytes(model))
    P.add(repo, [root / "data/qa.jsonl", root / "prompts", root / "models"])
    c2 = P.commit(repo, "Fix row 3, replace row 11, reword the prompt", command="demoai commit -m edit")

    P.branch(repo, "side")
    P.checkout(repo, "side")
    (root / "agents/files.agent.yaml").write_text(AGENT.replace("max_steps: 3", "max_steps: 5"))
    P.commit(repo, "More steps", paths=[root / "agents/files.agent.yaml"])
    P.checkout(repo, "main")
    (root / "prompts/qa.prompt.yaml").write_text(PROMPT.replace("carefully", "slowly"))
    P.commit(repo, "Slower prompt", paths=[root / "prompts/qa.prompt.yaml"])
    P.merge(repo, "side")

    # two eval results of the embedded model: 4 examples, then the same with fewer tokens
    from demoai.porcelain import evaluate as PE
    (root / "evals/arith.suite.yaml").write_text(SUITE.replace("MAXTOK", "6"))
    P.add(repo, [root / "evals/arith.suite.yaml"])
    P.commit(repo, "Suite")
    PE.run_eval(repo, "evals/arith.suite.yaml", limit=4, rounds=200)
    (root / "evals/arith.suite.yaml").write_text(SUITE.replace("MAXTOK", "1"))
    P.commit(repo, "Shorter answers", paths=[root / "evals/arith.suite.yaml"])
    PE.run_eval(repo, "evals/arith.suite.yaml", limit=4, rounds=200)

    agent = repo.artifact_at("HEAD", "agents/files.agent.yaml")
    log = S.create_session(repo, "run1", agent=agent.digest,
                           meta={"name": "run1", "agent": "agents/files.agent.yaml", "task": "Write hello.txt"},
                           start={"task": "Write hello.txt", "agent": {"digest": agent.digest, "path":
                                  "agents/files.agent.yaml", "rev": "HEAD", "commit": c2}})
    log.append("model_response", text='{"tool": "write_file"}', completion_tokens=9)
    log.append("tool_call", tool="write_file", args={"path": "hello.txt", "content": "hello"})
    log.append("tool_result", exit_code=0, stdout="wrote hello.txt", files={"hello.txt": "blake3:0"})
    log.commit_step(workspace=S.workspace_tree(repo, {"hello.txt": b"hello"})[0])
    log.append("tool_call", tool="finish", args={"answer": "done"})
    log.append("run_end", status="finished", reason="finish", answer="done")
    log.commit_step(status="finished")
    log.close()
    S.fork_session(repo, "run1@1", "run1-alt", overrides={"instruction": "write bye.txt"}).close()
    repo.close()
    return {"c1": c1, "c2": c2}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("tui") / "repo"
    saved = dict(os.environ)
    os.environ["HOME"] = str(root.parent / "home")
    os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
    try:
        info = _build(root)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return root, info


@pytest.fixture
def repo_dir(built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the fixed repository (actions may write), as the cwd."""
    dst = tmp_path / "repo"
    shutil.copytree(built[0], dst, symlinks=True)
    monkeypatch.chdir(dst)
    return dst


async def _until(pilot: Any, cond: Any, timeout: float = 10.0) -> None:
    """Let the app run until ``cond()`` holds (workers read in threads)."""
    t = time.monotonic()
    while not cond():
        if time.monotonic() - t > timeout:
            raise AssertionError("timed out waiting for the UI")
        await pilot.pause(0.02)
    await pilot.pause()


_text = widget_text
_sync = run_async


def _workers_idle(app: Any) -> bool:
    return not any(w.is_running for w in app.workers)


# ------------------------------------------------------------------------- history
def test_the_history_walker_draws_the_lanes_log_graph_all_draws(built) -> None:
    root, _ = built
    repo = P.open_repository(root)
    reads: list[str] = []
    real = repo.commit_info
    repo.commit_info = lambda cid: reads.append(cid) or real(cid)        # type: ignore[method-assign]
    w = T.HistoryWalker(repo)
    heads_read, reads[:] = set(reads), []
    mine = []
    while not w.done:
        mine += [(r.graph, r.commit.id if r.commit else None) for r in w.next_page(3)]
    walked = list(reads)
    heads = sorted(set(repo.branches().values()) | set(repo.tags().values()))
    ref = [(g, c.id if c else None) for g, c in P.graph_lines(P.topo_order(repo, heads))]
    assert mine == ref and any("\\" in g for g, _ in mine) and any("/" in g for g, _ in mine)
    assert set(w.heads) <= heads_read                                  # the tips, read to start
    assert sorted(walked) == sorted(c for _, c in ref if c and c not in w.heads)  # the rest, once each
    repo.close()


# The first frame: what `demoai tui` imports before it, and whether it shows commits.
_STARTUP = r"""
import asyncio, json, sys
from demoai.porcelain import open_repository
from demoai.tui.prefetch import start
repo = open_repository(sys.argv[1])
pre = start(repo) if sys.argv[2] == "prefetch" else None
from demoai.tui.app import DemoAIApp
from textual.app import App
first = []
real = App._display
def display(self, screen, renderable):
    if not first and type(screen).__name__ == "HistoryScreen":
        first.append(screen.commit_count())
        first.append(sorted(m for m in sys.modules if m.startswith(("demoai.tui.screens.", "demoai.tui.widgets."))
                            or m.split(".")[0] in ("pyarrow", "lance", "duckdb", "plotext", "textual_plotext",
                                                   "matplotlib", "numpy", "torch")))
    return real(self, screen, renderable)
App._display = display
async def main():
    if pre is not None:
        pre.take()                    # the page is read before Textual draws anything
        pre._taken = False
    app = DemoAIApp(repo, prefetch=pre)
    async with app.run_test(size=(120, 40)) as pilot:
        while not first or not app.screen.commit_count():
            await asyncio.sleep(0.01)
asyncio.run(main())
print(json.dumps(first))
"""


def test_the_first_frame_imports_nothing_heavy_and_shows_the_prefetched_commits(built) -> None:
    import subprocess
    import sys
    root, _ = built
    got = {}
    for mode in ("prefetch", "worker"):
        p = subprocess.run([sys.executable, "-c", _STARTUP, str(root), mode], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        assert p.returncode == 0, p.stderr
        got[mode] = json.loads(p.stdout.strip().splitlines()[-1])
    # only the history screen's module, and none of the heavy libraries, before the first frame
    assert got["prefetch"][1] == ["demoai.tui.screens.history"] == got["worker"][1]
    # with the prefetch the first frame already shows every commit (13 here); without, none
    assert got["prefetch"][0] == 13 and got["worker"][0] == 0


@_sync
async def test_history_shows_the_graph_the_commit_pane_and_filters(repo_dir: Path) -> None:
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        hist = app.screen
        await _until(pilot, lambda: hist.commit_count() >= 13 and _workers_idle(app))
        repo = P.open_repository(repo_dir)
        log = P.log(repo, all_refs=True)
        heads = {c for r, c in repo.refs().items() if r.startswith(("refs/heads/", "refs/tags/", "refs/sessions/"))}
        everything = [c.id for c in P.topo_order(repo, sorted(repo.peel(h) for h in heads))]
        assert len(log) == 9 and len(everything) == 13          # 4 commits on session refs
        assert [c for c in hist._shown if c] == everything
        assert [c for c in everything if c in {e["id"] for e in log}] == [e["id"] for e in log]
        table = hist.query_one("#commits")
        idx = hist._shown.index(log[0]["id"])
        assert "HEAD -> main" in str(table.get_row_at(idx)[2])
        table.move_cursor(row=idx)
        await _until(pilot, lambda: log[0]["id"] in _text(hist.query_one("#commit-detail")))
        pane = _text(hist.query_one("#commit-detail"))
        assert log[0]["id"] in pane and "lineage" in pane and "evals/arith/smollm2.eval.json" in pane
        # move to the import commit: its pane lists every artifact and the lineage command
        table.move_cursor(row=hist._shown.index(log[-1]["id"]))
        await _until(pilot, lambda: "demoai commit -m import" in _text(hist.query_one("#commit-detail")))
        assert "data/qa.jsonl" in _text(hist.query_one("#commit-detail"))
        # filters: text, author, path, kind
        for query, expect in (("prompt", {"Slower prompt", "Fix row 3, replace row 11, reword the prompt",
                                          "Import data, prompt, agent and model"}),
                              ("path:agents/", {"Import data, prompt, agent and model", "More steps", "Merge side into main"}),
                              ("kind:eval", {"eval arith on smollm2"}),
                              ("author:nobody", set())):
            hist.apply_filter(query)
            await _until(pilot, lambda: _workers_idle(app))
            got = {c.summary for r in hist.rows if (c := r.commit) and c.id in hist._shown}
            if expect == {"eval arith on smollm2"}:
                assert len(got) == 2 and all(g.startswith("eval arith on smollm2") for g in got)
            else:
                assert got == expect, query
        await pilot.press("escape")
        await _until(pilot, lambda: hist.commit_count() == 13)


@_sync
async def test_typed_diffs_of_a_commit_and_against_a_ref(repo_dir: Path, built) -> None:
    c2 = built[1]["c2"]
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        await app.open_diff(c2)
        diff = app.screen
        await _until(pilot, lambda: diff.changes)
        by_path = {d["path"]: d for d in diff.changes}
        assert set(by_path) == {"data/qa.jsonl", "prompts/qa.prompt.yaml", "models/tiny.gguf"}
        view = diff.query_one("#change-view")
        shown = {}
        for i, d in enumerate(diff.changes):
            diff.query_one("#changes").index = i
            await pilot.pause()
            shown[d["path"]] = _text(view)
        ds = shown["data/qa.jsonl"]
        assert "+1 added, -1 removed, ~1 modified" in ds and "6 → six" in ds and "id=100" in ds and "id=11" in ds
        assert "-template: \"Compute carefully" in shown["prompts/qa.prompt.yaml"].replace("'", "\"") or \
            "carefully" in shown["prompts/qa.prompt.yaml"]
        assert "step by step" in shown["prompts/qa.prompt.yaml"]
        share = by_path["models/tiny.gguf"]["changed_share"]
        assert f"{share:.2%}" in shown["models/tiny.gguf"] and 0 < share < 0.6
        # enter on the dataset opens its rows at that commit
        diff.query_one("#changes").index = list(by_path).index("data/qa.jsonl")
        diff.query_one("#changes").focus()
        await pilot.press("r")
        await _until(pilot, lambda: type(app.screen).__name__ == "DatasetScreen")
        assert app.screen.ref == c2
        await pilot.press("escape", "escape")
        # the eval result against the previous one: metric deltas with paired tests
        await app.open_diff("HEAD", against="HEAD~2")
        ev = app.screen
        await _until(pilot, lambda: ev.changes)
        d = next(d for d in ev.changes if d["kind"] == "eval")
        ev.query_one("#changes").index = ev.changes.index(d)
        await pilot.pause()
        text = _text(ev.query_one("#change-view"))
        assert "delta [95% CI]" in text and "McNemar p" in text and "exact_match" in text
        assert set(d["paired"]) == {"exact_match", "contains"}


@_sync
async def test_diff_against_a_ref_is_asked_for(repo_dir: Path) -> None:
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        hist = app.screen
        await _until(pilot, lambda: hist.commit_count() >= 13)
        await pilot.press("o")
        await pilot.press(*"v1", "enter")
        await _until(pilot, lambda: type(app.screen).__name__ == "DiffScreen" and app.screen.changes)
        assert app.screen.against == "v1"
        assert {"prompts/qa.prompt.yaml", "data/qa.jsonl"} <= {d["path"] for d in app.screen.changes}


# ------------------------------------------------------------------------- datasets
class _Counting:
    """A RowSource of ``n`` rows that records every fetch."""

    def __init__(self, n: int) -> None:
        self.columns, self.total, self.calls = ["i", "square"], n, []

    def fetch(self, offset: int, limit: int) -> list[list[str]]:
        self.calls.append((offset, limit))
        return [[str(i), str(i * i)] for i in range(offset, min(self.total, offset + limit))]


@_sync
async def test_the_row_table_pages_and_keeps_few_pages(repo_dir: Path) -> None:
    from textual.app import App

    class One(App):
        def compose(self):
            yield RowTable(src)
    src = _Counting(1_000_000)
    app = One()
    async with app.run_test(size=(80, 30)) as pilot:
        table = app.query_one(RowTable)
        table.focus()
        await _until(pilot, table.visible_ready)
        assert table.row(0) == ["0", "0"] and src.calls == [(0, PAGE)]
        await pilot.press(*["pagedown"] * 40)
        await _until(pilot, table.visible_ready)
        assert table.cursor_row == 40 * table._rows_on_screen()
        await pilot.press("end")
        await _until(pilot, table.visible_ready)
        assert table.cursor_row == 999_999 and table.row(999_999) == ["999999", str(999_999 ** 2)]
        assert table.cached_pages() <= MAX_PAGES
        assert all(limit == PAGE for _, limit in src.calls)
        assert len(src.calls) < 30           # the pages passed over at once are never read


@_sync
async def test_dataset_rows_schema_and_query(repo_dir: Path) -> None:
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        await app.open_dataset("data/qa.jsonl", "v1")
        ds = app.screen
        table = ds.query_one(RowTable)
        await _until(pilot, lambda: ds.pager is not None and table.visible_ready())
        assert table.total == 12 and table.source.columns == ["id", "question", "answer"]
        assert table.row(3) == ["3", "What is 3 + 3?", "6"]
        assert "12 rows" in _text(ds.query_one("#dataset-info")) and "key id" in _text(ds.query_one("#dataset-info"))
        schema = _text(ds.query_one("#schema"))
        assert "question" in schema and "string" in schema
        await pilot.press("end")
        assert table.cursor_row == 11
        # the query box: its result in the same table, escape returns to the rows
        ds.query_one("#query").value = "SELECT answer, count(*) AS n FROM table('data/qa.jsonl') GROUP BY 1 ORDER BY 1"
        await pilot.press("slash", "enter")
        await _until(pilot, lambda: ds.result is not None and table.visible_ready())
        assert table.source.columns == ["answer", "n"] and table.total == 12
        assert table.row(0) == ["0", "1"]
        ds.query_one("#query").value = "SELECT nope FROM table('data/qa.jsonl')"
        await pilot.press("slash", "enter")
        await _until(pilot, lambda: "query failed" in _text(ds.query_one("#dataset-info")))
        table.focus()
        await pilot.press("escape")
        assert ds.result is None and table.source is ds.pager
        await pilot.press("escape")
        assert type(app.screen).__name__ == "HistoryScreen"


@_sync
async def test_the_artifact_tree_opens_datasets_and_eval_results(repo_dir: Path) -> None:
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        tree = app.screen
        await _until(pilot, lambda: tree.entries)
        paths = [e.path for e in tree.entries]
        assert "data/qa.jsonl" in paths and "evals/arith/smollm2.eval.json" in paths
        tree.query_one("#artifacts").move_cursor(row=paths.index("data/qa.jsonl"))
        await _until(pilot, lambda: "last_change" in _text(tree.query_one("#artifact-detail")))
        await pilot.press("enter")
        await _until(pilot, lambda: type(app.screen).__name__ == "DatasetScreen")
        await pilot.press("escape")


# ------------------------------------------------------------------------- sessions
async def _sessions(app: Any, pilot: Any) -> Any:
    await pilot.press("3")
    s = app.screen
    await _until(pilot, lambda: s.session and s.events and s.files is not None and _workers_idle(app))
    return s


@_sync
async def test_sessions_fork_tree_timeline_and_workspace(repo_dir: Path) -> None:
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        s = await _sessions(app, pilot)
        tree = s.query_one("#session-tree")
        top = {str(n.data): [str(c.data) for c in n.children] for n in tree.root.children}
        assert top == {"run1": ["run1-alt"]}
        s.open_session("run1")
        await _until(pilot, lambda: s.session == "run1" and len(s.events) == 6 and _workers_idle(app))
        assert [e[1] for e in s.events][-2:] == ["tool_call", "run_end"]
        assert s.files == ["hello.txt"]
        s.query_one("#timeline").move_cursor(row=0)          # step 0: nothing written yet
        await _until(pilot, lambda: s.workspace_step == 0 and _workers_idle(app))
        assert s.files == []
        s.query_one("#timeline").move_cursor(row=3)
        await _until(pilot, lambda: s.files == ["hello.txt"] and _workers_idle(app))
        ws = s.query_one("#workspace")
        ws.focus()
        await pilot.press("enter")
        await _until(pilot, lambda: "hello.txt @ step 1" in _text(s.query_one("#file-view")))
        assert "hello" in _text(s.query_one("#file-view")).split("step 1", 1)[1]
        assert "forks: run1-alt" in _text(s.query_one("#session-info"))


@_sync
async def test_fork_is_confirmed_and_runs_through_the_porcelain(repo_dir: Path) -> None:
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        s = await _sessions(app, pilot)
        s.open_session("run1")
        await _until(pilot, lambda: s.session == "run1" and len(s.events) == 6 and _workers_idle(app))
        s.query_one("#timeline").move_cursor(row=3)          # an event of step 1
        await pilot.pause()
        # refused at the confirmation: nothing written
        await pilot.press("f", *"Write bye.txt", "enter", "n")
        await _until(pilot, lambda: _workers_idle(app))
        assert {x.name for x in P.browse.session_list(app.repo)} == {"run1", "run1-alt"}
        await pilot.press("f", *"Write bye.txt", "enter", "y")
        await _until(pilot, lambda: len(P.browse.session_list(app.repo)) == 3 and _workers_idle(app) and not s.busy)
        new = next(x for x in P.browse.session_list(app.repo) if x.name not in ("run1", "run1-alt"))
        assert new.forked_from == "run1" and new.parent["step"] == 1
        await _until(pilot, lambda: s.session == new.name)


@_sync
async def test_continue_and_replay_run_in_workers_with_their_verdict(repo_dir: Path, monkeypatch) -> None:
    from demoai.porcelain import agent as A
    calls: list[str] = []

    def fake_continue(repo, name, on_event=None, **kw):
        calls.append(name)
        on_event("tool_result", {"step": 2, "tool": "write_file"})
        return A.RunResult(session=name, steps=2, status="finished", answer="ok", head="x", commit="y")

    def fake_reexecute(repo, spec, mode, from_step=None, on_step=None, **kw):
        assert mode == "reexecute"
        calls.append(f"reexecute {spec}")
        on_step({"step": 1, "tool": "write_file", "same": True})
        return A.ReexecuteReplay(session=spec, from_step=0, steps_replayed=1, identical=True,
                                 first_divergence=None, steps=[])
    monkeypatch.setattr(A, "continue_session", fake_continue)
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        s = await _sessions(app, pilot)
        s.open_session("run1")
        await _until(pilot, lambda: s.session == "run1" and _workers_idle(app))
        log = s.query_one("#action-log")
        # replay recorded: reads only, runs at once
        await pilot.press("r")
        await _until(pilot, lambda: not s.busy and any("hash chain verified" in str(x) for x in log.lines))
        await pilot.press("c", "n")
        await _until(pilot, lambda: _workers_idle(app))
        assert calls == []
        await pilot.press("c", "y")
        await _until(pilot, lambda: calls == ["run1"] and not s.busy)
        assert any("finished after 2 steps" in str(x) for x in log.lines)
        monkeypatch.setattr(A, "replay", fake_reexecute)
        await pilot.press("R", "y")
        await _until(pilot, lambda: not s.busy and any("identical observations" in str(x) for x in log.lines))
        assert calls[-1] == "reexecute run1"


# ------------------------------------------------------------------------- evaluations
@_sync
async def test_leaderboard_and_failed_only_examples(repo_dir: Path) -> None:
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        ev = app.screen
        await _until(pilot, lambda: ev.rows)
        expected = P.evaluate.list_evals(app.repo)
        assert [(r.suite, r.model, r.path) for r in ev.rows] == [(r.suite, r.model, r.path) for r in expected]
        lb = ev.query_one("#leaderboard")
        row = [str(c) for c in lb.get_row_at(0)]
        s = expected[0].scores["exact_match"]
        assert row[:2] == ["arith", "smollm2"] and row[2].startswith(f"{s['value']:.4g} [")
        await pilot.press("enter")
        res = app.screen
        table = res.query_one(RowTable)
        await _until(pilot, lambda: table.total and table.visible_ready())
        assert table.total == 4 and {"item", "input", "output", "reference"} <= set(table.source.columns)
        view = P.evaluate.show_eval(app.repo, "HEAD:evals/arith/smollm2.eval.json", examples=100, failed=True)
        await pilot.press("f")
        await _until(pilot, lambda: res.failed and _workers_idle(app) and table.total == len(view.examples))
        col = table.source.columns.index("item")
        score = table.source.columns.index("score:exact_match")
        assert all(float(table.row(i)[score]) < 1 for i in range(table.total))
        assert [table.row(i)[col] for i in range(table.total)] == [str(e["item"]) for e in view.examples]
        await pilot.press("escape")


# ------------------------------------------------------------------------- app
@_sync
async def test_help_palette_and_quit(repo_dir: Path) -> None:
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        await _until(pilot, lambda: app.screen.commit_count())
        await pilot.press("question_mark")
        assert type(app.screen).__name__ == "HelpScreen"
        keys = {r[1] for r in app.screen.rows}
        assert {"Quit", "Filter", "Diff vs ref", "Sessions", "Command palette"} <= keys
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert type(app.screen).__name__ == "CommandPalette"
        await pilot.press(*"Sessions")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await _until(pilot, lambda: type(app.screen).__name__ == "SessionsScreen")
        await pilot.press("q")
    assert app.return_code == 0


def test_the_command_starts_it_and_refuses_outside_a_repository(repo_dir: Path, tmp_path: Path) -> None:
    svg = tmp_path / "shot.svg"
    res = CliRunner().invoke(main, ["tui", "--screenshot", str(svg), "--size", "120x30"])
    assert res.exit_code == 0, res.output
    assert svg.read_text().startswith("<svg") and "Import&#160;data" in svg.read_text()
    os.chdir(tmp_path)
    res = CliRunner().invoke(main, ["tui"])
    assert res.exit_code == 1 and "demoai init" in res.output


# ------------------------------------------------------------------------- snapshots
def _snap_app(repo_dir: Path, start: Any) -> tuple[DemoAIApp, Any]:
    app = DemoAIApp(repo_dir)

    async def run_before(pilot: Any) -> None:
        await _until(pilot, lambda: app.screen.commit_count() and _workers_idle(app))
        await start(app, pilot)
        await _until(pilot, lambda: _workers_idle(app))
        await pilot.pause(0.1)
    return app, run_before


def test_snapshot_dataset_screen(repo_dir: Path, snap_compare) -> None:
    async def start(app, pilot):
        await app.open_dataset("data/qa.jsonl", "main")
        await _until(pilot, lambda: app.screen.pager is not None and app.screen.query_one(RowTable).visible_ready())
    app, run_before = _snap_app(repo_dir, start)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_snapshot_diff_screen(repo_dir: Path, snap_compare) -> None:
    async def start(app, pilot):
        await app.open_diff("main", against="v1")
        await _until(pilot, lambda: app.screen.changes)
        app.screen.query_one("#changes").index = [d["path"] for d in app.screen.changes].index("data/qa.jsonl")
    app, run_before = _snap_app(repo_dir, start)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_snapshot_sessions_screen(repo_dir: Path, snap_compare) -> None:
    async def start(app, pilot):
        await pilot.press("3")
        s = app.screen
        await _until(pilot, lambda: s.session and s.events and _workers_idle(app))
        s.open_session("run1")
        await _until(pilot, lambda: s.session == "run1" and len(s.events) == 6 and _workers_idle(app))
    app, run_before = _snap_app(repo_dir, start)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_snapshot_help_screen(repo_dir: Path, snap_compare) -> None:
    async def start(app, pilot):
        await pilot.press("question_mark")
    app, run_before = _snap_app(repo_dir, start)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


# ------------------------------------------------------------------------- rows, stats, checkout
def test_row_last_change_finds_the_commit_that_changed_a_row(built) -> None:
    root, info = built
    repo = P.open_repository(root)
    ch = T.row_last_change(repo, "data/qa.jsonl", 3)                 # "6" -> "six" in c2
    assert ch.commit.id == info["c2"] and ch.status == "modified"
    assert ch.before["answer"] == "6" and ch.after["answer"] == "six"
    ch = T.row_last_change(repo, "data/qa.jsonl", "100")             # added in c2
    assert ch.commit.id == info["c2"] and ch.status == "added" and ch.before is None
    ch = T.row_last_change(repo, "data/qa.jsonl", "0")               # untouched since the import
    assert ch.commit.id == info["c1"] and ch.status == "added"
    assert T.row_last_change(repo, "data/qa.jsonl", "3", "v1").commit.id == info["c1"]
    with pytest.raises(PathNotFound):
        T.row_last_change(repo, "data/qa.jsonl", "11")               # removed in c2
    repo.close()


@_sync
async def test_dataset_stats_pane_and_jump_from_a_row_to_its_last_change(repo_dir: Path, built) -> None:
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        await app.open_dataset("data/qa.jsonl", "main")
        ds = app.screen
        table = ds.query_one(RowTable)
        await _until(pilot, lambda: ds.pager is not None and table.visible_ready())
        await pilot.press("i")
        await _until(pilot, lambda: ds.stats is not None)
        expected = P.data.stats(app.repo, "data/qa.jsonl", rev=ds.pager.commit, near=False).stats
        shown = _text(ds.query_one("#stats"))
        assert expected["rows"] == 12 and "rows" in shown and f"{expected['vocabulary']}" in shown
        keys = [table.row(i)[0] for i in range(table.total)]
        table.cursor_row = keys.index("3")
        await pilot.press("l")
        await _until(pilot, lambda: type(app.screen).__name__ == "DiffScreen" and app.screen.changes)
        assert ds.row_change.commit.id == built[1]["c2"] and app.screen.rev == built[1]["c2"]
        await pilot.press("escape")
        table.cursor_row = keys.index("0")
        await pilot.press("l")
        await _until(pilot, lambda: type(app.screen).__name__ == "DiffScreen")
        assert app.screen.rev == built[1]["c1"]


@_sync
async def test_checkout_from_the_history_is_confirmed(repo_dir: Path) -> None:
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        hist = app.screen
        await _until(pilot, lambda: hist.commit_count() >= 13 and _workers_idle(app))
        side = app.repo.branches()["refs/heads/side"]
        hist.query_one("#commits").move_cursor(row=hist._shown.index(side))
        await pilot.pause()
        assert hist.checkout_target() == "side"
        await pilot.press("c", "n")
        await _until(pilot, lambda: _workers_idle(app))
        assert app.repo.current_branch() == "main"
        await pilot.press("c", "y")
        await _until(pilot, lambda: app.repo.current_branch() == "side" and _workers_idle(app))
        assert (repo_dir / "agents/files.agent.yaml").read_text().count("max_steps: 5") == 1
        await _until(pilot, lambda: hist.commit_count() >= 13)


# ------------------------------------------------------------------------- hub
@_sync
async def test_hub_view_ahead_behind_and_confirmed_push_and_fetch(repo_dir: Path, monkeypatch) -> None:
    import importlib
    F = importlib.import_module("demoai.porcelain.fetch")      # the modules, not the functions
    PU = importlib.import_module("demoai.porcelain.push")
    repo = P.open_repository(repo_dir)
    main_tip, side_tip = repo.branches()["refs/heads/main"], repo.branches()["refs/heads/side"]
    c1 = repo.resolve("v1")
    # a hub nobody answers on: the view falls back to the remote-tracking refs
    P.remote_add(repo, "origin", "http://127.0.0.1:9/alice/demo")
    repo.set_ref("refs/remotes/origin/main", c1, None, "test")
    repo.set_ref("refs/remotes/origin/side", side_tip, None, "test")
    ahead, behind = T.ahead_behind(repo, main_tip, c1)
    assert behind == 0 and ahead == len(P.topo_order(repo, [main_tip])) - len(P.topo_order(repo, [c1]))
    assert T.ahead_behind(repo, c1, side_tip) == (0, len(P.topo_order(repo, [side_tip])) - 1)
    repo.close()
    calls: list[Any] = []

    def fake_push(repo, remote, refs=None, progress=None, **kw):
        calls.append(("push", remote, refs))
        progress("chunks", 3, 3)
        return {"url": "u", "updated": [{"ref": "refs/heads/main", "old": c1, "new": main_tip}],
                "stats": {"bytes_sent": 1234}}

    def fake_fetch(repo, remote, progress=None, **kw):
        calls.append(("fetch", remote))
        return {"updated": [], "kept": [], "stats": {"bytes_received": 0}}
    def unreachable(url, token=None):
        raise RemoteError(f"cannot reach {url}: connection refused")
    monkeypatch.setattr(importlib.import_module("demoai.porcelain.remote"), "open_remote", unreachable)
    monkeypatch.setattr(PU, "push", fake_push)
    monkeypatch.setattr(F, "fetch", fake_fetch)
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        hub = app.screen
        await _until(pilot, lambda: hub.status is not None and _workers_idle(app))
        st = {b.branch: b for b in hub.status.branches}
        assert hub.status.source == "tracking" and "connection refused" in hub.status.error
        assert st["main"].state == "ahead" and st["main"].ahead == ahead and st["side"].state == "up to date"
        assert "tracking refs" in _text(hub.query_one("#hub-info"))
        hub.query_one("#branches").move_cursor(row=[b.branch for b in hub.status.branches].index("main"))
        await pilot.press("p", "n")
        await pilot.press("f", "n")
        await _until(pilot, lambda: _workers_idle(app))
        assert calls == []
        await pilot.press("p", "y")
        await _until(pilot, lambda: calls and not hub.busy and _workers_idle(app))
        await pilot.press("f", "y")
        await _until(pilot, lambda: len(calls) == 2 and not hub.busy and _workers_idle(app))
        assert calls == [("push", "origin", ["main"]), ("fetch", "origin")]
        log = " ".join(str(x) for x in hub.query_one("#hub-log").lines)
        assert "pushed main" in log and "1,234 bytes sent" in log and "fetched from origin" in log


# ------------------------------------------------------------------------- evaluations: records, flips
def _commit_records(root: Path) -> dict[str, Any]:
    from demoai.objects import ArenaResult, GateRecord
    from demoai.porcelain import evaluate as PE
    repo = P.open_repository(root)
    a, _, _ = PE.load_eval(repo, "HEAD~2:evals/arith/smollm2.eval.json")
    b, _, _ = PE.load_eval(repo, "HEAD:evals/arith/smollm2.eval.json")
    gate = GateRecord.create(base=a.digest, candidate=b.digest, metric="exact_match", outcome="fail",
                      margin=0.0, alpha=0.05, refs={},
                      test={"effect": -0.25, "lower": -0.75, "upper": 0.0, "p_value": 0.5},
                      flips={"pass_to_fail": ["1", "2"], "fail_to_pass": []})
    PE.commit_record(repo, gate, "evals/gates/arith.gate.json", "gate exact_match: fail",
                     inputs={"base": a.digest, "candidate": b.digest}, parameters={"metric": "exact_match"})
    rows = [{"model": m, "rating": r, "lower": r - 40, "upper": r + 40, "rank": i + 1, "battles": 8,
             "wins": w, "losses": 8 - w, "ties": 0} for i, (m, r, w) in enumerate((("big", 1050.0, 6), ("small", 950.0, 2)))]
    arena = ArenaResult.create(name="duel", models={"big": a.digest, "small": b.digest}, prompts=a.digest,
                        leaderboard={"rows": rows}, counts={"battles": 8},
                               judge={}, pins={}, battles=None)
    PE.commit_record(repo, arena, "evals/arena/duel.arena.json", "arena duel",
                     inputs={"prompts": a.digest}, parameters={"models": ["big", "small"]})
    repo.close()
    return {"rows": rows}


@_sync
async def test_gate_decisions_arena_ratings_and_flipped_examples(repo_dir: Path) -> None:
    _commit_records(repo_dir)
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        ev = app.screen
        await _until(pilot, lambda: ev.records is not None and _workers_idle(app))
        assert [g["outcome"] for g in ev.records.gates] == ["fail"] and ev.records.gates[0]["flips"]["pass_to_fail"] == 2
        text = _text(ev.query_one("#records"))
        assert "gate decisions" in text and "fail" in text and "-0.25 [-0.75, 0]" in text
        assert "arena duel" in text and "1050 [1010, 1090]" in text and "950 [910, 990]" in text
        # the examples of the newest result, only those flipped against the older one
        await app.open_eval("HEAD~2:evals/arith/smollm2.eval.json")
        res = app.screen
        table = res.query_one(RowTable)
        await _until(pilot, lambda: table.total and table.visible_ready())
        assert table.total == 4
        await pilot.press("x")
        await pilot.press("ctrl+a", "ctrl+k", *"HEAD:evals/arith/smollm2.eval.json", "enter")
        await _until(pilot, lambda: res.against and _workers_idle(app) and "flip" in (table.source.columns or [])
                     and table.visible_ready())
        cmp = P.evaluate.compare_evals(app.repo, "HEAD:evals/arith/smollm2.eval.json",
                                       "HEAD~2:evals/arith/smollm2.eval.json", rounds=200)
        m = next((m for m in cmp.metrics if m.flips), None)
        want = {str(i) for k in ("pass_to_fail", "fail_to_pass") for i in (m.flips.get(k, []) if m else [])}
        assert table.total == len(want)
        assert ("flips of" if m else "no pass/fail metric") in _text(res.query_one("#eval-info"))
        col = table.source.columns.index("item") if want else 0
        assert {table.row(i)[col] for i in range(table.total)} == want
        if m and m.flips.get("pass_to_fail"):
            i = [table.row(k)[col] for k in range(table.total)].index(str(m.flips["pass_to_fail"][0]))
            assert table.row(i)[0] == "pass -> fail"
        await pilot.press("x")
        await _until(pilot, lambda: not res.against and _workers_idle(app) and table.total == 4)


# ------------------------------------------------------------------------- training and scans
def _commit_scan(root: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from demoai.train.scan import tensor_stats
    rng = np.random.default_rng(0)
    rows = [tensor_stats(f"blk.{layer}.{m}.weight", rng.normal(0, 0.1 * (layer + 1), (8, 8)).astype(np.float32)).to_dict()
            for layer in range(3) for m in ("attn_q", "ffn_up")]
    rows.append(tensor_stats("token_embd.weight", rng.normal(0, 1, (4, 8)).astype(np.float32)).to_dict())
    flat = [{k: (json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()} for r in rows]
    (root / "scans").mkdir()
    pq.write_table(pa.Table.from_pylist(flat), root / "scans/tiny.weights.parquet")
    repo = P.open_repository(root)
    P.commit(repo, "Scan weights of tiny", paths=[root / "scans/tiny.weights.parquet"])
    repo.close()


@_sync
async def test_training_curves_and_brain_scan_heatmap(repo_dir: Path, monkeypatch) -> None:
    from demoai.porcelain import train as PT
    _commit_scan(repo_dir)
    curve = [{"step": s, "loss": 3.0 / s, "lr": 1e-3 * min(1, s / 3), "val_loss": (3.2 / s if s % 5 == 0 else None)}
             for s in range(1, 21)]
    info = PT.RunInfo(name="r1", ref="refs/heads/train/r1", commit="c" * 40, status="finished", step=20, total=20,
                      config="train/r1.train.yaml", base="smollm2", dataset="data/qa.jsonl", loss=0.15,
                      val_loss=0.16, tokens_per_s=100.0, wall_s=3.0, adapter="runs/r1/adapter")
    monkeypatch.setattr(PT, "runs", lambda repo: [info])
    monkeypatch.setattr(PT, "show_run", lambda repo, name: PT.RunView(info, curve, [{"commit": "c" * 40}]))
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        tr = app.screen
        await _until(pilot, lambda: tr.curve and tr.scans and _workers_idle(app))
        assert tr.run_name == "r1" and tr.curve == curve and tr.scans == ["scans/tiny.weights.parquet"]
        plot = tr.query_one("#curve")
        assert plot.display and "r1" in _text(tr.query_one("#run-info"))
        assert "loss" in str(plot.render()) or plot.plt is not None
        tr.query_one("#scans").focus()
        tr.open_scan("scans/tiny.weights.parquet")
        await _until(pilot, lambda: tr.grid is not None and _workers_idle(app))
        g = tr.grid
        assert g.value == "norm" and g.layers == [0, 1, 2] and g.modules == ["attn_q.weight", "ffn_up.weight"]
        assert g.other == 1 and g.grid[2][0] > g.grid[0][0]          # layer 2's weights are wider
        assert not plot.display and "3 layers x 2 modules" in _text(tr.query_one("#run-info"))
        assert "ffn_up.weight" in _text(tr.query_one("#heatmap"))
        await pilot.press("v")
        await _until(pilot, lambda: tr.grid.value != "norm" and _workers_idle(app))
        assert tr.grid.value == g.values[1]


# ------------------------------------------------------------------------- loaded, drawn whole
@_sync
async def test_tables_are_drawn_whole_even_before_the_table_measures_its_columns(repo_dir: Path, monkeypatch) -> None:
    """A DataTable widens its columns only when idle, and rows it drew before that stayed
    cached at the old widths (``finish`` for ``finished``: the hub and training snapshots'
    flake under load). The hub and training screens size their columns from the rows: a row
    drawn right after the results are applied, before any idle, is whole."""
    import dataclasses

    from demoai.porcelain import train as PT
    from demoai.tui.screens.hub import HubScreen
    from demoai.tui.screens.training import TrainingScreen
    info = PT.RunInfo(name="r1", ref="refs/heads/train/r1", commit="c" * 40, status="stopped", step=2, total=20,
                      config="train/r1.train.yaml", base="smollm2", dataset="data/qa.jsonl", loss=0.5,
                      val_loss=None, tokens_per_s=100.0, wall_s=3.0, adapter="runs/r1/adapter")
    monkeypatch.setattr(PT, "runs", lambda repo: [info])
    monkeypatch.setattr(PT, "show_run", lambda repo, name: PT.RunView(info, [{"step": 1, "loss": 0.5}], []))
    repo = P.open_repository(repo_dir)
    P.remote_add(repo, "origin", "http://127.0.0.1:9/alice/demo")         # nobody answers: tracking refs
    repo.set_ref("refs/remotes/origin/main", repo.resolve("v1"), None, "test")
    repo.close()
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await _until(pilot, lambda: isinstance(app.screen, TrainingScreen) and app.screen.loaded)
        tr = app.screen
        longer = dataclasses.replace(info, name="a-much-longer-run-name", status="finished", step=20, loss=5.4713)
        tr._show([longer], [], "")                     # what a read hands over; no idle in between
        row = tr.query_one("#runs").render_line(1).text.split()
        assert row[:4] == ["a-much-longer-run-name", "finished", "20/20", "5.471"]
        await _until(pilot, lambda: tr.loaded)

        await pilot.press("6")
        await _until(pilot, lambda: isinstance(app.screen, HubScreen) and app.screen.loaded)
        hub = app.screen
        assert [b.branch for b in hub.status.branches][:1] == ["main"]
        b = hub.status.branches[0]
        hub._show(dataclasses.replace(hub.status, branches=[dataclasses.replace(b, branch="release/2026-a-long-name")]))
        row = hub.query_one("#branches").render_line(1).text.split()
        assert row[0] == "release/2026-a-long-name" and row[-1] == b.state and b.remote[:12] in row


@_sync
async def test_loaded_waits_for_the_last_read_asked_for_and_drops_older_ones(repo_dir: Path) -> None:
    """``loaded``: False from a read's ask until its results are applied and drawn; a read
    superseded by a later one in the same slot is not applied when it lands late."""
    from demoai.tui.screens.training import TrainingScreen
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await _until(pilot, lambda: isinstance(app.screen, TrainingScreen) and app.screen.loaded)
        tr = app.screen
        shown: list[str] = []
        first, second = tr.ask("lists"), tr.ask("lists")
        assert not tr.loaded
        tr.landed("lists", second, shown.append, "second")
        tr.landed("lists", first, shown.append, "first")        # late: dropped
        assert shown == ["second"] and not tr.loaded           # applied, not drawn yet
        other = tr.ask("shown")
        await pilot.pause(0.1)
        assert not tr.loaded                                    # another slot still reading
        tr.landed("shown", other, shown.append, "run")
        await _until(pilot, lambda: tr.loaded)
        assert shown == ["second", "run"]


@_sync
async def test_every_screens_table_is_drawn_whole_before_it_measures_its_columns(repo_dir: Path) -> None:
    """The history (a page appended), artifacts, sessions (timeline and workspace) and
    leaderboard tables: a row drawn right after results are applied, before the table is idle
    (when a DataTable measures auto-width columns), is whole, with its styled cells kept."""
    import dataclasses

    from demoai.porcelain.tui_data.history import HistoryRow
    app = DemoAIApp(repo_dir)
    async with app.run_test(size=SIZE) as pilot:
        await _until(pilot, lambda: app.screen.commit_count() and _workers_idle(app))
        h = app.screen
        c = next(r.commit for r in h.rows if r.commit is not None)
        longer = dataclasses.replace(c, id="f" * 40, short_id="f" * 12, refs=[],
                                     author="Anne Longername <anne@example.com>")
        h._add_rows([HistoryRow("*", longer)])
        line = h.query_one("#commits").render_line(len(h._shown))      # the header is line 0
        assert len(c.author.split(" <")[0]) < 15 and "Anne Longername" in line.text and "f" * 12 in line.text
        assert any(s.text == "f" * 12 and s.style and s.style.color.name == "yellow" for s in line._segments)

        await pilot.press("2")
        tree = app.screen
        await _until(pilot, lambda: tree.entries and _workers_idle(app))
        t = P.browse.tree(app.repo, None)
        e = t.entries[0]
        tree._show(dataclasses.replace(t, entries=[dataclasses.replace(e, path="data/a-much-longer-path.jsonl",
                                                                       kind="a-longer-kind")]))
        assert tree.query_one("#artifacts").render_line(1).text.split()[:2] == [
            "data/a-much-longer-path.jsonl", "a-longer-kind"]

        s = await _sessions(app, pilot)
        tl = P.browse.session_timeline(app.repo, s.session)
        renamed = [dataclasses.replace(st, events=[dataclasses.replace(ev, type="a_much_longer_event_type")
                                                   for ev in st.events]) for st in tl.steps]
        s._show_timeline(dataclasses.replace(tl, steps=renamed))
        assert s.query_one("#timeline").render_line(1).text.split()[:2] == [
            str(tl.steps[0].step), "a_much_longer_event_type"]
        s._show_workspace(s.session, 1, {"notes/longer.txt": 1234567})
        assert s.query_one("#workspace").render_line(1).text.split() == [
            "notes/longer.txt", "1,234,567"]
        await _until(pilot, lambda: _workers_idle(app))

        await pilot.press("4")
        ev = app.screen
        await _until(pilot, lambda: ev.rows and _workers_idle(app))
        ev._show([dataclasses.replace(ev.rows[0], suite="a-much-longer-suite", model="a-much-longer-model")])
        assert ev.query_one("#leaderboard").render_line(1).text.split()[:2] == [
            "a-much-longer-suite", "a-much-longer-model"]
