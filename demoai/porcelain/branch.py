"""``demoai branch``, ``demoai tag`` and ``demoai fork``: named pointers into history."""
from __future__ import annotations

from typing import Any

from demoai.errors import InvalidRefName, RefConflict, RefNotFound
from demoai.store import Repository, check_ref_name

__all__ = ["branch", "list_branches", "delete_branch", "tag", "list_tags", "delete_tag", "fork"]


def list_branches(repo: Repository) -> list[dict[str, Any]]:
    """Every branch: ``{"name", "commit", "current"}``, by name."""
    current = repo.current_branch()
    return [{"name": r[len("refs/heads/"):], "commit": c, "current": r == f"refs/heads/{current}"}
            for r, c in sorted(repo.branches().items())]


def _new_ref(repo: Repository, kind: str, name: str, rev: str) -> tuple[str, str]:
    """Check a new branch/tag name and resolve ``rev``: (full ref name, commit id)."""
    check_ref_name(name, kind)
    commit = repo.resolve(rev)
    ref = f"refs/{'heads' if kind == 'branch' else 'tags'}/{name}"
    if repo.ref_value(ref) is not None:
        raise RefConflict(f"{kind} {name!r} already exists", ref=ref)
    return ref, commit


def branch(repo: Repository, name: str, start: str = "HEAD") -> str:
    """Create branch ``name`` at ``start``; refuse if it exists. Returns the commit id."""
    ref, commit = _new_ref(repo, "branch", name, start)
    repo.set_ref(ref, commit, None, f"branch: created from {start}")
    return commit


def delete_branch(repo: Repository, name: str) -> str:
    """Delete branch ``name`` (never the checked-out one); returns the commit it was at."""
    ref = f"refs/heads/{name}"
    old = repo.ref_value(ref)
    if old is None:
        raise RefNotFound(f"no branch {name!r}", ref=name)
    if repo.current_branch() == name:
        raise InvalidRefName(f"cannot delete the checked-out branch {name!r}", name=name)
    repo.delete_ref(ref, old)
    return old


def fork(repo: Repository, rev: str, name: str) -> str:
    """A new branch ``name`` starting at any commit ``rev`` (the history before it is shared)."""
    return branch(repo, name, rev)


def list_tags(repo: Repository) -> list[dict[str, Any]]:
    """Every tag: ``{"name", "commit"}`` (annotated tags peeled), by name."""
    return [{"name": r[len("refs/tags/"):], "commit": c} for r, c in sorted(repo.tags().items())]


def tag(repo: Repository, name: str, rev: str = "HEAD", message: str | None = None) -> str:
    """Create a tag at ``rev``: annotated (a real git tag object) when a message is given."""
    ref, commit = _new_ref(repo, "tag", name, rev)
    target = repo.make_tag(name, commit, message) if message else commit
    repo.set_ref(ref, target, None, f"tag: {name}")
    return commit


def delete_tag(repo: Repository, name: str) -> None:
    """Delete tag ``name``."""
    ref = f"refs/tags/{name}"
    old = repo.ref_value(ref)
    if old is None:
        raise RefNotFound(f"no tag {name!r}", ref=name)
    repo.delete_ref(ref, old)
