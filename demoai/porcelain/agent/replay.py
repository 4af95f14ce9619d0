"""``demoai agent replay`` and ``demoai agent diff``: replay a recorded session in one of
three explicit modes, and say where two sessions part.

- ``recorded``: no model, no tools; the hash chain is verified and the events re-walked.
- ``reexecute``: the recorded tool calls run again in a fresh sandbox holding the workspace
  as it was at ``from_step``; the first step whose observation differs is reported.
- ``live``: a fork at ``from_step`` (default: the start) runs on with the model, recorded as
  a new session linked to the old one (:func:`start_live_replay` is its first half).
"""
from __future__ import annotations

from typing import Any, Callable

from demoai.errors import ReplayError
from demoai.porcelain.agent.results import (LiveReplay, RecordedReplay, ReexecuteReplay, Replay,
                                            SessionDiff, SessionFork)
from demoai.porcelain.agent.run import ModelPool, OnEvent
from demoai.runtime import replay as _replay
from demoai.store.git.repo import Repository
from demoai.store.sessions import parse_session_step

__all__ = ["replay", "start_live_replay", "diff_sessions", "REPLAY_MODES"]

REPLAY_MODES = _replay.MODES


def replay(repo: Repository, spec: str, mode: str = "recorded", from_step: int | None = None, *,
           sandbox: str | None = None, max_steps: int | None = None, new_name: str | None = None,
           on_event: OnEvent = None, on_step: Callable[[dict[str, Any]], None] | None = None,
           pool: ModelPool | None = None) -> Replay:
    """Replay ``spec`` (``NAME`` or ``NAME@STEP``, the step being ``from_step``) in ``mode``.
    ``sandbox`` applies to ``reexecute`` and ``live``; ``max_steps``, ``new_name``,
    ``on_event`` and ``pool`` to ``live``; ``on_step`` (each re-executed step) to
    ``reexecute``."""
    name, at = parse_session_step(spec)
    step = from_step if from_step is not None else at
    if mode == "recorded":
        return RecordedReplay.from_dict(_replay.replay_recorded(repo, name, step or 0))
    if mode == "reexecute":
        return ReexecuteReplay.from_dict(_replay.replay_reexecute(repo, name, step or 0, sandbox=sandbox,
                                                                  on_step=on_step))
    if mode == "live":
        return LiveReplay.from_dict(_replay.replay_live(repo, name, step, new_name=new_name,
                                                        max_steps=max_steps, sandbox=sandbox,
                                                        on_event=on_event, pool=pool))
    raise ReplayError(f"unknown replay mode {mode!r} (one of {', '.join(REPLAY_MODES)})")


def start_live_replay(repo: Repository, name: str, from_step: int | None = None,
                      new_name: str | None = None) -> SessionFork:
    """The fork a live replay runs on (``NAME-live-N`` by default), for faces that run the
    rest (:func:`~demoai.porcelain.agent.run.continue_session`) in the background."""
    return SessionFork.from_dict(_replay.fork_for_live(repo, name, from_step, new_name))


def diff_sessions(repo: Repository, a: str, b: str) -> SessionDiff:
    """Where sessions ``a`` and ``b`` part: the shared prefix (same event ids, e.g. a fork
    and its source), then the first event whose content differs (times ignored)."""
    return SessionDiff.from_dict(_replay.diff_sessions(repo, a, b))
