"""What the runtime's events mean to a reader: one summary line per event, and the
timeline rows (step, type, id, time, summary) every face shows."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from demoai.store.sessions.events import Event

__all__ = ["event_summary", "EventLine", "timeline_rows"]


@dataclass(frozen=True)
class EventLine:
    """One row of a session's timeline: an event and what it was, in one line."""

    step: int
    type: str
    id: str
    t: float | None
    summary: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"step": self.step, "type": self.type, "id": self.id, "t": self.t, "summary": self.summary}


def timeline_rows(events: list[Event]) -> list[EventLine]:
    """The timeline rows of ``events`` (``demoai agent log``, the server, the hub)."""
    return [EventLine(e.step, e.type, "blake3:" + e.id, e.body.get("t"), event_summary(e))
            for e in events]


def event_summary(e: Event) -> str:
    """One line saying what an event was (any event, including ones of an unexpected shape
    received from elsewhere)."""
    try:
        return _summary(e)
    except (AttributeError, TypeError, ValueError, KeyError):
        return json.dumps(e.body, sort_keys=True, default=str)[:200]


def _summary(e: Event) -> str:
    b = e.body
    t = e.type
    if t == "run_start":
        return f"task: {b.get('task', '')!r}; model {str(b.get('model', {}).get('digest'))[:19]}"
    if t == "model_request":
        return f"{b.get('n_messages')} messages, seed {b.get('params', {}).get('seed')}"
    if t == "model_response":
        tm = b.get("timings") or {}
        rate = tm.get("tokens_per_s")
        return (f"{b.get('completion_tokens')} tokens" + (f" at {rate:.1f} tok/s" if rate else "")
                + f": {b.get('text', '')[:160]}")
    if t == "tool_call":
        return f"{b.get('tool')} {b.get('args')}"[:200]
    if t == "tool_result":
        extra = f" [{b.get('limit') or 'timeout'}]" if b.get("limit") or b.get("timed_out") else ""
        out = (b.get("stdout") or b.get("stderr") or "").strip().replace("\n", " | ")
        files = f" files: {', '.join(b.get('files') or {})}" if b.get("files") else ""
        return f"exit {b.get('exit_code')}{extra} {out[:140]}{files}"
    if t == "fork":
        f = b.get("from", {})
        return f"forked from {f.get('session')}@{f.get('step')} with {b.get('overrides')}"
    if t == "run_end":
        return f"{b.get('status')} ({b.get('reason')})" + (f": {b.get('answer')}" if b.get("answer") else "")
    if t == "error":
        return f"{b.get('where')}: {b.get('message')}"
    if t == "resume":
        return f"continued with {b.get('restored_files')} workspace file(s) restored"
    return ""
