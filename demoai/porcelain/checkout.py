"""``demoai checkout``: switch HEAD to a branch or commit and update the working tree."""
from __future__ import annotations

import shutil
from typing import Any, Callable

from demoai.errors import DirtyWorkingTree, MergeInProgress, RefNotFound
from demoai.objects import decode_manifest
from demoai.porcelain.status import status
from demoai.store.artifacts import materialize
from demoai.store.index import IndexState
from demoai.store.repo import Repository, check_ref_name

__all__ = ["checkout", "sync_worktree", "require_clean"]


def require_clean(repo: Repository, what: str) -> None:
    """Refuse to overwrite staged or unsaved work."""
    st = status(repo)
    if st["merging"]:
        raise MergeInProgress(f"cannot {what}: a merge is in progress (commit it or `demoai merge --abort`)")
    dirty = [c["path"] for c in st["staged"] + st["unstaged"]]
    if dirty:
        raise DirtyWorkingTree(f"cannot {what}: uncommitted changes in {', '.join(dirty[:5])}"
                               f"{' ...' if len(dirty) > 5 else ''} (commit them, or use --force)",
                               paths=dirty)


def sync_worktree(repo: Repository, old: dict[str, bytes], new: dict[str, bytes],
                  progress: Callable[[str, int, int], None] | None = None) -> IndexState:
    """Make the working tree and the index hold ``new`` where they held ``old``."""
    state = IndexState()
    for path in sorted(set(old) - set(new)):
        p = repo.root / path
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    current = repo.index.read()
    for path, data in sorted(new.items()):
        art = decode_manifest(data, path)
        p = repo.root / path
        unchanged = old.get(path) == data and current.is_clean(path, p)
        if not unchanged:
            cb = (lambda d, t, _p=path: progress(_p, d, t)) if progress else None
            materialize(repo, art, p, progress=cb)
        state.stage(path, art, p)
    repo.index.write(state)
    return state


def checkout(repo: Repository, target: str, *, create: bool = False, force: bool = False,
             progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Switch to branch ``target`` (``create``: make it at HEAD first) or detach at a commit."""
    with repo.commit_lock():
        if not force:
            require_clean(repo, "checkout")
        head = repo.head_commit()
        branches = repo.branches()
        if create:
            check_ref_name(target)
            if head is None:
                raise RefNotFound("cannot create a branch before the first commit")
            repo.set_ref(f"refs/heads/{target}", head, None, f"branch: created from {head[:12]}")
            branches = repo.branches()
        old_entries = repo.tree_entries(head) if head else {}
        if f"refs/heads/{target}" in branches:
            new_commit = branches[f"refs/heads/{target}"]
            repo.set_head(target)
            detached = False
        else:
            new_commit = repo.resolve(target)
            repo.set_head(None, new_commit)
            detached = True
        if force:
            old_entries = repo.index.read().entries
        repo.set_merge_state(None) if force else None
        sync_worktree(repo, old_entries, repo.tree_entries(new_commit), progress)
        return {"branch": None if detached else target, "commit": new_commit, "detached": detached}
