"""``demoai tui`` benchmark: time to first paint, time to the first page of a 1M-row dataset,
and the process's memory while scrolling it, on a repository of 10,000 commits.

    python bench/bench_tui.py [--workdir bench/.work/tui] [--commits 10000] [--rows 1000000]
                              [--pages 200] [--tmux N] [--startup N] [--no-bytecode]

The repository is built once under WORKDIR and reused:

- the 1M-row dataset (``data/big.parquet``, 4 columns) and a prompt are added and committed
  through the porcelain (``add`` + ``commit``), as a user would;
- the other commits are written with the very calls ``porcelain.commit`` makes
  (``make_lineage`` -> ``Repository.write_tree`` -> ``make_commit``; one ``set_ref`` per
  branch at the end instead of one per commit): each commit changes the prompt's text (a real
  Prompt manifest), carries a lineage record, and 1 in 50 is a merge of a side branch, so
  ``log --graph --all`` has lanes. No index or working-tree sync is done per commit: that is
  what makes 10,000 commits take seconds instead of many minutes, and it is not what the TUI
  reads. Four branches, two tags.

Measures, each in a fresh interpreter (imports counted):

- ``first paint``: process start -> the first frame of the history screen that shows commits
  (headless, ``App.run_test``), in seconds and in CPU seconds of the process (which other
  load on the machine does not inflate); opened as ``demoai tui`` opens it;
- ``dataset page``: opening ``data/big.parquet`` -> its first rows shown;
- ``scroll``: ``--pages`` PageDown presses, then a jump to the end and back, each waited
  until its rows are shown; peak RSS of the process (``ru_maxrss``) after all of it;
- ``--tmux N``: the real command in a real terminal (``tmux``), process start -> the first
  commit's summary on screen (``capture-pane`` polled every 10 ms), N times (min, median,
  max); beside it ``tig --all`` on the same git history when ``tig`` is installed
  (``--startup N``: only these).

Python modules are measured with their bytecode cached (under WORKDIR/pycache), as a pip
install has them; ``--no-bytecode`` compiles every module on every start instead, as a
checkout run with ``PYTHONDONTWRITEBYTECODE=1`` does.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = """name: qa
template: "Answer the question: {{question}} (VERSION)"
variables: [question]
parameters: {temperature: 0, max_tokens: 32}
"""


def build(work: Path, commits: int, rows: int) -> Path:
    """The benchmark repository under ``work/repo`` (reused when it is already complete)."""
    repo_dir = work / "repo"
    done = work / "built.json"
    if done.exists() and json.loads(done.read_text()) == {"commits": commits, "rows": rows}:
        return repo_dir
    if repo_dir.exists():
        shutil.rmtree(repo_dir)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from demoai import porcelain as P
    from demoai.objects import Prompt, encode_manifest
    from demoai.store import make_lineage

    t0 = time.perf_counter()
    repo = P.init(repo_dir)
    (repo_dir / "data").mkdir()
    (repo_dir / "prompts").mkdir()
    ids = pa.array(range(rows), pa.int64())
    table = pa.table({"id": ids,
                      "question": pa.array([f"What is {i} + {i % 97}?" for i in range(rows)]),
                      "answer": pa.array([str(i + i % 97) for i in range(rows)]),
                      "label": pa.array(["train" if i % 10 else "test" for i in range(rows)])})
    pq.write_table(table, repo_dir / "data/big.parquet")
    del table, ids
    (repo_dir / "prompts/qa.prompt.yaml").write_text(PROMPT.replace("VERSION", "v0"))
    P.add(repo, [repo_dir / "data/big.parquet"], key="id")
    P.add(repo, [repo_dir / "prompts/qa.prompt.yaml"])
    base = P.commit(repo, "Import a 1M-row dataset and a prompt", command="demoai commit -m import")
    t_data = time.perf_counter() - t0

    entries = dict(repo.tree_entries(base))
    author = repo.identity("author")
    when = repo.commit_info(base).time
    main, side = base, base
    t1 = time.perf_counter()
    for i in range(1, commits):
        prompt = Prompt.from_text(PROMPT.replace("VERSION", f"v{i}"))
        entries["prompts/qa.prompt.yaml"] = encode_manifest(prompt)
        lin = make_lineage(f"demoai commit -m 'prompt v{i}'", inputs={"prompt": prompt.digest})
        tree = repo.write_tree(entries, lin)
        when += 60
        if i % 50 == 25:          # a side branch forks off main
            side = main
        if i % 50 in range(26, 30):
            side = repo.make_commit(tree, [side], f"Side experiment {i}: prompt v{i}", author, when)
            continue
        if i % 50 == 30:          # ... and is merged back
            main = repo.make_commit(tree, [main, side], f"Merge experiment {i}", author, when)
            continue
        main = repo.make_commit(tree, [main], f"Reword the prompt (v{i})", author, when)
    repo.set_ref("refs/heads/main", main, base, "bench: 10k commits")
    repo.set_ref("refs/heads/experiment", side, None, "bench")
    mid = repo.resolve("main~500")
    repo.set_ref("refs/heads/release", mid, None, "bench")
    repo.set_ref("refs/heads/old", repo.resolve("main~5000"), None, "bench")
    P.tag(repo, "v1", base, message="the import")
    P.tag(repo, "v2", mid)
    t_commits = time.perf_counter() - t1
    repo.close()
    (work / "build_times.json").write_text(json.dumps({"dataset_s": t_data, "commits_s": t_commits}))
    done.write_text(json.dumps({"commits": commits, "rows": rows}))
    return repo_dir


# The measurement runs in a child interpreter so that imports and first paint are counted.
CHILD = r"""
import asyncio, json, resource, sys, time
T0 = float(sys.argv[2])
from demoai.porcelain import open_repository
repo = open_repository(sys.argv[1])          # as `demoai tui` does: the repository first,
try:                                          # then the first page in a thread (when there is one)
    from demoai.tui.prefetch import start
    extra = {"prefetch": start(repo)}
