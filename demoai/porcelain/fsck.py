"""``demoai fsck``: check every git object, manifest, chunk and table file, and name what
is broken. ``demoai gc`` lives in gc.py and uses the same reachability walk."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

from dulwich.objects import Commit, Tree

from demoai.errors import DemoAIError, UnsafePath
from demoai.objects import Artifact, decode_manifest
from demoai.store.kinds import live_objects
from demoai.store.git.repo import CONTROL_DIR, Repository, check_entry

__all__ = ["fsck", "reachable", "reflog_commits"]


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
    (blob id -> bytes) their trees and the index hold."""
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


def _check_git_objects(repo: Repository, problems: list[str]) -> int:
    store = repo.git.object_store
    n = 0
    for sha in store:
        n += 1
        try:
            type_num, raw = store.get_raw(sha)
        except Exception as e:  # a corrupt loose object fails to inflate
            problems.append(f"git object {sha.decode()}: unreadable ({e.__class__.__name__})")
            continue
        kind = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}.get(type_num, b"?")
        actual = hashlib.sha1(kind + b" " + str(len(raw)).encode() + b"\0" + raw).hexdigest()
        if actual.encode() != sha:
            problems.append(f"git object {sha.decode()}: content hashes to {actual}")
            continue
        try:
            store[sha].check()
        except Exception as e:
            problems.append(f"git object {sha.decode()}: malformed {kind.decode()} ({e})")
    return n


def fsck(repo: Repository, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Verify everything; returns {"ok", "problems", "counts"} and never raises for damage."""
    problems: list[str] = []
    n_git = _check_git_objects(repo, problems)
    commits, manifests = reachable(repo, problems)
    arts: list[Artifact] = []
    for name, data in manifests.items():
        try:
            arts.append(decode_manifest(data, name))
        except DemoAIError as e:
            problems.append(f"manifest {name}: {e}")
    chunks, tables = live_objects(arts)
    missing = repo.blobs.missing_chunks(sorted(chunks))
    problems.extend(f"chunk {c} is referenced but missing" for c in missing)
    cb = (lambda d, t: progress("chunks", d, t)) if progress else None
    problems.extend(repo.blobs.verify(progress=cb))
    unique = {(t.table_id, t.version): t for t in tables}
    by_digest = {(t.table_id, t.digest): t for t in unique.values()}
    for i, t in enumerate(unique.values()):
        if progress:
            progress("tables", i, len(unique))
        base = by_digest.get((t.table_id, t.delta["base"])) if t.delta else None
        problems.extend(repo.tables.verify(t, base=base))
    n_sessions = _check_sessions(repo, problems)
    return {"ok": not problems, "problems": problems,
            "counts": {"git_objects": n_git, "commits": len(commits), "manifests": len(manifests),
                       "chunks": len(set(repo.blobs.iter_chunk_ids())), "table_versions": len(unique), "sessions": n_sessions}}


def _check_sessions(repo: Repository, problems: list[str]) -> int:
    """Verify the hash chain of every session against the head its ref records."""
    from demoai.store.sessions.log import SESSION_REF, open_session
    names = [r[len(SESSION_REF):] for r in repo.refs() if r.startswith(SESSION_REF)]
    for name in names:
        try:
            with open_session(repo, name) as log:
                log.verify(from_git=True)
        except DemoAIError as e:
            problems.append(f"session {name}: {e}")
        except Exception as e:  # damaged cache or objects: name it, never crash fsck
            problems.append(f"session {name}: unreadable ({e.__class__.__name__}: {e})")
    return len(names)
