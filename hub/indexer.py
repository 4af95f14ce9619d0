"""The search indexer: after every push, the prompts and agents at the head of a
repository's default branch replace its documents in the metadata store's full-text index
(SQLite FTS5 in the embedded default).

The documents come from :func:`demoai.porcelain.browse.search_documents`, which reads only
manifests (a prompt's or agent's text lives in its manifest), so indexing costs
milliseconds whatever the size of the datasets and models beside them.

Semantic search (embeddings in LanceDB) is not built: it needs an embedding model, and the
hub never downloads one; full-text search works everywhere.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from demoai.porcelain import browse

if TYPE_CHECKING:
    from demoai.hub.app import Hub
    from demoai.porcelain import Repository

__all__ = ["documents", "index_repo", "reindex_all", "install"]

log = logging.getLogger("demoai.hub.indexer")


def documents(repo: "Repository") -> list[dict[str, str]]:
    """The searchable documents of a repository: one per prompt or agent at the head of
    its default branch (``path``, ``kind``, ``title``, ``text``)."""
    return [d.to_dict() for d in browse.search_documents(repo)]


def index_repo(hub: "Hub", owner: str, name: str) -> int:
    """(Re)index ``owner/name``; returns the number of documents. A push hook: a failure
    is logged, never raised, since the push it follows has already succeeded."""
    try:
        repo = hub.storage.open(owner, name)
        try:
            docs = documents(repo)
        finally:
            repo.close()
        hub.meta.index_docs(owner, name, docs)
        return len(docs)
    except Exception:   # noqa: BLE001 - the push already happened; the index can be rebuilt
        log.exception("indexing %s/%s failed", owner, name)
        return 0


def reindex_all(hub: "Hub") -> dict[str, int]:
    """Index every repository (after an upgrade, or to rebuild a lost index)."""
    return {r.full_name: index_repo(hub, r.owner, r.name) for r in hub.meta.repos()}


def install(hub: "Hub") -> None:
    """Register :func:`index_repo` as a push hook (once)."""
    if index_repo not in hub.push_hooks:
        hub.push_hooks.append(index_repo)
