"""Compare two evaluation results item by item: per metric the paired bootstrap of the
difference (and McNemar's test for pass/fail metrics) on the examples both share, the
examples that flipped, and which pinned inputs differ.

Items pair by their id (the dataset's key column, else the row position). A metric is
pass/fail when every per-example score is 0 or 1; flips are listed for those. For
perplexities (lower is better) the paired test runs on per-example values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from demoai.errors import InvalidArtifact
from demoai.eval.stats import align, flips, mcnemar, paired_bootstrap
from demoai.objects import EvalResult
from demoai.store.git.repo import Repository
from demoai.store.tables import TableRef

__all__ = ["Comparison", "MetricComparison", "compare_results", "LOWER_IS_BETTER", "item_scores"]

LOWER_IS_BETTER = frozenset({"perplexity", "word_perplexity", "bits_per_byte"})
"""Metrics where a smaller value is better."""


@dataclass
class MetricComparison:
    """One metric of two results: the aggregates, the paired test(s) and the flips."""

    metric: str
    base: float | None
    candidate: float | None
    n_shared: int
    higher_is_better: bool
    binary: bool
    bootstrap: dict[str, Any] | None = None
    mcnemar: dict[str, Any] | None = None
    flips: dict[str, list[Any]] = field(default_factory=dict)
    test: Any = field(default=None, repr=False)     # the PairedTest (with replicates) for gates

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {k: v for k, v in self.__dict__.items() if k != "test"}


@dataclass
class Comparison:
    """Two results compared: per-metric comparisons and the inputs that differ."""

    base: str
    candidate: str
    metrics: list[MetricComparison]
    inputs_changed: list[str]
    only_base: int
    only_candidate: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"base": self.base, "candidate": self.candidate,
                "metrics": [m.to_dict() for m in self.metrics], "inputs_changed": self.inputs_changed,
                "only_base": self.only_base, "only_candidate": self.only_candidate}


def item_scores(repo: Repository, res: EvalResult, metric: str) -> dict[str, float]:
    """``{item id: score}`` of ``metric`` over the scored examples of ``res``."""
    if not res.predictions:
        return {}
    col = f"score:{metric}"
    ref = TableRef.from_dict(res.predictions)
    table = repo.tables.read(ref, columns=["item", col]) if col in ref.arrow_schema().names else None
    if table is None:
        return {}
    return {i: s for i, s in zip(table.column("item").to_pylist(), table.column(col).to_pylist())
            if s is not None}


def compare_results(repo: Repository, a: EvalResult, b: EvalResult, *, metrics: list[str] | None = None,
                    seed: int = 0, rounds: int = 1000) -> Comparison:
    """Compare base ``a`` with candidate ``b`` on the metrics both have (or ``metrics``)."""
    names = metrics or [m for m in a.scores if m in b.scores]
    unknown = [m for m in names if m not in a.scores or m not in b.scores]
    if unknown:
        raise InvalidArtifact(f"metric(s) {unknown} are not in both results (base has "
                              f"{sorted(a.scores)}, candidate {sorted(b.scores)})", metrics=unknown)
    out, only_a, only_b = [], 0, 0
    for m in names:
        sa, sb = item_scores(repo, a, m), item_scores(repo, b, m)
        ids, xa, xb = align(sa, sb)
        only_a, only_b = max(only_a, len(set(sa) - set(sb))), max(only_b, len(set(sb) - set(sa)))
        mc = MetricComparison(metric=m, base=a.scores[m]["value"], candidate=b.scores[m]["value"],
                              n_shared=len(ids), higher_is_better=m not in LOWER_IS_BETTER,
                              binary=bool(len(ids)) and bool(np.isin(np.concatenate([xa, xb]), [0.0, 1.0]).all()))
        if ids:
            test = paired_bootstrap(xa, xb, seed=seed, rounds=rounds)
            mc.bootstrap, mc.test = test.to_dict(), test
            if mc.binary:
                mc.mcnemar = mcnemar(xa == 1.0, xb == 1.0, seed=seed, rounds=rounds).to_dict()
                mc.flips = flips(xa == 1.0, xb == 1.0, ids=ids).to_dict()
        out.append(mc)
    return Comparison(a.digest, b.digest, out, a.diff(b)["inputs_changed"], only_a, only_b)
