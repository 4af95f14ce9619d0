"""What the agent and session verbs return: dataclasses whose ``to_dict()`` is the JSON the
CLI prints with ``--json`` and the HTTP API answers (the same keys, in the same order)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from demoai.runtime.inspect import EventLine
from demoai.store.sessions import Event, SessionInfo

__all__ = ["RunResult", "SessionFork", "SessionTimeline", "SessionStep", "ReplayStep",
           "RecordedReplay", "ReexecutedStep", "ReexecuteReplay", "LiveReplay", "Replay",
           "DivergentEvent", "Divergence", "SessionDiff", "EventLine", "SessionInfo", "Event"]


@dataclass
class RunResult:
    """How a run (or a continue) ended."""

    session: str
    steps: int
    status: str                      # finished | max_steps | failed | interrupted (STATUS_TEXT)
    answer: str | None
    head: str                        # id of the last event
    commit: str                      # the session's tip

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunResult":
        """From the runtime's summary."""
        return cls(d["session"], d["steps"], d["status"], d.get("answer"), d["head"], d["commit"])


@dataclass
class SessionFork:
    """A new session forked from ``parent`` (``{"session", "step", "commit"}``)."""

    session: str
    parent: dict[str, Any]
    commit: str
    steps: int
    overrides: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the parent under ``from``)."""
        return {"session": self.session, "from": self.parent, "commit": self.commit,
                "steps": self.steps, "overrides": self.overrides}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SessionFork":
        """From the runtime's answer."""
        return cls(d["session"], d["from"], d["commit"], d["steps"], d["overrides"])


@dataclass
class SessionTimeline:
    """A session's state and one line per event (``demoai agent log``)."""

    session: SessionInfo
    events: list[EventLine]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"session": self.session.to_dict(), "events": [e.to_dict() for e in self.events]}


@dataclass
class SessionStep:
    """One step: its events, the commit holding its latest state and the workspace files
    (path -> size in bytes) after it (``demoai agent show NAME@STEP``)."""

    session: str
    step: int
    commit: str
    events: list[Event]
    workspace: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (events with their full bodies)."""
        return {"session": self.session, "step": self.step, "commit": self.commit,
                "events": [e.to_dict() for e in self.events], "workspace": dict(self.workspace)}


@dataclass
class ReplayStep:
    """The types of the events of one step, in order."""

    step: int
    events: list[str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"step": self.step, "events": list(self.events)}


@dataclass
class RecordedReplay:
    """A ``recorded`` replay: the chain verified, the events walked again."""

    session: str
    events: int
    steps: int
    head: str
    verified: bool
    from_step: int
    timeline: list[ReplayStep]
    seconds: float
    mode: str = "recorded"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"mode": self.mode, "session": self.session, "events": self.events, "steps": self.steps,
                "head": self.head, "verified": self.verified, "from_step": self.from_step,
                "timeline": [t.to_dict() for t in self.timeline], "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RecordedReplay":
        """From the runtime's report."""
        return cls(d["session"], d["events"], d["steps"], d["head"], d["verified"], d["from_step"],
                   [ReplayStep(t["step"], t["events"]) for t in d["timeline"]], d["seconds"])


@dataclass
class ReexecutedStep:
    """One tool call run again: whether its observation matched, and where not, the
    differing fields as recorded and as observed."""

    step: int
    tool: str
    same: bool
    fields: list[str]
    recorded: dict[str, Any] | None = None
    observed: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (``recorded``/``observed`` only where they differ)."""
        out: dict[str, Any] = {"step": self.step, "tool": self.tool, "same": self.same, "fields": self.fields}
        if self.recorded is not None or self.observed is not None:
            out["recorded"], out["observed"] = self.recorded, self.observed
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ReexecutedStep":
        """From a row of the runtime's report."""
        return cls(d["step"], d["tool"], d["same"], d["fields"], d.get("recorded"), d.get("observed"))


@dataclass
class ReexecuteReplay:
    """A ``reexecute`` replay: each tool call run again in a fresh sandbox."""

    session: str
    from_step: int
    steps_replayed: int
    identical: bool
    first_divergence: ReexecutedStep | None
    steps: list[ReexecutedStep]
    mode: str = "reexecute"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"mode": self.mode, "session": self.session, "from_step": self.from_step,
                "steps_replayed": self.steps_replayed, "identical": self.identical,
                "first_divergence": self.first_divergence.to_dict() if self.first_divergence else None,
                "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ReexecuteReplay":
        """From the runtime's report."""
        first = d.get("first_divergence")
        return cls(d["session"], d["from_step"], d["steps_replayed"], d["identical"],
                   ReexecutedStep.from_dict(first) if first else None,
                   [ReexecutedStep.from_dict(s) for s in d["steps"]])


@dataclass
class LiveReplay:
    """A ``live`` replay: a fork at ``from_step`` run on with the model, as ``new_session``."""

    session: str
    from_step: int
    new_session: str
    result: RunResult
    mode: str = "live"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"mode": self.mode, "session": self.session, "from_step": self.from_step,
                "new_session": self.new_session, "result": self.result.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LiveReplay":
        """From the runtime's report."""
        return cls(d["session"], d["from_step"], d["new_session"], RunResult.from_dict(d["result"]))


Replay = RecordedReplay | ReexecuteReplay | LiveReplay


@dataclass
class DivergentEvent:
    """An event where two sessions part, in brief."""

    id: str
    step: int
    type: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)


@dataclass
class Divergence:
    """The first event (by index) whose content differs, on each side (None: that side
    ended), and the body fields that differ."""

    index: int
    step: int
    a: DivergentEvent | None
    b: DivergentEvent | None
    fields: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"index": self.index, "step": self.step, "a": self.a.to_dict() if self.a else None,
                "b": self.b.to_dict() if self.b else None, "fields": self.fields}


@dataclass
class SessionDiff:
    """Where sessions ``a`` and ``b`` part: shared events (same ids), then the first
    divergence (None when identical)."""

    a: str
    b: str
    steps: tuple[int, int]
    events: tuple[int, int]
    shared_events: int
    identical: bool
    first_divergence: Divergence | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (``first_divergence`` only when they differ)."""
        out: dict[str, Any] = {"a": self.a, "b": self.b, "steps": list(self.steps),
                               "events": list(self.events), "shared_events": self.shared_events,
                               "identical": self.identical}
        if self.first_divergence is not None:
            out["first_divergence"] = self.first_divergence.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SessionDiff":
        """From the runtime's comparison."""
        fd = d.get("first_divergence")
        div = None
        if fd is not None:
            div = Divergence(fd["index"], fd["step"],
                             DivergentEvent(**fd["a"]) if fd["a"] else None,
                             DivergentEvent(**fd["b"]) if fd["b"] else None, fd["fields"])
        return cls(d["a"], d["b"], tuple(d["steps"]), tuple(d["events"]), d["shared_events"],
                   d["identical"], div)
