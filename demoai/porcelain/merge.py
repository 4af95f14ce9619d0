"""``demoai merge REF``: three-way merge of another line of history into HEAD.

Fast-forwards when HEAD is an ancestor of REF. Otherwise each path is merged on its own:
a side that did not touch a path takes the other side's version; when both changed it,
prompts and agents merge as text (conflict markers on overlap), datasets merge row by row
(cell by cell when keyed), and other kinds conflict. Conflicts are listed and the merge
stops with MERGE_STATE recorded until they are resolved (edit, ``demoai add``, ``commit``)
or the merge is aborted.

A conflicted path's index entry stays ours until it is added again; its working file shows
the conflict as git shows it: prompts and agents hold conflict markers around the text
regions; a JSONL or CSV dataset holds the merged rows, each conflicting row replaced by a
block ``<<<<<<< HEAD`` / our row / ``=======`` / their row / ``>>>>>>> REF`` (an empty side:
deleted there), which ``add`` refuses until the blocks are gone. A Parquet or HF-folder
dataset keeps our rows (a binary file cannot hold markers); its conflicts are listed by
:func:`merge_conflicts` (``demoai merge --show-conflicts``) until it is added. Each
conflict record names the conflicting rows (``rows``, at most 20, with ``count``): key,
column, and the base, our and their values.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

from demoai.errors import InvalidArtifact, MergeConflict, MergeInProgress, RefNotFound
from demoai.objects import Agent, Artifact, Dataset, Prompt, decode_manifest, encode_manifest, merge_text
from demoai.porcelain._util import command_line
from demoai.porcelain.checkout import require_clean
from demoai.store import (Repository, atomic_write, make_lineage, recover_sync, switch_worktree,
                          sync_worktree, worktree_path)

__all__ = ["merge", "abort_merge", "merge_paths", "merge_conflicts"]

_MARKER_FORMATS = ("jsonl", "csv")
_ROWS_KEPT = 20   # conflicting rows a conflict record lists (``count`` has them all)


def merge_paths(repo: Repository, base: dict[str, bytes], ours: dict[str, bytes],
                theirs: dict[str, bytes], their_name: str,
                scratch: Path | None = None) -> tuple[dict[str, bytes], list[dict[str, Any]], dict[str, str | Path]]:
    """Three-way merge of manifest maps. Returns (merged manifests, conflicts, what to
    write into the working tree for conflicted paths: a text, or a file made in
    ``scratch`` (a dataset with conflict blocks; none without ``scratch``))."""
    merged: dict[str, bytes] = {}
    conflicts: list[dict[str, Any]] = []
    texts: dict[str, str | Path] = {}
    for p in sorted(set(base) | set(ours) | set(theirs)):
        b, o, t = base.get(p), ours.get(p), theirs.get(p)
        if o == t:
            result = o
        elif b == o:
            result = t
        elif b == t:
            result = o
        else:
            result, conflict, text = _merge_one(repo, p, b, o, t, their_name, scratch)
            if conflict:
                conflicts.append(conflict)
            if text is not None:
                texts[p] = text
        if result is not None:
            merged[p] = result
    return merged, conflicts, texts


def _merge_one(repo: Repository, path: str, b: bytes | None, o: bytes | None, t: bytes | None,
               their_name: str, scratch: Path | None) -> tuple[bytes | None, dict[str, Any] | None, str | Path | None]:
    if o is None or t is None:
        side = "ours" if o is None else "theirs"
        return (o or t), {"path": path, "reason": f"deleted in {side}, modified in the other"}, None
    ao, at = decode_manifest(o, path), decode_manifest(t, path)
    ab = decode_manifest(b, path) if b is not None else None
    if ao.kind != at.kind or (ab is not None and ab.kind != ao.kind):
        return o, {"path": path, "reason": f"kind changed ({ao.kind} vs {at.kind})"}, None
    if isinstance(ao, (Prompt, Agent)):
        base_text = ab.text if isinstance(ab, (Prompt, Agent)) else ""
        text, n = merge_text(base_text, ao.text, at.text, "HEAD", their_name)  # type: ignore[union-attr]
        if n:
            return o, {"path": path, "kind": ao.kind, "reason": f"{n} conflicting text region(s)",
                       "regions": n, "markers": True}, text
        try:
            merged: Artifact = type(ao).from_text(text, path)
        except InvalidArtifact as e:
            return o, {"path": path, "kind": ao.kind, "reason": f"merged text is invalid: {e}",
                       "markers": False}, text
        return encode_manifest(merged), None, text
    if isinstance(ao, Dataset) and isinstance(at, Dataset):
        if not isinstance(ab, Dataset):
            return o, {"path": path, "reason": "added on both sides with different rows"}, None
        key = ao.key if ao.key == at.key else None
        from demoai.store.tables import TableRef
        # theirs' changes applied onto ours as a delta: rows neither side touched are
        # neither read nor written (the whole-table merge when that cannot be done)
        markers = scratch is not None and key is not None and ao.format in _MARKER_FORMATS
        res = repo.tables.merge_into(TableRef.from_dict(ab.table), TableRef.from_dict(ao.table),
                                     TableRef.from_dict(at.table), key=key, sides=markers)
        if res.conflicts:
            return o, *_dataset_conflict(path, ao, key, res, their_name, scratch)
        ref = res.ref
        ds = Dataset(digest=ref.digest, rows=ref.rows, schema=ref.schema, key=ref.key,
                     format=ao.format, table=ref.to_dict())
        return encode_manifest(ds), None, None
    return o, {"path": path, "kind": ao.kind,
               "reason": f"both sides changed this {ao.kind} (binary: pick one and `demoai add` it)"}, None


def _dataset_conflict(path: str, ours: Dataset, key: str | None, res: Any, their_name: str,
                      scratch: Path | None) -> tuple[dict[str, Any], Path | None]:
    """The conflict record of a dataset, and the working file with conflict blocks (made in
    ``scratch``) when the format can hold them."""
    from demoai.store.tables.conflicts import write_conflicted
    from demoai.store.tables.io import jsonable
    n = len(res.conflicts)
    rows = jsonable([{k: c.get(k) for k in ("key", "column", "base", "ours", "theirs", "reason")}
                     for c in res.conflicts[:_ROWS_KEPT]])
    whole = n == 1 and res.conflicts[0].get("key") is None and res.conflicts[0].get("reason")
    if whole:    # not a row: the table as a whole (a schema changed on one side)
        return {"path": path, "kind": "dataset", "reason": str(whole), "markers": False}, None
    conflict: dict[str, Any] = {"path": path, "kind": "dataset", "key_column": key,
                                "reason": f"{n} conflicting row(s)", "rows": rows, "count": n,
                                "markers": False}
    marked = None
    if scratch is not None and key is not None and ours.format in _MARKER_FORMATS \
            and {"ours", "theirs"} <= set(res.sides):
        marked = scratch / path
        write_conflicted(res.sides["ours"], res.sides["theirs"], key,
                         [c["key"] for c in res.conflicts], marked, ours.format, "HEAD", their_name)
        conflict["markers"] = True
    return conflict, marked


def merge(repo: Repository, rev: str, *, message: str | None = None, force: bool = False,
          progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Merge ``rev`` into the current branch; see the module doc for the rules."""
    with repo.commit_lock():
        recover_sync(repo)
        head = repo.head_commit()
        theirs = repo.resolve(rev)
        if head is None:
            raise RefNotFound("cannot merge into a branch with no commits")
        state = repo.merge_state()
        # The same merge again (e.g. after a crash mid-way) redoes it; any other is refused.
        resume = bool(state) and state.get("merge_head") == theirs and state.get("orig_head") == head
        if state and not resume:
            raise MergeInProgress("a merge is already in progress (commit it or `demoai merge --abort`)")
        if not force and not resume:
            require_clean(repo, "merge")
        base = repo.merge_base(head, theirs)
        ref = repo.head_ref() or "HEAD"
        if base == theirs:
            return {"status": "up-to-date", "commit": head, "conflicts": []}
        head_entries = repo.tree_entries(head)
        if base == head:
            switch_worktree(repo, head_entries, repo.tree_entries(theirs), target=theirs,
                            move=lambda: repo.set_ref(ref, theirs, head, f"merge {rev}: fast-forward"),
                            progress=progress)
            return {"status": "fast-forward", "commit": theirs, "conflicts": []}
        scratch = _scratch_dir(repo)
        try:
            merged, conflicts, texts = merge_paths(repo, repo.tree_entries(base), head_entries,
                                                   repo.tree_entries(theirs), rev, scratch)
            if conflicts:
                # The state goes first: a crash while the index and files are rewritten then
                # leaves a merge in progress that `merge --abort` can undo.
                repo.set_merge_state({"merge_head": theirs, "merge_ref": rev, "orig_head": head,
                                      "conflicts": conflicts})
                # index: cleanly merged paths; conflicted ones keep ours until resolved
                sync_worktree(repo, repo.index.read().entries, merged, progress)
                for path, text in texts.items():
                    dst = worktree_path(repo.root, path)
                    if isinstance(text, Path):
                        os.replace(text, dst)
                    else:
                        atomic_write(dst, text.encode())
                raise MergeConflict(f"merge of {rev} stopped: {len(conflicts)} conflicting "
                                    "path(s): " + ", ".join(c["path"] for c in conflicts),
                                    conflicts=conflicts)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        msg = message or f"Merge {rev} into {repo.current_branch() or 'HEAD'}"
        lineage = make_lineage(command_line(), inputs={"ours": head, "theirs": theirs, "base": base or ""},
                               extra={"parents": [head, theirs]})
        tree = repo.write_tree(merged, lineage)
        new = repo.make_commit(tree, [head, theirs], msg)
        switch_worktree(repo, head_entries, merged, target=new,
                        move=lambda: repo.set_ref(ref, new, head, f"merge {rev}"), progress=progress)
        return {"status": "merged", "commit": new, "conflicts": []}


