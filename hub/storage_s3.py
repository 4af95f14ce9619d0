"""The hub's objects on S3-compatible storage, its refs in PostgreSQL, a local cache per
process (``DEMOAI_HUB_OBJECTS=s3://BUCKET/PREFIX`` with ``DEMOAI_HUB_DATABASE_URL``).

Design. Everything a repository holds besides its refs is content-addressed (git objects by
SHA-1, chunks by BLAKE3, table files by BLAKE3), so nothing stored ever changes and a copy
is as good as the original. Hence:

- **The bucket is the truth for objects.** Each verified batch a push delivers becomes one
  immutable key under ``PREFIX/OWNER/NAME/``: ``git/<sha256>`` (a git frame as received),
  ``chunks/<sha256>`` (a chunk frame in stored form) and ``files/<table_id>/<blake3>/<rel>``
  (a table file). Keys are only ever added, so two processes writing one key write the same
  bytes.
- **PostgreSQL is the truth for refs** (:meth:`~demoai.hub.meta_pg.PostgresMetaStore.swap_refs`:
  compare-and-swap of a set of refs in one transaction). Refs are never taken from a cache:
  the protocol's ``refs`` answer is read from the database, and a ref update compares with
  what the database holds.
- **Each hub process keeps a cache** under its own data directory: an ordinary hosted
  repository per ``OWNER/NAME`` (``<data>/repos/OWNER/NAME``, as the embedded storage), so the
  sync endpoint, fsck, the pages and the indexer work on it unchanged. Give each process its
  own data directory.

A push goes through one process at a time per request; any process may serve any request:

1. every received batch is first written to the repository's *outbox* (``<data>/s3/OWNER/
   NAME/outbox/``, fsynced), then verified and stored in the cache (as the embedded hub
   does: a batch that fails verification stores nothing and leaves no outbox entry), then
   copied to the bucket and its outbox entry dropped. So whatever the cache holds is in the
   bucket or in the outbox, even across a crash;
2. a ref update reads the refs from the database, fills the cache from the bucket if it
   lacks their objects, checks the update on the cache exactly as the embedded hub does
   (names, fast-forward, every object, chunk and table file the new tips reach is present),
   **then flushes the outbox to the bucket, and only then** swaps the refs in the database.
   Objects therefore always reach the bucket before a ref names them, and a ref moves only
   if no one moved it first: two processes racing for one branch never both win.

A read (``needs``, frames, file parts, the pages) opens the cache after reading the refs
from the database; when the cache lacks a tip, it *fills*: it lists the repository's keys
in the bucket and applies those it has not applied yet (each verified again on the way in:
the key's SHA-256, then the store's own checks). Filling is by key, not by object, which
keeps the number of requests per push small (frames carry up to 8 MiB).

Faults. A bucket or database that cannot be reached, or that drops mid-request, is
:class:`~demoai.errors.StorageUnavailable` (HTTP 503). Nothing is half-visible: refs
move only after the objects are in the bucket, and what arrived before the fault stays in
the cache and the outbox, so the client's retried push sends only what is missing and
completes. Unfinished table-file uploads (parts) stay in the cache of the process that
received them, as in the embedded hub; a push that hops to another process mid-file sends
that file again.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from demoai.errors import IntegrityError, MissingObject, RemoteNotFound
from demoai.porcelain import Repository, hosting

from demoai.hub.meta import check_name
from demoai.hub.meta_pg import PostgresMetaStore
from demoai.hub.objects_s3 import ObjectBucket
from demoai.hub.storage import LocalRepoStorage

__all__ = ["S3RepoStorage", "CachedEndpoint"]

T = TypeVar("T")
_FILL_THREADS = 8


def _ahead(pool: ThreadPoolExecutor, fn: Callable[[Any], T], items: list[Any], depth: int) -> Iterator[T]:
    """``fn(item)`` for each item, in order, at most ``depth`` running ahead (bounded memory)."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _mirror(repo: Repository, refs: dict[str, str]) -> None:
    """Copy the database's ``refs`` into the cache, those whose objects it holds (a ref to
    an object not filled yet waits for the next fill)."""
    hosting.mirror_refs(repo, {k: v for k, v in refs.items() if repo.object_type(v) is not None})


