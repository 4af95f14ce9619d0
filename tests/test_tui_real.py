"""The TUI's hub and training views on the real thing (issue 16), through Textual's pilot
and pytest-textual-snapshot:

- hub: a real hub process on 127.0.0.1 (:mod:`tests.helpers.hub`) holding a repository
  whose branches are ahead, behind, diverged, up to date, local only and remote only; the
  hub view shows each with its counts, a fetch (confirmed) brings the hub's commits and turns
  "fetch to compare" into counts, and a push (refused, then confirmed) lands on the hub;
- training: a real LoRA run of a tiny random Llama (a few steps, ``scan_every: 2``) on
  branch ``train/t1``: the view shows its loss curve (textual-plotext) and its own brain scan
  as a layer x module heatmap, per scan step and statistic, with the numbers the scan table
  holds (read back through DuckDB);
- snapshots of both views on fixed repositories: commits written with fixed trees, author,
  times and time zone (so their ids are the same on every run), the hub on a fixed port.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("textual")

from demoai import porcelain as P  # noqa: E402
from demoai.objects import Prompt  # noqa: E402
from demoai.porcelain.remote import open_remote  # noqa: E402
from demoai.tui.app import DemoAIApp  # noqa: E402
from demoai.tui.screens.hub import HubScreen  # noqa: E402
from demoai.tui.screens.training import TrainingScreen  # noqa: E402
from tests.helpers.hub import HubServer, make_user, running_hub  # noqa: E402
from tests.helpers.pilot import run_async, widget_text  # noqa: E402

pytestmark = pytest.mark.timeout(300)

SIZE = (140, 42)
AUTHOR = "Test User <test@example.com>"
T0 = 1_700_000_000                   # 2023-11-14 22:13 UTC
SNAPSHOT_PORT = 18_716               # the snapshot's hub URL is on screen: a fixed port
PROMPT = """name: qa
template: "Answer: {{question}} (VERSION)"
variables: [question]
parameters: {temperature: 0, max_tokens: 16}
"""


# ------------------------------------------------------------------------- helpers
async def _until(pilot: Any, cond: Any, timeout: float = 30.0) -> None:
    """Let the app run until ``cond()`` holds (workers read in threads)."""
    t = time.monotonic()
    while not cond():
        if time.monotonic() - t > timeout:
            raise AssertionError("timed out waiting for the UI")
        await pilot.pause(0.02)
    await pilot.pause()


def _idle(app: Any) -> bool:
    return not any(w.is_running for w in app.workers)


async def _loaded(pilot: Any, screen: type, timeout: float = 30.0) -> Any:
    """Let the app run until it shows a ``screen`` whose reads have all landed and been drawn
    (its ``loaded``), then until what that scheduled is done; the screen."""
    app = pilot.app
    await _until(pilot, lambda: isinstance(app.screen, screen) and app.screen.loaded, timeout)
    await pilot.wait_for_scheduled_animations()
    return app.screen


_text = widget_text
_sync = run_async


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch):
    """Commits carry the local time zone: UTC here, so that their ids do not depend on it."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# ------------------------------------------------------------------------- hub
def _commit(repo: Any, parent: str | None, version: str, message: str, when: int) -> str:
    """A commit holding one prompt, with no lineage record and a fixed author and time: the
    same id on every run."""
    tree = repo.write_tree({"prompts/qa.prompt.yaml": Prompt.from_text(PROMPT.replace("VERSION", version))}, None)
    return repo.make_commit(tree, [parent] if parent else [], message, AUTHOR, when)


