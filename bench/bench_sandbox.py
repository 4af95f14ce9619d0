"""Sandbox start latency per backend, beside the targets.

    python bench/bench_sandbox.py [--n 50] [--docker-host unix://...] [--backends namespace,docker]

Measures one ``run(["true"])`` round trip in an open sandbox, and a fresh sandbox's
open + run + close. Starts a private dockerd (tests/helpers/dockerd.py) when no host is given.
``run()`` returns the numbers as a dict for other scripts.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from demoai.errors import SandboxUnavailable  # noqa: E402
from demoai.engines.sandbox import open_sandbox  # noqa: E402

TARGET_P50_S = {"namespace": 0.300, "docker": 1.0}


def _pcts(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, max(0, round(0.95 * len(xs)) - 1))]
    return {"p50": statistics.median(xs), "p95": p95, "n": len(xs)}


def bench_backend(backend: str, n: int, docker_host: str | None) -> dict[str, Any]:
    kw: dict[str, Any] = {"docker_host": docker_host} if backend == "docker" else {}
    t = time.perf_counter()
    box = open_sandbox(backend, **kw)  # the first docker open may build the image
    first_open = time.perf_counter() - t
    runs = []
    try:
        box.run(["true"])
        for _ in range(n):
            t = time.perf_counter()
            res = box.run(["true"])
            runs.append(time.perf_counter() - t)
            assert res.exit_code == 0, res
    finally:
        box.close()
    fresh = []
    for _ in range(max(3, n // 5) if backend == "docker" else n):
        t = time.perf_counter()
        with open_sandbox(backend, **kw) as b:
            b.run(["true"])
        fresh.append(time.perf_counter() - t)
    return {"run": _pcts(runs), "open_run_close": _pcts(fresh), "first_open_s": first_open,
            "target_p50_s": TARGET_P50_S[backend]}


def run(n: int = 50, docker_host: str | None = None,
        backends: tuple[str, ...] = ("namespace", "docker")) -> dict[str, Any]:
    """Bench each backend; a backend that cannot start reports ``{"unavailable": why}``."""
    results: dict[str, Any] = {}
    engine = None
    try:
        for backend in backends:
            host = docker_host
            if backend == "docker" and host is None:
                from tests.helpers.dockerd import Dockerd, DockerdError
                engine = Dockerd()
                try:
                    host = engine.start()
                except DockerdError as e:
                    results[backend] = {"unavailable": str(e)}
                    continue
            try:
                results[backend] = bench_backend(backend, n, host)
            except SandboxUnavailable as e:
                results[backend] = {"unavailable": e.message}
    finally:
        if engine is not None:
            engine.stop()
    return results


def _print(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Sandbox start latency (ms)")
    for col in ("backend", "measure", "p50", "p95", "n", "target p50", "ok"):
        table.add_column(col, justify="left" if col in ("backend", "measure") else "right")
    for backend, r in results.items():
        if "unavailable" in r:
            table.add_row(backend, "unavailable", "-", "-", "-", "-", r["unavailable"][:60])
            continue
        target = r["target_p50_s"]
        for measure in ("run", "open_run_close"):
            m = r[measure]
            ok = "yes" if measure != "run" or m["p50"] <= target else "NO"
            table.add_row(backend, 'run(["true"])' if measure == "run" else "open+run+close",
                          f"{m['p50'] * 1e3:.1f}", f"{m['p95'] * 1e3:.1f}", str(m["n"]),
                          f"{target * 1e3:.0f}" if measure == "run" else "-", ok)
        table.add_row(backend, "first open", f"{r['first_open_s'] * 1e3:.0f}", "", "", "", "")
    Console().print(table)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--docker-host", default=None)
    ap.add_argument("--backends", default="namespace,docker")
    a = ap.parse_args(argv)
    results = run(a.n, a.docker_host, tuple(x for x in a.backends.split(",") if x))
    _print(results)
    return results


if __name__ == "__main__":
    main()
