"""The main job: an end-to-end tour on the embedded defaults (``demoai demo``).

In a fresh folder it inits a repository, imports the sample dataset, prompt and the SmolLM2
GGUF, edits and diffs them, branches, merges, queries history with DuckDB, runs fsck and
prints the log. Then it runs an agent with SmolLM2 in the sandbox, forks its session at a
middle step with another instruction, replays the original (recorded and reexecute) and
prints the session log and the fork's divergence. It evaluates SmolLM2 on the shipped
arithmetic suite (scores with intervals, committed), re-runs it from the cache and runs the
SmolLM2 sanity suite as a test (demo_eval.py); prepares a feedback sample: cleaning with
reasons, dedup, stats, split and contamination, self-instruct (demo_prep.py). It fine-tunes a LoRA on SmolLM2 for a shipped
task on its own branch, merges it, shows its lineage, gates it against the base and exports
it as a GGUF LoRA (demo_train.py). Last, it serves a hub on 127.0.0.1,
pushes the repository there, clones it and replays the cloned session (demo_hub.py).
Every step goes through the same porcelain calls the CLI uses.

Everything lives under one folder (``demoai demo DIR``, default a new temp folder):
``DIR/repo`` (kept), ``DIR/clone`` and ``DIR/hub`` (removed at the end unless ``--keep``;
kept when something broke). The tour says plainly whether the 135M model did the agent's
task: it often does not, and that is not a failure of the tour.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape as esc
from rich.rule import Rule
from rich.table import Table

from demoai import porcelain as P
from demoai.cli.common import handle_errors, out
from demoai.porcelain import agent as A

__all__ = ["run_demo", "demo_command", "DemoPaths"]


@dataclass
class DemoPaths:
    """Where the tour puts things: all under ``base``."""

    base: Path

    @property
    def repo(self) -> Path:
        return self.base / "repo"

    @property
    def clone(self) -> Path:
        return self.base / "clone"

    @property
    def hub(self) -> Path:
        return self.base / "hub"


def _js(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False, default=str)


def _counts(d: dict[str, Any]) -> str:
    return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in d.items())


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _edit_jsonl(path: Path, fn: Any) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = fn(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _table(console: Console, rows: list[dict[str, Any]], title: str = "") -> None:
    if not rows:
        return
    t = Table(*rows[0].keys(), title=title or None)
    for r in rows:
        t.add_row(*(esc(A.shorten(A.one_line(v if isinstance(v, str) else _js(v)), 60)) for v in r.values()))
    console.print(t)


def _print_diff(console: Console, changes: list[dict[str, Any]]) -> None:
    for d in changes:
        console.print(f"  [bold]{d['kind']}[/bold] {d['path']} ({d['status']}): "
                      f"+{d['added']} -{d['removed']} ~{d['modified']}")
        if d["kind"] == "dataset":
            samples, key = d.get("samples", {}), d.get("key") or "row"
            shown = {"modified": 3, "added": 2, "removed": 2}
            for m in samples.get("modified", [])[:3]:
                console.print(f"    ~ {key}={_js(m.get('key'))}: " + "; ".join(
                    f"{c}: {_js(m['before'].get(c))} -> {_js(m['after'].get(c))}" for c in m.get("changed", [])),
                    markup=False)
            for r in samples.get("added", [])[:2]:
                console.print(f"    + {_js(r)}", markup=False)
            for r in samples.get("removed", [])[:2]:
                console.print(f"    - {_js(r)}", markup=False)
            for what, n in shown.items():
                left = d.get(what, 0) - min(n, len(samples.get(what, [])))
                if left > 0:
                    console.print(f"    ... and {left} more {what} row(s)", markup=False)
        elif "text" in d:
            for line in d["text"].splitlines():
                console.print("    " + line, markup=False,
                              style="green" if line.startswith("+") else "red" if line.startswith("-") else None)


def run_demo(workdir: str | os.PathLike | None, console: Console, *, keep: bool = False) -> DemoPaths:
    """Run the tour under ``workdir`` (a new temp folder when None): the repository in
    ``repo/``, its clone in ``clone/``, the hub's data in ``hub/``. At the end the clone and
    the hub's data are removed unless ``keep`` (everything is kept when the tour fails).
    Prints where everything is; returns the paths."""
    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="demoai-demo-"))
    paths = DemoPaths(base.resolve())
    base.mkdir(parents=True, exist_ok=True)
    taken = [p for p in (paths.repo, paths.clone, paths.hub) if p.exists()]
    if taken:
        raise click.UsageError(f"{', '.join(map(str, taken))} already exist(s): name a new or empty "
                               "folder for the demo")
    paths.repo.mkdir()
    old_cwd = os.getcwd()
    os.chdir(paths.repo)
    ok = False
    try:
        _tour(paths, console)
        ok = True
    finally:
        os.chdir(old_cwd)
        _where(paths, console, remove=ok and not keep)
    return paths


def _where(paths: DemoPaths, console: Console, *, remove: bool) -> None:
    """Say where everything is, and drop the clone and the hub's data when ``remove``."""
    console.print(Rule("[bold cyan]where the demo put things"))
    rows = [("demo repository", paths.repo, False), ("its clone", paths.clone, remove),
            ("hub data", paths.hub, remove)]
    for label, path, drop in rows:
        if not path.exists():
            continue
        size = _size(path) / 1e6
        if drop:
            shutil.rmtree(path, ignore_errors=True)
            console.print(f"  {label:<16} {path}  (removed, {size:.0f} MB; `demoai demo --keep` keeps it)",
                          markup=False)
        else:
            console.print(f"  {label:<16} {path}  (kept, {size:.0f} MB)", markup=False)
    console.print(f"  look around: cd {paths.repo} && demoai log --graph --oneline --all && "
                  "demoai agent sessions", markup=False)
    console.print(f"  browse it in the terminal: cd {paths.repo} && demoai tui   "
                  "(? lists the keys, q quits)", markup=False)
    console.print(f"  remove it all: rm -rf {paths.base}", markup=False)


