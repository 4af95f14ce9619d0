"""EvalResult and Session: records written by workflows (evaluation, agent runs). Their
bulk (per-example predictions, session events) lives in tables; the manifest pins every
input by digest."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from demoai.errors import InvalidArtifact
from demoai.objects.base import Artifact, register

__all__ = ["EvalResult", "Session", "SESSION_STATUSES"]

SESSION_STATUSES = ("running", "finished", "max_steps", "failed", "interrupted", "forked")


def _is_digest(v: Any) -> bool:
    return isinstance(v, str) and v.startswith("blake3:")


@register
@dataclass(frozen=True)
class EvalResult(Artifact):
    """Scores of a model (and optional adapter) on a dataset under a suite, with the
    inputs pinned by digest and per-example predictions as an optional table."""

    kind = "eval"
    model: str = ""
    dataset: str = ""
    suite: str = ""
    adapter: str | None = None
    metrics: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    predictions: dict | None = None   # TableRef dict

    def check(self) -> None:
        super().check()
        for name in ("model", "dataset"):
            if not _is_digest(getattr(self, name)):
                raise InvalidArtifact(f"eval: {name} must be pinned by digest ('blake3:...')")
        if self.adapter is not None and not _is_digest(self.adapter):
            raise InvalidArtifact("eval: adapter must be pinned by digest")
        for k, v in self.metrics.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
                raise InvalidArtifact(f"eval: metric {k!r} must be a number, got {v!r}")

    def summary(self) -> str:
        ms = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.metrics.items()))
        return f"eval {self.suite or ''} {ms}".strip()

    def diff(self, other: Artifact) -> dict[str, Any]:
        """Per-metric old/new/delta, and which pinned inputs changed."""
        assert isinstance(other, EvalResult)
        metrics = {}
        for k in sorted(set(self.metrics) | set(other.metrics)):
            a, b = self.metrics.get(k), other.metrics.get(k)
            metrics[k] = {"old": a, "new": b, "delta": (b - a) if a is not None and b is not None else None}
        inputs = [n for n in ("model", "dataset", "adapter", "suite") if getattr(self, n) != getattr(other, n)]
        return {"changed": self.digest != other.digest, "metrics": metrics, "inputs_changed": inputs}


@register
@dataclass(frozen=True)
class Session(Artifact):
    """An agent run: an append-only, hash-chained event log. ``head`` is the id of the last
    event; ``parent`` names the session and step it was forked from."""

    kind = "session"
    agent: str = ""
    head: str = ""
    steps: int = 0
    status: str = "running"
    events: dict | None = None        # TableRef dict of the event log
    parent: dict | None = None        # {"session": digest, "step": int}

    def check(self) -> None:
        super().check()
        if not _is_digest(self.agent):
            raise InvalidArtifact("session: agent must be pinned by digest")
        if self.status not in SESSION_STATUSES:
            raise InvalidArtifact(f"session: status must be one of {list(SESSION_STATUSES)}")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise InvalidArtifact("session: steps must be a non-negative integer")

    def summary(self) -> str:
        return f"session {self.status}, {self.steps} steps"

    def diff(self, other: Artifact) -> dict[str, Any]:
        assert isinstance(other, Session)
        return {"changed": self.digest != other.digest, "steps": [self.steps, other.steps],
                "status": [self.status, other.status], "same_agent": self.agent == other.agent}
