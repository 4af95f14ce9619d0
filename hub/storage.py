"""Where the hub keeps repositories' contents.

:class:`RepoStorage` is the interface the hub's routes use; :class:`LocalRepoStorage`, the
embedded default, keeps each repository as an ordinary DemoAI control directory (git
objects, chunk packs, Lance tables) under ``<data>/repos/<owner>/<name>/`` with no working
files, so every store-level tool (fsck, diff, replay) works on it unchanged. An
S3-compatible backend would implement the same interface (Lance and fsspec speak S3).
"""
from __future__ import annotations

import abc
import os
import shutil
from pathlib import Path

from demoai.errors import RemoteNotFound
from demoai.store.repo import CONTROL_DIR, Repository

from demoai.hub.meta import check_name

__all__ = ["RepoStorage", "LocalRepoStorage"]


class RepoStorage(abc.ABC):
    """Create, open and delete the stored contents of ``owner/name`` repositories."""

    @abc.abstractmethod
    def create(self, owner: str, name: str) -> None: ...

    @abc.abstractmethod
    def exists(self, owner: str, name: str) -> bool: ...

    @abc.abstractmethod
    def open(self, owner: str, name: str) -> Repository:
        """The repository (the caller closes it); ``RemoteNotFound`` if absent."""

    @abc.abstractmethod
    def delete(self, owner: str, name: str) -> None: ...


class LocalRepoStorage(RepoStorage):
    """Repositories as folders on the local disk."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, owner: str, name: str) -> Path:
        return self.root / check_name(owner, "owner") / check_name(name, "repository name")

    def create(self, owner: str, name: str) -> None:
        path = self._path(owner, name)
        if not (path / CONTROL_DIR / "git").is_dir():
            Repository.init(path).close()

    def exists(self, owner: str, name: str) -> bool:
        return (self._path(owner, name) / CONTROL_DIR / "git").is_dir()

    def open(self, owner: str, name: str) -> Repository:
        if not self.exists(owner, name):
            raise RemoteNotFound(f"repository {owner}/{name} not found", repo=f"{owner}/{name}")
        return Repository(self._path(owner, name))

    def delete(self, owner: str, name: str) -> None:
        shutil.rmtree(self._path(owner, name), ignore_errors=True)