def _tour(paths: DemoPaths, console: Console) -> None:
    root = paths.repo
    step = lambda title: console.print(Rule(f"[bold cyan]{title}"))  # noqa: E731
    step(f"init {root}")
    repo = P.init(root)
    data, prompts, models = root / "data", root / "prompts", root / "models"
    for d in (data, prompts, models):
        d.mkdir(exist_ok=True)
    shutil.copy(A.sample_data_dir() / "train.jsonl", data / "train.jsonl")
    shutil.copy(A.sample_data_dir() / "qa.prompt.yaml", prompts / "qa.prompt.yaml")
    gguf = A.default_model_path()
    shutil.copy(gguf, models / "smollm2.gguf")

    step("add + commit: dataset (key id), prompt, SmolLM2 GGUF")
    for r in P.add(repo, [data / "train.jsonl"], key="id") + P.add(repo, [prompts, models]):
        console.print(f"  {r.status:>9} {r.path}: {r.artifact.summary()}")
    c1 = P.commit(repo, "Import sample QA data, prompt and SmolLM2-135M")
    console.print(f"  committed {c1[:12]}")

    step("edit: fix two answers, drop a row, append two; tighten the prompt")
    def clean(rows: list[dict]) -> list[dict]:
        rows[5]["response"] = "The Pacific"
        rows[12]["response"] = "Shakespeare"
        del rows[19]
        rows += [{"id": 100, "prompt": "What is the capital of Peru?", "response": "Lima", "label": "geography"},
                 {"id": 101, "prompt": "What is 7 + 8?", "response": "15", "label": "arithmetic"}]
        return rows
    _edit_jsonl(data / "train.jsonl", clean)
    p = prompts / "qa.prompt.yaml"
    p.write_text(p.read_text().replace("Answer with a short phrase, no explanation.",
                                       "Answer with at most five words."))
    P.add(repo, [data / "train.jsonl", p])
    console.print("  demoai diff (HEAD vs staged):")
    _print_diff(console, P.diff(repo, staged=True))
    c2 = P.commit(repo, "Clean answers and tighten the system prompt")

    step("branch `experiment`: warmer sampling, relabel arithmetic rows")
    P.checkout(repo, "experiment", create=True)
    p.write_text(p.read_text().replace("temperature: 0.0", "temperature: 0.7"))
    _edit_jsonl(data / "train.jsonl", lambda rows: [
        {**r, "label": "math"} if r["label"] == "arithmetic" else r for r in rows])
    P.add(repo, [p, data / "train.jsonl"])
    P.commit(repo, "Experiment: warmer sampling, label arithmetic as math")

    step("back on main: correct another answer")
    P.checkout(repo, "main")
    _edit_jsonl(data / "train.jsonl", lambda rows: [
        {**r, "response": "Nairobi, Kenya"} if r["id"] == 4 else r for r in rows])
    P.add(repo, [data / "train.jsonl"])
    P.commit(repo, "Clarify the Kenya answer")

    step("merge experiment into main (three-way, row by row on key id)")
    res = P.merge(repo, "experiment")
    console.print(f"  {res['status']}: {res['commit'][:12]}")
    _print_diff(console, P.diff(repo, c2, "HEAD"))
    P.tag(repo, "v1", "HEAD", "First cleaned dataset")

    step("fork: a branch from the first commit")
    P.fork(repo, c1[:12], "from-import")
    console.print(f"  branches: {', '.join(b['name'] for b in P.list_branches(repo))}")

    step("query with DuckDB: any table at any ref, and the history")
    _table(console, P.query(repo, "SELECT label, count(*) AS n FROM table('data/train.jsonl') "
                                  "GROUP BY label ORDER BY label").to_pylist(), "labels at HEAD")
    _table(console, P.query(repo, "SELECT (SELECT count(*) FROM table('data/train.jsonl', 'HEAD')) AS rows_now, "
                                  f"(SELECT count(*) FROM table('data/train.jsonl', '{c1[:12]}')) AS rows_first").to_pylist())
    _table(console, P.query(repo, "SELECT short_id, len(parents) AS parents, message, command FROM commits "
                                  "ORDER BY time DESC, short_id").to_pylist(), "commits")

    step("fsck")
    fs = P.fsck(repo)
    console.print(f"  {'ok' if fs['ok'] else 'BROKEN'}: {_counts(fs['counts'])}")
    for prob in fs["problems"]:
        console.print(f"  [red]{prob}[/red]")

    step("log --graph")
    entries = P.log(repo, all_refs=True)
    refs = {e["id"]: e["refs"] for e in entries}
    for prefix, ci in P.graph_lines(P.topo_order(repo, [e["id"] for e in entries])):
        if ci is None:
            console.print(prefix, markup=False)
        else:
            deco = f" ({', '.join(refs.get(ci.id, []))})" if refs.get(ci.id) else ""
            console.print(f"{prefix} {ci.id[:12]}{deco} {ci.summary}", markup=False)
    if shutil.which("git"):
        step("the same history read by the real git binary")
        gd = str(repo.control / "git")
        console.print(subprocess.run(["git", "--git-dir", gd, "log", "--graph", "--oneline", "--all"],
                                     capture_output=True, text=True).stdout, markup=False)
        fsck_git = subprocess.run(["git", "--git-dir", gd, "fsck", "--full"], capture_output=True, text=True)
        console.print(f"git fsck --full: exit {fsck_git.returncode} {fsck_git.stdout.strip()} {fsck_git.stderr.strip()}",
                      markup=False)
    if not fs["ok"]:
        raise SystemExit(1)
    with A.ModelPool() as pool:                 # the run and the fork share one loaded model
        _agent_tour(repo, root, console, step, pool)
    from demoai.cli.demo_eval import eval_tour
    if not eval_tour(repo, root, console, step):
        raise SystemExit(1)
    from demoai.cli.demo_prep import prep_tour
    if not prep_tour(repo, root, console, step):
        raise SystemExit(1)
    from demoai.cli.demo_train import train_tour
    if not train_tour(repo, root, console, step):
        raise SystemExit(1)
    from demoai.cli.demo_hub import hub_tour
    if not hub_tour(repo, paths.repo, paths.clone, paths.hub, console, step):
        raise SystemExit(1)


