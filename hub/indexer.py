"""The search indexer: after every push, the prompts and agents at the head of a
repository's default branch replace its documents in the metadata store's full-text index
(SQLite FTS5 in the embedded default).

Only manifests are read (a prompt's or agent's text lives in its manifest), so indexing
costs milliseconds whatever the size of the datasets and models beside them.

Semantic search (embeddings in LanceDB) is not built: it needs an embedding model, and the
hub never downloads one; full-text search works everywhere.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from demoai.errors import DemoAIError
from demoai.objects import Agent, Prompt, decode_manifest

from demoai.hub.views import default_branch

if TYPE_CHECKING:
    from demoai.hub.app import Hub
    from demoai.store.git.repo import Repository

__all__ = ["documents", "index_repo", "reindex_all", "install"]

log = logging.getLogger("demoai.hub.indexer")
_MAX_TEXT = 64 << 10     # a document's indexed text; a longer prompt is cut, not refused


def documents(repo: "Repository") -> list[dict[str, str]]:
    """The searchable documents of a repository: one per prompt or agent at the head of
    its default branch (``path``, ``kind``, ``title``, ``text``)."""
    ref = default_branch(repo)
    commit = repo.ref_value(ref) if ref else None
    if commit is None:
        return []
    docs = []
    for path, raw in sorted(repo.tree_entries(commit).items()):
        if b'"prompt"' not in raw and b'"agent"' not in raw:
            continue        # cheap pre-filter: datasets and models are most manifests
        try:
            art = decode_manifest(raw, path)
        except DemoAIError:
            continue
        if not isinstance(art, (Prompt, Agent)):
            continue
        m = art.meta
        title = m.get("name") or path.rsplit("/", 1)[-1]
        # The title and path are indexed with the text, so a search by name finds it too.
        docs.append({"path": path, "kind": art.kind, "title": str(title),
                     "text": f"{path}\n{art.text}"[:_MAX_TEXT]})
    return docs


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