def _durable_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3RepoStorage(LocalRepoStorage):
    """Repositories whose objects live in ``bucket`` and refs in ``meta`` (PostgreSQL), with
    this process's cache under ``cache`` (see the module docstring)."""

    def __init__(self, cache: str | os.PathLike, bucket: ObjectBucket, meta: PostgresMetaStore) -> None:
        super().__init__(Path(cache) / "repos")
        self.state = Path(cache) / "s3"
        self.bucket = bucket
        self.meta = meta
        self._mu = threading.Lock()
        self._applied: dict[tuple[str, str], set[str]] = {}

    # -- where things are
    def _home(self, owner: str, name: str) -> Path:
        return self.state / check_name(owner, "owner") / check_name(name, "repository name")

    @staticmethod
    def _rel(owner: str, name: str) -> str:
        return f"{owner}/{name}/"

    def repo_lock(self, owner: str, name: str, what: str) -> Any:
        """A lock on ``owner/name``'s ``what`` (``refs``, ``fill``) for this data directory."""
        return hosting.host_lock(self._home(owner, name) / f"{what}.lock", timeout=300)

    # -- the RepoStorage interface
    def create(self, owner: str, name: str) -> None:
        hosting.init_hosted(self._path(owner, name))

    def exists(self, owner: str, name: str) -> bool:
        return self.meta.get_repo(owner, name) is not None

    def open(self, owner: str, name: str) -> Repository:
        """The cached copy of ``owner/name`` with the database's refs (filled from the bucket
        first when it lacks their objects)."""
        if not self.exists(owner, name):
            raise RemoteNotFound(f"repository {owner}/{name} not found", repo=f"{owner}/{name}")
        path = self._path(owner, name)
        hosting.init_hosted(path)       # a repository another process created: an empty cache
        repo = hosting.open_hosted(path)
        try:
            self.refresh(owner, name, repo)
        except BaseException:
            repo.close()
            raise
        return repo

    def endpoint(self, owner: str, name: str, repo: Repository) -> hosting.SyncEndpoint:
        return CachedEndpoint(self, owner, name, repo)

    def delete(self, owner: str, name: str) -> None:
        self.bucket.delete_prefix(self._rel(owner, name))
        self.meta.drop_refs(owner, name)
        super().delete(owner, name)
        shutil.rmtree(self._home(owner, name), ignore_errors=True)
        with self._mu:
            self._applied.pop((owner, name), None)

    # -- refs
    def refresh(self, owner: str, name: str, repo: Repository) -> dict[str, str]:
        """Read the refs from the database, fill the cache if it lacks a tip, and copy the
        refs into the cache (for store-level readers); returns the database's refs."""
        # Read under the lock that ref updates hold: a value read before another thread's
        # update and copied after it would undo that update in the cache.
        with self.repo_lock(owner, name, "refs"):
            refs = self.meta.repo_refs(owner, name)
            self.ensure(owner, name, repo, list(refs.values()))
            _mirror(repo, refs)
        return refs

    def ensure(self, owner: str, name: str, repo: Repository, tips: list[str]) -> None:
        """Fill the cache if it lacks one of ``tips``; if that is not enough (the cache was
        wiped while its bookkeeping stayed), apply every key of the bucket again."""
        if all(repo.object_type(t) is not None for t in tips):
            return
        self.fill(owner, name, repo)
        if any(repo.object_type(t) is None for t in tips):
            with self._mu:
                self._applied[(owner, name)] = set()
                (self._home(owner, name) / "applied").unlink(missing_ok=True)
            self.fill(owner, name, repo)

    # -- the bucket -> the cache
    def _applied_set(self, owner: str, name: str) -> set[str]:
        with self._mu:
            got = self._applied.get((owner, name))
            if got is None:
                try:
                    text = (self._home(owner, name) / "applied").read_text()
                except FileNotFoundError:
                    text = ""
                got = self._applied[(owner, name)] = set(text.split())
            return got

    def _mark(self, owner: str, name: str, key: str) -> None:
        """Remember that the cache holds what bucket key ``key`` holds."""
        applied = self._applied_set(owner, name)
        with self._mu:
            if key in applied:
                return
            applied.add(key)
            home = self._home(owner, name)
            home.mkdir(parents=True, exist_ok=True)
            with open(home / "applied", "a") as f:
                f.write(key + "\n")

    def fill(self, owner: str, name: str, repo: Repository) -> int:
        """Apply to the cache every key of the repository the bucket holds and the cache has
        not applied yet; returns how many were applied."""
        rel = self._rel(owner, name)
        with self.repo_lock(owner, name, "fill"):
            applied = self._applied_set(owner, name)
            todo = [k for k in self.bucket.list(rel) if k not in applied]
            if not todo:
                return 0
            # table files first, git objects last: as a transfer sends them
            todo.sort(key=lambda k: ({"chunks": 0, "files": 1, "git": 2}.get(k.split("/", 1)[0], 3), k))
            incoming = self._home(owner, name) / "incoming"
            incoming.mkdir(parents=True, exist_ok=True)
            ep = hosting.sync_endpoint(repo)

            def fetch(key: str) -> tuple[str, bytes | Path]:
                kind = key.split("/", 1)[0]
                if kind == "files":
                    dest = incoming / uuid.uuid4().hex
                    self.bucket.get_file(rel + key, dest)
                    return key, dest
                data = self.bucket.get_bytes(rel + key)
                if hashlib.sha256(data).hexdigest() != key.rsplit("/", 1)[-1]:
                    data = self.bucket.get_bytes(rel + key)      # once more: a bad transfer
                    if hashlib.sha256(data).hexdigest() != key.rsplit("/", 1)[-1]:
                        raise IntegrityError(f"s3 key {rel + key}: bytes do not hash to its name",
                                             object=rel + key)
                return key, data

            done = 0
            known = [k for k in todo if k.split("/", 1)[0] in ("git", "chunks", "files")]
            with ThreadPoolExecutor(_FILL_THREADS, thread_name_prefix="hub-fill") as pool:
                for key, got in _ahead(pool, fetch, known, _FILL_THREADS * 2):
                    kind = key.split("/", 1)[0]
                    if kind == "git":
                        ep.put_git(got)
                    elif kind == "chunks":
                        ep.put_chunks(got)
                    else:
                        _, table_id, digest, file_rel = key.split("/", 3)
                        try:
                            hosting.install_table_file(repo, table_id, file_rel, digest, got)
                        finally:
                            Path(got).unlink(missing_ok=True)
                    self._mark(owner, name, key)
                    done += 1
            return done

    # -- the cache -> the bucket
    def _outbox(self, owner: str, name: str) -> Path:
        return self._home(owner, name) / "outbox"

    def stage(self, owner: str, name: str, key: str, data: bytes) -> Path:
        """Write an outbox entry (durably) before the cache takes what it stands for: the
        bytes of a frame to store at ``key``, or a table file's record."""
        box = self._outbox(owner, name)
        box.mkdir(parents=True, exist_ok=True)
        entry = box / f"{key.replace('/', '~')}.{uuid.uuid4().hex[:12]}"
        _durable_write(entry, data)
        return entry

    def send(self, owner: str, name: str, repo: Repository, entry: Path) -> None:
        """Copy an outbox entry to the bucket, then drop it; an entry another thread sent
        meanwhile is done already."""
        key = entry.name.rsplit(".", 1)[0].replace("~", "/")
        rel = self._rel(owner, name) + key
        try:
            if key.startswith("files/"):
                _, table_id, digest, file_rel = key.split("/", 3)
                path = hosting.table_file(repo, table_id, file_rel, digest)
                if path is not None:       # None: the file never made it into the cache
                    self.bucket.put_file(rel, path)
            else:
                self.bucket.put_file(rel, entry)
        except FileNotFoundError:
            if entry.exists():
                raise
            return                          # sent and dropped by another thread
        self._mark(owner, name, key)
        entry.unlink(missing_ok=True)

    def flush(self, owner: str, name: str, repo: Repository) -> int:
        """Send every outbox entry of ``owner/name`` to the bucket; returns how many."""
        box = self._outbox(owner, name)
        try:
            entries = sorted(p for p in box.iterdir() if not p.name.startswith("."))
        except FileNotFoundError:
            return 0
        for entry in entries:
            self.send(owner, name, repo, entry)
        return len(entries)

    def receive(self, owner: str, name: str, repo: Repository, key: str, data: bytes,
                store: Callable[[], int]) -> int:
        """Store a received batch in the cache with ``store()`` (how many things were new),
        bracketed by its outbox entry: written first; dropped if the store refuses the
        batch (it then stored nothing) or found all of it there already (so it is in the
        bucket or another entry); else sent to the bucket."""
        entry = self.stage(owner, name, key, data)
        try:
            added = store()
        except BaseException:
            entry.unlink(missing_ok=True)
            raise
        if added:
            self.send(owner, name, repo, entry)
        else:
            entry.unlink(missing_ok=True)
        return added


