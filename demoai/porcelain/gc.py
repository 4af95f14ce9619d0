"""``demoai gc``: delete chunks and table versions that nothing reaches.

Live means reachable from a branch, a tag, any other ref, a reflog entry, the index or an
unfinished merge. The stores delete only after the survivors are safely written.
"""
from __future__ import annotations

from typing import Any

from demoai.objects import decode_manifest
from demoai.store import Repository, reachable
from demoai.store.kinds import live_objects

__all__ = ["gc"]


def gc(repo: Repository) -> dict[str, Any]:
    """Remove unreachable chunks and table files; returns what was freed."""
    with repo.commit_lock(), repo.gc_lock():
        _, manifests = reachable(repo)
        arts = [decode_manifest(d, n) for n, d in manifests.items()]
        chunks, tables = live_objects(arts)
        blob_stats = repo.blobs.gc(chunks)
        table_stats = repo.tables.gc(tables)
    return {"chunks": blob_stats, "tables": table_stats}
