"""``demoai restore``: put some paths back as the index, HEAD or any revision holds them
(git's ``restore``; ``demoai checkout [REF] -- PATHS`` is the same verb).

* ``restore PATHS`` (``--worktree``, the default): the working files from the index,
  discarding what was not added;
* ``restore --staged PATHS``: the index entries from HEAD (unstaging what was added), the
  working files left as they are;
* ``restore --staged --worktree PATHS``: both, from HEAD;
* ``--source REF``: from REF instead (for the working tree too). A path the source does
  not hold is removed (from the index, the working tree, or both).

Files are written through the same all-or-nothing writer as checkout
(:func:`~demoai.store.git.worktree.prepare_sync`): every artifact is materialized and
verified into ``.demoai/tmp`` first, each path checked to stay in the work tree, and only
then renamed into place, under a journal that recovery finishes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from demoai.errors import PathNotFound, UnsupportedOperation
from demoai.porcelain._util import repo_path
from demoai.porcelain.add import clear_resolved_conflicts
from demoai.store import Repository, normalize_path, recover_sync
from demoai.store.git.worktree import prepare_sync, run_plan

__all__ = ["restore", "RestoreResult", "match_paths"]


@dataclass
class RestoreResult:
    """What ``restore`` did: the paths it matched, where they came from, which working
    files it wrote or removed and which index entries it set or dropped."""

    paths: list[str]
    source: str
    staged: bool
    worktree: bool
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    index_set: list[str] = field(default_factory=list)
    index_dropped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"paths": self.paths, "source": self.source, "staged": self.staged,
                "worktree": self.worktree, "written": self.written, "removed": self.removed,
                "index_set": self.index_set, "index_dropped": self.index_dropped}


def _artifact_rel(repo: Repository, given: str) -> str:
    """The artifact path a user-given path names ("" for the whole work tree), read as
    written: a symlinked folder on the way is not followed here (writing through one is
    refused later, by ``worktree_path``)."""
    lexical = os.path.abspath(given)
    root = str(repo.root)
    if lexical == root or Path(given).resolve() == repo.root:
        return ""
    if lexical.startswith(root + os.sep):
        return normalize_path(Path(lexical).relative_to(root).as_posix())
    return repo_path(repo, given)


def match_paths(repo: Repository, paths: list[str | os.PathLike], *maps: dict[str, bytes],
                where: str = "the index") -> list[str]:
    """The artifact paths of ``maps`` that the user-given ``paths`` name (a path, or a
    folder holding them); PathNotFound for a path that names none (as git's "pathspec
    did not match")."""
    known = set().union(*maps) if maps else set()
    out: set[str] = set()
    for p in paths:
        rel = _artifact_rel(repo, os.fspath(p))
        hits = {e for e in known if not rel or e == rel or e.startswith(rel + "/")}
        if not hits:
            raise PathNotFound(f"{os.fspath(p)} did not match any path in {where}",
                               path=os.fspath(p))
        out |= hits
    return sorted(out)


def restore(repo: Repository, paths: list[str | os.PathLike], *, staged: bool = False,
            worktree: bool | None = None, source: str | None = None,
            progress: Callable[[str, int, int], None] | None = None) -> RestoreResult:
    """Restore ``paths`` (see the module doc). ``worktree`` defaults to ``not staged``;
    the source defaults to the index for the working tree alone, else HEAD."""
    if worktree is None:
        worktree = not staged
    if not (staged or worktree):
        raise UnsupportedOperation("restore needs --staged, --worktree or both")
    if not paths:
        raise PathNotFound("restore needs the paths to restore")
    with repo.commit_lock():
        recover_sync(repo)
        state = repo.index.read()
        index = state.entries
        head = repo.head_commit()
        if source is not None:
            src, label = repo.tree_entries(repo.resolve(source)), source
        elif staged:
            src, label = repo.tree_entries(head), "HEAD"
        else:
            src, label = index, "the index"
        where = label if source is not None or not staged else "HEAD or the index"
        matched = match_paths(repo, paths, src, index, where=where)
        res = RestoreResult(matched, "index" if src is index else label, staged, worktree)
        # what the working files are known to hold, and what they must hold after
        files_old = {p: index[p] for p in matched if p in index} if worktree else {}
        files_new = {p: src[p] for p in matched if p in src} if worktree else {}
        if staged:
            entries = {p: src[p] for p in matched if p in src}
            unstage = [p for p in matched if p not in src and p in index]
            # the index moves, the working file stays: its stat record no longer holds
            unstat = [] if worktree else [p for p in entries if index.get(p) != entries[p]]
        else:
            entries = {p: index[p] for p in matched if p in index}
            unstage = []
            unstat = [p for p in entries if src.get(p) != index[p]]
        plan = prepare_sync(repo, files_old, files_new, head, progress, index=entries,
                            partial=True, unstage=unstage, unstat=unstat)
        run_plan(repo, plan)
        res.written, res.removed = list(plan.staged), list(plan.delete)
        if staged:
            res.index_set = sorted(p for p in entries if index.get(p) != entries[p])
            res.index_dropped = sorted(unstage)
            clear_resolved_conflicts(repo, matched)
        return res
