"""What the agent routes check before they touch a session: its status as this server sees
it (running while this server's work on it is queued or running), and that it is idle."""
from __future__ import annotations

from demoai.errors import RefConflict
from demoai.porcelain import Repository
from demoai.porcelain import agent as A
from demoai.server.runs import RunManager

__all__ = ["status", "idle"]


def status(repo: Repository, runs: RunManager, name: str, recorded: str) -> str:
    """A session's status: running when this server writes it; otherwise what its manifest
    records (``recorded``), ``interrupted`` for a run that died."""
    if runs.active(name):
        return "running"
    return A.session_status(repo, name, recorded)


def idle(repo: Repository, runs: RunManager, *names: str) -> None:
    """Refuse (409) to replay, fork, diff or continue sessions being written: those open a
    session through its cache, which a reader must not repair under a writer."""
    for name in names:
        if runs.active(name) or A.session_running(repo, name):
            raise RefConflict(f"session {name!r} is running; try again when it ends", session=name)
