"""``eval run``: evaluate a model on a suite and build the :class:`EvalResult` to commit.

The run is planned and checked first (:func:`~demoai.eval.plan.load_plan`), then keyed
(:mod:`~demoai.eval.cache`): unchanged pinned inputs reuse the stored predictions without
loading the model; a killed run resumes from the items it finished. Scores are computed
from the predictions every time (cheap), so a change of metrics re-scores. The per-example
predictions and scores are written to a table; the result pins every input by digest and
carries the speed figures of the run that produced the predictions.

Committing is the porcelain's job (``demoai.porcelain.evaluate``): this module never moves a
ref.
"""
from __future__ import annotations

import re
import resource
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from demoai.engines.llm import ModelPool, open_backend
from demoai.errors import ModelError
from demoai.eval.cache import EvalCache, predictions_key
from demoai.eval.plan import Plan, load_plan
from demoai.eval.scoring import score_rows
from demoai.eval.tasks import PREDICTION_FIELDS, run_item
from demoai.objects import EvalResult
from demoai.registry.resolve import resolve_model
from demoai.store.git.lineage import environment
from demoai.store.git.repo import Repository

__all__ = ["evaluate", "EvalOutcome", "result_path", "OnProgress", "open_model", "model_slug",
           "perf_summary", "predictions_schema"]

OnProgress = Callable[[int, int], None] | None
"""Progress callback: ``(items done, items in all)``, after each item."""

_ARROW = {"int64": pa.int64(), "string": pa.string(), "float64": pa.float64(), "bool": pa.bool_(),
          "list<float64>": pa.list_(pa.float64()), "list<bool>": pa.list_(pa.bool_()),
          "list<string>": pa.list_(pa.string())}


@dataclass
class EvalOutcome:
    """What ``eval run`` produced: the result, where it goes in the tree, and how it was
    obtained (``cached``: predictions reused, the model not called; ``resumed``: items taken
    from a half-finished run)."""

    result: EvalResult
    path: str
    cached: bool
    resumed: int
    key: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"path": self.path, "cached": self.cached, "resumed": self.resumed, "key": self.key,
                "digest": self.result.digest, "suite": self.result.suite_name,
                "model": self.result.model_ref, "scores": self.result.scores,
                "counts": self.result.counts, "perf": self.result.perf}


def model_slug(ref: str, adapter: str | None = None) -> str:
    """A file-name-safe name for a model reference (and adapter)."""
    def one(s: str) -> str:
        s = s.removeprefix("openai:").rsplit("/", 1)[-1]
        for ext in (".gguf", ".safetensors"):
            s = s.removesuffix(ext)
        return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-.") or "model"
    return one(ref) + (f"+{one(adapter)}" if adapter else "")


def result_path(plan: Plan, model_ref: str, adapter: str | None) -> str:
    """``evals/<suite>/<model>.eval.json``: where a result is committed."""
    return f"evals/{model_slug(plan.name)}/{model_slug(model_ref, adapter)}.eval.json"


def predictions_schema(metric_names: list[str]) -> pa.Schema:
    """The predictions table's schema: the raw fields, then ``score:<metric>`` columns."""
    return pa.schema([pa.field(k, _ARROW[t]) for k, t in PREDICTION_FIELDS.items()]
                     + [pa.field(f"score:{m}", pa.float64()) for m in metric_names])


def open_model(spec: dict[str, Any], pool: ModelPool | None) -> tuple[Any, Callable[[], None]]:
    """(backend, release) for ``spec``: held from ``pool``, or opened for this run."""
    if pool is not None:
        held = pool.use(spec)
        ctx = held.call()
        backend = ctx.__enter__()

        def release() -> None:
            ctx.__exit__(None, None, None)
            held.release()
        return backend, release
    backend = open_backend(spec)
    return backend, backend.close


