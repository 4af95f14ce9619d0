"""Replay a recorded session in one of three explicit modes, and compare two sessions.

- ``recorded``: no model, no tools; re-walks the events and verifies the hash chain.
- ``reexecute``: the recorded model responses drive the tools, run for real in a fresh
  sandbox; reports the first step whose (normalised) observation differs.
- ``live``: forks the session at a step and calls the model again from there, recording a
  new session linked to the old one.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from demoai.engines.llm import ModelPool
from demoai.errors import ReplayError
from demoai.runtime.fork import fork
from demoai.runtime.inspect import event_summary
from demoai.runtime.tools import execute, files_changed, normalize_observation
from demoai.store.git.repo import Repository
from demoai.store.sessions.events import Event, parse_bodies, parse_session_step, verify_lines
from demoai.store.sessions.log import SessionLog, free_name, open_session
from demoai.store.sessions.steps import blob_ids

__all__ = ["replay", "replay_recorded", "replay_reexecute", "replay_live", "fork_for_live",
           "diff_sessions", "MODES"]

MODES = ("recorded", "reexecute", "live")


def replay_recorded(repo: Repository, name: str, from_step: int = 0) -> dict[str, Any]:
    """Verify the chain and re-walk the events from ``from_step`` (timeline per step)."""
    with open_session(repo, name) as log:
        return _recorded(log, from_step)


def _recorded(log: SessionLog, from_step: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    bodies: list[bytes] = []
    n, head = verify_lines(log.lines(), bodies=bodies)
    if "blake3:" + head.decode() != log.manifest.head:
        raise ReplayError(f"session {log.name}: the events do not end at the recorded head")
    per_step: dict[int, list[str]] = {}
    for e in parse_bodies(bodies):
        if e["step"] >= from_step:
            per_step.setdefault(e["step"], []).append(e["type"])
    return {"mode": "recorded", "session": log.name, "events": n, "steps": log.steps,
            "head": log.manifest.head, "verified": True, "from_step": from_step,
            "timeline": [{"step": k, "events": v} for k, v in sorted(per_step.items())],
            "seconds": round(time.perf_counter() - t0, 6)}


def replay_reexecute(repo: Repository, name: str, from_step: int = 0, *, sandbox: str | None = None,
                     on_step: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Re-run every recorded tool call after ``from_step`` in a fresh sandbox holding the
    workspace as it was at ``from_step``; compare each observation with the recorded one."""
    from demoai.engines.sandbox import SandboxLimits, open_sandbox
    with open_session(repo, name) as log:
        _recorded(log, 0)                                 # never re-run a broken log
        events = log.events()
        start = next(e.body for e in events if e.type == "run_start")
        limits = SandboxLimits.from_dict({k: v for k, v in start["sandbox"].items() if k != "backend"})
        files = log.workspace_at(from_step)
    steps: list[dict] = []
    first = None
    with open_sandbox(sandbox or start["sandbox"]["backend"], limits) as sb:
        if files:
            sb.put_files(files)
        ids = blob_ids(files)
        call = None
        for e in events:
            if e.step <= from_step:
                continue
            if e.type == "tool_call" and e.body["tool"] != "finish":
                call = e.body
            elif e.type == "tool_result" and call is not None:
                obs = execute(sb, call["tool"], call["args"], start["sandbox"].get("timeout_s"))
                new_ids = blob_ids(sb.export_files())     # compared, not stored
                obs["files"] = files_changed(ids, new_ids)
                ids = new_ids
                want, got = normalize_observation(e.body), normalize_observation(obs)
                differs = sorted(k for k in want if want[k] != got[k])
                row = {"step": e.step, "tool": call["tool"], "same": not differs, "fields": differs}
                if differs:
                    row["recorded"] = {k: want[k] for k in differs}
                    row["observed"] = {k: got[k] for k in differs}
                    first = first or row
                steps.append(row)
                if on_step:
                    on_step(row)
                call = None
    return {"mode": "reexecute", "session": name, "from_step": from_step, "steps_replayed": len(steps),
            "identical": first is None, "first_divergence": first, "steps": steps}


def fork_for_live(repo: Repository, name: str, from_step: int | None = None,
                  new_name: str | None = None) -> dict[str, Any]:
    """The first half of a live replay: fork ``name`` at ``from_step`` (default: the start)
    as ``new_name`` (default: ``NAME-live-N``), marked as a live replay. Returns the fork."""
    step = 0 if from_step is None else from_step
    return fork(repo, name, new_name or free_name(repo, f"{name}-live"), step=step,
                overrides={"replay": "live"})


def replay_live(repo: Repository, name: str, from_step: int | None = None, *, new_name: str | None = None,
                max_steps: int | None = None, sandbox: str | None = None,
                on_event: Callable[[str, dict], None] | None = None,
                pool: ModelPool | None = None) -> dict[str, Any]:
    """Fork at ``from_step`` (default: the start) and call the model again from there."""
    from demoai.runtime.agent import continue_session
    forked = fork_for_live(repo, name, from_step, new_name)
    out = continue_session(repo, forked["session"], max_steps=max_steps, sandbox=sandbox,
                           on_event=on_event, pool=pool)
    return {"mode": "live", "session": name, "from_step": forked["from"]["step"],
            "new_session": forked["session"], "result": out}


def replay(repo: Repository, spec: str, mode: str = "recorded", from_step: int | None = None,
           **kw: Any) -> dict[str, Any]:
    """Dispatch on ``mode``; ``spec`` may be ``NAME@STEP`` (same as ``from_step``)."""
    name, at = parse_session_step(spec)
    step = from_step if from_step is not None else at
    if mode == "recorded":
        return replay_recorded(repo, name, step or 0)
    if mode == "reexecute":
        return replay_reexecute(repo, name, step or 0, **kw)
    if mode == "live":
        return replay_live(repo, name, step, **kw)
    raise ReplayError(f"unknown replay mode {mode!r} (one of {', '.join(MODES)})")


_VOLATILE = ("t", "timings", "seconds", "duration_s")


def _content(e: Event) -> dict[str, Any]:
    return {k: v for k, v in e.body.items() if k not in _VOLATILE}


def _brief(e: Event | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"id": "blake3:" + e.id, "step": e.step, "type": e.type, "detail": event_summary(e)}


def diff_sessions(repo: Repository, a: str, b: str) -> dict[str, Any]:
    """Where two sessions part: the shared prefix (same event ids, e.g. a fork and its
    source), then the first event whose content differs (timestamps and timings ignored)."""
    with open_session(repo, a) as la, open_session(repo, b) as lb:
        ea, eb = la.events(), lb.events()
        sa, sb_ = la.steps, lb.steps
    shared = 0
    while shared < min(len(ea), len(eb)) and ea[shared].id == eb[shared].id:
        shared += 1
    i = shared
    while i < min(len(ea), len(eb)) and _content(ea[i]) == _content(eb[i]):
        i += 1
    out: dict[str, Any] = {"a": a, "b": b, "steps": [sa, sb_], "events": [len(ea), len(eb)],
                           "shared_events": shared, "identical": i == len(ea) == len(eb)}
    if not out["identical"]:
        x = ea[i] if i < len(ea) else None
        y = eb[i] if i < len(eb) else None
        fields = sorted(k for k in set(_content(x) if x else {}) | set(_content(y) if y else {})
                        if (x and _content(x).get(k)) != (y and _content(y).get(k))) if x and y else []
        out["first_divergence"] = {"index": i, "step": (x or y).step, "a": _brief(x), "b": _brief(y),
                                   "fields": fields}
    return out
