"""The search indexer: after every push, the prompts, agents and dataset cards at the head
of a repository's default branch replace its documents in the metadata store's full-text
index (SQLite FTS5 in the embedded default) and its vectors in the semantic index
(hub/semantic.py: LanceDB, wordllama embeddings).

The documents come from :func:`demoai.porcelain.browse.search_documents`, which reads only
manifests (a prompt's or agent's text lives in its manifest; a dataset's card is its
manifest's description and schema), so indexing costs milliseconds whatever the size of the
datasets and models beside them, plus the embedding of a few documents.

Where no embedding model is installed the vectors are skipped and full-text search works as
before; :func:`backfill` (run once in the background at start-up) gives vectors to the
repositories that have none, e.g. those pushed before the model was installed.
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from demoai.porcelain import browse

from demoai.hub import semantic

if TYPE_CHECKING:
    from demoai.hub.app import Hub
    from demoai.porcelain import Repository

__all__ = ["documents", "index_repo", "reindex_all", "drop_repo", "backfill", "install"]

log = logging.getLogger("demoai.hub.indexer")


def documents(repo: "Repository") -> list[dict[str, str]]:
    """The searchable documents of a repository: one per prompt, agent or dataset at the
    head of its default branch (``path``, ``kind``, ``title``, ``text``)."""
    return [d.to_dict() for d in browse.search_documents(repo)]


def _read(hub: "Hub", owner: str, name: str) -> list[dict[str, str]]:
    repo = hub.storage.open(owner, name)
    try:
        return documents(repo)
    finally:
        repo.close()


def index_repo(hub: "Hub", owner: str, name: str) -> int:
    """(Re)index ``owner/name``: the full text now, the vectors queued in the semantic
    index's thread (searches wait for them); returns the number of documents. A push hook:
    a failure is logged, never raised, since the push it follows has already succeeded; a
    failure of the vectors leaves the full-text index current."""
    try:
        docs = _read(hub, owner, name)
        hub.meta.index_docs(owner, name, docs)
    except Exception:   # noqa: BLE001 - the push already happened; the index can be rebuilt
        log.exception("indexing %s/%s failed", owner, name)
        return 0
    # the vectors in the background: the first push would otherwise wait for the model
    semantic.for_hub(hub).index_later(owner, name, docs)
    return len(docs)


def drop_repo(hub: "Hub", owner: str, name: str) -> None:
    """Forget the documents and vectors of a deleted repository (a delete hook)."""
    try:
        hub.meta.index_docs(owner, name, [])
    finally:
        semantic.drop(hub, owner, name)


def reindex_all(hub: "Hub") -> dict[str, int]:
    """Index every repository (after an upgrade, or to rebuild a lost index), vectors
    included: it returns once they are written."""
    counts = {r.full_name: index_repo(hub, r.owner, r.name) for r in hub.meta.repos()}
    semantic.for_hub(hub).settle(timeout=3600)
    return counts


def backfill(hub: "Hub") -> list[str]:
    """Give vectors to the repositories that have documents but no vectors (pushed while no
    embedding model was installed, or before semantic search existed); returns their names.
    A repository pushed meanwhile was indexed by its push and is left alone."""
    repos = hub.meta.repos()
    sem = semantic.for_hub(hub)
    if not repos or not sem.available:
        return []
    done = []
    have = sem.indexed()
    for r in repos:
        if r.full_name in have:
            continue
        try:
            docs = _read(hub, r.owner, r.name)
            if docs and sem.index(r.owner, r.name, docs, if_absent=True):
                done.append(r.full_name)
        except Exception:   # noqa: BLE001 - one unreadable repository must not stop the rest
            log.exception("semantic backfill of %s failed", r.full_name)
    return done


def install(hub: "Hub") -> None:
    """Register :func:`index_repo` as a push hook and :func:`drop_repo` as a delete hook
    (where the hub has ``delete_hooks``), once; start :func:`backfill` in the background."""
    if index_repo not in hub.push_hooks:
        hub.push_hooks.append(index_repo)
    deletes = getattr(hub, "delete_hooks", None)
    if isinstance(deletes, list) and drop_repo not in deletes:
        deletes.append(drop_repo)
    threading.Thread(target=_backfill_quietly, args=(hub,), name="semantic-backfill",
                     daemon=True).start()


def _backfill_quietly(hub: "Hub") -> None:
    try:
        backfill(hub)
    except Exception:   # noqa: BLE001 - a background convenience; pushes index as they come
        log.exception("semantic backfill failed")
