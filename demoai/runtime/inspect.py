"""Read-side views of sessions for the faces: timeline, one step, the list."""
from __future__ import annotations

import json

from typing import Any

from demoai.errors import SessionNotFound
from demoai.store.sessions.log import Event, list_sessions, open_session, parse_session_step
from demoai.store.git.repo import Repository

__all__ = ["sessions", "timeline", "show_step", "event_summary"]


def sessions(repo: Repository) -> list[dict[str, Any]]:
    return [s.to_dict() for s in list_sessions(repo)]


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


def timeline(repo: Repository, name: str) -> dict[str, Any]:
    with open_session(repo, name) as log:
        info = log.info()
        events = log.events()
    return {"session": info.to_dict(),
            "events": [{"step": e.step, "type": e.type, "id": "blake3:" + e.id, "t": e.body.get("t"),
                        "summary": event_summary(e)} for e in events]}


def show_step(repo: Repository, spec: str) -> dict[str, Any]:
    """Events of one step, its commit and the workspace files after it (``NAME@STEP``)."""
    name, step = parse_session_step(spec)
    with open_session(repo, name) as log:
        step = log.steps if step is None else step
        commit = log.step_commit(step)
        events = [e for e in log.events(step) if e.step == step]
        files = log.workspace_at(step)
    if not events and step:
        raise SessionNotFound(f"{name} has no events at step {step}", session=name, step=step)
    return {"session": name, "step": step, "commit": commit,
            "events": [e.to_dict() for e in events],
            "workspace": {p: len(b) for p, b in sorted(files.items())}}
