"""``demoai checkout``: switch HEAD to a branch or commit and update the working tree; or,
with paths (``checkout [REF] -- PATHS``), put those paths back from REF or the index
(:func:`~demoai.porcelain.restore.restore`)."""
from __future__ import annotations

import os
from typing import Any, Callable

from demoai.errors import DemoAIError, DirtyWorkingTree, MergeInProgress, RefNotFound
from demoai.porcelain.status import status
from demoai.porcelain.branch import branch
from demoai.porcelain.restore import match_paths, restore
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


def _restore_paths(repo: Repository, source: str | None, paths: list[str | os.PathLike],
                   progress: Callable[[str, int, int], None] | None) -> dict[str, Any]:
    # git: `checkout -- PATHS` restores the working files from the index;
    # `checkout REF -- PATHS` sets index and working files to REF's version.
    res = restore(repo, paths, staged=source is not None, worktree=True, source=source,
                  progress=progress)
    return {"branch": None, "commit": None, "detached": None, "paths": res.paths,
            "source": res.source, "restored": res.to_dict()}


def _names_tracked_path(repo: Repository, name: str) -> bool:
    try:
        return bool(match_paths(repo, [name], repo.index.read().entries))
    except DemoAIError:
        return False


def checkout(repo: Repository, target: str | None = None, *, paths: list[str | os.PathLike] | None = None,
             create: bool = False, force: bool = False,
             progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Switch to branch ``target`` (``create``: make it at HEAD first) or detach at a commit.

    With ``paths`` (``checkout [REF] -- PATHS``) nothing switches: the paths are restored
    from ``target`` (index and working files) or, without one, from the index (working
    files); the result then holds ``paths`` and ``restored``. A ``target`` that is no
    revision but names tracked paths is taken as ``checkout -- target``, as git does."""
    if paths is not None:
        return _restore_paths(repo, target, paths, progress)
    if not target:
        raise RefNotFound("checkout needs a branch or a commit (or -- PATHS)")
    if not create and f"refs/heads/{target}" not in repo.branches():
        try:
            repo.resolve(target)
        except RefNotFound:
            if _names_tracked_path(repo, target):
                return _restore_paths(repo, None, [target], progress)
            raise RefNotFound(f"{target!r} is neither a revision nor a tracked path",
                              ref=target) from None
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
        return {"branch": None if detached else target, "commit": new_commit, "detached": detached,
                "paths": None}
