"""``demoai remote``: named hub URLs, kept in the git config like git's own remotes."""
from __future__ import annotations

from typing import TYPE_CHECKING

from demoai.errors import RemoteNotFound, RepositoryExists
from demoai.store import Repository, check_ref_name, parse_remote_url

if TYPE_CHECKING:
    from demoai.http.hub import HttpEndpoint

__all__ = ["remote_add", "remote_remove", "remotes", "remote_url", "open_remote"]


def remotes(repo: Repository) -> dict[str, str]:
    """Remote name -> URL."""
    return repo.remotes()


def remote_add(repo: Repository, name: str, url: str) -> None:
    """Remember ``url`` as remote ``name``."""
    check_ref_name(name, "remote")
    parse_remote_url(url)
    if name in remotes(repo):
        raise RepositoryExists(f"remote {name!r} already exists", remote=name)
    repo.set_remote(name, url)


def remote_remove(repo: Repository, name: str) -> None:
    """Forget remote ``name`` and its remote-tracking refs."""
    if name not in remotes(repo):
        raise RemoteNotFound(f"no remote {name!r}", remote=name)
    repo.remove_remote(name)
    for ref, sha in repo.refs().items():
        if ref.startswith(f"refs/remotes/{name}/"):
            repo.delete_ref(ref, sha)


def remote_url(repo: Repository, remote: str) -> tuple[str, str | None]:
    """``(url, remote name or None)`` for a remote name or a URL."""
    if "://" in remote:
        return remote, None
    urls = remotes(repo)
    if remote not in urls:
        raise RemoteNotFound(f"no remote {remote!r} (add one with `demoai remote add {remote} URL`)",
                             remote=remote)
    return urls[remote], remote


def open_remote(url: str, token: str | None = None) -> "HttpEndpoint":
    """The HTTP endpoint of a hub repository URL."""
    from demoai.http.hub import HttpEndpoint
    return HttpEndpoint(url, token)