def _hub_repo(root: Path, url: str, token: str) -> dict[str, str]:
    """A repository pushed to the hub at ``url``, then moved on locally so that its branches
    are, against the hub: main ahead 1, side behind 1, exp diverged (1 and 1), release up to
    date, old remote only, wip local only. Returns the commits by name."""
    repo = P.init(root)
    c = {"import": _commit(repo, None, "v1", "Import the prompt", T0)}
    c["reword"] = _commit(repo, c["import"], "v2", "Reword the prompt", T0 + 60)
    c["side"] = _commit(repo, c["import"], "side", "Side: a shorter prompt", T0 + 120)
    c["exp-hub"] = _commit(repo, c["import"], "exp1", "Experiment: longer answers", T0 + 180)
    c["exp-here"] = _commit(repo, c["import"], "exp2", "Experiment: other wording", T0 + 240)
    pushed = {"main": "import", "side": "side", "exp": "exp-hub", "release": "import", "old": "import"}
    for b, k in pushed.items():
        repo.set_ref(f"refs/heads/{b}", c[k], None, "test")
    P.remote_add(repo, "origin", url)
    P.push(repo, "origin", sorted(pushed), token=token)
    for b, (old, new) in {"main": ("import", "reword"), "side": ("side", "import"),
                          "exp": ("exp-hub", "exp-here")}.items():
        repo.set_ref(f"refs/heads/{b}", c[new], c[old], "test")
    repo.delete_ref("refs/heads/old", c["import"])
    repo.set_ref("refs/heads/wip", c["reword"], None, "test")
    for r in [r for r in repo.refs() if r.startswith("refs/remotes/")]:
        repo.delete_ref(r, repo.refs()[r])        # as a fresh clone of someone else would be
    repo.close()
    return c


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    """A real hub on 127.0.0.1 (a random port) with user alice."""
    with running_hub(tmp_path_factory.mktemp("hub") / "data") as server:
        yield server


def _hub_refs(url: str, token: str) -> dict[str, str]:
    ep = open_remote(url, token)
    try:
        return ep.refs()["refs"]
    finally:
        ep.close()


