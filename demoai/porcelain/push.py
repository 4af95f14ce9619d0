"""``demoai push``: send a branch, tag or session (or all of them) to a hub.

Only what the hub lacks travels (see :mod:`demoai.store.transfer`); refs move on the hub
with compare-and-swap once everything they reach has arrived; a push that would drop the
hub's commits is refused unless ``force``. A push that fails half-way keeps what arrived:
running it again sends only the rest.
"""
from __future__ import annotations

from typing import Any, Callable

from demoai.errors import NonFastForward, RefNotFound, RemoteNotFound
from demoai.porcelain.remote import open_remote, remote_url
from demoai.store import Repository
from demoai.store.transfer import LocalEndpoint, check_shared_ref, is_ancestor, transfer

__all__ = ["push", "resolve_push_refs"]


def resolve_push_refs(repo: Repository, specs: list[str] | None, all_refs: bool) -> dict[str, str]:
    """Full ref name -> commit for what to push. A spec is a full ref, ``session:NAME``,
    ``sessions/NAME``, a branch or a tag; none means the current branch."""
    refs = repo.refs()
    if all_refs:
        return {r: s for r, s in refs.items() if r.startswith(("refs/heads/", "refs/tags/", "refs/sessions/"))}
    if not specs:
        branch = repo.current_branch()
        if branch is None or f"refs/heads/{branch}" not in refs:
            raise RefNotFound("nothing to push: HEAD is not on a branch with commits")
        specs = [branch]
    out = {}
    for spec in specs:
        if spec.startswith("session:"):
            spec = "sessions/" + spec[len("session:"):]
        cands = [spec] if spec.startswith("refs/") else [f"refs/heads/{spec}", f"refs/tags/{spec}", f"refs/{spec}"]
        ref = next((c for c in cands if c in refs), None)
        if ref is None:
            raise RefNotFound(f"no branch, tag or session {spec!r} to push", ref=spec)
        out[check_shared_ref(ref)] = refs[ref]
    return out


def push(repo: Repository, remote: str = "origin", refs: list[str] | None = None, *,
         all_refs: bool = False, force: bool = False, create: bool = True, private: bool = True,
         token: str | None = None, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Push ``refs`` to ``remote`` (a remote name or a URL); returns what moved and the
    bytes sent. ``create``: make the hub repository (``private`` or public) if missing."""
    url, name = remote_url(repo, remote)
    local = resolve_push_refs(repo, refs, all_refs)
    ep = open_remote(url, token)
    created = False
    try:
        try:
            theirs = ep.refs()["refs"]
        except RemoteNotFound:
            if not create:
                raise
            ep.create(private=private)
            created, theirs = True, {}
        updates = []
        for ref, new in sorted(local.items()):
            old = theirs.get(ref)
            if old == new:
                continue
            if old is not None and not force and not ref.startswith("refs/tags/"):
                if not is_ancestor(repo, old, new):
                    raise NonFastForward(f"{ref}: the hub has commits this repository does not "
                                         f"contain (fetch and merge first, or push --force)", ref=ref)
            updates.append({"ref": ref, "old": old, "new": new})
        haves = [s for s in theirs.values() if repo.has_object(s)]
        stats = transfer(LocalEndpoint(repo), ep, [u["new"] for u in updates], haves, progress)
        done = ep.update_refs(updates, force=force) if updates else []
        if name is not None:
            for u in done:
                if u["ref"].startswith("refs/heads/"):
                    _track(repo, name, u["ref"][len("refs/heads/"):], u["new"])
        stats.update(bytes_sent=ep.client.bytes_up, bytes_received=ep.client.bytes_down)
        return {"url": url, "created": created, "updated": done,
                "up_to_date": sorted(set(local) - {u["ref"] for u in updates}), "stats": stats}
    finally:
        ep.close()


def _track(repo: Repository, remote: str, branch: str, sha: str) -> None:
    ref = f"refs/remotes/{remote}/{branch}"
    old = repo.ref_value(ref)
    if old != sha:
        repo.set_ref(ref, sha, old, f"update by push to {remote}")
