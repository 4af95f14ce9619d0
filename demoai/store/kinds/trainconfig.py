"""Training configs (``*.train.yaml``): base model, dataset, data format, LoRA settings,
optimizer and schedule; kept verbatim like prompts, agents and suites."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from demoai.objects import TrainConfig
from demoai.store.kinds.base import register_handler
from demoai.store.kinds.text import TextHandler

if TYPE_CHECKING:
    from demoai.store.git.repo import Repository

__all__ = ["TrainConfigHandler"]


@register_handler
class TrainConfigHandler(TextHandler[TrainConfig]):
    """A LoRA training config."""

    kind = "train"
    artifact = TrainConfig

    def uses(self, art: TrainConfig) -> set[str]:
        """The base model (unless the embedded one) and the datasets the config names."""
        m = art.meta
        out = {m.get("dataset"), (m.get("validation") or {}).get("dataset")}
        if m.get("base") not in ("smollm2", "builtin:smollm2"):
            out.add(m.get("base"))
        return {p for p in out if p}

    def detail(self, repo: "Repository", art: TrainConfig, *, commit: str, path: str,
               rows: int) -> dict[str, Any]:
        """Base, dataset, format, LoRA settings, steps and the text."""
        m = art.meta
        return {"train": {"name": m.get("name"), "base": m["base"], "dataset": m["dataset"],
                          "format": m["format"], "lora": m["lora"],
                          "learning_rate": m["learning_rate"], "schedule": m["schedule"],
                          "epochs": m["epochs"], "max_steps": m["max_steps"],
                          "batch_size": m["batch_size"], "seed": m["seed"], "text": art.text}}
