"""``demoai checkout``: switch HEAD to a branch or commit and update the working tree."""
from __future__ import annotations

from typing import Any, Callable

from demoai.errors import DirtyWorkingTree, MergeInProgress, RefNotFound
from demoai.porcelain.status import status
from demoai.porcelain.branch import branch
from demoai.store import Repository, drop_sync, recover_sync, switch_worktree

__all__ = ["checkout", "require_clean"]


def require_clean(repo: Repository, what: str) -> None:
    """Refuse to overwrite staged or unsaved work."""
    st = status(repo, untracked=False)
    if st["merging"]:
        raise MergeInProgress(f"cannot {what}: a merge is in progress (commit it or `demoai merge --abort`)")
    dirty = [c["path"] for c in st["staged"] + st["unstaged"]]
    if dirty:
        raise DirtyWorkingTree(f"cannot {what}: uncommitted changes in {', '.join(dirty[:5])}"
                               f"{' ...' if len(dirty) > 5 else ''} (commit them, or use --force)",
                               paths=dirty)


def checkout(repo: Repository, target: str, *, create: bool = False, force: bool = False,
             progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Switch to branch ``target`` (``create``: make it at HEAD first) or detach at a commit."""
    with repo.commit_lock():
        if force:
            drop_sync(repo)       # an interrupted switch that cannot finish is replaced by this one
        else:
            recover_sync(repo)
            require_clean(repo, "checkout")
        head = repo.head_commit()
        branches = repo.branches()
        if create:
            if head is None:
                raise RefNotFound("cannot create a branch before the first commit")
            branch(repo, target, head)
            branches = repo.branches()
        old_entries = repo.index.read().entries if force else (repo.tree_entries(head) if head else {})
        detached = f"refs/heads/{target}" not in branches
        new_commit = repo.resolve(target) if detached else branches[f"refs/heads/{target}"]

        def move() -> None:
            repo.set_head(None if detached else target, new_commit)
            if force:
                repo.set_merge_state(None)

        # files are written and verified before HEAD moves: a damaged object changes nothing
        switch_worktree(repo, old_entries, repo.tree_entries(new_commit), target=new_commit,
                        move=move, progress=progress)
        return {"branch": None if detached else target, "commit": new_commit, "detached": detached}
