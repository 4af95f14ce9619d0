"""Suites of cases (sanity suites): run them like unit tests (``eval test``: a report,
JUnit XML, an exit status) or as an evaluation whose score is the share of cases passed
(``eval run``: cached, committed like any result, one predictions row per case).

A case's model-graded assertions use the suite's ``judge:`` model (default: the model under
test) constrained to the judge's JSON schema; ``similar`` assertions use the default
embedder (wordllama's shipped weights). Both are opened only when a case needs them.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from demoai.engines.llm import ModelPool
from demoai.errors import DemoAIError
from demoai.eval.cache import EvalCache, predictions_key
from demoai.eval.cases import (Case, CaseResult, backend_generate, backend_judge, parse_cases, run_case,
                               suite_needs)
from demoai.eval.junit import SuiteReport
from demoai.eval.plan import Plan, load_plan
from demoai.eval.run import EvalOutcome, OnProgress, open_model, perf_summary, result_path
from demoai.eval.stats import summarize
from demoai.objects import EvalResult
from demoai.registry.resolve import resolve_model
from demoai.store.git.lineage import environment
from demoai.store.git.repo import Repository

__all__ = ["run_cases", "evaluate_cases", "test_suites", "find_suites", "OnCase"]

OnCase = Callable[[str, CaseResult], None] | None
"""Called after each case: (suite name, result)."""


def _cases(plan: Plan) -> list[Case]:
    return parse_cases(plan.suite.meta["cases"], plan.suite_path, defaults=plan.params)


def run_cases(repo: Repository, plan: Plan, *, model: str | None = None, adapter: str | None = None,
              rev: str | None = None, pool: ModelPool | None = None,
              on_case: OnCase = None) -> tuple[list[CaseResult], dict[str, Any]]:
    """Run every case of ``plan`` on the model: (results, the backend's description)."""
    cases = _cases(plan)
    needs = suite_needs(cases)
    model_ref = model or plan.suite.meta.get("model") or "smollm2"
    spec = resolve_model(repo, model_ref, rev, None, adapter)
    backend, release = open_model(spec, pool)
    judge_release: Callable[[], None] | None = None
    try:
        judge = embed = None
        if "judge" in needs:
            judge_ref = plan.suite.meta.get("judge")
            if judge_ref and judge_ref != model_ref:
                jb, judge_release = open_model(resolve_model(repo, judge_ref, rev), pool)
                judge = backend_judge(jb)
            else:
                judge = backend_judge(backend)
        if "embed" in needs:
            from demoai.eval.assertions import default_embedder
            embed = default_embedder()
        generate = backend_generate(backend)
        results = []
        for case in cases:
            r = run_case(case, generate, judge=judge, embed=embed, seed=plan.seed)
            results.append(r)
            if on_case:
                on_case(plan.name, r)
        return results, backend.describe()
    finally:
        if judge_release:
            judge_release()
        release()


def evaluate_cases(repo: Repository, plan: Plan, *, model: str | None = None, adapter: str | None = None,
                   rev: str | None = None, backend: dict[str, Any] | None = None,
                   pool: ModelPool | None = None, on_progress: OnProgress = None,
                   force: bool = False) -> EvalOutcome:
    """``eval run`` of a suite of cases: the score ``pass`` is the share of cases passed
    (errored cases are counted apart), cached by the suite and model like any evaluation."""
    model_ref = model or plan.suite.meta.get("model") or "smollm2"
    spec = resolve_model(repo, model_ref, rev, backend, adapter)
    key, covered = predictions_key(plan.generation_spec(), spec)
    cache = EvalCache(repo.control, key)
    found = None if force else cache.finished()
    cached = found is not None
    if found is not None:
        rows, run = found
    else:
        t0 = time.perf_counter()
        total = len(plan.suite.meta["cases"])
        done = [0]

        def tick(_: str, __: CaseResult) -> None:
            done[0] += 1
            if on_progress:
                on_progress(done[0], total)
        results, described = run_cases(repo, plan, model=model, adapter=adapter, rev=rev, pool=pool,
                                       on_case=tick)
        rows = [_row(i, r) for i, r in enumerate(results)]
        run = {"backend": described, "perf": perf_summary(rows, time.perf_counter() - t0, 0.0, 0)}
        cache.finish(rows, run)
    return EvalOutcome(result=_result(repo, plan, rows, run, spec, model_ref, key, covered),
                       path=result_path(plan, model_ref, adapter), cached=cached, resumed=0, key=key)


def _row(i: int, r: CaseResult) -> dict[str, Any]:
    last = r.attempts[-1] if r.attempts else None
    return {"index": i, "item": r.name, "input": None, "output": last.output if last else None,
            "reference": None, "error": r.reason if r.status == "errored" else None,
            "latency_ms": sum(a.latency_ms or 0.0 for a in r.attempts),
            "prompt_tokens": sum(a.prompt_tokens or 0 for a in r.attempts),
            "completion_tokens": sum(a.completion_tokens or 0 for a in r.attempts),
            "passed": r.status == "passed", "status": r.status,
            "record": json.dumps(r.to_dict(), sort_keys=True, default=str)}


def _result(repo: Repository, plan: Plan, rows: list[dict[str, Any]], run: dict[str, Any],
            spec: dict[str, Any], model_ref: str, key: str, covered: dict[str, Any]) -> EvalResult:
    import pyarrow as pa
    from demoai.eval.run import predictions_schema
    from demoai.eval.tasks import PREDICTION_FIELDS
    scored = [r for r in rows if r.get("error") is None]
    scores: dict[str, Any] = {}
    if scored:
        est = summarize([1.0 if r["passed"] else 0.0 for r in scored], seed=plan.seed)
        scores["pass"] = {"value": est.value, "stderr": None if est.n < 2 else est.stderr,
                          "ci": [est.lower, est.upper], "n": est.n, "method": "bootstrap of the mean",
                          "rounds": est.rounds}
    data = {k: [r.get(k) for r in rows] for k in PREDICTION_FIELDS}
    data["score:pass"] = [None if r.get("error") else (1.0 if r["passed"] else 0.0) for r in rows]
    ref = repo.tables.write(pa.Table.from_pydict(data, schema=predictions_schema(["pass"])))
    passed = sum(1 for r in rows if r.get("status") == "passed")
    errored = sum(1 for r in rows if r.get("status") == "errored")
    return EvalResult.create(
        suite=plan.suite.digest, suite_name=plan.name, suite_path=plan.suite_path, task="cases",
        model=spec.get("digest") or key, model_ref=model_ref, adapter=spec.get("adapter_digest"),
        dataset=None, scores=scores,
        counts={"examples": len(rows), "scored": len(rows) - errored, "errored": errored,
                "passed": passed, "failed": len(rows) - passed - errored},
        pins={"predictions_key": key, "suite_path": plan.suite_path, "params": plan.params,
              "seed": plan.seed, "metrics": [{"name": "pass"}], "backend": spec.get("backend"),
              "settings": covered["settings"], "engine": covered["engine"],
              "chat_template": (run.get("backend") or {}).get("chat_template_digest"),
              "model_source": spec.get("source"), "model_pinned": bool(spec.get("digest")),
              "hardware": environment()["host"]},
        perf=run.get("perf") or {}, predictions=ref.to_dict())


def find_suites(repo: Repository, paths: list[str] | None) -> list[str]:
    """The ``*.suite.yaml`` files under ``paths`` (default: the whole working tree), as
    repository paths, sorted; ``.demoai`` is never searched."""
    roots = [Path(p).resolve() for p in paths] if paths else [repo.root]
    found: set[str] = set()
    for root in roots:
        if root.is_file():
            found.add(root.relative_to(repo.root).as_posix())
            continue
        for f in root.rglob("*.suite.y*ml"):
            rel = f.relative_to(repo.root).as_posix()
            if not rel.startswith(".demoai/") and f.is_file():
                found.add(rel)
    return sorted(found)


def test_suites(repo: Repository, paths: list[str] | None = None, *, model: str | None = None,
                rev: str | None = None, pool: ModelPool | None = None,
                on_case: OnCase = None) -> list[SuiteReport]:
    """Run every suite of cases under ``paths``: one report per suite (a suite that cannot
    be loaded or run is a report with its error; dataset suites are skipped)."""
    own = pool is None
    pool = pool or ModelPool(size=2)
    reports = []
    try:
        for path in find_suites(repo, paths):
            t0 = time.perf_counter()
            try:
                plan = load_plan(repo, path, rev=rev)
                if plan.task != "cases":
                    continue
                results, described = run_cases(repo, plan, model=model, rev=rev, pool=pool,
                                               on_case=on_case)
                reports.append(SuiteReport(
                    plan.name, path, results, time.perf_counter() - t0,
                    properties={"model": model or plan.suite.meta.get("model") or "smollm2",
                                "model_digest": described.get("model_digest", ""),
                                "suite_digest": plan.suite.digest}))
            except DemoAIError as e:
                reports.append(SuiteReport(path, path, [], time.perf_counter() - t0,
                                           error={"code": e.code, "message": e.message}))
    finally:
        if own:
            pool.close()
    return reports
