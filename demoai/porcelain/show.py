"""``demoai show REF[:PATH]``: a commit with its lineage and changes, or one artifact."""
from __future__ import annotations

from typing import Any

from demoai.porcelain.diff import diff, diff_artifacts
from demoai.store import Repository
from demoai.store.kinds import handler_for

__all__ = ["show"]


def show(repo: Repository, spec: str = "HEAD", *, rows: int = 5) -> dict[str, Any]:
    """``REF`` -> the commit, its lineage and a diff --stat against its first parent;
    ``REF:PATH`` -> the artifact's manifest (bulk lists left out) and the preview its kind
    gives (rows of a dataset, the text of a prompt or agent, the files of a model)."""
    if ":" in spec:
        rev, path = spec.split(":", 1)
        art = repo.artifact_at(rev or "HEAD", path)
        out: dict[str, Any] = {"path": path, "ref": rev or "HEAD", "kind": art.kind, "digest": art.digest,
                               "summary": art.summary()}
        out.update(handler_for(art).show(repo, art, rows))
        return out
    cid = repo.resolve(spec)
    ci = repo.commit_info(cid)
    out = ci.to_dict()
    out["lineage"] = repo.lineage(cid)
    out["changes"] = diff(repo, ci.parents[0], cid, stat=True) if ci.parents else _root_changes(repo, cid)
    return out


def _root_changes(repo: Repository, cid: str) -> list[dict[str, Any]]:
    return [diff_artifacts(repo, p, None, a, stat=True) for p, a in sorted(repo.artifacts(cid).items())]