except ImportError:
    extra = {}
from demoai.tui.app import DemoAIApp
from demoai.tui.widgets.rows import RowTable
from textual.app import App
painted = []
_display = App._display
def display(self, screen, renderable):       # the first frame that shows commits
    if not painted and getattr(screen, "commit_count", lambda: 0)():
        painted.append(time.time() - T0)
        painted.append(time.process_time())
    return _display(self, screen, renderable)
App._display = display

async def main():
    out = {}
    app = DemoAIApp(repo, **extra)
    async with app.run_test(size=(160, 48)) as pilot:
        while not painted:
            await asyncio.sleep(0.005)
        out["first_paint_s"], out["first_paint_cpu_s"] = painted
        out["import_and_mount_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t = time.perf_counter()
        await app.open_dataset("data/big.parquet", "main")
        table = app.screen.query_one(RowTable)
        while not table.page_ready(0):
            await asyncio.sleep(0.005)
        await pilot.pause()
        out["dataset_first_page_s"] = time.perf_counter() - t
        out["rows"] = table.total
        table.focus()
        t = time.perf_counter()
        pages = int(sys.argv[3])
        for _ in range(pages):
            await pilot.press("pagedown")
            while not table.visible_ready():
                await asyncio.sleep(0.002)
        out["pagedown_ms"] = (time.perf_counter() - t) / pages * 1000
        t = time.perf_counter()
        await pilot.press("end")
        while not table.visible_ready():
            await asyncio.sleep(0.002)
        out["jump_to_end_ms"] = (time.perf_counter() - t) * 1000
        out["last_row_shown"] = table.cursor_row
        await pilot.press("home")
        while not table.visible_ready():
            await asyncio.sleep(0.002)
        out["cached_pages"] = table.cached_pages()
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))

asyncio.run(main())
"""


def python_env(work: Path, bytecode: bool) -> dict[str, str]:
    """The environment of the measured processes. With ``bytecode`` (the default), compiled
    modules are cached under WORK/pycache as a pip install has them in site-packages (a
    first run fills it and is not counted); without, every module is compiled from source on
    every start, as under ``PYTHONDONTWRITEBYTECODE=1`` with no ``__pycache__`` beside the
    sources (~0.4 s more on 2 cores)."""
    env = dict(os.environ)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = str(work / "no-pycache")     # empty: nothing is read
    return env


def measure(repo_dir: Path, pages: int, env: dict[str, str]) -> dict:
    """One headless run in a fresh interpreter (see the module doc)."""
    env = {**env, "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", CHILD, str(repo_dir), repr(t0), str(pages)],
                       capture_output=True, text=True, env=env, cwd=repo_dir, timeout=600)
    if p.returncode:
        raise SystemExit(p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


def _cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system, its threads and waited-for children) process ``pid`` used."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return None
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def _exec_line(cmd: list[str]) -> str:
    """``cmd`` as a shell line that replaces the shell (leading ``VAR=value`` words kept
    before ``exec``), so that the pane's process is the program measured."""
    n = next((i for i, w in enumerate(cmd) if "=" not in w), len(cmd))
    return " ".join(cmd[:n] + ["exec"] + cmd[n:])