TASK = "Create a file hello.txt that contains the word hello, then finish."
FORK_INSTRUCTION = "Change of plan: write the word bye into bye.txt, then finish."
_STATUS_STYLE = {"finished": "green", "max_steps": "red", "failed": "red"}


def _line(text: Any, n: int) -> str:
    return esc(A.shorten(A.one_line(text), n))


def _printer(console: Console) -> Any:
    """Live progress of a run: every step, a reply that was not a valid call included."""
    def show(kind: str, d: dict) -> None:
        at = f"  [dim]step {d.get('step')}[/dim]"
        if kind == "model_response":
            bad = " [red](not a valid tool call)[/red]" if d.get("invalid") else ""
            console.print(f"{at} [cyan]model[/cyan]{bad} {_line(d['text'], 140)}")
        elif kind == "error":
            console.print(f"{at} [red]error[/red] {esc(d.get('message', ''))}")
        elif kind == "tool_result":
            r = d["result"]
            txt = _line((r.get("stdout") or r.get("stderr") or "").strip(), 100)
            console.print(f"{at} [yellow]{d['tool']}[/yellow] exit {r.get('exit_code')} "
                          f"{txt} files changed: {esc(', '.join(r.get('files') or {}) or '-')}")
        elif kind == "finish":
            console.print(f"{at} [magenta]finish[/magenta] {esc(d['answer'])}")
        elif kind == "stopped":
            console.print(f"{at} [red]max_steps reached without a finish call[/red]")
    return show


