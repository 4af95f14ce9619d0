"""Session records: an agent run's manifest; its event log lives in a table."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from demoai.objects import Session
from demoai.store.kinds.base import KindHandler, Live, register_handler

if TYPE_CHECKING:
    from demoai.store.git.repo import Repository

__all__ = ["SessionHandler"]


@register_handler
class SessionHandler(KindHandler[Session]):
    """An agent run (its steps live on ``refs/sessions/``; this is the manifest)."""

    kind = "session"
    artifact = Session

    def live_objects(self, art: Session) -> Live:
        """The event table, when there is one."""
        from demoai.store.tables import TableRef
        return set(), [TableRef.from_dict(art.events)] if art.events else []

    def detail(self, repo: "Repository", art: Session, *, commit: str, path: str,
               rows: int) -> dict[str, Any]:
        """Steps, status, the agent's digest and where it was forked from."""
        return {"session": {"steps": art.steps, "status": art.status, "agent": art.agent,
                            "parent": art.parent}}
