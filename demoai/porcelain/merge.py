"""``demoai merge REF``: three-way merge of another line of history into HEAD.

Fast-forwards when HEAD is an ancestor of REF. Otherwise each path is merged on its own:
a side that did not touch a path takes the other side's version; when both changed it,
prompts and agents merge as text (conflict markers on overlap), datasets merge row by row
(cell by cell when keyed), and other kinds conflict. Conflicts are listed and the merge
stops with MERGE_STATE recorded until they are resolved (edit, ``demoai add``, ``commit``)
or the merge is aborted.
"""
from __future__ import annotations

from typing import Any, Callable

from demoai.errors import InvalidArtifact, MergeConflict, MergeInProgress, RefNotFound
from demoai.objects import Agent, Artifact, Dataset, Prompt, decode_manifest, encode_manifest, merge_text
from demoai.porcelain._util import command_line
from demoai.porcelain.checkout import require_clean
from demoai.store import (Repository, atomic_write, make_lineage, recover_sync, switch_worktree,
                          sync_worktree, worktree_path)

__all__ = ["merge", "abort_merge", "merge_paths"]


def merge_paths(repo: Repository, base: dict[str, bytes], ours: dict[str, bytes],
                theirs: dict[str, bytes], their_name: str) -> tuple[dict[str, bytes], list[dict[str, Any]], dict[str, str]]:
    """Three-way merge of manifest maps. Returns (merged manifests, conflicts, conflicted
    texts to write into the working tree)."""
    merged: dict[str, bytes] = {}
    conflicts: list[dict[str, Any]] = []
    texts: dict[str, str] = {}
    for p in sorted(set(base) | set(ours) | set(theirs)):
        b, o, t = base.get(p), ours.get(p), theirs.get(p)
        if o == t:
            result = o
        elif b == o:
            result = t
        elif b == t:
            result = o
        else:
            result, conflict, text = _merge_one(repo, p, b, o, t, their_name)
            if conflict:
                conflicts.append(conflict)
            if text is not None:
                texts[p] = text
        if result is not None:
            merged[p] = result
    return merged, conflicts, texts


def _merge_one(repo: Repository, path: str, b: bytes | None, o: bytes | None, t: bytes | None,
               their_name: str) -> tuple[bytes | None, dict[str, Any] | None, str | None]:
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
            return o, {"path": path, "reason": f"{n} conflicting text region(s)", "regions": n}, text
        try:
            merged: Artifact = type(ao).from_text(text, path)
        except InvalidArtifact as e:
            return o, {"path": path, "reason": f"merged text is invalid: {e}"}, text
        return encode_manifest(merged), None, text
    if isinstance(ao, Dataset) and isinstance(at, Dataset):
        if not isinstance(ab, Dataset):
            return o, {"path": path, "reason": "added on both sides with different rows"}, None
        key = ao.key if ao.key == at.key else None
        from demoai.store.tables import TableRef
        res = repo.tables.merge3(TableRef.from_dict(ab.table), TableRef.from_dict(ao.table),
                                 TableRef.from_dict(at.table), key=key)
        if res.conflicts:
            return o, {"path": path, "reason": f"{len(res.conflicts)} conflicting row(s)",
                       "rows": res.conflicts[:20], "count": len(res.conflicts)}, None
        ref = repo.tables.write(res.table, key=key, base=TableRef.from_dict(ao.table))
        ds = Dataset(digest=ref.digest, rows=ref.rows, schema=ref.schema, key=ref.key,
                     format=ao.format, table=ref.to_dict())
        return encode_manifest(ds), None, None
    return o, {"path": path, "reason": f"both sides changed this {ao.kind} (binary: pick one and `demoai add` it)"}, None


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
        merged, conflicts, texts = merge_paths(repo, repo.tree_entries(base), head_entries,
                                               repo.tree_entries(theirs), rev)
        if conflicts:
            # The state goes first: a crash while the index and files are rewritten then
            # leaves a merge in progress that `merge --abort` can undo.
            repo.set_merge_state({"merge_head": theirs, "merge_ref": rev, "orig_head": head,
                                  "conflicts": conflicts})
            # index: cleanly merged paths; conflicted ones keep ours until resolved
            sync_worktree(repo, repo.index.read().entries, merged, progress)
            for path, text in texts.items():
                atomic_write(worktree_path(repo.root, path), text.encode())
            raise MergeConflict(f"merge of {rev} stopped: {len(conflicts)} conflicting path(s): "
                                + ", ".join(c["path"] for c in conflicts), conflicts=conflicts)
        msg = message or f"Merge {rev} into {repo.current_branch() or 'HEAD'}"
        lineage = make_lineage(command_line(), inputs={"ours": head, "theirs": theirs, "base": base or ""},
                               extra={"parents": [head, theirs]})
        tree = repo.write_tree(merged, lineage)
        new = repo.make_commit(tree, [head, theirs], msg)
        switch_worktree(repo, head_entries, merged, target=new,
                        move=lambda: repo.set_ref(ref, new, head, f"merge {rev}"), progress=progress)
        return {"status": "merged", "commit": new, "conflicts": []}


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

