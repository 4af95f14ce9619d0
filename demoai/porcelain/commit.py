"""``demoai commit``: record the index, or only some paths, as a new commit on the current branch.

Concurrency model (git's): one index per work tree. ``add`` then ``commit`` is for one
person at a time: a commit records the whole index, so whatever another process staged
meanwhile goes into it. Writers that share a work tree (scripts, the server, parallel
jobs) commit *paths* instead: ``commit(repo, msg, paths=[...])`` (``demoai commit PATHS``,
``--only`` being the default as in git) stores those paths' working-tree content and, under
the repository's commit lock, makes a commit of HEAD's tree plus exactly those changes.
N processes each running ``demoai commit FILE_i -m msg_i`` give N commits, commit i
changing FILE_i alone with message msg_i, whatever their interleaving.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from demoai.errors import MergeConflict, MergeInProgress, NothingToCommit, PathNotFound, UnknownKind
from demoai.objects import decode_manifest, encode_manifest
from demoai.porcelain._util import command_line
from demoai.porcelain.add import Imported, artifact_path, expand_path, import_targets
from demoai.porcelain.status import tree_changes
from demoai.store import IndexState, Repository, make_lineage, recover_sync
from demoai.store.kinds import live_objects

__all__ = ["commit"]


def commit(repo: Repository, message: str, *, paths: list[str | os.PathLike] | None = None,
           allow_empty: bool = False, command: str | None = None,
           parameters: dict[str, Any] | None = None, author: str | None = None,
           inputs: dict[str, str] | None = None, lock_timeout: float = 60.0,
           progress: Callable[[str, int, int], None] | None = None) -> str:
    """Commit the staged manifests with a lineage record; returns the new commit id.

    With ``paths`` (``demoai commit PATHS`` / ``--only PATHS``) only those paths are
    committed, as they are in the working tree *now*: each is stored as ``add`` would store
    it (a file unchanged since it was staged reuses its staged entry; a folder stands for
    the artifacts under it and the tracked ones it held; a tracked path gone from disk is
    deleted; an untracked file is added, unlike git), and the commit is HEAD's tree plus
    exactly those changes. Other staged entries stay staged, out of this commit. The index
    is re-read under its lock and only the named paths are updated in it (to what was
    committed). Refused during a merge (a merge commits the whole index).

    Commits are serialized by the repository's commit lock and the branch is moved with
    compare-and-swap, so concurrent committers never lose an update.
    """
    if not message or not message.strip():
        raise NothingToCommit("a commit message is required (-m)")
    if paths is not None:
        if not paths:
            raise NothingToCommit("no paths given to commit")
        return _commit_paths(repo, message, list(paths), allow_empty=allow_empty, command=command,
                             parameters=parameters, author=author, inputs=inputs,
                             lock_timeout=lock_timeout,
                             progress=progress)
    with repo.commit_lock(lock_timeout):
        recover_sync(repo)
        head = repo.head_commit()
        merge = repo.merge_state()
        if merge and merge.get("conflicts"):
            paths_ = ", ".join(c["path"] for c in merge["conflicts"])
            # how to get out is the faces' hint for MergeConflict: said once, there
            raise MergeConflict(f"cannot commit: unresolved merge conflicts in {paths_}",
                                conflicts=merge["conflicts"])
        entries = repo.index.read().entries
        changes = tree_changes(repo.tree_entries(head), entries)
        if not changes and not allow_empty and not merge:
            raise NothingToCommit("nothing to commit (stage artifacts with `demoai add`)")
        new = _write_commit(repo, head, entries, changes, message, merge_head=merge and merge["merge_head"],
                            command=command, parameters=parameters, author=author, inputs=inputs)
        _move_branch(repo, head, new, message, merge=bool(merge))
        if merge:
            repo.set_merge_state(None)
        return new


def _commit_paths(repo: Repository, message: str, paths: list[str | os.PathLike], *,
                  allow_empty: bool, command: str | None, parameters: dict[str, Any] | None,
                  inputs: dict[str, str] | None = None,
                  author: str | None, lock_timeout: float,
                  progress: Callable[[str, int, int], None] | None) -> str:
    # Store the files first, outside the commit lock (the slow part), under gc's shared
    # lock. gc takes the commit lock and then its own exclusively, so this lock is let go
    # before the commit lock is asked for, and the chunks are checked again under it.
    with repo.write_guard():
        targets, deleted = _targets(repo, paths)
        imported = import_targets(repo, targets, progress=progress)
    with repo.commit_lock(lock_timeout):
        recover_sync(repo)
        if repo.merge_state():
            raise MergeInProgress("cannot commit only some paths during a merge; `demoai commit` "
                                  "without paths, or `demoai merge --abort`")
        imported = _still_stored(repo, imported, targets)
        head = repo.head_commit()
        head_entries = repo.tree_entries(head)
        entries = dict(head_entries)
        for r in imported.results:
            entries[r.path] = encode_manifest(r.artifact)
        for p in deleted:
            entries.pop(p, None)
        changes = tree_changes(head_entries, entries)
        if not changes and not allow_empty:
            named = ", ".join(sorted([r.path for r in imported.results] + deleted))
            raise NothingToCommit(f"nothing to commit: {named} match HEAD")
        new = _write_commit(repo, head, entries, changes, message, merge_head=None,
                            command=command, parameters=parameters, author=author, inputs=inputs)
        # The index learns the committed entries before the branch moves: a crash in
        # between leaves them staged (as after `add`), never an index that would undo them.
        with repo.index.update(lock_timeout) as st:
            imported.stage(repo, st)
            for p in deleted:
                st.unstage(p)
        _move_branch(repo, head, new, message, merge=False)
    return new


def _targets(repo: Repository, paths: list[str | os.PathLike]) -> tuple[list[tuple[Path, str | None]], list[str]]:
    """What committing ``paths`` stores ((file, kind) pairs; a tracked path keeps its kind)
    and deletes (tracked paths under them that are gone from the working tree)."""
    state = repo.index.read()
    head_entries = repo.tree_entries(repo.head_commit())
    tracked = {**head_entries, **state.entries}
    targets: dict[str, tuple[Path, str | None]] = {}
    deleted: list[str] = []

    def kind_of(rel: str) -> str | None:
        return decode_manifest(tracked[rel], rel).kind if rel in tracked else None

    for p in paths:
        try:
            found = expand_path(p)          # what `add p` would store (UnsafePath first)
            missing: Exception | None = None
        except (PathNotFound, UnknownKind) as e:
            found, missing = [], e          # gone from disk, or a folder of no new artifacts
        abs_p = Path(os.fspath(p)).resolve()
        rel = "" if abs_p == repo.root else artifact_path(repo, abs_p)
        under = [t for t in tracked if not rel or t == rel or t.startswith(rel + "/")]
        if missing is not None and not under:
            if isinstance(missing, PathNotFound):
                raise PathNotFound(f"{p}: no such file or directory, nor a tracked artifact",
                                   path=os.fspath(p)) from None
            raise missing
        for f in found:
            r = artifact_path(repo, f)
            targets.setdefault(r, (f, kind_of(r)))
        for entry in under:
            f = repo.root / entry
            if f.exists():
                targets.setdefault(entry, (f, kind_of(entry)))
            elif entry not in deleted:
                deleted.append(entry)
    return list(targets.values()), deleted


def _still_stored(repo: Repository, imported: Imported, targets: list[tuple[Path, str | None]]) -> Imported:
    """``imported``, stored again if gc ran between storing and the commit lock and took
    chunks nothing referenced yet (tables are safe: gc spares young table files)."""
    chunks, _ = live_objects([r.artifact for r in imported.results])
    if not chunks or not repo.blobs.missing_chunks(chunks):
        return imported
    with repo.write_guard():
        return import_targets(repo, targets, state=IndexState())


def _write_commit(repo: Repository, head: str | None, entries: dict[str, bytes],
                  changes: list[dict[str, str]], message: str, *, merge_head: str | None,
                  command: str | None, parameters: dict[str, Any] | None, author: str | None,
                  inputs: dict[str, str] | None = None) -> str:
    """Write the tree of ``entries`` with its lineage record and a commit on ``head``;
    ``inputs`` adds what a workflow step consumed (name -> digest) to the changed paths."""
    extra_inputs, inputs = inputs or {}, {}
    for ch in changes:
        if ch["change"] != "deleted":
            inputs[ch["path"]] = decode_manifest(entries[ch["path"]], ch["path"]).digest
    inputs.update(extra_inputs)
    parents = [head] if head else []
    if merge_head:
        parents.append(merge_head)
    lineage = make_lineage(command or command_line(), inputs=inputs, parameters=parameters or {},
                           extra={"changes": changes, "parents": parents})
    tree = repo.write_tree(entries, lineage)
    return repo.make_commit(tree, parents, message, author=author)


def _move_branch(repo: Repository, head: str | None, new: str, message: str, *, merge: bool) -> None:
    msg = f"commit{' (merge)' if merge else ''}: {message.splitlines()[0]}"
    repo.set_ref(repo.head_ref() or "HEAD", new, head, msg)