class CachedEndpoint(hosting.SyncEndpoint):
    """The sync endpoint over a cached repository: batches go to the bucket as they arrive,
    refs come from and move in the database (see the module docstring)."""

    def __init__(self, storage: S3RepoStorage, owner: str, name: str, repo: Repository) -> None:
        super().__init__(repo)
        self.storage, self.owner, self.name = storage, owner, name

    def _filled(self, fn: Callable[[], T]) -> T:
        """``fn()``, once more after filling the cache if it lacked something."""
        try:
            return fn()
        except MissingObject:
            if not self.storage.fill(self.owner, self.name, self.repo):
                raise
            return fn()

    # -- asking
    def refs(self) -> dict[str, Any]:
        return {"refs": self.storage.meta.repo_refs(self.owner, self.name), "head": self.repo.head_ref()}

    def needs(self, wants: list[str], haves: list[str]) -> Any:
        return self._filled(lambda: super(CachedEndpoint, self).needs(wants, haves))

    def _missing(self, fn: Callable[[], list[T]]) -> list[T]:
        # What this cache lacks may be in the bucket already (another process took it).
        out = fn()
        if out and self.storage.fill(self.owner, self.name, self.repo):
            out = fn()
        return out

    def missing_git(self, ids: list[str]) -> list[str]:
        return self._missing(lambda: super(CachedEndpoint, self).missing_git(ids))

    def missing_chunks(self, ids: list[str]) -> list[str]:
        return self._missing(lambda: super(CachedEndpoint, self).missing_chunks(ids))

    def missing_files(self, files: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        return self._missing(lambda: super(CachedEndpoint, self).missing_files(files))

    # -- reading
    def git_frames(self, ids: list[str]) -> Iterator[bytes]:
        return iter(self._filled(lambda: list(super(CachedEndpoint, self).git_frames(ids))))

    def chunk_frames(self, ids: list[str]) -> Iterator[bytes]:
        return iter(self._filled(lambda: list(super(CachedEndpoint, self).chunk_frames(ids))))

    def read_file(self, table_id: str, rel: str, digest: str, offset: int, length: int) -> tuple[bytes, int]:
        return self._filled(lambda: super(CachedEndpoint, self).read_file(table_id, rel, digest,
                                                                          offset, length))

    # -- receiving
    def put_git(self, frame: bytes) -> int:
        return self.storage.receive(self.owner, self.name, self.repo,
                                    f"git/{hashlib.sha256(frame).hexdigest()}", frame,
                                    lambda: super(CachedEndpoint, self).put_git(frame))

    def put_chunks(self, frame: bytes) -> int:
        return self.storage.receive(self.owner, self.name, self.repo,
                                    f"chunks/{hashlib.sha256(frame).hexdigest()}", frame,
                                    lambda: super(CachedEndpoint, self).put_chunks(frame))

    def finish_upload(self, table_id: str, rel: str, digest: str) -> None:
        if hosting.table_file(self.repo, table_id, rel, digest) is not None:
            return super().finish_upload(table_id, rel, digest)    # in the bucket or the outbox
        record = json.dumps({"table_id": table_id, "rel": rel, "digest": digest}).encode()

        def store() -> int:
            super(CachedEndpoint, self).finish_upload(table_id, rel, digest)
            return 1
        self.storage.receive(self.owner, self.name, self.repo, f"files/{table_id}/{digest}/{rel}",
                             record, store)

    def update_refs(self, updates: list[dict[str, Any]], force: bool = False) -> list[dict[str, Any]]:
        s, owner, name, repo = self.storage, self.owner, self.name, self.repo
        with s.repo_lock(owner, name, "refs"):
            current = s.meta.repo_refs(owner, name)
            s.ensure(owner, name, repo, list(current.values()) + [u["new"] for u in updates if u.get("new")])
            _mirror(repo, current)
            hosting.check_ref_targets(repo, updates)
            checked = super().update_refs(updates, force)    # the cache's checks, its refs moved
            try:
                s.flush(owner, name, repo)                   # objects in the bucket first...
                s.meta.swap_refs(owner, name, [(u["ref"], u["old"], u["new"]) for u in checked])
            except BaseException:
                with contextlib.suppress(Exception):         # the database may be gone too
                    _mirror(repo, s.meta.repo_refs(owner, name))
                raise
        return checked
