"""Keeping the working tree and the index in step with HEAD, crash-safely and all or nothing.

A switch (checkout, clone, merge, abort, restore) runs in two phases:

1. **Prepare**: every artifact whose file must change is written, verified (chunk and
   table-file hashes), into a staging folder under ``.demoai/tmp/``. A damaged or missing
   object fails here, before HEAD moves or a byte of the working tree changes, and the
   staging folder is removed.
2. **Apply**: a journal names the target commit, the staging folder and the entries the
   index must hold; then the ref moves, staged files are renamed into place, deleted
   paths removed, the index written and the journal dropped. A restore of some paths
   (``restore``, ``checkout [REF] -- PATHS``) moves no ref and updates only its paths'
   index entries, under the index lock (a *partial* plan).

Index entries keep the stat record that tells the truth about their working file: fresh
for a file just written, the one they had for an entry and file left alone (so a switch
does not hash every file of the work tree again), none for a file left holding something
other than its entry (``restore --staged``).

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
           "worktree_path", "SyncPlan", "JOURNAL", "prepare_sync", "run_plan", "apply_sync"]

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
    """What a switch writes: staged files, paths to delete, and the index to end with.

    ``entries`` is the whole index to end with, or, when ``partial`` (a restore of some
    paths), only the entries to set in the index as it is then (``unstage``: entries to
    drop). ``unstat`` names paths whose working file is left not holding their index entry
    (``restore --staged``, ``restore --source REF`` into the working tree only): their stat
    records are dropped, so ``status`` looks at their bytes."""

    target: str | None
    entries: dict[str, bytes]
    staging: Path
    staged: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    partial: bool = False
    unstage: list[str] = field(default_factory=list)
    unstat: list[str] = field(default_factory=list)

    def journal(self) -> bytes:
        """The journal record of this plan (what recovery needs to finish it)."""
        return json.dumps({"target": self.target, "staging": self.staging.name,
                           "staged": self.staged, "delete": self.delete,
                           "entries": {p: b.decode() for p, b in self.entries.items()},
                           "partial": self.partial, "unstage": self.unstage,
                           "unstat": self.unstat}).encode()

    @classmethod
    def from_journal(cls, repo: "Repository", j: dict) -> "SyncPlan":
        """The plan a journal records."""
        return cls(j.get("target"), {p: t.encode() for p, t in j["entries"].items()},
                   repo.control / "tmp" / str(j["staging"]), list(j.get("staged", [])),
                   list(j.get("delete", [])), bool(j.get("partial", False)),
                   list(j.get("unstage", [])), list(j.get("unstat", [])))


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
                 target: str | None, progress: Progress = None, *,
                 index: dict[str, bytes] | None = None, partial: bool = False,
                 unstage: list[str] | tuple[str, ...] = (),
                 unstat: list[str] | tuple[str, ...] = ()) -> SyncPlan:
    """Phase 1: write and verify into a staging folder everything that must change.

    ``old`` and ``new`` are what the working files of the paths concerned hold before and
    after (path -> manifest); a path in ``old`` only is deleted. The index ends as
    ``index`` (default ``new``; see :class:`SyncPlan` for ``partial``, ``unstage`` and
    ``unstat``). Raises (leaving nothing behind) when a path is unsafe or an object is
    damaged/missing."""
    for path in set(old) | set(new) | set(index or ()) | set(unstage):
        worktree_path(repo.root, path)
    staging = _staging_dir(repo)
    plan = SyncPlan(target, dict(new if index is None else index), staging, partial=partial,
                    unstage=sorted(unstage), unstat=sorted(unstat))
    try:
        plan.delete = sorted(set(old) - set(new))
        current = repo.index.read()
        for path, data in sorted(new.items()):
            art = decode_manifest(data, path)
            p = repo.root / path
            if old.get(path) == data and current.entries.get(path) == data \
                    and current.is_clean(path, p):
                continue
            cb = (lambda d, t, _p=path: progress(_p, d, t)) if progress else None
            materialize(repo, art, staging / path, progress=cb)
            plan.staged.append(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return plan


def _put_in_place(repo: "Repository", plan: SyncPlan) -> None:
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


def _index_entry(repo: "Repository", current: IndexState, state: IndexState, path: str,
                 data: bytes, written: set[str], unstat: set[str]) -> None:
    """Set ``path``'s entry in ``state`` with the stat record that tells the truth about
    its working file: fresh for a file just written, the current one for an unchanged
    entry whose file was left alone (no need to hash it again), none where the file is
    left holding something else."""
    art = decode_manifest(data, path)
    if path in unstat:
        state.stage(path, art, None)
    elif path in written or current.entries.get(path) != data or path not in current.stat:
        state.stage(path, art, repo.root / path)
    else:
        state.entries[path] = data
        state.stat[path] = dict(current.stat[path])


def apply_sync(repo: "Repository", plan: SyncPlan) -> IndexState:
    """Phase 2: move staged files into place, delete the rest, write the index."""
    _put_in_place(repo, plan)
    written, unstat = set(plan.staged), set(plan.unstat)
    if plan.partial:
        with repo.index.update() as state:
            current = IndexState(dict(state.entries), {p: dict(r) for p, r in state.stat.items()})
            for path in plan.unstage:
                state.unstage(path)
            for path, data in sorted(plan.entries.items()):
                _index_entry(repo, current, state, path, data, written, unstat)
    else:
        current = repo.index.read()
        state = IndexState()
        for path, data in sorted(plan.entries.items()):
            _index_entry(repo, current, state, path, data, written, unstat)
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
    return run_plan(repo, plan, move)


def run_plan(repo: "Repository", plan: SyncPlan,
             move: Callable[[], None] | None = None) -> IndexState:
    """Phase 2 of a prepared plan, journaled: a kill after the journal is written is
    finished by :func:`recover_sync` (once ``move`` has run)."""
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
                apply_sync(repo, SyncPlan.from_journal(repo, j))
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
