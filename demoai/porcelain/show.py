"""``demoai show REF[:PATH]``: a commit with its lineage and changes, or one artifact."""
from __future__ import annotations

from typing import Any

from demoai.objects import Dataset
from demoai.porcelain.diff import diff, diff_artifacts
from demoai.store.kinds import load_table
from demoai.store.git.repo import Repository

__all__ = ["show"]


def show(repo: Repository, spec: str = "HEAD", *, rows: int = 5) -> dict[str, Any]:
    """``REF`` -> the commit, its lineage and a diff --stat against its first parent;
    ``REF:PATH`` -> the artifact's manifest and a preview (rows, text, files)."""
    if ":" in spec:
        rev, path = spec.split(":", 1)
        art = repo.artifact_at(rev or "HEAD", path)
        out: dict[str, Any] = {"path": path, "ref": rev or "HEAD", "kind": art.kind, "digest": art.digest,
                               "summary": art.summary(), "manifest": art.to_manifest()}
        if isinstance(art, Dataset):
            table = load_table(repo, art)
            out["preview"] = table.slice(0, rows).to_pylist()
            out["manifest"] = {k: v for k, v in out["manifest"].items() if k != "table"} | {
                "table": {k: v for k, v in art.table.items() if k != "files"}}
        elif hasattr(art, "text"):
            out["text"] = art.text  # type: ignore[attr-defined]
        elif hasattr(art, "files"):
            out["manifest"] = {k: v for k, v in out["manifest"].items() if k != "files"}
            out["files"] = {p: {"digest": f["digest"], "size": f["size"], "chunks": len(f["chunks"])}
                            for p, f in art.files.items()}  # type: ignore[attr-defined]
        return out
    cid = repo.resolve(spec)
    ci = repo.commit_info(cid)
    out = ci.to_dict()
    out["lineage"] = repo.lineage(cid)
    out["changes"] = diff(repo, ci.parents[0], cid, stat=True) if ci.parents else _root_changes(repo, cid)
    return out


def _root_changes(repo: Repository, cid: str) -> list[dict[str, Any]]:
    return [diff_artifacts(repo, p, None, a, stat=True) for p, a in sorted(repo.artifacts(cid).items())]