def _scratch_dir(repo: Repository) -> Path:
    d = repo.control / "tmp" / f"merge-{os.getpid()}-{os.urandom(4).hex()}"
    d.mkdir(parents=True)
    return d


def merge_conflicts(repo: Repository) -> dict[str, Any]:
    """The merge in progress: ``merge_head``, ``merge_ref`` and the ``conflicts`` not yet
    resolved (each as :func:`merge` recorded it); MergeInProgress when there is none."""
    state = repo.merge_state()
    if not state:
        raise MergeInProgress("no merge in progress")
    return {"merge_head": state.get("merge_head"), "merge_ref": state.get("merge_ref"),
            "orig_head": state.get("orig_head"), "conflicts": state.get("conflicts", [])}


def abort_merge(repo: Repository) -> str:
    """Drop an unfinished merge: index and working tree return to HEAD."""
    with repo.commit_lock():
        state = repo.merge_state()
        if not state:
            raise MergeInProgress("no merge in progress")
        head = repo.head_commit()
        entries = repo.tree_entries(head)
        current = repo.index.read().entries
        # rewrite every path the merge touched, conflicted texts included
        touched = {c["path"] for c in state.get("conflicts", [])}
        old = {p: b for p, b in current.items() if p not in touched}
        sync_worktree(repo, old, entries)
        repo.set_merge_state(None)
        return head or ""

