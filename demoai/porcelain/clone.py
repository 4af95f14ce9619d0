"""``demoai clone URL [DIR]``: a new repository holding everything a hub repository shares,
with the hub's default branch checked out. A clone that fails removes what it made."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

from demoai.errors import RepositoryExists
from demoai.porcelain.fetch import fetch
from demoai.porcelain.remote import remote_add
from demoai.store import Repository, parse_remote_url, switch_worktree

__all__ = ["clone"]


def clone(url: str, directory: str | os.PathLike | None = None, *, token: str | None = None,
          checkout: bool = True, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Clone ``url`` into ``directory`` (default: the repository's name)."""
    _, _, name = parse_remote_url(url)
    target = Path(directory or name).resolve()
    if target.exists() and any(target.iterdir()):
        raise RepositoryExists(f"{target} exists and is not empty", path=str(target))
    made = not target.exists()
    try:
        repo = Repository.init(target)
        try:
            remote_add(repo, "origin", url)
            fetched = fetch(repo, "origin", token=token, progress=progress)
            head = fetched.get("head") or "refs/heads/main"
            branch = head[len("refs/heads/"):] if head.startswith("refs/heads/") else "main"
            tip = repo.ref_value(f"refs/remotes/origin/{branch}")
            if tip is None:      # no such branch there: take any branch the hub has
                tracking = sorted(r for r in repo.refs() if r.startswith("refs/remotes/origin/"))
                if tracking:
                    branch = tracking[0][len("refs/remotes/origin/"):]
                    tip = repo.ref_value(tracking[0])
            if tip is not None:
                repo.set_ref(f"refs/heads/{branch}", tip, None, f"clone from {url}")
                if checkout:
                    switch_worktree(repo, {}, repo.tree_entries(tip), target=tip,
                                    move=lambda: repo.set_head(branch, tip), progress=progress)
                else:
                    repo.set_head(branch, tip)
            return {"path": str(target), "branch": branch if tip else None, "commit": tip,
                    "fetch": fetched}
        finally:
            repo.close()
    except BaseException:
        if made:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for p in target.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        raise
