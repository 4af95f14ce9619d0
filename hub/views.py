"""Read-side views of a hub repository, shared by the JSON API (hub/api.py) and the web
pages (hub/pages.py), so the two faces always show the same thing.

What a repository holds is computed by the porcelain's browse verbs
(:mod:`demoai.porcelain.browse`), the same ones the CLI and the TUI call; this module adds
what only the hub has: access control (:func:`open_repo`), the hub's repository record in
:func:`repo_detail`, and search (by words, by meaning or both: hub/semantic.py) over the
repositories a caller may read. Each function
returns the JSON-ready dict the API documents. Bad input raises the typed errors
(``RefNotFound``, ``PathNotFound``, ``SessionNotFound``), which the faces turn into 404s.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator

from demoai.porcelain import Repository, browse
from demoai.porcelain.browse import (MAX_EVENTS, PREVIEW_ROWS, clean, default_branch,
                                     resolve_ref, split_ref_path)

from demoai.hub import semantic

if TYPE_CHECKING:
    from demoai.hub.app import Hub, Principal
    from demoai.hub.meta import RepoInfo

__all__ = ["open_repo", "clean", "default_branch", "resolve_ref", "repo_detail", "history",
           "commit_detail", "tree", "artifact_detail", "split_ref_path", "sessions", "session_timeline",
           "search", "PREVIEW_ROWS", "MAX_EVENTS"]


@contextlib.contextmanager
def open_repo(hub: "Hub", owner: str, name: str, who: "Principal") -> Iterator[tuple["RepoInfo", Repository]]:
    """The repository ``owner/name`` if ``who`` may read it (typed 404 otherwise); closed
    on exit."""
    info = hub.access(owner, name, who)
    repo = hub.storage.open(owner, name)
    try:
        yield info, repo
    finally:
        repo.close()


def repo_detail(info: "RepoInfo", repo: Repository) -> dict[str, Any]:
    """Everything the repository page shows above its history: the hub's record, branches,
    tags, sessions, HEAD and the default branch."""
    return {**info.to_dict(), **browse.repo_summary(repo).to_dict()}


def history(repo: Repository, ref: str | None, limit: int = 50) -> dict[str, Any]:
    """Commits reachable from ``ref`` (default branch), newest first, at most ``limit``."""
    return browse.history(repo, ref, limit).to_dict()


def commit_detail(repo: Repository, rev: str, sample: int = 5) -> dict[str, Any]:
    """A commit with its lineage and the typed diff against its first parent."""
    return browse.commit_detail(repo, rev, sample).to_dict()


def tree(repo: Repository, ref: str | None) -> dict[str, Any]:
    """The artifacts at ``ref``: path, kind, one-line summary, digest, size."""
    return browse.tree(repo, ref).to_dict()


def artifact_detail(repo: Repository, ref: str | None, path: str, rows: int = PREVIEW_ROWS) -> dict[str, Any]:
    """One artifact at ``ref``, typed by kind, with the commit that last changed it."""
    return browse.artifact_detail(repo, ref, path, rows).to_dict()


def sessions(repo: Repository) -> list[dict[str, Any]]:
    """Every session: name, status, steps, agent, where it was forked from."""
    return [s.to_dict() for s in browse.session_list(repo)]


def session_timeline(repo: Repository, name: str, limit: int = MAX_EVENTS) -> dict[str, Any]:
    """A session's steps, the workspace after the last step, and the sessions forked from it."""
    return browse.session_timeline(repo, name, limit).to_dict()


def search(hub: "Hub", who: "Principal", query: str, limit: int = 50, mode: str = "hybrid",
           min_similarity: float | None = None) -> dict[str, Any]:
    """Prompts, agents and dataset cards of the repositories ``who`` may read that match
    ``query``: by words (full text), by meaning (vectors) or both fused (``hybrid``, the
    default); see :func:`demoai.hub.semantic.search` for the answer's keys."""
    return semantic.search(hub, who, query, limit, mode, min_similarity,
                           text_hits=lambda n: _text_hits(hub, who, query, n))


def _text_hits(hub: "Hub", who: "Principal", query: str, limit: int) -> list[dict[str, Any]]:
    """Full-text matches in the repositories ``who`` may read, best first."""
    seen: dict[tuple[str, str], bool] = {}
    out = []
    # Ask for more than needed: hits in repositories the caller cannot read are dropped.
    for hit in hub.meta.search(query, limit * 4):
        key = (hit["owner"], hit["name"])
        if key not in seen:
            info = hub.meta.get_repo(*key)
            seen[key] = info is not None and hub.can_read(info, who)
        if seen[key]:
            out.append(clean(hit))
            if len(out) >= limit:
                break
    return out