def _percentiles(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(np.asarray(xs, dtype=float), [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99)}


def perf_summary(rows: list[dict[str, Any]], wall_s: float, cpu_s: float,
                 peak_rss: int) -> dict[str, Any]:
    """Speed of a run: latency percentiles (ms), time to first token, prompt and completion
    tokens per second, throughput, CPU time and peak RSS."""
    ok = [r for r in rows if r.get("error") is None and r.get("latency_ms") is not None]
    lat = [r["latency_ms"] for r in ok]
    ttft = [r["ttft_ms"] for r in ok if r.get("ttft_ms") is not None]
    pt = sum(r.get("prompt_tokens") or 0 for r in ok)
    ct = sum(r.get("completion_tokens") or 0 for r in ok)
    busy = sum(lat) / 1000.0
    gen_s = sum(max(0.0, (r["latency_ms"] - (r.get("ttft_ms") or 0.0))) for r in ok) / 1000.0
    pp_s = sum(r.get("ttft_ms") or 0.0 for r in ok) / 1000.0
    return {"latency_ms": _percentiles(lat), "ttft_ms": _percentiles(ttft),
            "prompt_tokens": pt, "completion_tokens": ct,
            "prompt_tokens_per_s": pt / pp_s if pp_s > 0 and ttft else None,
            "completion_tokens_per_s": ct / gen_s if gen_s > 0 and ct else None,
            "examples_per_s": len(ok) / wall_s if wall_s > 0 else None,
            "busy_s": busy, "wall_s": wall_s, "cpu_s": cpu_s, "peak_rss_bytes": peak_rss}


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _predict(repo: Repository, plan: Plan, spec: dict[str, Any], cache: EvalCache,
             pool: ModelPool | None, on_progress: OnProgress) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    done = cache.resumable()
    todo = [it for it in plan.items if it.index not in done]
    resumed = len(plan.items) - len(todo)
    t0, c0 = time.perf_counter(), _cpu_s()
    backend, release = open_model(spec, pool)
    try:
        described = backend.describe()
        if on_progress:
            on_progress(resumed, len(plan.items))
        with cache.writer() as journal:
            for n, item in enumerate(todo, 1):
                row = run_item(backend, plan.task, item, plan.params, plan.seed)
                journal.append(row)
                done[item.index] = row
                if on_progress:
                    on_progress(resumed + n, len(plan.items))
    finally:
        release()
    rows = [done[it.index] for it in plan.items]
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    run = {"backend": described, "perf": perf_summary(rows, wall, cpu, peak),
           "resumed": resumed}
    cache.finish(rows, run)
    return rows, run, resumed


def evaluate(repo: Repository, suite_path: str, *, model: str | None = None,
             adapter: str | None = None, rev: str | None = None,
             backend: dict[str, Any] | None = None, limit: int | None = None,
             pool: ModelPool | None = None, on_progress: OnProgress = None,
             rounds: int = 1000, force: bool = False) -> EvalOutcome:
    """Evaluate ``model`` (default: the suite's ``model:``, else the embedded ``smollm2``)
    with ``adapter`` on the dataset suite at ``suite_path``; ``rev`` pins the suite, data,
    prompt and model (None: the working-tree suite, committed data). ``force`` re-runs the
    model even when stored predictions match. Returns the result to commit."""
    plan = load_plan(repo, suite_path, rev=rev, limit=limit)
    if plan.task == "cases":
        from demoai.eval.sanity import evaluate_cases
        return evaluate_cases(repo, plan, model=model, adapter=adapter, rev=rev, backend=backend,
                              pool=pool, on_progress=on_progress, force=force)
    model_ref = model or plan.suite.meta.get("model") or "smollm2"
    spec = resolve_model(repo, model_ref, rev, backend, adapter)
    key, covered = predictions_key(plan.generation_spec(), spec)
    cache = EvalCache(repo.control, key)
    found = None if force else cache.finished()
    if found is not None and any(r.get("retry") for r in found[0]):
        cache.reopen()                      # the items whose model call failed run again
        found = None
    if found is not None:
        rows, run = found
        resumed, cached = 0, True
    else:
        if force:
            cache.partial.unlink(missing_ok=True)
        rows, run, resumed = _predict(repo, plan, spec, cache, pool, on_progress)
        cached = False
    failed = [r for r in rows if r.get("retry")]
    if failed and len(failed) == len(rows):
        raise ModelError(f"every example failed on the model ({len(rows)} of {len(rows)}), nothing "
                         f"was committed; the first error: {failed[0]['error']}",
                         model=model_ref, examples=len(rows))
    result = build_result(repo, plan, rows, run, spec=spec, model_ref=model_ref, key=key,
                          covered=covered, rounds=rounds)
    return EvalOutcome(result=result, path=result_path(plan, model_ref, adapter), cached=cached,
                       resumed=resumed, key=key)


def build_result(repo: Repository, plan: Plan, rows: list[dict[str, Any]], run: dict[str, Any], *,
                 spec: dict[str, Any], model_ref: str, key: str, covered: dict[str, Any],
                 rounds: int = 1000) -> EvalResult:
    """Score ``rows``, store them with their scores as the predictions table, and build the
    EvalResult that pins every input."""
    scores, columns = score_rows(plan.task, rows, plan.metrics, seed=plan.seed, rounds=rounds)
    names = [m["name"] for m in plan.metrics]
    data = {k: [r.get(k) for r in rows] for k in PREDICTION_FIELDS}
    data.update({f"score:{m}": columns[m] for m in names})
    table = pa.Table.from_pydict(data, schema=predictions_schema(names))
    ref = repo.tables.write(table)
    errored = sum(1 for r in rows if r.get("error") is not None)
    described = run.get("backend") or {}
    model_digest = spec.get("digest") or key
    pins = {
        "predictions_key": key, "suite_path": plan.suite_path,
        "dataset_path": plan.dataset_path, "prompt": plan.prompt.digest if plan.prompt else None,
        "prompt_path": plan.prompt_path, "template": plan.suite.meta.get("template"),
        "chat": plan.suite.meta.get("chat"), "chat_template": described.get("chat_template_digest"),
        "params": plan.params, "seed": plan.seed, "metrics": plan.metrics,
        "backend": spec.get("backend"), "settings": covered["settings"], "engine": covered["engine"],
        "model_source": spec.get("source"), "model_pinned": bool(spec.get("digest")),
        "hardware": environment()["host"], "bootstrap_rounds": rounds,
    }
    return EvalResult.create(
        suite=plan.suite.digest, suite_name=plan.name, suite_path=plan.suite_path, task=plan.task,
        model=model_digest, model_ref=model_ref, adapter=spec.get("adapter_digest"),
        dataset=plan.dataset.digest if plan.dataset else None, scores=scores,
        counts={"examples": len(rows), "scored": len(rows) - errored, "errored": errored},
        pins=pins, perf=run.get("perf") or {}, predictions=ref.to_dict())
