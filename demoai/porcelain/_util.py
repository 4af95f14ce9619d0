"""Helpers shared by the porcelain verbs."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from demoai.errors import PathNotFound
from demoai.store import Repository, normalize_path

__all__ = ["repo_path", "command_line", "split_path_ref"]


def repo_path(repo: Repository, path: str | os.PathLike) -> str:
    """A user-given path (relative to the cwd, or absolute) as a repository artifact path."""
    p = Path(path)
    absolute = (Path.cwd() / p).resolve() if not p.is_absolute() else p.resolve()
    try:
        rel = absolute.relative_to(repo.root)
    except ValueError:
        raise PathNotFound(f"{path} is outside the repository {repo.root}", path=str(path)) from None
    return normalize_path(rel.as_posix())


def command_line() -> str:
    """The command that is running, for lineage records."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("demoai", "__main__.py", "cli.py")):
        argv[0] = "demoai"
    return " ".join(shlex.quote(a) for a in argv)


def split_path_ref(spec: str, default_ref: str = "HEAD") -> tuple[str, str]:
    """``PATH[@REF]`` -> (path, ref)."""
    if "@" in spec:
        path, ref = spec.rsplit("@", 1)
        return path, ref or default_ref
    return spec, default_ref
