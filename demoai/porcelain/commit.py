"""``demoai commit``: record the index as a new commit on the current branch."""
from __future__ import annotations

from typing import Any

from demoai.errors import MergeConflict, NothingToCommit
from demoai.objects import decode_manifest
from demoai.porcelain._util import command_line
from demoai.porcelain.status import tree_changes
from demoai.store.lineage import make_lineage
from demoai.store.repo import Repository

__all__ = ["commit"]


def commit(repo: Repository, message: str, *, allow_empty: bool = False, command: str | None = None,
           parameters: dict[str, Any] | None = None, author: str | None = None,
           lock_timeout: float = 60.0) -> str:
    """Commit the staged manifests with a lineage record; returns the new commit id.

    Commits are serialized by the repository's commit lock and the branch is moved with
    compare-and-swap, so concurrent committers never lose an update.
    """
    if not message or not message.strip():
        raise NothingToCommit("a commit message is required (-m)")
    with repo.commit_lock(lock_timeout):
        head = repo.head_commit()
        merge = repo.merge_state()
        if merge and merge.get("conflicts"):
            paths = ", ".join(c["path"] for c in merge["conflicts"])
            raise MergeConflict(f"unresolved merge conflicts in: {paths}; edit and `demoai add` them, "
                                "or `demoai merge --abort`", conflicts=merge["conflicts"])
        entries = repo.index.read().entries
        head_entries = repo.tree_entries(head)
        changes = tree_changes(head_entries, entries)
        if not changes and not allow_empty and not merge:
            raise NothingToCommit("nothing to commit (stage artifacts with `demoai add`)")
        inputs = {}
        for ch in changes:
            if ch["change"] != "deleted":
                inputs[ch["path"]] = decode_manifest(entries[ch["path"]], ch["path"]).digest
        parents = [head] if head else []
        if merge:
            parents.append(merge["merge_head"])
        lineage = make_lineage(command or command_line(), inputs=inputs,
                               parameters=parameters or {},
                               extra={"changes": changes, "parents": parents})
        tree = repo.write_tree(entries, lineage)
        new = repo.make_commit(tree, parents, message, author=author)
        branch_ref = repo.head_ref()
        msg = f"commit{' (merge)' if merge else ''}: {message.splitlines()[0]}"
        if branch_ref:
            repo.set_ref(branch_ref, new, head, msg)
        else:
            repo.set_ref("HEAD", new, head, msg)
        if merge:
            repo.set_merge_state(None)
        return new
