"""EvalResult, GateRecord, ArenaResult and Session: records written by workflows (evaluation,
regression gates, arenas, agent runs). Their
bulk (per-example predictions, session events) lives in tables; the manifest pins every
input by digest."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from demoai.errors import InvalidArtifact
from demoai.objects.base import Artifact, digest_bytes, register

__all__ = ["EvalResult", "GateRecord", "ArenaResult", "Session", "SESSION_STATUSES"]

SESSION_STATUSES = ("running", "finished", "max_steps", "failed", "interrupted", "forked")


def _is_digest(v: Any) -> bool:
    return isinstance(v, str) and v.startswith("blake3:")


def _record_digest(fields_: dict[str, Any]) -> str:
    """The content id of a JSON record: BLAKE3 of its canonical JSON (digest and meta left out)."""
    body = {k: v for k, v in fields_.items() if k not in ("digest", "meta")}
    return digest_bytes(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                   ensure_ascii=False, allow_nan=False).encode())


class _Record(Artifact):
    """A JSON record whose digest is the hash of its own fields (checked on every read)."""

    @classmethod
    def create(cls, **fields_: Any) -> Any:
        """A record with its digest computed from ``fields_``."""
        obj = cls(digest=_record_digest(fields_), **fields_)
        obj.check()
        return obj

    def check(self) -> None:
        super().check()
        try:
            want = _record_digest({f.name: getattr(self, f.name) for f in fields(self)})
        except (TypeError, ValueError) as e:
            raise InvalidArtifact(f"{self.kind}: not a JSON record ({e})") from None
        if want != self.digest:
            raise InvalidArtifact(f"{self.kind}: digest does not match the record's content")


def _check_number(kind: str, name: str, v: Any) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
        raise InvalidArtifact(f"{kind}: {name} must be a number, got {v!r}")


@register
@dataclass(frozen=True)
class EvalResult(_Record):
    """Scores of a model (and optional adapter) on a suite, every input pinned by digest.

    ``scores`` maps a metric to ``{"value", "stderr", "ci": [low, high], "n"}`` (a 95%
    seeded bootstrap interval); ``counts`` holds examples/scored/errored (and, for a suite
    of cases, passed/failed); ``pins`` everything else that fixes the predictions (prompt and
    chat template digests, decoding parameters, seed, backend and its settings, engine
    versions, hardware, the predictions key); ``perf`` the speed figures; ``predictions``
    the per-example table (a TableRef dict)."""

    kind = "eval"
    suite: str = ""
    suite_name: str = ""
    suite_path: str = ""
    task: str = ""
    model: str = ""
    model_ref: str = ""
    adapter: str | None = None
    dataset: str | None = None
    scores: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    pins: dict = field(default_factory=dict)
    perf: dict = field(default_factory=dict)
    predictions: dict | None = None   # TableRef dict

    def check(self) -> None:
        super().check()
        for name in ("model", "suite"):
            if not _is_digest(getattr(self, name)):
                raise InvalidArtifact(f"eval: {name} must be pinned by digest ('blake3:...')")
        for name in ("adapter", "dataset"):
            if getattr(self, name) is not None and not _is_digest(getattr(self, name)):
                raise InvalidArtifact(f"eval: {name} must be pinned by digest")
        for k, v in self.scores.items():
            if not isinstance(v, dict) or "value" not in v:
                raise InvalidArtifact(f"eval: score {k!r} must be a mapping with a value")
            _check_number("eval", f"score {k!r}", v["value"])

    @property
    def metrics(self) -> dict[str, float]:
        """metric -> aggregate value."""
        return {k: v["value"] for k, v in self.scores.items()}

    def summary(self) -> str:
        ms = ", ".join(f"{k}={v:.4g}" for k, v in sorted(self.metrics.items()))
        return f"eval {self.suite_name or ''} {ms}".strip()

    def diff(self, other: Artifact) -> dict[str, Any]:
        """Per-metric old/new/delta, and which pinned inputs changed."""
        assert isinstance(other, EvalResult)
        metrics = {}
        for k in sorted(set(self.metrics) | set(other.metrics)):
            a, b = self.metrics.get(k), other.metrics.get(k)
            metrics[k] = {"old": a, "new": b, "delta": (b - a) if a is not None and b is not None else None}
        inputs = [n for n in ("model", "dataset", "adapter", "suite") if getattr(self, n) != getattr(other, n)]
        inputs += [f"pins.{k}" for k in sorted(set(self.pins) | set(other.pins))
                   if self.pins.get(k) != other.pins.get(k) and k not in ("hardware", "environment")]
        return {"changed": self.digest != other.digest, "metrics": metrics, "inputs_changed": inputs}


@register
@dataclass(frozen=True)
class GateRecord(_Record):
    """A regression gate's decision between two evaluations: ``outcome`` is pass, fail or
    inconclusive; ``test`` the paired test, effect size and interval; ``flips`` the
    examples that changed outcome; ``base``/``candidate`` the EvalResult digests."""

    kind = "gate"
    base: str = ""
    candidate: str = ""
    metric: str = ""
    outcome: str = ""
    margin: float = 0.0
    alpha: float = 0.05
    test: dict = field(default_factory=dict)
    flips: dict = field(default_factory=dict)
    refs: dict = field(default_factory=dict)

    def check(self) -> None:
        super().check()
        for name in ("base", "candidate"):
            if not _is_digest(getattr(self, name)):
                raise InvalidArtifact(f"gate: {name} must be an eval result digest")
        if self.outcome not in ("pass", "fail", "inconclusive"):
            raise InvalidArtifact(f"gate: outcome must be pass, fail or inconclusive, not {self.outcome!r}")

    def summary(self) -> str:
        return f"gate {self.metric}: {self.outcome}"


@register
@dataclass(frozen=True)
class ArenaResult(_Record):
    """Pairwise battles among models on a prompt set, judged by a model or a person, and
    the Bradley-Terry ratings with bootstrap intervals. ``battles`` is the table of
    battles (a TableRef dict); ``models`` maps a model name to its pinned digest."""

    kind = "arena"
    name: str = ""
    models: dict = field(default_factory=dict)
    prompts: str = ""
    judge: dict = field(default_factory=dict)
    leaderboard: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    pins: dict = field(default_factory=dict)
    battles: dict | None = None

    def check(self) -> None:
        super().check()
        if len(self.models) < 2:
            raise InvalidArtifact("arena: at least two models")

    def summary(self) -> str:
        return f"arena {self.name}: {len(self.models)} models, {self.counts.get('battles', 0)} battles"


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
