"""The repository: a working folder with a ``.demoai/`` control directory.

Layout of ``.demoai/``::

    git/          a bare git repository (dulwich): commits, trees, manifests, refs, tags, reflogs
    chunks/       content-defined chunks of large files, packed (see blobs.py)
    tables/       Lance datasets, one per dataset lineage (see tables.py)
    index.json    the staging area: the manifest of every path in the next commit
    locks/        advisory lock files (commit, index)
    MERGE_STATE.json  present while a merge waits for conflicts to be resolved

Every commit's tree holds one manifest blob per artifact path, plus the reserved
``.demoai/lineage.json`` blob recording how the commit was made. ``git --git-dir
.demoai/git log`` reads the history.
"""
from __future__ import annotations

import contextlib
import functools
import heapq
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from dulwich.file import FileLocked
from dulwich.graph import find_merge_base
from dulwich.objects import Blob, Commit, Tag, Tree
from dulwich.repo import Repo as _GitRepo

from demoai.errors import (InvalidRefName, NotARepository, PathNotFound, RefConflict,
                           RefNotFound, RemoteNotFound, RepositoryExists, UnsafePath)
from demoai.objects import Artifact, decode_manifest, encode_manifest
from demoai.store.blobs.packs import DiskBlobStore
from demoai.store.fsutil import FileLock, atomic_write
from demoai.store.git.index import Index
# The name rules live in names.py; they stay importable from here, where callers found them.
from demoai.store.git.names import (check_entry, check_ref_name, check_repo_name,
                                    default_identity, normalize_path, parse_remote_url)

if TYPE_CHECKING:
    from demoai.store.tables.store import TableStore

__all__ = ["Repository", "CommitInfo", "CONTROL_DIR", "LINEAGE_PATH", "find_root", "nested_tree",
           "check_ref_name", "check_repo_name", "check_entry", "normalize_path",
           "parse_remote_url", "default_identity"]

CONTROL_DIR = ".demoai"
LINEAGE_PATH = ".demoai/lineage.json"
_HEX = re.compile(r"^[0-9a-f]{4,40}$")
_REV_SUFFIX = re.compile(r"(~\d*|\^\d*)$")


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above ``start`` that holds a ``.demoai`` directory."""
    here = Path(start or os.getcwd()).resolve()
    for p in (here, *here.parents):
        if (p / CONTROL_DIR / "git").is_dir():
            return p
    raise NotARepository(f"not a DemoAI repository (or any parent up to /): {here}", path=str(here))


@dataclass(frozen=True)
class CommitInfo:
    """A commit as the porcelain sees it."""

    id: str
    parents: tuple[str, ...]
    tree: str
    author: str
    time: int
    tz: int
    message: str

    @property
    def summary(self) -> str:
        """The first line of the message."""
        return self.message.splitlines()[0] if self.message else ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (time and message included, timezone left out)."""
        return {"id": self.id, "parents": list(self.parents), "tree": self.tree,
                "author": self.author, "time": self.time, "message": self.message}


