"""Score prediction rows with the suite's metrics: per-example scores (kept with the
predictions, so comparisons stay paired) and each aggregate with a standard error and a 95%
seeded bootstrap interval.

A metric function receives its inputs by parameter name (see :data:`~demoai.eval.plan.TASK_INPUTS`)
and its options from the suite. Errored rows are left out of every score and counted.
Aggregates that are means get :func:`~demoai.eval.stats.summarize`; pooled ones (perplexities
and bits per byte: a ratio of sums) are bootstrapped by resampling the per-example sums; any
other corpus statistic (BLEU) by re-running the metric on resampled examples.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from demoai.eval.metrics import MetricResult, get_metric
from demoai.eval.plan import metric_inputs
from demoai.eval.stats import bootstrap_ci, summarize

__all__ = ["score_rows", "metric_input_columns", "GENERIC_BOOTSTRAP_ROUNDS"]

GENERIC_BOOTSTRAP_ROUNDS = 200
"""Rounds for corpus statistics that must re-run the metric per round (BLEU): each round
costs a full corpus score."""


def metric_input_columns(task: str, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Every input a task's (scored) rows can give a metric function, by parameter name."""
    cols: dict[str, list[Any]] = {}
    if task in ("generate", "multiple_choice"):
        cols["predictions"] = [r["output"] or "" for r in rows]
    if task == "generate":
        cols["references"] = [json.loads(r["reference"]) for r in rows]
    if task == "multiple_choice":
        cols["loglikelihoods"] = [list(r["choice_logprobs"]) for r in rows]
        cols["gold"] = [int(r["gold"]) for r in rows]
        cols["choices"] = [list(r["choices"]) for r in rows]
        cols["references"] = [[r["choices"][r["gold"]]] for r in rows]
    if task in ("loglikelihood", "perplexity"):
        cols["nll"] = [-float(r["logprob"]) for r in rows]
        cols["tokens"] = [int(r["n_tokens"]) for r in rows]
    if task == "loglikelihood":
        cols["is_greedy"] = [bool(r["is_greedy"]) for r in rows]
    if task == "perplexity":
        cols["words"] = [int(r["n_words"]) for r in rows]
        cols["num_bytes"] = [int(r["n_bytes"]) for r in rows]
    return cols


def _call(spec: dict[str, Any], cols: dict[str, list[Any]], idx: np.ndarray | None = None) -> MetricResult:
    required, _ = metric_inputs(spec["name"])
    args = [cols[r] if idx is None else [cols[r][i] for i in idx] for r in required]
    options = {k: v for k, v in spec.items() if k != "name"}
    return get_metric(spec["name"])(*args, **options)


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _aggregate(spec: dict[str, Any], res: MetricResult, cols: dict[str, list[Any]],
               seed: int, rounds: int) -> dict[str, Any]:
    per = np.asarray(res.per_example, dtype=float)
    n = len(per)
    out: dict[str, Any] = {"value": float(res.corpus), "n": n}
    if "total_nll" in res.details:                    # a pooled ratio: exp/scale(sum nll / sum count)
        unit = next(k for k in res.details if k.startswith("total_") and k != "total_nll")
        count_col = {"total_tokens": "tokens", "total_words": "words", "total_bytes": "num_bytes"}[unit]
        nll = np.asarray(cols["nll"], dtype=float)
        cnt = np.asarray(cols[count_col], dtype=float)
        name = spec["name"]

        def pooled(x: np.ndarray, c: np.ndarray) -> np.ndarray:
            ratio = x / c                     # per round: total NLL / total count
            return ratio / math.log(2) if name == "bits_per_byte" else np.exp(ratio)
        est = bootstrap_ci(pooled, [nll, cnt], seed=seed, rounds=rounds, totals=True)
        out.update(stderr=_finite(est.stderr), ci=[_finite(est.lower), _finite(est.upper)],
                   method="bootstrap of pooled sums", rounds=rounds)
    elif abs(float(res.corpus) - float(per.mean())) <= 1e-9 * max(1.0, abs(float(res.corpus))):
        est = summarize(per, seed=seed, rounds=rounds)
        out.update(stderr=_finite(est.stderr), ci=[_finite(est.lower), _finite(est.upper)],
                   method="bootstrap of the mean", rounds=rounds)
    else:                                             # a corpus statistic: re-run the metric
        r = min(rounds, GENERIC_BOOTSTRAP_ROUNDS)
        rng = np.random.default_rng(seed)
        vals = np.array([_call(spec, cols, rng.integers(0, n, n)).corpus for _ in range(r)])
        lo, hi = np.percentile(vals, [2.5, 97.5])
        out.update(stderr=_finite(float(vals.std(ddof=1))) if r > 1 else None,
                   ci=[_finite(float(lo)), _finite(float(hi))],
                   method="bootstrap of the corpus statistic", rounds=r)
    if res.details:
        out["details"] = {k: v for k, v in res.details.items() if isinstance(v, (int, float, str))}
    return out


def score_rows(task: str, rows: list[dict[str, Any]], metrics: list[dict[str, Any]], *,
               seed: int = 0, rounds: int = 1000) -> tuple[dict[str, dict[str, Any]], dict[str, list[float | None]]]:
    """(scores, per-example score columns) of ``rows`` under ``metrics``. A score column
    has one value per row, None for errored rows."""
    ok = [i for i, r in enumerate(rows) if r.get("error") is None]
    scored = [rows[i] for i in ok]
    scores: dict[str, dict[str, Any]] = {}
    columns: dict[str, list[float | None]] = {}
    if not scored:
        return scores, {spec["name"]: [None] * len(rows) for spec in metrics}
    cols = metric_input_columns(task, scored)
    for spec in metrics:
        res = _call(spec, cols)
        scores[spec["name"]] = _aggregate(spec, res, cols, seed, rounds)
        column: list[float | None] = [None] * len(rows)
        for i, v in zip(ok, res.per_example):
            column[i] = float(v)
        columns[spec["name"]] = column
    return scores, columns
