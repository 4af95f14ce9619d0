"""``demoai tui`` benchmark: time to first paint, time to the first page of a 1M-row dataset,
and the process's memory while scrolling it, on a repository of 10,000 commits.

    python bench/bench_tui.py [--workdir bench/.work/tui] [--commits 10000] [--rows 1000000]
                              [--pages 200] [--tmux]

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

- ``first paint``: process start -> the history screen shows its first commits (headless,
  ``App.run_test``; the commit walk runs in a worker, so this is what a person waits for);
- ``dataset page``: opening ``data/big.parquet`` -> its first rows shown;
- ``scroll``: ``--pages`` PageDown presses, then a jump to the end and back, each waited
  until its rows are shown; peak RSS of the process (``ru_maxrss``) after all of it;
- ``--tmux``: the real command in a real terminal (``tmux``), process start -> the first
  commit's summary on screen (``capture-pane`` polled every 10 ms); beside it ``tig`` on the
  same git history when ``tig`` is installed.
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
from demoai.tui.app import DemoAIApp
from demoai.tui.widgets.rows import RowTable

async def main():
    out = {}
    app = DemoAIApp(sys.argv[1])
    async with app.run_test(size=(160, 48)) as pilot:
        hist = app.screen
        while not hist.commit_count():
            await asyncio.sleep(0.005)
        out["first_paint_s"] = time.time() - T0
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


def measure(repo_dir: Path, pages: int) -> dict:
    """One headless run in a fresh interpreter (see the module doc)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    p = subprocess.run([sys.executable, "-c", CHILD, str(repo_dir), repr(t0), str(pages)],
                       capture_output=True, text=True, env=env, cwd=repo_dir, timeout=600)
    if p.returncode:
        raise SystemExit(p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


def _tmux_first_paint(cmd: list[str], cwd: Path, needle: str) -> float | None:
    """Seconds from starting ``cmd`` in a 160x48 tmux pane to ``needle`` on screen."""
    if not shutil.which("tmux"):
        return None
    sock = f"demoai-bench-{os.getpid()}-{time.monotonic_ns()}"
    t0 = time.perf_counter()
    subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-x", "160", "-y", "48", "-c", str(cwd),
                    " ".join(cmd)], check=True)
    try:
        while time.perf_counter() - t0 < 30:
            shot = subprocess.run(["tmux", "-L", sock, "capture-pane", "-p"], capture_output=True,
                                  text=True).stdout
            if needle in shot:
                return time.perf_counter() - t0
            time.sleep(0.01)
        return None
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=str(ROOT / "bench" / ".work" / "tui"))
    ap.add_argument("--commits", type=int, default=10_000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--tmux", action="store_true", help="also time the real command under tmux")
    ap.add_argument("--startup", type=int, default=0, metavar="N",
                    help="only time `demoai tui` under tmux N times (min and median), nothing else")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    repo_dir = build(work, args.commits, args.rows)
    print(f"repository: {repo_dir} ({args.commits} commits, {args.rows} rows; ready in "
          f"{time.perf_counter() - t:.1f} s; build times {(work / 'build_times.json').read_text()})")
    if args.startup:
        demoai = str(Path(sys.executable).parent / "demoai")
        times = sorted(t for t in (_tmux_first_paint([demoai, "tui"], repo_dir, f"v{args.commits - 1})")
                                   for _ in range(args.startup)) if t is not None)
        print(f"demoai tui under tmux, start -> first commits on screen, {len(times)} runs: "
              f"min {times[0]:.3f} s, median {times[len(times) // 2]:.3f} s, max {times[-1]:.3f} s")
        return
    res = measure(repo_dir, args.pages)
    if args.tmux:
        demoai = str(Path(sys.executable).parent / "demoai")
        last = f"v{args.commits - 1})"
        res["tmux_first_paint_s"] = _tmux_first_paint([demoai, "tui"], repo_dir, last)
        if shutil.which("tig"):
            gitdir = repo_dir / ".demoai" / "git"
            res["tig_first_paint_s"] = _tmux_first_paint(
                [f"GIT_DIR={gitdir}", "tig", "--all"], repo_dir, last)
    targets = {"first_paint_s": ("< 1 s", lambda v: v < 1.0), "peak_rss_mb": ("< 300 MB", lambda v: v < 300)}
    for k, v in res.items():
        target, ok = targets.get(k, ("", None))
        val = f"{v:.3f}" if isinstance(v, float) else str(v)
        print(f"{k:28} {val:>12}  {target} {'' if ok is None else ('met' if ok(v) else 'NOT met')}")
    (work / "result.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