def _tmux_first_paint(cmd: list[str], cwd: Path, needle: str,
                      env: dict[str, str] | None = None) -> tuple[float, float | None] | None:
    """(seconds, CPU seconds) from starting ``cmd`` in a 160x48 tmux pane to ``needle`` on
    screen: wall time as a person waits it, and the CPU time the pane's process had used by
    then, which other load on the machine does not inflate."""
    if not shutil.which("tmux"):
        return None
    sock = f"demoai-bench-{os.getpid()}-{time.monotonic_ns()}"
    t0 = time.perf_counter()
    subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-x", "160", "-y", "48", "-c", str(cwd),
                    _exec_line(cmd)], check=True, env=env)
    pid = None
    try:
        while time.perf_counter() - t0 < 30:
            if pid is None:
                out = subprocess.run(["tmux", "-L", sock, "list-panes", "-F", "#{pane_pid}"],
                                     capture_output=True, text=True).stdout.split()
                pid = int(out[0]) if out else None
            shot = subprocess.run(["tmux", "-L", sock, "capture-pane", "-p"], capture_output=True,
                                  text=True).stdout
            if needle in shot:
                return time.perf_counter() - t0, _cpu_s(pid)
            time.sleep(0.01)
        return None
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)


def _tmux_runs(cmd: list[str], cwd: Path, needle: str, n: int, env: dict[str, str]) -> dict[str, float] | None:
    """``n`` timed starts under tmux (after one untimed start that fills the bytecode cache):
    min, median and max seconds to ``needle`` on screen, and the median CPU seconds."""
    _tmux_first_paint(cmd, cwd, needle, env)
    runs = [r for r in (_tmux_first_paint(cmd, cwd, needle, env) for _ in range(n)) if r is not None]
    if not runs:
        return None
    times = sorted(t for t, _ in runs)
    cpus = sorted(c for _, c in runs if c is not None)
    return {"min": times[0], "median": times[len(times) // 2], "max": times[-1], "runs": len(times),
            "cpu_median": cpus[len(cpus) // 2] if cpus else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=str(ROOT / "bench" / ".work" / "tui"))
    ap.add_argument("--commits", type=int, default=10_000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--tmux", type=int, default=0, metavar="N",
                    help="also time the real command under tmux N times (and tig beside it)")
    ap.add_argument("--startup", type=int, default=0, metavar="N",
                    help="only time `demoai tui` (and tig) under tmux N times, nothing else")
    ap.add_argument("--no-bytecode", action="store_true",
                    help="compile every module from source on every start (PYTHONDONTWRITEBYTECODE)")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    repo_dir = build(work, args.commits, args.rows)
    print(f"repository: {repo_dir} ({args.commits} commits, {args.rows} rows; ready in "
          f"{time.perf_counter() - t:.1f} s; build times {(work / 'build_times.json').read_text()})")
    env = python_env(work, not args.no_bytecode)
    res: dict = {"bytecode": not args.no_bytecode}
    if not args.startup:
        measure(repo_dir, 1, env)                # fills the bytecode cache; not counted
        res.update(measure(repo_dir, args.pages, env))
    n = args.startup or args.tmux
    if n:
        demoai = str(Path(sys.executable).parent / "demoai")
        last = f"v{args.commits - 1})"
        res["tmux_first_paint_s"] = _tmux_runs([demoai, "tui"], repo_dir, last, n, env)
        if shutil.which("tig"):
            gitdir = repo_dir / ".demoai" / "git"
            res["tig_first_paint_s"] = _tmux_runs([f"GIT_DIR={gitdir}", "tig", "--all"], repo_dir, last, n, env)
    targets = {"first_paint_s": ("< 1 s", lambda v: v < 1.0), "peak_rss_mb": ("< 300 MB", lambda v: v < 300)}
    for k, v in res.items():
        target, ok = targets.get(k, ("", None))
        if isinstance(v, dict):
            cpu = "" if v.get("cpu_median") is None else f", CPU {v['cpu_median']:.3f} s"
            val = (f"min {v['min']:.3f} median {v['median']:.3f} max {v['max']:.3f} s "
                   f"({v['runs']} runs{cpu})")
        else:
            val = f"{v:.3f}" if isinstance(v, float) else str(v)
        print(f"{k:28} {val:>12}  {target} {'' if ok is None else ('met' if ok(v) else 'NOT met')}")
    (work / ("startup.json" if args.startup else "result.json")).write_text(json.dumps(res, indent=1))

if __name__ == "__main__":
    main()
