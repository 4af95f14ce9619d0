"""Evaluation records: results (``*.eval.json``, per-example predictions in a table), gate
decisions (``*.gate.json``) and arenas (``*.arena.json``, battles in a table). Each is a
JSON record whose digest is the hash of its fields."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from demoai.objects import ArenaResult, EvalResult, GateRecord
from demoai.store.kinds.base import KindHandler, Live, register_handler

if TYPE_CHECKING:
    from demoai.store.git.repo import Repository

__all__ = ["EvalHandler", "GateHandler", "ArenaHandler"]


def _table(d: dict | None) -> Live:
    from demoai.store.tables import TableRef
    return set(), [TableRef.from_dict(d)] if d else []


@register_handler
class EvalHandler(KindHandler[EvalResult]):
    """Scores with their pinned inputs."""

    kind = "eval"
    artifact = EvalResult

    def live_objects(self, art: EvalResult) -> Live:
        """The predictions table, when there is one."""
        return _table(art.predictions)

    def detail(self, repo: "Repository", art: EvalResult, *, commit: str, path: str,
               rows: int) -> dict[str, Any]:
        """Scores with intervals, counts, speed and the pinned model, dataset, adapter and suite."""
        return {"eval": {"suite_name": art.suite_name, "task": art.task, "scores": art.scores,
                         "metrics": art.metrics, "counts": art.counts, "perf": art.perf,
                         "model": art.model, "model_ref": art.model_ref, "dataset": art.dataset,
                         "adapter": art.adapter, "suite": art.suite, "pins": art.pins}}


@register_handler
class GateHandler(KindHandler[GateRecord]):
    """A regression gate's decision."""

    kind = "gate"
    artifact = GateRecord

    def live_objects(self, art: GateRecord) -> Live:
        """The predictions tables of the two results inside the record."""
        tables = []
        for side in ("base", "candidate"):
            pred = ((art.refs.get(side) or {}).get("result") or {}).get("predictions")
            tables += _table(pred)[1]
        return set(), tables

    def detail(self, repo: "Repository", art: GateRecord, *, commit: str, path: str,
               rows: int) -> dict[str, Any]:
        """Outcome, metric, test and flips."""
        return {"gate": {"outcome": art.outcome, "metric": art.metric, "margin": art.margin,
                         "alpha": art.alpha, "test": art.test, "flips": art.flips,
                         "base": art.base, "candidate": art.candidate, "refs": art.refs}}


@register_handler
class ArenaHandler(KindHandler[ArenaResult]):
    """Battles and ratings."""

    kind = "arena"
    artifact = ArenaResult

    def live_objects(self, art: ArenaResult) -> Live:
        """The battles table."""
        return _table(art.battles)

    def detail(self, repo: "Repository", art: ArenaResult, *, commit: str, path: str,
               rows: int) -> dict[str, Any]:
        """Leaderboard, models and counts."""
        return {"arena": {"name": art.name, "models": art.models, "leaderboard": art.leaderboard,
                          "counts": art.counts, "judge": art.judge}}
