"""Keeping the working tree and the index in step with HEAD, crash-safely and all or nothing.

A switch (checkout, clone, merge, abort, restore) runs in two phases:

1. **Prepare**: every artifact whose file must change is written, verified (chunk and
   table-file hashes), into a staging folder under ``.demoai/tmp/``. A damaged or missing
   object fails here, before HEAD moves or a byte of the working tree changes, and the
   staging folder is removed.
2. **Apply**: a journal names the target commit, the staging folder and the entries the
   index must hold; then the ref moves, staged files are renamed into place, deleted
   paths removed, the index written and the journal dropped.

A process killed during the apply phase leaves the journal; :func:`recover_sync` (called
where a repository is opened for work) finishes it from the staged files when HEAD did
move, and drops it otherwise. Read-only commands never need the journal replayed, so a
journal that cannot be replayed never locks anyone out: ``checkout --force`` and
``demoai repair`` replace it.

Every path is checked by :func:`demoai.objects.paths.check_path` and, once joined to the
work tree, resolved (symlinked parents included) to stay inside it before a byte is written.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from demoai.errors import DemoAIError, RepositoryError, UnsafePath
from demoai.objects import decode_manifest
from demoai.objects.paths import check_path
from demoai.store.kinds import materialize
from demoai.store.fsutil import atomic_write
from demoai.store.git.index import IndexState

if TYPE_CHECKING:
    from demoai.store.git.repo import Repository

__all__ = ["switch_worktree", "sync_worktree", "recover_sync", "drop_sync", "sync_pending",
           "worktree_path", "SyncPlan", "JOURNAL"]

JOURNAL = "SYNC_PENDING.json"
Progress = Callable[[str, int, int], None] | None


def worktree_path(root: Path, path: str) -> Path:
    """``root / path`` once ``path`` is a safe artifact path and the result, its parents'
    symlinks resolved, stays inside ``root`` and outside its ``.demoai`` folder."""
    rel = check_path(path)
    real_root = os.path.realpath(root)
    target = Path(root, *rel.split("/"))
    parent = os.path.realpath(target.parent)
    control = os.path.join(real_root, ".demoai")
    if not (parent == real_root or parent.startswith(real_root + os.sep)) \
            or parent == control or parent.startswith(control + os.sep):
        raise UnsafePath(f"{path}: leaves the working tree (through a symlinked folder)", path=path)
    return target


@dataclass
class SyncPlan:
    """What a switch writes: staged files, paths to delete, and the index to end with."""

    target: str | None
    entries: dict[str, bytes]
    staging: Path
    staged: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)

    def journal(self) -> bytes:
        """The journal record of this plan (what recovery needs to finish it)."""
        return json.dumps({"target": self.target, "staging": self.staging.name,
                           "staged": self.staged, "delete": self.delete,
                           "entries": {p: b.decode() for p, b in self.entries.items()}}).encode()


def _staging_dir(repo: "Repository") -> Path:
    base = repo.control / "tmp"
    base.mkdir(exist_ok=True)
    d = base / f"sync-{os.getpid()}-{os.urandom(4).hex()}"
    d.mkdir()
    return d


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def prepare_sync(repo: "Repository", old: dict[str, bytes], new: dict[str, bytes],
                 target: str | None, progress: Progress = None) -> SyncPlan:
    """Phase 1: write and verify into a staging folder everything that must change.

    Raises (leaving nothing behind) when a path is unsafe or an object is damaged/missing."""
    for path in set(old) | set(new):
        worktree_path(repo.root, path)
    staging = _staging_dir(repo)
    plan = SyncPlan(target, dict(new), staging)
    try:
        plan.delete = sorted(set(old) - set(new))
        current = repo.index.read()
        for path, data in sorted(new.items()):
            art = decode_manifest(data, path)
            p = repo.root / path
            if old.get(path) == data and current.is_clean(path, p):
                continue
            cb = (lambda d, t, _p=path: progress(_p, d, t)) if progress else None
            materialize(repo, art, staging / path, progress=cb)
            plan.staged.append(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return plan


def apply_sync(repo: "Repository", plan: SyncPlan) -> IndexState:
    """Phase 2: move staged files into place, delete the rest, write the index."""
    for path in plan.delete:
        _remove(worktree_path(repo.root, path))
    for path in plan.staged:
        src = plan.staging / path
        if not (src.exists() or src.is_symlink()):
            continue      # moved already by a run that was killed
        dst = worktree_path(repo.root, path)
        parent = dst.parent
        for anc in reversed([parent, *parent.parents]):
            # a file standing where a folder must be (or a dangling link) gives way
            if anc == repo.root or not anc.is_relative_to(repo.root):
                continue
            if (anc.is_symlink() and not anc.exists()) or (anc.exists() and not anc.is_dir()):
                anc.unlink()
        parent.mkdir(parents=True, exist_ok=True)
        dst = worktree_path(repo.root, path)   # re-checked now that the parents exist
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        os.replace(src, dst)
    state = IndexState()
    for path, data in sorted(plan.entries.items()):
        state.stage(path, decode_manifest(data, path), repo.root / path)
    repo.index.write(state)
    shutil.rmtree(plan.staging, ignore_errors=True)
    return state


def switch_worktree(repo: "Repository", old: dict[str, bytes], new: dict[str, bytes], *,
                    target: str | None, move: Callable[[], None] | None = None,
                    progress: Progress = None) -> IndexState:
    """Bring the working tree and index from ``old`` to ``new`` and, between the phases,
    run ``move`` (which moves HEAD or a branch to ``target``). Nothing changes if
    preparing fails; a kill after the journal is written is finished by recovery."""
    plan = prepare_sync(repo, old, new, target, progress)
    try:
        atomic_write(repo.control / JOURNAL, plan.journal())
    except BaseException:
        shutil.rmtree(plan.staging, ignore_errors=True)
        raise
    if move is not None:
        try:
            move()
        except BaseException:
            drop_sync(repo)
            raise
    state = apply_sync(repo, plan)
    (repo.control / JOURNAL).unlink(missing_ok=True)
    return state


def sync_worktree(repo: "Repository", old: dict[str, bytes], new: dict[str, bytes],
                  progress: Progress = None) -> IndexState:
    """Make the working tree and index hold ``new`` where they held ``old`` (HEAD stays)."""
    return switch_worktree(repo, old, new, target=repo.head_commit(), progress=progress)


def sync_pending(repo: "Repository") -> dict | None:
    """The pending journal of an interrupted switch, or None."""
    try:
        return json.loads((repo.control / JOURNAL).read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        return {"target": None, "malformed": True}


def drop_sync(repo: "Repository") -> None:
    """Forget a pending switch and its staged files (the working tree is left as it is)."""
    j = sync_pending(repo)
    if j and isinstance(j.get("staging"), str) and "/" not in j["staging"] and j["staging"]:
        shutil.rmtree(repo.control / "tmp" / j["staging"], ignore_errors=True)
    (repo.control / JOURNAL).unlink(missing_ok=True)


def recover_sync(repo: "Repository") -> bool:
    """Finish a switch a killed process left behind; True if there was one.

    Raises :class:`RepositoryError` (with the way out) when it cannot be finished, e.g. the
    journal predates staging and an object it needs is damaged."""
    if not (repo.control / JOURNAL).exists():
        return False
    with repo.commit_lock():
        j = sync_pending(repo)
        if j is None:
            return False   # the owner finished while we waited for the lock
        target = j.get("target")
        if j.get("malformed") or repo.head_commit() != target:
            # killed before the ref moved: the switch never happened
            drop_sync(repo)
            return True
        try:
            if "staging" in j:
                staging = repo.control / "tmp" / str(j["staging"])
                plan = SyncPlan(target, {p: t.encode() for p, t in j["entries"].items()},
                                staging, list(j.get("staged", [])), list(j.get("delete", [])))
                apply_sync(repo, plan)
            else:     # a journal written before staging existed: sync again from the commit
                plan = prepare_sync(repo, repo.index.read().entries, repo.tree_entries(target),
                                    target)
                apply_sync(repo, plan)
        except DemoAIError as e:
            raise RepositoryError(
                f"an interrupted checkout of {str(target)[:12]} cannot be finished: {e} "
                "(`demoai checkout --force REF` or `demoai repair` resolves it)",
                target=target) from e
        (repo.control / JOURNAL).unlink(missing_ok=True)
    return True
