"""Keeping the working tree and the index in step with HEAD, crash-safely.

Moving a ref and rewriting the index and files cannot be one atomic step, so a verb that
does both first writes a journal naming the commit the index must end up at, then moves
the ref, then syncs, then removes the journal. A process killed in between leaves the
journal; the next command that opens the repository finishes the sync (when HEAD did
move; otherwise it drops the journal) before anything reads the index, so a stale
index can never be committed over the new HEAD.
"""
from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING, Callable

from demoai.objects import decode_manifest
from demoai.store.artifacts import materialize
from demoai.store.fsutil import atomic_write
from demoai.store.index import IndexState

if TYPE_CHECKING:
    from demoai.store.repo import Repository

__all__ = ["sync_worktree", "begin_sync", "end_sync", "recover_sync", "JOURNAL"]

JOURNAL = "SYNC_PENDING.json"
Progress = Callable[[str, int, int], None] | None


def sync_worktree(repo: "Repository", old: dict[str, bytes], new: dict[str, bytes],
                  progress: Progress = None) -> IndexState:
    """Make the working tree and the index hold ``new`` where they held ``old``; files
    already holding the right bytes are left alone."""
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


def begin_sync(repo: "Repository", target: str) -> None:
    """Record that the index and files must be brought to commit ``target``."""
    atomic_write(repo.control / JOURNAL, json.dumps({"target": target}).encode())


def end_sync(repo: "Repository") -> None:
    (repo.control / JOURNAL).unlink(missing_ok=True)


def recover_sync(repo: "Repository") -> bool:
    """Finish a sync a killed process left behind; True if there was one."""
    path = repo.control / JOURNAL
    if not path.exists():
        return False
    with repo.commit_lock():
        try:
            target = json.loads(path.read_bytes())["target"]
        except FileNotFoundError:
            return False   # the owner finished while we waited for the lock
        # Killed before the ref moved: the operation never happened, nothing to finish.
        if repo.head_commit() == target:
            sync_worktree(repo, repo.index.read().entries, repo.tree_entries(target))
        end_sync(repo)
    return True