def _verdict(repo: Any, console: Console, res: A.RunResult, path: str, word: str) -> bool:
    """Say plainly whether the model did the task (``path`` holds ``word`` and it called
    finish); True if it did."""
    st = _STATUS_STYLE.get(res.status, "yellow")
    console.print(f"  session {esc(res.session)}: [{st}]{res.status}[/{st}] after {res.steps} step(s), "
                  f"head {res.head[:19]}")
    files = A.workspace_files(repo, res.session)
    content = files.get(path)
    wrote = content is not None and word in content.decode("utf-8", "replace").lower()
    if wrote and res.status == "finished":
        console.print(f"  [green]the model did the task[/green]: {path} contains {word}, and it called finish")
        return True
    facts = [f"{path} contains {word}" if wrote else
             f"there is no {path} in its workspace" if content is None else
             f"{path} does not contain {word}"]
    facts.append({"finished": "it called finish", "max_steps": "it never called finish (stopped at max_steps)"}
                 .get(res.status, f"the run ended {res.status}"))
    sep = ", but " if wrote or res.status == "finished" else "; "     # one fact for it, one against
    console.print(f"  [yellow]the model did not do the task[/yellow]: {sep.join(facts)}. A 135M model "
                  "often does not; what this tour shows is that every step was recorded and can be "
                  "forked, replayed and compared.")
    return False


