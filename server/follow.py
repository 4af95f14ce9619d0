"""Read a session's events straight from its step commits, while a run may be appending.

``SessionLog`` reads through the session's cache folder, and opening it repairs that cache
(it trims journal lines past the last committed step, or rebuilds the files). That is right
when nobody writes, but a reader in the same moment as a writer would trim the writer's
step in flight. The server therefore never opens a session it is running; it follows the
ref instead: each step is one immutable commit holding only that step's events, so the
events since the last commit seen are the ``.demoai/events`` blobs of the commits between
it and the new tip. Git objects and ref files are written atomically, so this is safe at
any moment, and the hash chain of what was read is verified as it goes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from demoai.errors import IntegrityError, InvalidRefName, SessionNotFound
from demoai.objects import Session, decode_manifest
from demoai.runtime.inspect import event_summary
from demoai.store.sessions.log import SESSION_REF, Event, verify_lines
from demoai.store.git.repo import Repository, check_ref_name

__all__ = ["Follower", "tip_of", "manifest_at", "timeline_from_git", "summarize"]

_EVENTS = b".demoai/events"


def tip_of(repo: Repository, name: str) -> str | None:
    """The commit ``refs/sessions/NAME`` points at; None when there is none (a name git
    would refuse names no session)."""
    try:
        check_ref_name(name, "session")
        return repo.ref_value(SESSION_REF + name)
    except (InvalidRefName, ValueError):
        return None


def manifest_at(repo: Repository, commit: str) -> Session:
    """The Session manifest a step commit records."""
    tree = repo.git[repo.git[commit.encode()].tree]
    _, sha = tree.lookup_path(repo.git.__getitem__, b"session")
    art = decode_manifest(repo.git[sha].as_raw_string(), "session")
    if not isinstance(art, Session):
        raise IntegrityError(f"commit {commit[:12]} is not a session step", commit=commit)
    return art


@dataclass
class Follower:
    """Incremental reader of one session: :meth:`poll` returns the events committed since
    the previous call (all of them the first time)."""

    repo: Repository
    name: str
    commit: str | None = None          # last step commit read
    head: bytes = b"-"                 # id of the last event read (chain check)
    count: int = 0                     # events read so far
    manifest: Session | None = field(default=None, repr=False)

    def poll(self) -> list[Event]:
        """New events, in order; raises SessionNotFound when the ref is gone."""
        tip = tip_of(self.repo, self.name)
        if tip is None:
            raise SessionNotFound(f"no session named {self.name!r}", session=self.name)
        if tip == self.commit:
            return []
        chunks: list[bytes] = []
        sha: bytes | None = tip.encode()
        stop = self.commit.encode() if self.commit else None
        while sha is not None and sha != stop:
            c = self.repo.git[sha]
            _, ev = self.repo.git[c.tree].lookup_path(self.repo.git.__getitem__, _EVENTS)
            chunks.append(self.repo.git[ev].as_raw_string())
            sha = c.parents[0] if c.parents else None
        if stop is not None and sha != stop:
            # Not a descendant of what was read: the ref was reset. Read it all again.
            self.commit, self.head, self.count = None, b"-", 0
            return self.poll()
        lines = b"".join(reversed(chunks)).splitlines(keepends=True)
        _, head = verify_lines(lines, start_parent=self.head)
        events = [Event.parse(line) for line in lines]
        self.commit, self.head = tip, head
        self.count += len(events)
        self.manifest = manifest_at(self.repo, tip)
        return events


def timeline_from_git(repo: Repository, name: str, status: str) -> tuple[dict[str, Any], list[Event]]:
    """Session info (``status`` given by the caller, who knows it is running) and all
    events, read from git only."""
    f = Follower(repo, name)
    events = f.poll()
    m = f.manifest
    assert m is not None and f.commit is not None
    info = {"name": name, "commit": f.commit, "steps": m.steps, "status": status, "agent": m.agent,
            "head": m.head, "parent": m.parent, "meta": dict(m.meta),
            "updated": repo.git[f.commit.encode()].commit_time}
    return info, events


def summarize(events: list[Event]) -> list[dict[str, Any]]:
    """The timeline rows ``demoai agent log`` prints, for a list of events."""
    return [{"step": e.step, "type": e.type, "id": "blake3:" + e.id, "t": e.body.get("t"),
             "summary": event_summary(e)} for e in events]
