"""Reading sessions: ``demoai agent sessions``, ``agent log``, ``agent show`` and the
session routes of ``demoai serve``.

Every read here comes from the session's step commits (git objects, written atomically),
never through the session's cache, so it is safe while a run appends to the session, in
this process or another; the hash chain of what is read is verified.
"""
from __future__ import annotations

from demoai.porcelain.agent.results import SessionStep, SessionTimeline
from demoai.runtime.inspect import (STATUS_TEXT, EventLine, event_fields, event_summary, one_line,
                                    shorten, timeline_rows)
from demoai.store.git.repo import Repository
from demoai.store.sessions import (Event, Follower, SessionInfo, list_sessions, live_status,
                                   read_events, read_step_at, session_info, session_tip)
from demoai.store.sessions.steps import manifest_at

__all__ = ["list_sessions", "session_info", "session_log", "session_step", "workspace_files",
           "session_events",
           "follow_session", "session_exists", "session_running", "session_status", "event_summary",
           "event_fields", "STATUS_TEXT", "one_line", "shorten", "SessionInfo", "SessionFollower", "EventLine", "Event"]

SessionFollower = Follower
"""An incremental reader of one session (``poll()`` returns the events committed since the
last call; ``manifest`` and ``count`` say where it is)."""


def session_log(repo: Repository, name: str) -> SessionTimeline:
    """The session's state and one line per event, oldest first."""
    session_info(repo, name)              # SessionNotFound (with a hint) before reading
    f = Follower(repo, name)
    events = f.poll()
    assert f.commit is not None
    return SessionTimeline(session_info(repo, name, f.commit), timeline_rows(events))


def session_step(repo: Repository, spec: str, step: int | None = None) -> SessionStep:
    """The events of one step of ``NAME@STEP`` (or ``NAME`` and ``step``; default: the
    last step), the commit holding its latest state and the workspace files after it."""
    s = read_step_at(repo, spec, step)
    return SessionStep(s.session, s.step, s.commit, s.events,
                       {p: len(b) for p, b in sorted(s.workspace.items())})


def workspace_files(repo: Repository, spec: str, step: int | None = None) -> dict[str, bytes]:
    """The workspace files (path -> bytes) after one step of ``NAME@STEP`` (or ``NAME`` and
    ``step``; default: the last step), read from git."""
    return dict(sorted(read_step_at(repo, spec, step).workspace.items()))


def session_events(repo: Repository, name: str, from_step: int = 0) -> list[Event]:
    """Every event (full bodies, ids chained by BLAKE3) from step ``from_step`` on."""
    return read_events(repo, name, from_step)


def follow_session(repo: Repository, name: str) -> SessionFollower:
    """A reader that returns the events of ``name`` as its steps are committed (for
    progress streams); nothing is read until its first ``poll()``."""
    return Follower(repo, name)


def session_running(repo: Repository, name: str) -> bool:
    """Whether some process is appending to session ``name`` right now (its manifest says
    running and its writer's lock is held). False for a session that does not exist."""
    tip = session_tip(repo, name)
    return tip is not None and live_status(repo, name, manifest_at(repo, tip).status) == "running"


def session_status(repo: Repository, name: str, recorded: str) -> str:
    """The status session ``name`` really has, given the one its manifest records
    (``recorded``): ``interrupted`` for a run that died with it ``running``."""
    return live_status(repo, name, recorded)


def session_exists(repo: Repository, name: str) -> bool:
    """Whether a session ``name`` exists (False for a name no session may have)."""
    return session_tip(repo, name) is not None