def _agent_tour(repo: Any, root: Path, console: Console, step: Any, pool: A.ModelPool) -> None:
    """Run an agent with SmolLM2 in the sandbox, fork it mid-way with another instruction,
    replay the original (recorded, reexecute) and show the log and the fork's divergence."""
    show = _printer(console)
    step("agent: commit the sample agent as shipped, run it with SmolLM2 in the namespace sandbox")
    agents = root / "agents"
    agents.mkdir(exist_ok=True)
    shutil.copy(A.sample_data_dir() / "files.agent.yaml", agents / "files.agent.yaml")
    P.add(repo, [agents / "files.agent.yaml"])
    P.commit(repo, "Add the file-keeper agent")
    console.print(f"  task: {TASK}", markup=False)
    res = A.run_agent(repo, "agents/files.agent.yaml", task=TASK, name="demo-run", on_event=show,
                      pool=pool)
    _verdict(repo, console, res, "hello.txt", "hello")

    mid = max(1, res.steps // 2)
    step(f"fork demo-run@{mid} with a different instruction, and continue the fork")
    A.fork_session(repo, f"demo-run@{mid}", "demo-fork", instruction=FORK_INSTRUCTION)
    console.print(f"  instruction: {FORK_INSTRUCTION}", markup=False)
    fres = A.continue_session(repo, "demo-fork", max_steps=2, on_event=show, pool=pool)
    _verdict(repo, console, fres, "bye.txt", "bye")

    step("replay demo-run: recorded (verify the chain), reexecute (tools again, fresh sandbox)")
    rec = A.replay(repo, "demo-run", "recorded")
    assert isinstance(rec, A.RecordedReplay)
    console.print(f"  recorded: verified {rec.events} events over {rec.steps} steps in "
                  f"{rec.seconds * 1000:.1f} ms")
    rex = A.replay(repo, "demo-run", "reexecute")
    assert isinstance(rex, A.ReexecuteReplay)
    for r in rex.steps:
        console.print(f"  reexecute step {r.step}: {r.tool} "
                      + ("same observation" if r.same else f"differs in {', '.join(r.fields)}"), markup=False)
    d = rex.first_divergence
    console.print(("  reexecute: every observation matches" if d is None else
                   f"  reexecute: first divergence at step {d.step}")
                  + ("" if rex.steps else " (no tool ran)"), markup=False)

    step("session log of demo-run (demoai agent log demo-run)")
    for e in A.session_log(repo, "demo-run").events:
        console.print(f"  {e.step:>3} {e.type:<14} {A.shorten(e.summary, 150)}", markup=False)

    step("divergence of the fork (demoai agent diff demo-run demo-fork)")
    dv = A.diff_sessions(repo, "demo-run", "demo-fork")
    fd = dv.first_divergence
    if fd is None:
        raise SystemExit("the fork did not diverge from demo-run")
    console.print(f"  {dv.shared_events} events shared; first divergence at step {fd.step}:", markup=False)
    for name, x in (("demo-run", fd.a), ("demo-fork", fd.b)):
        console.print(f"    {name}: " + (f"{x.type} {A.shorten(A.one_line(x.detail), 140)}" if x else "(ends)"),
                      markup=False)
    for e in A.session_log(repo, "demo-fork").events[dv.shared_events:]:
        console.print(f"    fork {e.step:>3} {e.type:<14} {A.shorten(e.summary, 140)}", markup=False)
    fs = P.fsck(repo)
    console.print(f"  fsck with sessions: {'ok' if fs['ok'] else 'BROKEN'} ({fs['counts']['sessions']} sessions)")
    if not fs["ok"]:
        raise SystemExit(1)


@click.command("demo")
@click.argument("directory", required=False)
@click.option("--dir", "workdir", default=None, help="The same as DIRECTORY.")
@click.option("--keep", is_flag=True, help="Keep the clone and the hub's data too.")
@handle_errors
def demo_command(directory: str | None, workdir: str | None, keep: bool) -> None:
    """Run the whole tour on the embedded sample data and model.

    \b
    Init, add, edit, diff, branch, merge, fork, query, fsck and log; then an agent run
    with SmolLM2 in the sandbox, a fork of its session, replays; then a hub on
    127.0.0.1, push and clone.
    Everything goes under DIRECTORY (default: a new folder in the temp dir):
      DIRECTORY/repo   the demo repository (kept)
      DIRECTORY/clone  its clone from the hub (removed at the end unless --keep)
      DIRECTORY/hub    the hub's data (removed at the end unless --keep)
    When something breaks, everything is kept. The tour says plainly whether the 135M
    model did the agent's task; it often does not, and that is no failure of the tour.
    Exit status: 0 when every step of the tour worked; 1 when one broke.
    Example:
      demoai demo /tmp/demoai-tour
    """
    if directory and workdir and Path(directory) != Path(workdir):
        raise click.UsageError("give the folder once: DIRECTORY or --dir")
    try:
        run_demo(directory or workdir, out.get(), keep=keep)
    except SystemExit as e:
        if e.code not in (None, 0):
            out.print(f"[red]the demo broke[/red]: {esc(str(e.code)) if isinstance(e.code, str) else 'see above'}")
            sys.exit(1)
        raise
