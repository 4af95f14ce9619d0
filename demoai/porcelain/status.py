"""``demoai status``: staged changes, changed working files, untracked artifacts."""
from __future__ import annotations

from typing import Any

from demoai.errors import DemoAIError, LockTimeout
from demoai.porcelain.add import find_artifacts
from demoai.store import IndexState, Repository, recover_sync, sync_pending

__all__ = ["status", "tree_changes"]


def tree_changes(old: dict[str, bytes], new: dict[str, bytes]) -> list[dict[str, str]]:
    """Paths added, modified or deleted from one manifest map to another."""
    out = []
    for p in sorted(set(old) | set(new)):
        if p not in old:
            out.append({"path": p, "change": "added"})
        elif p not in new:
            out.append({"path": p, "change": "deleted"})
        elif old[p] != new[p]:
            out.append({"path": p, "change": "modified"})
    return out


def _refresh(repo: Repository, seen: IndexState, records: dict[str, dict[str, Any]]) -> None:
    """Keep the stat records of files found clean by hashing, so the next status trusts
    their stat; skipped when the index is busy or changed meanwhile (only a cache)."""
    try:
        with repo.index.update(timeout=0.2) as st:
            for path, rec in records.items():
                if (st.entries.get(path) == seen.entries.get(path)
                        and st.stat.get(path) == seen.stat.get(path)):
                    st.stat[path] = rec
    except LockTimeout:
        pass


def status(repo: Repository, *, untracked: bool = True) -> dict[str, Any]:
    """The branch, what is staged against HEAD, and how the working tree differs from the index.

    A checkout that a killed process left half done is finished first; when it cannot be
    (a damaged object), ``interrupted`` says why and how to get out."""
    interrupted = None
    if sync_pending(repo) is not None:
        try:
            recover_sync(repo)
        except DemoAIError as e:
            interrupted = str(e)
    head = repo.head_commit()
    state = repo.index.read()
    staged = tree_changes(repo.tree_entries(head), state.entries)
    unstaged = []
    refreshed: dict[str, dict[str, Any]] = {}
    for path in sorted(state.entries):
        p = repo.root / path
        if not p.exists():
            unstaged.append({"path": path, "change": "deleted"})
            continue
        clean, record = state.check(path, p)      # by stat, else by the file's bytes
        if not clean:
            unstaged.append({"path": path, "change": "modified"})
        elif record is not None:
            refreshed[path] = record
    if refreshed:
        _refresh(repo, state, refreshed)
    tracked = set(state.entries)
    # walking the whole tree for untracked artifacts is skipped when a caller only
    # needs to know whether tracked work would be overwritten
    found = [p.relative_to(repo.root).as_posix() for p in find_artifacts(repo.root)] if untracked else []
    merge = repo.merge_state()
    return {"branch": repo.current_branch(), "head": head, "staged": staged, "unstaged": unstaged,
            "untracked": [u for u in found if u not in tracked],
            "merging": ({"merge_head": merge["merge_head"], "merge_ref": merge.get("merge_ref"),
                         "conflicts": merge.get("conflicts", [])}
                        if merge else None),
            "interrupted": interrupted}
