"""Evaluation results: a JSON record; per-example predictions in an optional table."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from demoai.objects import EvalResult
from demoai.store.kinds.base import KindHandler, Live, register_handler

if TYPE_CHECKING:
    from demoai.store.git.repo import Repository

__all__ = ["EvalHandler"]


@register_handler
class EvalHandler(KindHandler[EvalResult]):
    """Scores with their pinned inputs."""

    kind = "eval"
    artifact = EvalResult

    def live_objects(self, art: EvalResult) -> Live:
        """The predictions table, when there is one."""
        from demoai.store.tables import TableRef
        return set(), [TableRef.from_dict(art.predictions)] if art.predictions else []

    def detail(self, repo: "Repository", art: EvalResult, *, commit: str, path: str,
               rows: int) -> dict[str, Any]:
        """Metrics, parameters and the pinned model, dataset, adapter and suite."""
        return {"eval": {"metrics": art.metrics, "params": art.params, "model": art.model,
                         "dataset": art.dataset, "adapter": art.adapter, "suite": art.suite}}
