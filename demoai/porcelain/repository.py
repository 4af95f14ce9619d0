"""Opening a repository: the one way faces get hold of a :class:`Repository`.

Faces (CLI, TUI, HTTP services) never import ``demoai.store``; they open repositories here
and hand them back to other porcelain verbs. The type is re-exported for annotations.
"""
from __future__ import annotations

import os

from demoai.store import Repository, check_ref_name, check_repo_name, find_root

__all__ = ["Repository", "open_repository", "find_root", "check_ref_name", "check_repo_name"]


def open_repository(path: str | os.PathLike | None = None, *, search: bool = True) -> Repository:
    """The repository at ``path`` (default: the current directory); with ``search`` the one
    containing it, as git finds ``.git`` in a parent folder. ``NotARepository`` if none."""
    return Repository.open(path) if search else Repository(path or ".")
