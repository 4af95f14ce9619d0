"""The git objects of one session step, and walks along a session's chain of step commits.

A step commit's tree holds ``session`` (the Session manifest), ``.demoai/events`` (the
lines of that step's events only) and ``.demoai/workspace/`` (the sandbox files after the
step, as git blobs). Its first parent is the previous step's commit, so the events of a
session are the ``events`` blobs along the first-parent chain, oldest first. Everything
here reads immutable git objects: it is safe while another process appends to the session.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Iterator

from dulwich.objects import Blob, Commit, Tree

from demoai.errors import IntegrityError, InvalidArtifact
from demoai.objects import Session, decode_manifest, encode_manifest
from demoai.store.git.repo import Repository, default_identity, nested_tree

__all__ = ["EVENTS_PATH", "WORKSPACE_PATH", "MAX_FILE", "StepCommit", "manifest_at", "commit_time",
           "read_step", "walk_steps", "chain_lines", "step_commit", "workspace_tree_at",
           "workspace_tree", "blob_ids", "read_workspace", "write_step"]

EVENTS_PATH = b".demoai/events"
WORKSPACE_PATH = b".demoai/workspace"
MAX_FILE = 8 << 20                       # workspace files above this are recorded by digest only


@dataclass(frozen=True)
class StepCommit:
    """One step commit: its id, first parent, the lines of its events and, when read with
    ``steps``, the step count its manifest records (else -1)."""

    id: str
    parent: str | None
    events: bytes
    steps: int = -1


def _tree(repo: Repository, commit: str) -> Tree:
    return repo.git[repo.git[commit.encode()].tree]


def manifest_at(repo: Repository, commit: str) -> Session:
    """The Session manifest a step commit records; :class:`InvalidArtifact` when the commit
    is not a session step."""
    tree = _tree(repo, commit)
    try:
        _, sha = tree.lookup_path(repo.git.__getitem__, b"session")
    except KeyError:
        raise InvalidArtifact(f"commit {commit[:12]} is not a session step") from None
    art = decode_manifest(repo.git[sha].as_raw_string(), "session")
    if not isinstance(art, Session):
        raise InvalidArtifact(f"commit {commit[:12]} is not a session step")
    return art


def commit_time(repo: Repository, commit: str) -> int:
    """When a step commit was written (seconds since the epoch)."""
    return repo.git[commit.encode()].commit_time


def read_step(repo: Repository, commit: str, *, steps: bool = False) -> StepCommit:
    """The events (and with ``steps`` the step count) one step commit holds."""
    c = repo.git[commit.encode()]
    tree = repo.git[c.tree]
    try:
        _, ev = tree.lookup_path(repo.git.__getitem__, EVENTS_PATH)
    except KeyError:
        raise IntegrityError(f"commit {commit[:12]} holds no session events", commit=commit) from None
    n = -1
    if steps:
        _, ms = tree.lookup_path(repo.git.__getitem__, b"session")
        n = int(json.loads(repo.git[ms].as_raw_string())["steps"])
    parent = c.parents[0].decode() if c.parents else None
    return StepCommit(commit, parent, repo.git[ev].as_raw_string(), n)


def walk_steps(repo: Repository, tip: str, stop: str | None = None, *,
               steps: bool = False) -> Iterator[StepCommit]:
    """The step commits from ``tip`` back along first parents, newest first, ending before
    ``stop`` (or at the session's first commit)."""
    sha: str | None = tip
    while sha is not None and sha != stop:
        s = read_step(repo, sha, steps=steps)
        yield s
        sha = s.parent


def chain_lines(repo: Repository, tip: str) -> list[bytes]:
    """Every event line of the chain ending at ``tip``, oldest first, read from git."""
    chunks = [s.events for s in walk_steps(repo, tip)]
    return b"".join(reversed(chunks)).splitlines(keepends=True)


def step_commit(repo: Repository, tip: str, step: int) -> str | None:
    """The commit holding the latest state of ``step`` on the chain ending at ``tip``
    (None when the chain has no such step). Walks back from the tip: O(steps after it)."""
    sha: str | None = tip or None
    while sha is not None:
        n = manifest_at(repo, sha).steps
        if n == step:
            return sha
        if n < step:
            return None
        c = repo.git[sha.encode()]
        sha = c.parents[0].decode() if c.parents else None
    return None


def workspace_tree_at(repo: Repository, commit: str | None) -> str | None:
    """The id of the workspace tree a step commit records (None when it has none)."""
    if not commit:
        return None
    try:
        _, sha = _tree(repo, commit).lookup_path(repo.git.__getitem__, WORKSPACE_PATH)
    except KeyError:
        return None
    return sha.decode()


def workspace_tree(repo: Repository, files: dict[str, bytes]) -> tuple[str | None, dict[str, str]]:
    """Store workspace files as git blobs in nested trees; returns (tree id or None when
    empty, path -> blob id). Files above MAX_FILE are left out (the caller records them)."""
    kept = {p: d for p, d in files.items() if len(d) <= MAX_FILE}
    if not kept:
        return None, {}
    tid, ids, objects = nested_tree(kept)
    repo.add_objects(objects)
    return tid.decode(), {p: b.decode() for p, b in ids.items()}


def blob_ids(files: dict[str, bytes]) -> dict[str, str]:
    """path -> the git blob id :func:`workspace_tree` would give, without writing anything."""
    return {p: Blob.from_string(d).id.decode() for p, d in files.items() if len(d) <= MAX_FILE}


def read_workspace(repo: Repository, commit: str) -> dict[str, bytes]:
    """The workspace files (path -> bytes) a step commit records."""
    path = WORKSPACE_PATH.decode() if isinstance(WORKSPACE_PATH, bytes) else WORKSPACE_PATH
    return repo.files_at(commit, path)


def write_step(repo: Repository, man: Session, events: bytes, workspace: str | None,
               parents: list[str | None], message: str) -> str:
    """Write one step commit (manifest, events, workspace tree) and return its id; the
    caller moves the ref."""
    eb, mb = Blob.from_string(events), Blob.from_string(encode_manifest(man))
    inner = Tree()
    inner.add(b"events", 0o100644, eb.id)
    if workspace:
        inner.add(b"workspace", 0o040000, workspace.encode())
    root = Tree()
    root.add(b".demoai", 0o040000, inner.id)
    root.add(b"session", 0o100644, mb.id)
    c = Commit()
    c.tree = root.id
    c.parents = [p.encode() for p in parents if p]
    c.author = c.committer = default_identity().encode()
    c.author_time = c.commit_time = int(time.time())
    c.author_timezone = c.commit_timezone = 0
    c.encoding = b"UTF-8"
    c.message = (message.rstrip("\n") + "\n").encode()
    repo.add_objects([eb, mb, inner, root, c])
    return c.id.decode()
