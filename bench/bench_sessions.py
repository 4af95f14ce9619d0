"""Session log benchmarks: event append latency, fork at step 5,000 of 10,000, recorded
replay of 1,000 steps, and storage per step at 100 / 1,000 / 10,000 steps.

    python bench/bench_sessions.py [--steps 10000]

Each step is what an agent step records: a model request carrying one observation, the
model response, the tool call, the tool result and a workspace where one file changes.
Figures are printed beside the issue's targets.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from demoai.store.sessions import log as S  # noqa: E402
from demoai.runtime.replay import replay_recorded  # noqa: E402
from demoai.store.git.repo import Repository  # noqa: E402

AGENT = "blake3:" + "b" * 64
OBS = "Observation: shell exit_code=0\nstdout:\n" + "total 12\n-rw-r--r-- 1 agent agent 42 notes.txt\n" * 3


def _disk(repo: Repository, blocks: bool = False) -> int:
    """Bytes the session costs: git objects, refs and logs, and the cache (file sizes, or
    with ``blocks`` the filesystem blocks they occupy)."""
    total = 0
    for sub in ("git", "sessions"):
        for root, _, files in os.walk(repo.control / sub):
            for f in files:
                st = os.stat(os.path.join(root, f))
                total += st.st_blocks * 512 if blocks else st.st_size
    return total


def record(repo: Repository, name: str, steps: int, marks: tuple[int, ...] = ()) -> dict:
    base, base_blocks = _disk(repo), _disk(repo, blocks=True)
    log = S.create_session(repo, name, agent=AGENT, meta={"name": name}, start={"task": "bench"})
    appends: list[float] = []
    commits: list[float] = []
    sizes: dict[int, int] = {}
    files = {"notes.txt": b"", "README": b"bench workspace\n", "data/config.json": b"{}\n"}
    pc = time.perf_counter
    for k in range(1, steps + 1):
        t = pc(); log.append("model_request", messages=[{"role": "user", "content": OBS}], n_messages=2 * k + 1,
                             params={"temperature": 0.0, "seed": k}, schema="blake3:" + "c" * 64); appends.append(pc() - t)
        t = pc(); log.append("model_response", text='{"tool": "shell", "args": {"cmd": "echo %d >> notes.txt"}}' % k,
                             finish_reason="stop", prompt_tokens=300 + k % 50, completion_tokens=21,
                             timings={"ttft_s": 0.05, "total_s": 0.4, "tokens_per_s": 52.0}); appends.append(pc() - t)
        t = pc(); log.append("tool_call", tool="shell", args={"cmd": f"echo {k} >> notes.txt"}); appends.append(pc() - t)
        files["notes.txt"] = f"line {k}\n".encode()
        ws, _ = S.workspace_tree(repo, files)
        t = pc(); log.append("tool_result", tool="shell", exit_code=0, stdout="", stderr="", duration_s=0.01,
                             files={"notes.txt": "x" * 40}); appends.append(pc() - t)
        t = pc(); log.commit_step(workspace=ws); commits.append(pc() - t)
        if k in marks:
            sizes[k] = _disk(repo) - base
            sizes[-k] = _disk(repo, blocks=True) - base_blocks
    log.close()
    return {"append_ms": [a * 1e3 for a in appends], "commit_ms": [c * 1e3 for c in commits], "sizes": sizes}


def run(steps: int = 10_000) -> dict:
    with tempfile.TemporaryDirectory(prefix="demoai-bench-sess-") as d:
        repo = Repository.init(d)
        marks = tuple(m for m in (100, 1000, 10_000) if m <= steps)
        t0 = time.perf_counter()
        rec = record(repo, "long", steps, marks)
        wall = time.perf_counter() - t0
        forks = []
        for i in range(7):
            t = time.perf_counter()
            S.fork_session(repo, f"long@{steps // 2}", f"fork-{i}").close()
            forks.append((time.perf_counter() - t) * 1e3)
        record(repo, "k1000", 1000)
        replays = [replay_recorded(repo, "k1000")["seconds"] * 1e3 for _ in range(7)]
        per_step = {m: rec["sizes"][m] / m for m in marks}
        blocks_per_step = {m: rec["sizes"][-m] / m for m in marks}
    a = rec["append_ms"]
    return {
        "steps": steps, "record_wall_s": wall,
        "append_median_ms": statistics.median(a), "append_p99_ms": sorted(a)[int(len(a) * 0.99)],
        "commit_step_median_ms": statistics.median(rec["commit_ms"]),
        "fork_median_ms": statistics.median(forks), "replay_1000_median_ms": statistics.median(replays),
        "bytes_per_step": per_step, "disk_blocks_per_step": blocks_per_step,
        "growth_ratio": (per_step[max(marks)] / per_step[min(marks)]) if len(marks) > 1 else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    r = run(args.steps)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    t = Table(title=f"session log, {r['steps']} steps (recorded in {r['record_wall_s']:.1f} s)")
    t.add_column("measure")
    t.add_column("DemoAI", justify="right")
    t.add_column("target", justify="right")
    t.add_column("met")
    ok = lambda b: "[green]yes[/green]" if b else "[red]no[/red]"  # noqa: E731
    t.add_row("event append, median", f"{r['append_median_ms']:.3f} ms", "<= 0.2 ms", ok(r["append_median_ms"] <= 0.2))
    t.add_row("event append, p99", f"{r['append_p99_ms']:.3f} ms", "", "")
    t.add_row("step commit (git objects + ref CAS), median", f"{r['commit_step_median_ms']:.2f} ms", "", "")
    t.add_row(f"fork at step {r['steps'] // 2}", f"{r['fork_median_ms']:.2f} ms", "<= 20 ms", ok(r["fork_median_ms"] <= 20))
    t.add_row("recorded replay, 1,000 steps", f"{r['replay_1000_median_ms']:.2f} ms", "<= 30 ms",
              ok(r["replay_1000_median_ms"] <= 30))
    for m, b in r["bytes_per_step"].items():
        t.add_row(f"bytes per step at {m:,} steps (files / disk blocks)",
                  f"{b:,.0f} / {r['disk_blocks_per_step'][m]:,.0f}", "", "")
    if r["growth_ratio"] is not None:
        t.add_row("bytes/step at max vs at 100", f"{r['growth_ratio']:.3f}x", "<= 1.2x", ok(r["growth_ratio"] <= 1.2))
    Console().print(t)


if __name__ == "__main__":
    main()
