"""``demoai diff``: typed differences between two snapshots.

``diff`` compares HEAD with the index (what the next commit records), ``diff A`` compares
commit A with the index, ``diff A B`` compares two commits. Datasets report rows added,
removed and modified (by key) with samples and per-column counts; prompts and agents a
unified text diff; models and adapters sizes and the share of changed chunks.
"""
from __future__ import annotations

from typing import Any

from demoai.objects import Artifact, Dataset, decode_manifest
from demoai.store import Repository

__all__ = ["diff", "diff_artifacts", "snapshot"]


def snapshot(repo: Repository, rev: str | None) -> dict[str, bytes]:
    """Manifests of a revision, or of the index when ``rev`` is None."""
    if rev is None:
        return repo.index.read().entries
    return repo.tree_entries(repo.resolve(rev))


def diff_artifacts(repo: Repository, path: str, old: Artifact | None, new: Artifact | None,
                   *, stat: bool = False, sample: int = 5) -> dict[str, Any]:
    """Typed diff of one path. Keys always present: path, kind, status, added, removed, modified."""
    art = new or old
    assert art is not None
    status = "added" if old is None else "deleted" if new is None else "modified"
    out: dict[str, Any] = {"path": path, "kind": art.kind, "status": status,
                           "added": 0, "removed": 0, "modified": 0}
    if isinstance(art, Dataset):
        if old is None or new is None:
            n = art.rows  # type: ignore[union-attr]
            out["added" if old is None else "removed"] = n
        elif old.kind != new.kind:
            out["status"] = "retyped"
        else:
            assert isinstance(old, Dataset) and isinstance(new, Dataset)
            from demoai.store.tables import TableRef
            key = new.key if new.key == old.key else None
            td = repo.tables.diff(TableRef.from_dict(old.table), TableRef.from_dict(new.table),
                                  key=key, sample=0 if stat else sample)
            d = td.to_dict()
            out.update(added=d["added"], removed=d["removed"], modified=d["modified"])
            if not stat:
                out.update(samples=d.get("samples", {}), column_changes=d.get("column_changes", {}),
                           schema_changes=d.get("schema_changes", []), key=key)
        return out
    if old is None or new is None:
        if hasattr(art, "text"):
            lines = len(art.text.splitlines())  # type: ignore[attr-defined]
            out["added" if old is None else "removed"] = lines
        out["size"] = art.size
        return out
    if old.kind != new.kind:
        out["status"] = "retyped"
        return out
    d = old.diff(new)
    if "text" in d:   # prompts, agents: counts are lines
        out.update(added=d["added"], removed=d["removed"])
        if not stat:
            out["text"] = d["text"]
    elif "changed_bytes" in d:   # models, adapters: counts are bytes
        out.update(added=d["changed_bytes"], size=d["size"], changed_share=d["changed_share"],
                   files_changed=d["files_changed"])
    else:   # the kind's own fields never replace the change's (a Session has a "status")
        out.update({(k if k not in out else f"{art.kind}_{k}"): v
                    for k, v in d.items() if k != "changed"})
    return out


def diff(repo: Repository, a: str | None = None, b: str | None = None, *, stat: bool = False,
         paths: list[str] | None = None, sample: int = 5) -> list[dict[str, Any]]:
    """Typed diffs of every path that differs between two snapshots (see module doc)."""
    if a is None and b is None:
        old_map, new_map = snapshot(repo, "HEAD") if repo.head_commit() else {}, snapshot(repo, None)
    else:
        old_map, new_map = snapshot(repo, a), snapshot(repo, b)
    out = []
    for p in sorted(set(old_map) | set(new_map)):
        if paths and not any(p == q or p.startswith(q.rstrip("/") + "/") for q in paths):
            continue
        if old_map.get(p) == new_map.get(p):
            continue
        old = decode_manifest(old_map[p], p) if p in old_map else None
        new = decode_manifest(new_map[p], p) if p in new_map else None
        out.append(diff_artifacts(repo, p, old, new, stat=stat, sample=sample))
    return out