class Repository:
    """Plumbing over one DemoAI repository: refs, commits, trees of manifests, and the
    blob and table stores. Porcelain verbs are built from these calls."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        self.control = self.root / CONTROL_DIR
        if not (self.control / "git").is_dir():
            raise NotARepository(f"not a DemoAI repository: {self.root}", path=str(self.root))
        self.git = _GitRepo(str(self.control / "git"))
        self.blobs = DiskBlobStore(self.control / "chunks")
        self.index = Index(self.control / "index.json", self.control / "locks" / "index.lock")
        self._lock_depth = 0

    @functools.cached_property
    def tables(self) -> "TableStore":
        """The Lance table store (imported on first use: Lance and pyarrow are heavy, and
        most commands never touch a table)."""
        from demoai.store.tables.store import TableStore
        return TableStore(self.control / "tables", cache=self.control / "cache" / "tables")

    def close(self) -> None:
        """Release the git object store's open pack files."""
        self.git.close()

    def __enter__(self) -> "Repository":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- creation -----------------------------------------------------------------
    @classmethod
    def init(cls, path: str | os.PathLike = ".", branch: str = "main") -> "Repository":
        """Create a repository in ``path`` (made if missing); refuse if one exists."""
        root = Path(path).resolve()
        control = root / CONTROL_DIR
        if (control / "git").exists():
            raise RepositoryExists(f"a DemoAI repository already exists in {root}", path=str(root))
        check_ref_name(branch)
        # Build in a temp dir and rename into place so a crash never leaves half a repo.
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".demoai-init-{os.getpid()}-{os.urandom(3).hex()}"
        tmp.mkdir()
        g = _GitRepo.init_bare(str(tmp / "git"), mkdir=True)
        g.refs.set_symbolic_ref(b"HEAD", f"refs/heads/{branch}".encode())
        cfg = g.get_config()
        cfg.set((b"core",), b"logallrefupdates", b"true")
        cfg.write_to_path()
        for sub in ("chunks", "tables", "locks"):
            (tmp / sub).mkdir()
        atomic_write(tmp / "index.json", json.dumps({"version": 1, "entries": {}, "stat": {}}).encode())
        (tmp / "README").write_text("DemoAI control directory. Inspect history with: "
                                    "git --git-dir .demoai/git log --graph\n")
        os.rename(tmp, control)
        return cls(root)

    @classmethod
    def open(cls, path: str | os.PathLike | None = None) -> "Repository":
        """Open the repository containing ``path`` (default: the current directory)."""
        return cls(find_root(path))

    # --- refs ---------------------------------------------------------------------
    def head_ref(self) -> str | None:
        """The branch ref HEAD points at (``refs/heads/x``), or None when detached."""
        chain, _ = self.git.refs.follow(b"HEAD")
        target = chain[-1].decode() if len(chain) > 1 else None
        return target

    def current_branch(self) -> str | None:
        """The short name of the branch HEAD points at, or None when detached."""
        ref = self.head_ref()
        return ref[len("refs/heads/"):] if ref and ref.startswith("refs/heads/") else None

    def head_commit(self) -> str | None:
        """The commit HEAD resolves to; None on an unborn branch."""
        try:
            return self.git.refs[b"HEAD"].decode()
        except KeyError:
            return None

    def branches(self) -> dict[str, str]:
        """Full branch ref name (``refs/heads/x``) -> commit id."""
        return {"refs/heads/" + k.decode(): v.decode() for k, v in self.git.refs.as_dict(b"refs/heads").items()}

    def tags(self) -> dict[str, str]:
        """Full tag ref name (``refs/tags/x``) -> the commit it points at (annotated tags peeled)."""
        out = {}
        for k, v in self.git.refs.as_dict(b"refs/tags").items():
            out["refs/tags/" + k.decode()] = self._peel(v).decode()
        return out

    def refs(self) -> dict[str, str]:
        """Every ref (branches, tags, sessions...) -> object id."""
        return {k.decode(): v.decode() for k, v in self.git.refs.as_dict().items() if k != b"HEAD"}

    def ref_value(self, ref: str) -> str | None:
        """The object id ``ref`` (a full ref name) points at, or None when it does not exist."""
        try:
            return self.git.refs[ref.encode()].decode()
        except KeyError:
            return None

    def set_ref(self, ref: str, new: str, old: str | None, message: str) -> None:
        """Compare-and-swap ``ref`` from ``old`` (None: must not exist) to ``new`` under the
        ref's lock file; raise :class:`RefConflict` if someone else moved it first."""
        name = ref.encode()
        msg = message.encode()
        with self.commit_lock():
            self._clear_stale_git_locks(ref)
            if old is None:
                ok = self.git.refs.add_if_new(name, new.encode(), message=msg)
            else:
                ok = self.git.refs.set_if_equals(name, old.encode(), new.encode(), message=msg)
        if not ok:
            raise RefConflict(f"{ref} moved while this operation ran (expected {old or 'no ref'}); "
                              "nothing was changed, try again", ref=ref)

    def delete_ref(self, ref: str, old: str) -> None:
        """Delete ``ref`` if it still points at ``old``; :class:`RefConflict` otherwise."""
        with self.commit_lock():
            self._clear_stale_git_locks(ref)
            ok = self.git.refs.remove_if_equals(ref.encode(), old.encode())
        if not ok:
            raise RefConflict(f"{ref} moved while deleting it", ref=ref)

    def set_head(self, branch: str | None, commit: str | None = None) -> None:
        """Point HEAD at a branch (symbolic) or, detached, at a commit."""
        self._clear_stale_git_locks("HEAD")
        if branch is not None:
            self.git.refs.set_symbolic_ref(b"HEAD", f"refs/heads/{branch}".encode())
        else:
            assert commit is not None
            self.git.refs.remove_if_equals(b"HEAD", None)
            self.git.refs[b"HEAD"] = commit.encode()

    def resolve(self, rev: str) -> str:
        """A revision expression (``HEAD``, branch, tag, hex prefix, ``X~n``, ``X^n``) -> commit id."""
        if not rev or rev.strip() != rev:
            raise RefNotFound(f"unknown revision {rev!r}", ref=rev)
        m = _REV_SUFFIX.search(rev)
        if m and m.start() > 0:
            base = self.resolve(rev[:m.start()])
            op, num = m.group(0)[0], m.group(0)[1:]
            n = int(num) if num else 1
            if op == "~":
                for _ in range(n):
                    parents = self.commit_info(base).parents
                    if not parents:
                        raise RefNotFound(f"{rev}: history is not that deep", ref=rev)
                    base = parents[0]
                return base
            parents = self.commit_info(base).parents
            if n == 0:
                return base
            if n > len(parents):
                raise RefNotFound(f"{rev}: commit has no parent {n}", ref=rev)
            return parents[n - 1]
        candidates = [rev] if rev == "HEAD" else [f"refs/heads/{rev}", f"refs/tags/{rev}", rev, f"refs/{rev}"]
        for c in candidates:
            try:
                sha = self.git.refs[c.encode()]
            except (KeyError, ValueError):
                continue
            return self._peel(sha).decode()
        if _HEX.match(rev):
            if len(rev) == 40 and rev.encode() in self.git.object_store:
                return self._peel(rev.encode()).decode()
            matches = [s for s in self._iter_commit_ids() if s.startswith(rev)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise RefNotFound(f"ambiguous revision {rev!r} ({len(matches)} commits match)", ref=rev)
        if rev == "HEAD":
            raise RefNotFound("HEAD has no commits yet", ref=rev)
        raise RefNotFound(f"unknown revision {rev!r}", ref=rev)

    def _peel(self, sha: bytes) -> bytes:
        obj = self.git[sha]
        while isinstance(obj, Tag):
            obj = self.git[obj.object[1]]
        if not isinstance(obj, Commit):
            raise RefNotFound(f"{sha.decode()} is not a commit", ref=sha.decode())
        return obj.id

    def _iter_commit_ids(self) -> Iterator[str]:
        seen: set[str] = set()
        for sha in self.refs().values():
            try:
                for c in self.walk(self._peel(sha.encode()).decode()):
                    if c.id in seen:
                        break
                    seen.add(c.id)
                    yield c.id
            except RefNotFound:
                continue

    # --- commits and trees --------------------------------------------------------
    def commit_info(self, commit_id: str) -> CommitInfo:
        """The commit ``commit_id`` (a full id); :class:`RefNotFound` if there is none."""
        try:
            c = self.git[commit_id.encode()]
        except KeyError:
            raise RefNotFound(f"no commit {commit_id}", ref=commit_id) from None
        if not isinstance(c, Commit):
            raise RefNotFound(f"{commit_id} is not a commit", ref=commit_id)
        return CommitInfo(id=c.id.decode(), parents=tuple(p.decode() for p in c.parents),
                          tree=c.tree.decode(), author=c.author.decode(errors="replace"),
                          time=c.commit_time, tz=c.commit_timezone,
                          message=c.message.decode(errors="replace"))

    def walk(self, start: str | list[str], limit: int | None = None) -> Iterator[CommitInfo]:
        """Commits reachable from ``start``, newest first (by commit time, then id)."""
        starts = [start] if isinstance(start, str) else list(start)
        heap: list[tuple[int, str, CommitInfo]] = []
        seen: set[str] = set()
        for s in starts:
            if s not in seen:
                seen.add(s)
                ci = self.commit_info(s)
                heapq.heappush(heap, (-ci.time, ci.id, ci))
        n = 0
        while heap and (limit is None or n < limit):
            _, _, ci = heapq.heappop(heap)
            yield ci
            n += 1
            for p in ci.parents:
                if p not in seen:
                    seen.add(p)
                    pc = self.commit_info(p)
                    heapq.heappush(heap, (-pc.time, pc.id, pc))

    def tree_entries(self, commit_id: str | None) -> dict[str, bytes]:
        """Flat map path -> manifest bytes of a commit (reserved ``.demoai/`` excluded)."""
        if commit_id is None:
            return {}
        tree = self.git[self.commit_info(commit_id).tree.encode()]
        out: dict[str, bytes] = {}
        self._walk_tree(tree, "", out)
        return out

    def _walk_tree(self, tree: Tree, prefix: str, out: dict[str, bytes]) -> None:
        for entry in tree.iteritems():
            if not prefix and entry.path == CONTROL_DIR.encode():
                continue          # reserved: lineage, session events and workspaces
            name = check_entry(entry.path, entry.mode, prefix)
            path = f"{prefix}{name}"
            obj = self.git[entry.sha]
            if isinstance(obj, Tree) != bool(entry.mode & 0o040000):
                raise UnsafePath(f"{path}: tree entry mode {entry.mode:o} does not match a "
                                 f"{obj.type_name.decode()}", path=path)
            if isinstance(obj, Tree):
                self._walk_tree(obj, path + "/", out)
            else:
                out[path] = obj.as_raw_string()

    def artifacts(self, commit_id: str | None) -> dict[str, Artifact]:
        """Flat map path -> typed artifact of a commit."""
        return {p: decode_manifest(b, p) for p, b in self.tree_entries(commit_id).items()}

    def artifact_at(self, rev: str, path: str) -> Artifact:
        """The typed artifact at ``path`` in revision ``rev``; :class:`PathNotFound` if none."""
        entries = self.tree_entries(self.resolve(rev))
        path = normalize_path(path)
        if path not in entries:
            raise PathNotFound(f"{path} is not in {rev}", path=path, ref=rev)
        return decode_manifest(entries[path], path)

    def lineage(self, commit_id: str) -> dict[str, Any]:
        """The lineage record of a commit ({} for commits made by other tools)."""
        data = self.blob_at(commit_id, LINEAGE_PATH)
        return {} if data is None else json.loads(data)

    def blob_at(self, commit_id: str, path: str) -> bytes | None:
        """The bytes of the file at ``path`` (slash-separated; the reserved ``.demoai/``
        tree included) in commit ``commit_id``; None when its tree holds no file there."""
        tree = self.git[self.commit_info(commit_id).tree.encode()]
        try:
            _, sha = tree.lookup_path(self.git.__getitem__, path.encode())
        except KeyError:
            return None
        obj = self.git[sha]
        return None if isinstance(obj, Tree) else obj.as_raw_string()

    def files_at(self, commit_id: str, path: str) -> dict[str, bytes]:
        """Every file under the folder ``path`` in commit ``commit_id``, by path relative to
        it (names as stored, unchecked: for reserved trees DemoAI wrote itself); {} when the
        commit has no folder there."""
        tree = self.git[self.commit_info(commit_id).tree.encode()]
        try:
            _, sha = tree.lookup_path(self.git.__getitem__, path.encode())
        except KeyError:
            return {}
        out: dict[str, bytes] = {}

        def walk(tree_id: bytes, prefix: str) -> None:
            for e in self.git[tree_id].iteritems():
                p = prefix + e.path.decode()
                if e.mode & 0o040000:
                    walk(e.sha, p + "/")
                else:
                    out[p] = self.git[e.sha].as_raw_string()

        if isinstance(self.git[sha], Tree):
            walk(sha, "")
        return out

    def entry_id(self, commit_id: str, path: str) -> str | None:
        """The id of the blob (or tree) at ``path`` in commit ``commit_id``, without reading
        it; None when the commit's tree holds nothing there."""
        tree = self.git[self.commit_info(commit_id).tree.encode()]
        try:
            return tree.lookup_path(self.git.__getitem__, path.encode())[1].decode()
        except KeyError:
            return None

    def has_object(self, object_id: str) -> bool:
        """Whether the git object ``object_id`` (40 hex digits) is stored here."""
        return object_id.encode() in self.git.object_store

    def object_type(self, object_id: str) -> str | None:
        """``"commit"``, ``"tree"``, ``"blob"`` or ``"tag"``; None when it is not stored."""
        try:
            return self.git[object_id.encode()].type_name.decode()
        except KeyError:
            return None

    def tag_target(self, tag_id: str) -> str:
        """The id of the object an annotated tag names (which may not be stored);
        :class:`RefNotFound` if ``tag_id`` is no stored tag object."""
        try:
            obj = self.git[tag_id.encode()]
        except KeyError:
            obj = None
        if not isinstance(obj, Tag):
            raise RefNotFound(f"{tag_id} is not a tag object", ref=tag_id)
        return obj.object[1].decode()

    def peel(self, object_id: str) -> str:
        """The commit an object id names, annotated tags followed; :class:`RefNotFound` if
        it is absent or ends at something other than a commit."""
        try:
            return self._peel(object_id.encode()).decode()
        except KeyError:
            raise RefNotFound(f"no object {object_id}", ref=object_id) from None

    def merge_base(self, a: str, b: str) -> str | None:
        """The best common ancestor of commits ``a`` and ``b`` (git's merge base); None
        when their histories never meet."""
        bases = find_merge_base(self.git, [a.encode(), b.encode()])
        return bases[0].decode() if bases else None

    def write_tree(self, entries: dict[str, Artifact | bytes], lineage: dict[str, Any] | None) -> str:
        """Store manifests as git blobs in nested trees; return the root tree id."""
        files = {path: art if isinstance(art, bytes) else encode_manifest(art) for path, art in entries.items()}
        if lineage is not None:
            files[LINEAGE_PATH] = (json.dumps(lineage, sort_keys=True, indent=1) + "\n").encode()
        tree_id, _, objects = nested_tree(files)
        self.add_objects(objects)
        return tree_id.decode()

    def add_objects(self, objects: list[Any]) -> None:
        """Write git objects; a `.lock` left by a killed writer of the same (content
        addressed) object is stale under the commit lock and is cleared."""
        with self.commit_lock():
            for obj in objects:
                try:
                    self.git.object_store.add_object(obj)
                except FileLocked as e:
                    lock = e.lockfilename
                    os.unlink(lock.decode() if isinstance(lock, bytes) else lock)
                    self.git.object_store.add_object(obj)

    def make_commit(self, tree: str, parents: list[str], message: str, author: str | None = None,
                    when: int | None = None) -> str:
        """Write a commit object (not moving any ref)."""
        c = Commit()
        c.tree = tree.encode()
        c.parents = [p.encode() for p in parents]
        c.author = (author or self.identity("author")).encode()
        c.committer = self.identity("committer").encode() if author is None else c.author
        c.author_time = c.commit_time = int(when if when is not None else time.time())
        tz = -time.altzone if time.localtime().tm_isdst > 0 else -time.timezone
        c.author_timezone = c.commit_timezone = tz
        c.encoding = b"UTF-8"
        c.message = message.encode() if message.endswith("\n") else (message + "\n").encode()
        self.add_objects([c])
        return c.id.decode()

    def make_tag(self, name: str, commit: str, message: str, *, tagger: str | None = None,
                 when: int | None = None) -> str:
        """Write an annotated tag object ``name`` on ``commit`` (no ref is moved); returns
        the tag object's id."""
        t = Tag()
        t.name = name.encode()
        t.object = (self.git[commit.encode()].__class__, commit.encode())
        t.tagger = (tagger or self.identity("committer")).encode()
        t.tag_time = int(when if when is not None else time.time())
        t.tag_timezone = 0
        t.message = (message if message.endswith("\n") else message + "\n").encode()
        self.add_objects([t])
        return t.id.decode()

    def identity(self, role: str = "author") -> str:
        """Who commits here (``Name <email>``): the environment, then this repository's
        git config (``.demoai/git/config``), then the global git config; see
        :func:`~demoai.store.git.names.default_identity`."""
        return default_identity(role, self.control / "git" / "config")

    @contextlib.contextmanager
    def commit_lock(self, timeout: float = 60.0) -> Iterator[None]:
        """The lock that serializes every ref update, commit, merge and checkout of this
        repository (re-entrant within one Repository object)."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        with FileLock(self.control / "locks" / "commit.lock", timeout):
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0

    def _clear_stale_git_locks(self, ref: str) -> None:
        # A process killed mid-update leaves git's `<ref>.lock`; under our commit lock no
        # other DemoAI writer can own it, so it is stale.
        gitdir = Path(self.git.controldir())
        for p in (gitdir / f"{ref}.lock", gitdir / "packed-refs.lock"):
            p.unlink(missing_ok=True)

    def write_guard(self, timeout: float = 600.0) -> FileLock:
        """Held (shared) by anything that stores objects before referencing them; gc takes
        it exclusively, so it never deletes what a running writer is about to stage."""
        return FileLock(self.control / "locks" / "gc.lock", timeout, shared=True)

    def gc_lock(self, timeout: float = 600.0) -> FileLock:
        """The lock gc holds exclusively (writers hold it shared: :meth:`write_guard`)."""
        return FileLock(self.control / "locks" / "gc.lock", timeout)

    # --- remotes (kept in the git config, like git's own) ----------------------------
    def remotes(self) -> dict[str, str]:
        """Remote name -> URL."""
        cfg = self.git.get_config()
        out = {}
        for section in cfg.sections():
            if len(section) == 2 and section[0] == b"remote":
                try:
                    out[section[1].decode()] = cfg.get(section, b"url").decode()
                except KeyError:
                    continue
        return out

    def set_remote(self, name: str, url: str) -> None:
        """Record remote ``name`` at ``url``, with git's default fetch refspec."""
        cfg = self.git.get_config()
        cfg.set((b"remote", name.encode()), b"url", url.encode())
        cfg.set((b"remote", name.encode()), b"fetch", f"+refs/heads/*:refs/remotes/{name}/*".encode())
        cfg.write_to_path()

    def remove_remote(self, name: str) -> None:
        """Forget remote ``name`` in the config (its remote-tracking refs stay);
        :class:`RemoteNotFound` if there is none."""
        cfg = self.git.get_config()
        try:
            del cfg[(b"remote", name.encode())]
        except KeyError:
            raise RemoteNotFound(f"no remote {name!r}", remote=name) from None
        cfg.write_to_path()

    # --- merge state --------------------------------------------------------------
    @property
    def merge_state_path(self) -> Path:
        """Where an unfinished merge is recorded."""
        return self.control / "MERGE_STATE.json"

    def merge_state(self) -> dict[str, Any] | None:
        """The unfinished merge (``merge_head``, ``orig_head``, ``conflicts``...), or None."""
        try:
            return json.loads(self.merge_state_path.read_bytes())
        except FileNotFoundError:
            return None

    def set_merge_state(self, state: dict[str, Any] | None) -> None:
        """Record an unfinished merge (atomically), or drop the record with None."""
        if state is None:
            self.merge_state_path.unlink(missing_ok=True)
        else:
            atomic_write(self.merge_state_path, json.dumps(state, indent=1).encode())

    def workpath(self, path: str) -> Path:
        """``path`` in the working tree (unchecked: see ``worktree.worktree_path``)."""
        return self.root / path


def nested_tree(files: dict[str, bytes]) -> tuple[bytes, dict[str, bytes], list[Any]]:
    """The git objects holding ``files`` (slash paths -> bytes) as blobs in nested trees:
    (root tree id, path -> blob id, objects to write). Nothing is written."""
    root: dict[str, Any] = {}
    objects: list[Any] = []
    ids: dict[str, bytes] = {}
    for path, data in sorted(files.items()):
        parts = path.split("/")
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise InvalidRefName(f"{path}: {part} is an artifact, not a folder", name=path)
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise InvalidRefName(f"{path} is a folder of artifacts", name=path)
        blob = Blob.from_string(data)
        objects.append(blob)
        node[parts[-1]] = ids[path] = blob.id

    def build(node: dict[str, Any]) -> bytes:
        t = Tree()
        for name, v in node.items():
            if isinstance(v, dict):
                t.add(name.encode(), 0o040000, build(v))
            else:
                t.add(name.encode(), 0o100644, v)
        objects.append(t)
        return t.id

    return build(root), ids, objects
