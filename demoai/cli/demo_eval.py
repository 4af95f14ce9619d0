"""The evaluation part of the main job (``demoai demo``): the shipped arithmetic suite scored
with intervals and committed, re-run from the cache, and the SmolLM2 sanity suite run as a
test."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape as esc

from demoai import porcelain as P
from demoai.porcelain import agent as A

__all__ = ["eval_tour"]


def eval_tour(repo: Any, root: Path, console: Console, step: Any) -> bool:
    """Evaluate, re-evaluate from the cache, run the sanity suite; False when it broke."""
    from demoai.cli.eval import print_scores
    src = A.sample_data_dir()
    (root / "evals").mkdir(exist_ok=True)
    shutil.copy(src / "arith.jsonl", root / "data" / "arith.jsonl")
    shutil.copy(src / "arith.suite.yaml", root / "evals" / "arith.suite.yaml")
    shutil.copy(src / "smollm2.suite.yaml", root / "evals" / "smollm2.suite.yaml")
    P.add(repo, [root / "data" / "arith.jsonl"], key="id")
    P.add(repo, [root / "evals"])
    P.commit(repo, "Arithmetic eval set (reasoning-gym, exact answers) and the eval suites")

    step("eval run evals/arith.suite.yaml --model smollm2 (scores with 95% bootstrap intervals)")
    t0 = time.perf_counter()
    run = P.evaluate.run_eval(repo, "evals/arith.suite.yaml", model="smollm2")
    res = run.outcome.result
    print_scores(res.scores, title=f"{res.suite_name} · {res.model_ref} "
                 f"({res.counts['examples']} examples, {time.perf_counter() - t0:.1f} s)")
    console.print(f"  committed {run.outcome.path} as {run.commit[:12] if run.commit else '-'}; "
                  f"model, dataset, suite and chat template pinned by digest")

    step("the same evaluation again: nothing changed, so the stored predictions are reused")
    t0 = time.perf_counter()
    again = P.evaluate.run_eval(repo, "evals/arith.suite.yaml", model="smollm2")
    dt = time.perf_counter() - t0
    console.print(f"  cached: {again.outcome.cached}, same result: "
                  f"{again.outcome.result.digest == res.digest}, nothing committed: "
                  f"{again.up_to_date}, {dt:.2f} s")

    step("eval test evals/ (the SmolLM2 sanity suite, as unit tests)")
    reports = P.evaluate.test_suites(repo, [str(root / "evals")], model="smollm2")
    console.print(esc(P.evaluate.format_report(reports)))
    code = P.evaluate.suite_exit_code(reports)
    return again.outcome.cached and code != 2
