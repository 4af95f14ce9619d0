"""Forking a session at a step with overrides: the one implementation behind ``demoai fork
SESSION@STEP``, ``POST /api/sessions/{name}/fork`` and the fork of a live replay.

The overrides are checked before anything is written (keys, types, ranges, and that a
``model_ref`` names a model), so that the continue of the fork cannot fail on them.
"""
from __future__ import annotations

from typing import Any

from demoai.registry.resolve import check_model_ref
from demoai.runtime.settings import check_overrides
from demoai.store.git.repo import Repository, check_ref_name
from demoai.store.sessions.events import parse_session_step
from demoai.store.sessions.log import fork_session, free_name

__all__ = ["fork"]


def fork(repo: Repository, source: str, new_name: str | None = None, *, step: int | None = None,
         overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fork ``source`` (``NAME`` or ``NAME@STEP``; ``step`` wins; default: its last step)
    as ``new_name`` (default: ``NAME-fork-N``) with checked ``overrides``. Returns
    ``{"session", "from": {"session", "step", "commit"}, "commit", "steps", "overrides"}``."""
    o = check_overrides(overrides or {})
    check_model_ref(repo, o.get("model_ref"), "HEAD")
    name, at = parse_session_step(source) if step is None else (source, step)
    check_ref_name(name, "session")
    new = new_name or free_name(repo, f"{name}-fork")
    with fork_session(repo, name if at is None else f"{name}@{at}", new, overrides=o) as log:
        info = log.info()
    return {"session": new, "from": info.parent, "commit": info.commit, "steps": info.steps,
            "overrides": o}
