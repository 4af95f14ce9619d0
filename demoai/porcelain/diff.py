"""``demoai diff``: typed differences between two snapshots, with git's semantics.

* ``diff``: the working tree against the index (what ``add`` would still stage);
* ``diff --staged`` (``--cached``): the index against HEAD (what the next commit records);
* ``diff A``: the working tree against commit A; ``diff --staged A``: the index against A;
* ``diff A B``: two commits; when both name training runs (``train/NAME`` branches or
  ``runs/NAME`` folders), the runs' comparison instead: their configs' differences and
  final losses, as one entry of kind ``run`` (see :func:`demoai.porcelain.train.compare_runs`).

Datasets report rows added, removed and modified (by key) with samples and per-column
counts; prompts and agents a unified text diff; models and adapters sizes and the share of
changed chunks. The working tree side covers tracked paths: a file whose bytes still match
its index entry stands for that entry; a changed one is read as ``add`` would read it,
without staging it (a dataset's rows are compared in memory and never stored; a model's
new chunks are stored unreferenced, for gc to collect).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from demoai.errors import InvalidRefName, PathNotFound
from demoai.objects import EvalResult, Artifact, Dataset, decode_manifest, encode_manifest
from demoai.porcelain._util import repo_path
from demoai.store import Repository, normalize_path
from demoai.store.kinds import import_path
from demoai.store.kinds.dataset import working_diff

__all__ = ["diff", "diff_artifacts", "snapshot"]

_WORKING = object()   # a working file that no longer holds its index entry


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
            _dataset_fields(out, td.to_dict(), key, stat)
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
        if isinstance(old, EvalResult) and isinstance(new, EvalResult) and not stat:
            # item by item: the paired tests and the flipped examples
            from demoai.eval.compare import compare_results
            comp = compare_results(repo, old, new, metrics=[m for m in old.scores if m in new.scores])
            out["paired"] = {m.metric: {"bootstrap": m.bootstrap, "mcnemar": m.mcnemar, "flips": m.flips,
                                        "n_shared": m.n_shared} for m in comp.metrics}
    return out


def _dataset_fields(out: dict[str, Any], d: dict[str, Any], key: str | None, stat: bool) -> None:
    out.update(added=d["added"], removed=d["removed"], modified=d["modified"], key=key)
    if d.get("reordered"):
        out["reordered"] = True
    if not stat:
        out.update(samples=d.get("samples", {}), column_changes=d.get("column_changes", {}),
                   schema_changes=d.get("schema_changes", []))


def _diff_working(repo: Repository, path: str, old_bytes: bytes | None, index_bytes: bytes,
                  *, stat: bool, sample: int) -> dict[str, Any] | None:
    """``path``'s working file (changed since it was staged) against ``old_bytes``; None
    when it holds the same artifact after all."""
    staged = decode_manifest(index_bytes, path)
    old = decode_manifest(old_bytes, path) if old_bytes is not None else None
    file = repo.root / path
    if isinstance(staged, Dataset) and (old is None or isinstance(old, Dataset)):
        key = staged.key if old is None or old.key == staged.key else None
        d = working_diff(repo, old, file, key=key, sample=0 if stat else sample)
        out: dict[str, Any] = {"path": path, "kind": "dataset",
                               "status": "added" if old is None else "modified",
                               "added": 0, "removed": 0, "modified": 0}
        _dataset_fields(out, d, key, stat)
        same = not (d["added"] or d["removed"] or d["modified"] or d.get("schema_changes"))
        if old is not None and same and not d.get("reordered"):
            out["note"] = "same rows in the same order; only the file's formatting differs"
        return out
    with repo.write_guard():
        new = import_path(repo, Path(file), kind=staged.kind, base=staged)
    if old_bytes is not None and encode_manifest(new) == old_bytes:
        return None
    return diff_artifacts(repo, path, old, new, stat=stat, sample=sample)


def _working_snapshot(repo: Repository) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The working tree as manifests: each tracked path whose file still holds its index
    entry maps to that entry, a changed one to ``_WORKING``; a missing one is left out.
    Also returns the index entries."""
    state = repo.index.read()
    out: dict[str, Any] = {}
    for path, data in state.entries.items():
        f = repo.root / path
        if f.exists() or f.is_symlink():
            out[path] = data if state.is_clean(path, f) else _WORKING
    return out, state.entries


def _rel(repo: Repository, path: str) -> str:
    """A user-given path (relative to the cwd) as an artifact path; "" for the whole tree.
    A path that is not in the work tree from here is taken as an artifact path."""
    if Path(path).resolve() == repo.root:
        return ""
    try:
        return repo_path(repo, path)
    except PathNotFound:
        return normalize_path(path)


def _run_diff(repo: Repository, a: str, b: str) -> dict[str, Any] | None:
    """The comparison of two training runs, when ``a`` and ``b`` both name one."""
    from demoai.porcelain import train as T      # lazily: a plain diff loads no training code
    if not (T.looks_like_run(a) and T.looks_like_run(b)):
        return None
    ra, rb = T.run_name(repo, a), T.run_name(repo, b)
    if ra is None or rb is None:
        return None
    return T.compare_runs(repo, ra, rb).diff_entry()


def diff(repo: Repository, a: str | None = None, b: str | None = None, *, staged: bool = False,
         stat: bool = False, paths: list[str] | None = None, sample: int = 5) -> list[dict[str, Any]]:
    """Typed diffs of every path that differs between two snapshots (see the module doc):
    the working tree against the index (no revision), or against ``a``; with ``staged``,
    the index against HEAD, or against ``a``; ``a`` against ``b``. ``paths`` (relative to
    the current directory, folders included) limit it."""
    if b is not None and a is None:
        raise InvalidRefName("diff A B needs both revisions")
    if b is not None and staged:
        raise InvalidRefName("diff --staged compares the index with one revision, not two")

    if a is not None and b is not None and not paths:
        run_diff = _run_diff(repo, a, b)
        if run_diff is not None:
            return [run_diff]
    limit = [_rel(repo, q) for q in paths] if paths else None

    def wanted(p: str) -> bool:
        return not limit or any(not q or p == q or p.startswith(q + "/") for q in limit)

    out = []
    if b is not None or staged:
        if b is not None:
            old_map, new_map = snapshot(repo, a), snapshot(repo, b)
        else:
            base = a or "HEAD"
            old_map = snapshot(repo, base) if a or repo.head_commit() else {}
            new_map = snapshot(repo, None)
        for p in sorted(set(old_map) | set(new_map)):
            if not wanted(p) or old_map.get(p) == new_map.get(p):
                continue
            old = decode_manifest(old_map[p], p) if p in old_map else None
            new = decode_manifest(new_map[p], p) if p in new_map else None
            out.append(diff_artifacts(repo, p, old, new, stat=stat, sample=sample))
        return out
    old_map = snapshot(repo, a) if a is not None else None
    work, index = _working_snapshot(repo)
    old_map = index if old_map is None else old_map
    for p in sorted(set(old_map) | set(work)):
        if not wanted(p):
            continue
        ob, nb = old_map.get(p), work.get(p)
        if nb is _WORKING:
            d = _diff_working(repo, p, ob, index[p], stat=stat, sample=sample)
            if d is not None:
                out.append(d)
            continue
        if ob == nb:
            continue
        old = decode_manifest(ob, p) if ob is not None else None
        new = decode_manifest(nb, p) if nb is not None else None
        out.append(diff_artifacts(repo, p, old, new, stat=stat, sample=sample))
    return out
