"""Checking the git side of a repository: every stored object, and what history reaches.

:func:`check_git_objects` re-reads and rehashes each git object; :func:`reachable` walks
from every ref, reflog entry, HEAD and an unfinished merge to the commits and manifest
blobs they reach (``fsck`` verifies those, ``gc`` keeps what they name, ``repair`` restores
it). Both report damage as problem strings instead of raising.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from dulwich.objects import Commit, Tree

from demoai.errors import UnsafePath
from demoai.store.git.names import check_entry
from demoai.store.git.repo import CONTROL_DIR, Repository

__all__ = ["check_git_objects", "reachable", "reflog_commits"]

_TYPE_NAMES = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}


def reflog_commits(repo: Repository) -> set[str]:
    """Every commit id named in a reflog (old or new side)."""
    out: set[str] = set()
    logs = Path(repo.git.controldir()) / "logs"
    for f in logs.rglob("*") if logs.exists() else []:
        if f.is_file():
            for line in f.read_text(errors="replace").splitlines():
                parts = line.split(" ", 2)
                out.update(p for p in parts[:2] if len(p) == 40 and p != "0" * 40)
    return out


def reachable(repo: Repository, problems: list[str] | None = None) -> tuple[set[str], dict[str, bytes]]:
    """Commits reachable from refs, reflogs and merge state, and every manifest blob
    (blob id -> bytes) their trees and the index hold (index entries keyed ``index:PATH``).
    What is missing or unsafe is appended to ``problems`` when given, and skipped."""
    starts = set(repo.refs().values()) | reflog_commits(repo)
    head = repo.head_commit()
    if head:
        starts.add(head)
    merge = repo.merge_state()
    if merge:
        starts.add(merge["merge_head"])
    commits: set[str] = set()
    manifests: dict[str, bytes] = {}
    seen_trees: set[bytes] = set()
    stack = []
    for s in starts:
        try:
            obj = repo.git[s.encode()]
        except KeyError:
            if problems is not None:
                problems.append(f"ref or reflog names missing object {s}")
            continue
        while not isinstance(obj, Commit) and hasattr(obj, "object"):
            obj = repo.git[obj.object[1]]
        if isinstance(obj, Commit):
            stack.append(obj.id.decode())
    while stack:
        c = stack.pop()
        if c in commits:
            continue
        try:
            obj = repo.git[c.encode()]
        except KeyError:
            if problems is not None:
                problems.append(f"commit {c} is missing")
            continue
        commits.add(c)
        stack.extend(p.decode() for p in obj.parents)
        _walk(repo, obj.tree, "", manifests, seen_trees, problems)
    for path, data in repo.index.read().entries.items():
        manifests.setdefault(f"index:{path}", data)
    return commits, manifests


def _walk(repo: Repository, tree_id: bytes, prefix: str, manifests: dict[str, bytes],
          seen: set[bytes], problems: list[str] | None) -> None:
    if tree_id in seen:
        return
    seen.add(tree_id)
    try:
        tree = repo.git[tree_id]
    except KeyError:
        if problems is not None:
            problems.append(f"tree {tree_id.decode()} is missing")
        return
    for entry in tree.iteritems():
        path = prefix + entry.path.decode("utf-8", "replace")
        if path == CONTROL_DIR:
            continue          # reserved: lineage, session events and workspaces, no manifests
        try:
            check_entry(entry.path, entry.mode, prefix)
        except UnsafePath as e:
            if problems is not None:
                problems.append(f"tree {tree_id.decode()}: {e} (never written to a working tree)")
            continue
        if isinstance(tree, Tree) and entry.mode & 0o040000:
            _walk(repo, entry.sha, path + "/", manifests, seen, problems)
        else:
            try:
                manifests[entry.sha.decode()] = repo.git[entry.sha].as_raw_string()
            except KeyError:
                if problems is not None:
                    problems.append(f"manifest blob {entry.sha.decode()} ({path}) is missing")


def check_git_objects(repo: Repository, problems: list[str]) -> int:
    """Re-read every stored git object: it must inflate, hash to its id and parse as its
    type. Appends what is wrong to ``problems``; returns how many objects there are."""
    store = repo.git.object_store
    n = 0
    for sha in store:
        n += 1
        try:
            type_num, raw = store.get_raw(sha)
        except Exception as e:  # a corrupt loose object fails to inflate
            problems.append(f"git object {sha.decode()}: unreadable ({e.__class__.__name__})")
            continue
        kind = _TYPE_NAMES.get(type_num, b"?")
        actual = hashlib.sha1(kind + b" " + str(len(raw)).encode() + b"\0" + raw).hexdigest()
        if actual.encode() != sha:
            problems.append(f"git object {sha.decode()}: content hashes to {actual}")
            continue
        try:
            store[sha].check()
        except Exception as e:
            problems.append(f"git object {sha.decode()}: malformed {kind.decode()} ({e})")
    return n
