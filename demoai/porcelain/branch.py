"""``demoai branch``, ``demoai tag`` and ``demoai fork``: named pointers into history."""
from __future__ import annotations

from typing import Any

from dulwich.objects import Tag

from demoai.errors import InvalidRefName, RefConflict, RefNotFound
from demoai.store.git.repo import Repository, check_ref_name, default_identity

__all__ = ["branch", "list_branches", "delete_branch", "tag", "list_tags", "delete_tag", "fork"]


def list_branches(repo: Repository) -> list[dict[str, Any]]:
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
    return [{"name": r[len("refs/tags/"):], "commit": c} for r, c in sorted(repo.tags().items())]


def tag(repo: Repository, name: str, rev: str = "HEAD", message: str | None = None) -> str:
    """Create a tag at ``rev``: annotated (a real git tag object) when a message is given."""
    ref, commit = _new_ref(repo, "tag", name, rev)
    target = commit
    if message:
        import time
        t = Tag()
        t.name = name.encode()
        t.object = (repo.git[commit.encode()].__class__, commit.encode())
        t.tagger = default_identity().encode()
        t.tag_time = int(time.time())
        t.tag_timezone = 0
        t.message = (message if message.endswith("\n") else message + "\n").encode()
        repo.add_objects([t])
        target = t.id.decode()
    repo.set_ref(ref, target, None, f"tag: {name}")
    return commit


def delete_tag(repo: Repository, name: str) -> None:
    ref = f"refs/tags/{name}"
    old = repo.ref_value(ref)
    if old is None:
        raise RefNotFound(f"no tag {name!r}", ref=name)
    repo.delete_ref(ref, old)
