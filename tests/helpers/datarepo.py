"""A repository with one committed keyed dataset, made through the CLI as a user would, for
the data-preparation tests."""
from __future__ import annotations

from typing import Any, Callable

from demoai.porcelain import open_repository

__all__ = ["committed_dataset", "head_commit"]


def committed_dataset(tmp_dir: Any, cli: Callable[..., Any], rows: list[dict],
                      name: str = "train.jsonl", message: str = "import") -> None:
    """``init``, write ``rows`` to ``name`` (JSONL), ``add --key id`` and commit."""
    cli("init")
    tmp_dir.gen({name: rows})
    cli("add", name, "--key", "id")
    cli("commit", "-m", message)


def head_commit(path: Any) -> str:
    """The id of the repository's HEAD commit."""
    r = open_repository(path)
    try:
        return r.head_commit()
    finally:
        r.close()
