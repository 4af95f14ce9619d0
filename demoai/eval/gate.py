"""``eval gate``: evaluate a base and a candidate on one suite (reusing cached predictions)
and decide on the paired test whether the candidate may replace the base.

The rule is :func:`~demoai.eval.stats.gate_decision`'s: *fail* only when the candidate is
worse than the base by more than ``margin`` with significance, *pass* when the data show it
is not, *inconclusive* otherwise. The decision, the test, the effect and its interval, and
the flipped examples are a :class:`~demoai.objects.GateRecord`; both results travel inside
it (their predictions tables stay alive with it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from demoai.engines.llm import ModelPool
from demoai.errors import InvalidArtifact
from demoai.eval.compare import MetricComparison, compare_results
from demoai.eval.run import EvalOutcome, OnProgress, evaluate, model_slug
from demoai.eval.stats import gate_decision
from demoai.objects import GateRecord

__all__ = ["Side", "GateRun", "run_gate", "gate_path"]


@dataclass
class Side:
    """One side of a gate: the revision that pins suite, data and model, the model and
    adapter, and a label for people."""

    rev: str = "HEAD"
    model: str | None = None
    adapter: str | None = None

    def label(self) -> str:
        """``model[+adapter]@rev``."""
        return f"{self.model or 'suite model'}{'+' + self.adapter if self.adapter else ''}@{self.rev}"


@dataclass
class GateRun:
    """A gate's record and the two evaluations behind it."""

    record: GateRecord
    base: EvalOutcome
    candidate: EvalOutcome
    comparison: MetricComparison
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"outcome": self.record.outcome, "metric": self.record.metric, "reason": self.reason,
                "test": self.record.test, "flips": self.record.flips, "margin": self.record.margin,
                "alpha": self.record.alpha, "base": self.base.to_dict(),
                "candidate": self.candidate.to_dict(), "digest": self.record.digest}


def gate_path(suite_name: str, base: Side, candidate: Side) -> str:
    """``evals/<suite>/gates/<base>--<candidate>.gate.json``."""
    def lab(s: Side) -> str:
        return model_slug(s.model or "suite-model", s.adapter) + "-" + model_slug(s.rev)
    return f"evals/{model_slug(suite_name)}/gates/{lab(base)}--{lab(candidate)}.gate.json"


def run_gate(repo: Any, suite: str, base: Side, candidate: Side, *, metric: str | None = None,
             margin: float = 0.0, alpha: float = 0.05, limit: int | None = None,
             pool: ModelPool | None = None, on_progress: OnProgress = None,
             rounds: int = 1000) -> GateRun:
    """Evaluate both sides on ``suite`` and decide on ``metric`` (default: the suite's first)."""
    if margin < 0:
        raise InvalidArtifact(f"--margin must be >= 0, not {margin}")
    if not 0 < alpha < 1:
        raise InvalidArtifact(f"--alpha must lie strictly between 0 and 1, not {alpha}")
    pool = pool or ModelPool(size=1)
    outs = []
    for side in (base, candidate):
        outs.append(evaluate(repo, suite, model=side.model, adapter=side.adapter, rev=side.rev,
                             limit=limit, pool=pool, on_progress=on_progress, rounds=rounds))
    a, b = outs[0].result, outs[1].result
    if a.task == "cases":
        raise InvalidArtifact("a gate compares scored examples; a suite of cases has none "
                              "(use `demoai eval test`)")
    name = metric or next(iter(m["name"] for m in a.pins.get("metrics") or []), None)
    if name is None:
        raise InvalidArtifact(f"the suite {a.suite_name} has no metrics to gate on")
    comp = compare_results(repo, a, b, metrics=[name], seed=int(a.pins.get("seed") or 0), rounds=rounds)
    mc = comp.metrics[0]
    if mc.test is None:
        raise InvalidArtifact(f"the two results share no scored example on {name!r}")
    decision = gate_decision(mc.test, margin=margin, alpha=alpha, higher_is_better=mc.higher_is_better)
    record = GateRecord.create(
        base=a.digest, candidate=b.digest, metric=name, outcome=decision.outcome,
        margin=float(margin), alpha=float(alpha),
        test={**decision.to_dict(), "mcnemar": mc.mcnemar, "n_shared": mc.n_shared},
        flips=mc.flips,
        refs={"base": {"side": base.__dict__, "result": a.to_manifest()},
              "candidate": {"side": candidate.__dict__, "result": b.to_manifest()},
              "inputs_changed": comp.inputs_changed})
    return GateRun(record, outs[0], outs[1], mc, decision.reason)
