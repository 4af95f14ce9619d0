"""Evaluation suites (``*.suite.yaml``): the task, dataset, template and metrics, or the
sanity cases; kept verbatim like prompts and agents."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from demoai.objects import Suite
from demoai.store.kinds.base import register_handler
from demoai.store.kinds.text import TextHandler

if TYPE_CHECKING:
    from demoai.store.git.repo import Repository

__all__ = ["SuiteHandler"]


@register_handler
class SuiteHandler(TextHandler[Suite]):
    """An evaluation suite."""

    kind = "suite"
    artifact = Suite

    def uses(self, art: Suite) -> set[str]:
        """The dataset and prompt the suite names."""
        return {p for p in (art.meta.get("dataset"), art.meta.get("prompt")) if p}

    def detail(self, repo: "Repository", art: Suite, *, commit: str, path: str,
               rows: int) -> dict[str, Any]:
        """Task, dataset, template or prompt, metrics, parameters, and the cases."""
        m = art.meta
        return {"suite": {"name": m.get("name"), "task": m["task"], "dataset": m.get("dataset"),
                          "prompt": m.get("prompt"), "template": m.get("template"),
                          "metrics": [x["name"] for x in m.get("metrics") or []],
                          "parameters": m.get("parameters") or {}, "seed": m.get("seed"),
                          "cases": len(m.get("cases") or []), "text": art.text}}