@_sync
async def test_hub_view_against_a_real_hub_fetch_and_push_land(hub: HubServer, tmp_path: Path, utc,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    token = hub.tokens["alice"]["write"]
    url = hub.repo_url("alice", "tui-live")
    c = _hub_repo(tmp_path / "repo", url, token)
    monkeypatch.setenv("DEMOAI_TOKEN", token)          # what `demoai login` would have saved
    monkeypatch.chdir(tmp_path / "repo")
    app = DemoAIApp(tmp_path / "repo")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        h = await _loaded(pilot, HubScreen)
        st = {b.branch: b for b in h.status.branches}
        assert h.status.source == "hub" and h.status.error is None
        assert {b: (s.state, s.ahead, s.behind) for b, s in st.items()} == {
            "main": ("ahead", 1, 0), "exp": ("diverged", 1, 1), "release": ("up to date", 0, 0),
            "side": ("behind", 0, 1), "old": ("remote only", None, None), "wip": ("local only", None, None)}
        assert "the hub's refs, read just now" in _text(h.query_one("#hub-info"))
        table = h.query_one("#branches")
        shown = {str(table.get_row_at(i)[0]): [str(x) for x in table.get_row_at(i)] for i in range(table.row_count)}
        assert shown["main"] == ["main", c["reword"][:12], c["import"][:12], "1", "0", "ahead"]

        # a commit only the hub has: pushed from another clone, then fetched here
        P.clone(url, tmp_path / "other", token=token, checkout=False)
        orepo = P.open_repository(tmp_path / "other")
        late = _commit(orepo, c["import"], "late", "Release: a late fix", T0 + 300)
        orepo.set_ref("refs/heads/release", late, orepo.ref_value("refs/heads/release"), "test")
        P.push(orepo, "origin", ["release"], token=token)
        orepo.close()
        await pilot.press("g")
        await _until(pilot, lambda: h.loaded and {b.branch: b for b in h.status.branches}["release"].remote == late)
        assert {b.branch: b for b in h.status.branches}["release"].state == "fetch to compare"
        await pilot.press("f", "n")                    # refused: nothing fetched
        await _until(pilot, lambda: _idle(app))
        assert not app.repo.has_object(late)
        await pilot.press("f", "y")
        await _until(pilot, lambda: app.repo.has_object(late) and not h.busy and h.loaded
                     and {b.branch: b for b in h.status.branches}["release"].behind == 1)
        assert app.repo.refs()["refs/remotes/origin/release"] == late
        assert "fetched from origin" in " ".join(str(x) for x in h.query_one("#hub-log").lines)

        # push main: refused first, then confirmed; it lands on the hub
        table.move_cursor(row=[b.branch for b in h.status.branches].index("main"))
        await pilot.pause()
        await pilot.press("p", "n")
        await _until(pilot, lambda: _idle(app))
        assert _hub_refs(url, token)["refs/heads/main"] == c["import"]
        await pilot.press("p", "y")
        await _until(pilot, lambda: not h.busy and h.loaded
                     and {b.branch: b for b in h.status.branches}["main"].state == "up to date")
        assert _hub_refs(url, token)["refs/heads/main"] == c["reword"]
        log = " ".join(str(x) for x in h.query_one("#hub-log").lines)
        assert f"pushed main: refs/heads/main {c['import'][:8]} -> {c['reword'][:8]}" in log
        bar = h.query_one("#hub-progress")
        assert bar.total and bar.progress == bar.total
        # a push the hub must refuse (exp has diverged): the error the CLI shows, nothing moved
        table.move_cursor(row=[b.branch for b in h.status.branches].index("exp"))
        await pilot.pause()
        await pilot.press("p", "y")
        await _until(pilot, lambda: not h.busy and h.loaded and "error:" in
                     " ".join(str(x) for x in h.query_one("#hub-log").lines))
        assert "fetch and merge first" in " ".join(str(x) for x in h.query_one("#hub-log").lines)
        assert _hub_refs(url, token)["refs/heads/exp"] == c["exp-hub"]


def test_snapshot_hub_screen(tmp_path: Path, utc, monkeypatch: pytest.MonkeyPatch, snap_compare) -> None:
    server = HubServer(tmp_path / "hubdata")
    server.port = SNAPSHOT_PORT
    token = make_user(server.data, "alice")["write"]
    server.start()
    try:
        if server.port != SNAPSHOT_PORT:
            pytest.skip(f"port {SNAPSHOT_PORT} is taken: the hub's URL on screen would differ")
        _hub_repo(tmp_path / "repo", server.repo_url("alice", "tui"), token)
        monkeypatch.setenv("DEMOAI_TOKEN", token)
        monkeypatch.chdir(tmp_path / "repo")
        app = DemoAIApp(tmp_path / "repo", mode="hub")

        async def run_before(pilot: Any) -> None:
            await _loaded(pilot, HubScreen)
        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
    finally:
        server.stop()


# ------------------------------------------------------------------------- training
CONFIG = """\
name: arith
base: models/tiny
dataset: data/arith.jsonl
format: template
template: "Question: what is {{a}} plus {{b}}?"
columns: {completion: answer}
lora: {r: 4, alpha: 8, dropout: 0.1}
learning_rate: 0.02
schedule: cosine
warmup_steps: 1
max_steps: 4
batch_size: 4
max_length: 64
validation: {share: 0.2}
eval_every: 2
save_every: 2
scan_every: 2
"""
PAIRS = [(a, b) for a in range(6) for b in range(6)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with a tiny random Llama, arithmetic rows, a config and one real run
    (``t1``: 4 steps, scanned at steps 0, 2 and 4), made once for the module."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from tests.helpers.tiny import tiny_llama_with_lora
    base = tmp_path_factory.mktemp("tiny")
    tiny_llama_with_lora(base / "base", base / "adapter", [f"Question: what is {a} plus {b}? {a + b}" for a, b in PAIRS],
                         vocab_size=300, lora_alpha=8)
    root = tmp_path_factory.mktemp("train") / "repo"
    saved = dict(os.environ)
    os.environ.update({"HOME": str(root.parent / "home"), "GIT_CONFIG_NOSYSTEM": "1", "DEMOAI_AUTHOR": AUTHOR})
    try:
        repo = P.init(root)
        shutil.copytree(base / "base", root / "models/tiny")
        (root / "data").mkdir()
        (root / "data/arith.jsonl").write_text("".join(
            f'{{"id": {i}, "a": {a}, "b": {b}, "answer": "{a + b}"}}\n' for i, (a, b) in enumerate(PAIRS)))
        (root / "arith.train.yaml").write_text(CONFIG)
        P.commit(repo, "model, data, config", paths=[root / "models/tiny", root / "data/arith.jsonl",
                                                     root / "arith.train.yaml"])
        P.train.train_lora(repo, "arith.train.yaml", name="t1")
        repo.close()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return root


@pytest.fixture
def train_dir(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    dst = tmp_path / "repo"
    shutil.copytree(trained, dst, symlinks=True)
    monkeypatch.chdir(dst)
    return dst


def _scan_rows(repo: Any, step: int, value: str) -> dict[tuple[int, str], float]:
    """(layer, module.matrix) -> value of the run's scan at ``step``, read through DuckDB."""
    t = P.query(repo, f"SELECT layer, module, matrix, {value} AS v FROM table('runs/t1/scan.jsonl', 'train/t1') "
                      f"WHERE step = {step}")
    return {(r["layer"], r["module"].split(f"layers.{r['layer']}.", 1)[1] + "." + r["matrix"]): r["v"]
            for r in t.to_pylist()}


def _grid(g: Any) -> dict[tuple[int, str], float]:
    return {(layer, m): v for layer, row in zip(g.layers, g.grid) for m, v in zip(g.modules, row) if v is not None}


@_sync
async def test_training_view_on_a_real_run_curve_and_scan_heatmap(train_dir: Path) -> None:
    app = DemoAIApp(train_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        tr = await _loaded(pilot, TrainingScreen, timeout=60)
        view = P.train.show_run(app.repo, "t1")
        assert tr.run_name == "t1" and tr.curve == view.curve and [r["step"] for r in tr.curve] == [1, 2, 3, 4]
        row = [str(x) for x in tr.query_one("#runs").get_row_at(0)]
        assert row[:3] == ["t1", "finished", "4/4"] and row[3] == f"{view.info.loss:.4g}"
        # the loss curve: drawn by plotext, with its title and series
        plot = tr.query_one("#curve")
        assert plot.display and plot.plt is not None
        drawn = str(plot.render())
        assert "t1: loss and learning rate by step" in drawn and "val_loss" in drawn
        assert sum(ch in drawn for ch in "⠁⠂⠄⡀⠈⠐⠠⢀") >= 3             # braille dots of the curves
        # the run's own scan under it: the last scan step, the numbers of the scan table
        g = tr.grid
        assert tr.scan_of_run == "t1" and g.path == "runs/t1/scan.jsonl"
        assert g.steps == [0, 2, 4] and g.step == 4 and g.value == "norm" and g.layers == [0, 1]
        assert g.modules == ["self_attn.q_proj.A", "self_attn.q_proj.B", "self_attn.v_proj.A", "self_attn.v_proj.B"]
        assert _grid(g) == pytest.approx(_scan_rows(app.repo, 4, "norm"))
        heat = _text(tr.query_one("#heatmap"))
        assert "runs/t1/scan.jsonl: norm at step 4 by layer x module" in heat and "scan steps: 0, 2, 4" in heat
        assert tr.query_one("#heatmap-pane").display and plot.display         # both, one above the other
        # s: the next scan step (after the last, the first); v: the next statistic
        await pilot.press("s")
        await _until(pilot, lambda: tr.grid.step == 0 and tr.loaded)
        assert _grid(tr.grid) == pytest.approx(_scan_rows(app.repo, 0, "norm"))
        assert _grid(tr.grid) != pytest.approx(_grid(g))                    # the B matrices grew from 0
        await pilot.press("v")
        await _until(pilot, lambda: tr.grid.value != "norm" and tr.loaded)
        nxt = tr.grid.value
        assert nxt == g.values[1] and tr.grid.step == 0
        assert _grid(tr.grid) == pytest.approx(_scan_rows(app.repo, 0, nxt))


def test_snapshot_training_screen(train_dir: Path, snap_compare) -> None:
    app = DemoAIApp(train_dir, mode="training")

    async def run_before(pilot: Any) -> None:
        await _loaded(pilot, TrainingScreen, timeout=60)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


# ------------------------------------------------------------------------- as a person would: tmux
class _Tmux:
    """``demoai tui`` in a real terminal (a detached tmux session): keys in, screen text out."""

    def __init__(self, cwd: Path, size: tuple[int, int] = (120, 36)) -> None:
        import subprocess
        import sys
        self.sock = f"demoai-test-{os.getpid()}-{time.monotonic_ns()}"
        exe = Path(sys.executable).parent / "demoai"
        subprocess.run(["tmux", "-L", self.sock, "new-session", "-d", "-s", "t", "-x", str(size[0]), "-y", str(size[1]),
                        "-c", str(cwd), f"exec {exe} tui"], check=True, env=dict(os.environ))

    def _tmux(self, *args: str) -> str:
        import subprocess
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True, timeout=30).stdout

    def screen(self) -> str:
        """The pane's text now."""
        return self._tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str, literal: bool = False) -> None:
        """Send keys (tmux names: Enter, Escape, ...), or ``literal`` text."""
        self._tmux("send-keys", "-t", "t", *(["-l"] if literal else []), *keys)

    def wait(self, text: str, timeout: float = 60.0) -> str:
        """Poll the screen until ``text`` is on it; the screen then."""
        t = time.monotonic()
        while True:
            shot = self.screen()
            if text in shot:
                return shot
            if time.monotonic() - t > timeout:
                raise AssertionError(f"{text!r} did not show within {timeout} s; the screen:\n{shot}")
            time.sleep(0.05)

    def close(self) -> None:
        self._tmux("kill-server")


def test_a_scripted_walk_under_tmux_history_diff_session_fork(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("tmux") is None:
        if os.environ.get("DEMOAI_REQUIRE_ALL"):
            pytest.fail("tmux is not installed (CI installs it: see README's test command)")
        pytest.skip("needs tmux")
    from demoai.store.sessions import log as S
    root = tmp_path / "repo"
    repo = P.init(root)
    (root / "data").mkdir()
    rows = [{"id": i, "question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(6)]
    (root / "data/qa.jsonl").write_text("".join(f'{{"id": {r["id"]}, "question": "{r["question"]}", '
                                                f'"answer": "{r["answer"]}"}}\n' for r in rows))
    P.add(repo, [root / "data/qa.jsonl"], key="id")
    P.commit(repo, "Import the questions")
    (root / "data/qa.jsonl").write_text((root / "data/qa.jsonl").read_text().replace('"answer": "6"', '"answer": "six"'))
    P.add(repo, [root / "data/qa.jsonl"])
    P.commit(repo, "Fix row 3")
    log = S.create_session(repo, "run1", agent="blake3:" + "0" * 64, meta={"name": "run1", "task": "Write hello.txt"},
                           start={"task": "Write hello.txt"})
    log.append("tool_call", tool="write_file", args={"path": "hello.txt", "content": "hello"})
    log.append("tool_result", exit_code=0, stdout="wrote hello.txt", files={"hello.txt": "blake3:0"})
    log.commit_step(workspace=S.workspace_tree(repo, {"hello.txt": b"hello"})[0])
    log.append("run_end", status="finished", reason="finish", answer="done")
    log.commit_step(status="finished")
    log.close()
    repo.close()
    tmux = _Tmux(root)
    try:
        tmux.wait("Fix row 3")                                  # history, drawn
        tmux.keys("/")                                          # filter, then enter: the diff of that commit
        time.sleep(0.3)                                         # (a person types slower than the focus moves)
        tmux.keys("Fix row", literal=True)
        tmux.wait("▊  Fix row")
        tmux.keys("Enter")
        time.sleep(0.5)                                         # the filter applied, the table focused
        tmux.keys("Enter")
        shot = tmux.wait("6 → six")                             # the dataset's changed cell
        assert "~1 modified" in shot and "data/qa.jsonl" in shot
        tmux.keys("Escape")
        tmux.wait("Diff vs ref")                                # back in the history
        tmux.keys("3")                                          # sessions: the timeline of run1
        shot = tmux.wait("tool_call")
        assert "run1" in shot and "finished" in shot
        tmux.keys("f")                                          # fork at the highlighted step, with an instruction
        tmux.wait("instruction for the model")
        time.sleep(0.3)
        tmux.keys("Write bye.txt instead", literal=True)
        tmux.keys("Enter")
        tmux.wait("Yes (y)")                                    # confirmed first: it writes a session
        tmux.keys("y")
        shot = tmux.wait("forked run1@")
        tmux.keys("q")
    finally:
        tmux.close()
    repo = P.open_repository(root)
    forks = [s for s in P.browse.session_list(repo) if s.forked_from == "run1"]
    assert len(forks) == 1 and forks[0].name in shot and forks[0].parent["step"] == 2    # the highlighted step
    repo.close()
