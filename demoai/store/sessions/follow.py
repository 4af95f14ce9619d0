"""Read a session straight from its step commits, while a run may be appending to it.

:class:`~demoai.store.sessions.log.SessionLog` reads through the session's cache folder,
and opening it repairs that cache (it trims journal lines past the last committed step, or
rebuilds the files). That is right when nobody writes, but a reader in the same moment as
a writer could trim the writer's step in flight. The readers here follow the ref instead:
each step is one immutable commit holding only that step's events, so the events since the
last commit seen are the ``.demoai/events`` blobs of the commits between it and the new
tip. Git objects and ref files are written atomically, so this is safe at any moment, and
the hash chain of what was read is verified as it goes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from demoai.errors import SessionNotFound
from demoai.objects import Session
from demoai.store.git.repo import Repository
from demoai.store.sessions.events import ROOT_PARENT, Event, parse_session_step, verify_lines
from demoai.store.sessions.log import session_tip
from demoai.store.sessions.steps import manifest_at, read_workspace, step_commit, walk_steps

__all__ = ["Follower", "read_events", "StepRead", "read_step_at"]


@dataclass
class Follower:
    """Incremental reader of one session: :meth:`poll` returns the events committed since
    the previous call (all of them the first time)."""

    repo: Repository
    name: str
    commit: str | None = None          # last step commit read
    head: bytes = ROOT_PARENT          # id of the last event read (chain check)
    count: int = 0                     # events read so far
    manifest: Session | None = field(default=None, repr=False)

    def poll(self) -> list[Event]:
        """New events, in order; raises SessionNotFound when the ref is gone."""
        tip = session_tip(self.repo, self.name)
        if tip is None:
            raise SessionNotFound(f"no session named {self.name!r}", session=self.name)
        if tip == self.commit:
            return []
        chunks: list[bytes] = []
        reached = None
        for s in walk_steps(self.repo, tip, self.commit):
            chunks.append(s.events)
            reached = s.parent
        if self.commit is not None and reached != self.commit:
            # Not a descendant of what was read: the ref was reset. Read it all again.
            self.commit, self.head, self.count = None, ROOT_PARENT, 0
            return self.poll()
        lines = b"".join(reversed(chunks)).splitlines(keepends=True)
        _, head = verify_lines(lines, start_parent=self.head)
        events = [Event.parse(line) for line in lines]
        self.commit, self.head = tip, head
        self.count += len(events)
        self.manifest = manifest_at(self.repo, tip)
        return events


def read_events(repo: Repository, name: str, from_step: int = 0) -> list[Event]:
    """Every event of session ``name`` from step ``from_step`` on, read from git and
    verified (safe while a run appends to it)."""
    return [e for e in Follower(repo, name).poll() if e.step >= from_step]


@dataclass
class StepRead:
    """One step as :func:`read_step_at` reads it: its commit, events and workspace."""

    session: str
    step: int
    commit: str
    events: list[Event]
    workspace: dict[str, bytes]


def read_step_at(repo: Repository, spec: str, step: int | None = None) -> StepRead:
    """The events of one step of ``NAME@STEP`` (or ``NAME`` and ``step``; default: the
    last), the commit holding its latest state and the workspace files after it, read
    from git (safe while a run appends). SessionNotFound when there is no such step."""
    name, at = parse_session_step(spec) if step is None else (spec, step)
    tip = session_tip(repo, name)
    if tip is None:
        raise SessionNotFound(f"no session named {name!r} (see `demoai agent sessions`)", session=name)
    last = manifest_at(repo, tip).steps
    at = last if at is None else at
    commit = step_commit(repo, tip, at)
    if commit is None:
        raise SessionNotFound(f"session {name!r} has steps 0..{last}, not {at}", session=name, step=at)
    chunks = [s.events for s in walk_steps(repo, commit)]
    lines = b"".join(reversed(chunks)).splitlines(keepends=True)
    verify_lines(lines)
    events = [e for e in (Event.parse(line) for line in lines) if e.step == at]
    if not events and at:
        raise SessionNotFound(f"{name} has no events at step {at}", session=name, step=at)
    return StepRead(name, at, commit, events, read_workspace(repo, commit))
