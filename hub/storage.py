"""Where the hub keeps repositories' contents.

:class:`RepoStorage` is the interface the hub's routes use; :class:`LocalRepoStorage`, the
embedded default, keeps each repository as an ordinary DemoAI control directory (git
objects, chunk packs, Lance tables) under ``<data>/repos/<owner>/<name>/`` with no working
files, so every store-level tool (fsck, diff, replay) works on it unchanged. The
S3-compatible backend (hub/storage_s3.py) keeps such a folder as a cache and wraps the sync
endpoint (:meth:`RepoStorage.endpoint`) to put objects in a bucket and refs in PostgreSQL.

Unfinished table-file uploads ("staged" parts, which the sync endpoint keeps inside each
repository: :func:`demoai.porcelain.hosting.staged_parts`) are listed per owner, so the hub
can cap what one user keeps staged and drop parts nobody finished.
"""
from __future__ import annotations

import abc
import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from demoai.errors import RemoteNotFound
from demoai.porcelain import Repository, hosting

from demoai.hub.meta import check_name

__all__ = ["RepoStorage", "LocalRepoStorage", "StagedUpload"]


@dataclass(frozen=True)
class StagedUpload:
    """One unfinished upload: in repository ``owner/name``, of the file hashing to ``digest``."""

    owner: str
    name: str
    digest: str
    size: int
    mtime: float


class RepoStorage(abc.ABC):
    """Create, open and delete the stored contents of ``owner/name`` repositories."""

    @abc.abstractmethod
    def create(self, owner: str, name: str) -> None:
        """Make an empty repository (one there already is kept)."""

    @abc.abstractmethod
    def exists(self, owner: str, name: str) -> bool:
        """Whether ``owner/name`` has stored contents."""

    @abc.abstractmethod
    def open(self, owner: str, name: str) -> Repository:
        """The repository (the caller closes it); ``RemoteNotFound`` if absent."""

    def endpoint(self, owner: str, name: str, repo: Repository) -> hosting.SyncEndpoint:
        """The sync endpoint the protocol routes use over ``repo``, this storage's copy of
        ``owner/name`` (a storage that keeps objects or refs elsewhere wraps it)."""
        return hosting.sync_endpoint(repo)

    @abc.abstractmethod
    def delete(self, owner: str, name: str) -> None:
        """Remove the stored contents (gone already is fine)."""

    @abc.abstractmethod
    def staged_uploads(self, owner: str) -> list[StagedUpload]:
        """The unfinished uploads kept in any of ``owner``'s repositories."""

    @abc.abstractmethod
    def drop_staged(self, upload: StagedUpload) -> None:
        """Delete an unfinished upload (gone already is fine)."""

    @abc.abstractmethod
    def staging_lock(self, owner: str) -> contextlib.AbstractContextManager[None]:
        """Held while checking ``owner``'s staged bytes and adding to them, so that two
        concurrent parts cannot both pass the cap."""

    def staged_bytes(self, owner: str, *, expire_before: float | None = None) -> int:
        """The bytes ``owner`` keeps staged, after dropping the uploads last written before
        ``expire_before`` (a Unix time; None drops nothing)."""
        total = 0
        for up in self.staged_uploads(owner):
            if expire_before is not None and up.mtime < expire_before:
                self.drop_staged(up)
            else:
                total += up.size
        return total

    def expire_staged(self, owners: list[str], max_age: float) -> int:
        """Drop the unfinished uploads of ``owners`` untouched for ``max_age`` seconds;
        returns how many were dropped."""
        before = time.time() - max_age
        dropped = 0
        for owner in owners:
            if not self.staged_uploads(owner):     # most users: nothing to lock for
                continue
            with self.staging_lock(owner):
                for up in self.staged_uploads(owner):
                    if up.mtime < before:
                        self.drop_staged(up)
                        dropped += 1
        return dropped


class LocalRepoStorage(RepoStorage):
    """Repositories as folders on the local disk."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, owner: str, name: str) -> Path:
        return self.root / check_name(owner, "owner") / check_name(name, "repository name")

    def create(self, owner: str, name: str) -> None:
        hosting.init_hosted(self._path(owner, name))

    def exists(self, owner: str, name: str) -> bool:
        return hosting.is_hosted(self._path(owner, name))

    def open(self, owner: str, name: str) -> Repository:
        if not self.exists(owner, name):
            raise RemoteNotFound(f"repository {owner}/{name} not found", repo=f"{owner}/{name}")
        return hosting.open_hosted(self._path(owner, name))

    def delete(self, owner: str, name: str) -> None:
        shutil.rmtree(self._path(owner, name), ignore_errors=True)

    def staged_uploads(self, owner: str) -> list[StagedUpload]:
        home = self.root / check_name(owner, "owner")
        if not home.is_dir():
            return []
        return [StagedUpload(owner, repo.name, p.digest, p.size, p.mtime)
                for repo in sorted(home.iterdir()) if repo.is_dir() and not repo.name.startswith(".")
                for p in hosting.staged_parts(repo)]

    def drop_staged(self, upload: StagedUpload) -> None:
        hosting.drop_staged_part(self._path(upload.owner, upload.name), upload.digest)

    @contextlib.contextmanager
    def staging_lock(self, owner: str) -> Iterator[None]:
        # Beside the owner's repositories: a name no repository can take (no leading dot).
        with hosting.host_lock(self.root / check_name(owner, "owner") / ".staging.lock", timeout=120):
            yield
