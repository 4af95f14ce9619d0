"""``demoai init``: create a repository."""
from __future__ import annotations

import os

from demoai.store import Repository

__all__ = ["init"]


def init(path: str | os.PathLike = ".", branch: str = "main") -> Repository:
    """Create an empty repository in ``path`` whose first branch is ``branch``."""
    return Repository.init(path, branch=branch)
