"""``demoai fetch`` and ``demoai pull``: bring a hub's history here.

Fetch copies what this repository lacks, checks it is complete, then moves refs:
branches into ``refs/remotes/REMOTE/*`` (never your own branches), new tags, and sessions
(created, or fast-forwarded when the hub's log extends yours; a session that diverged is
left alone and reported). Pull is fetch, then a merge of the current branch's
remote-tracking branch (a fast-forward when possible).
"""
from __future__ import annotations

from typing import Any, Callable

from demoai.errors import RefNotFound
from demoai.porcelain.remote import open_remote, remote_url
from demoai.store import Repository
from demoai.store.transfer import LocalEndpoint, check_complete, check_shared_ref, is_ancestor, transfer

__all__ = ["fetch", "pull"]


def fetch(repo: Repository, remote: str = "origin", *, token: str | None = None,
          progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Fetch everything the remote shares; returns refs moved and transfer figures."""
    url, name = remote_url(repo, remote)
    track = name or "fetched"
    ep = open_remote(url, token)
    try:
        answer = ep.refs()
        theirs = {check_shared_ref(r): s for r, s in answer["refs"].items()}
        mine = repo.refs()
        wants = sorted({s for s in theirs.values() if not repo.has_object(s)})
        haves = sorted(set(mine.values()))
        stats = transfer(ep, LocalEndpoint(repo), wants, haves, progress) if wants else {}
        check_complete(repo, sorted(set(theirs.values())), haves)
        moved, kept = [], []
        with repo.commit_lock():
            mine = repo.refs()
            for ref, sha in sorted(theirs.items()):
                if ref.startswith("refs/heads/"):
                    local = f"refs/remotes/{track}/{ref[len('refs/heads/'):]}"
                elif ref.startswith("refs/tags/"):
                    local = ref
                    if mine.get(ref) not in (None, sha):
                        kept.append({"ref": ref, "reason": "the local tag points elsewhere"})
                        continue
                else:
                    local = ref
                    old = mine.get(ref)
                    if old is not None and old != sha and not is_ancestor(repo, old, sha):
                        kept.append({"ref": ref, "reason": "diverged from the hub's (kept yours)"})
                        continue
                old = mine.get(local)
                if old != sha:
                    repo.set_ref(local, sha, old, f"fetch from {url}")
                    moved.append({"ref": local, "old": old, "new": sha})
        stats.update(bytes_sent=ep.client.bytes_up, bytes_received=ep.client.bytes_down)
        return {"url": url, "remote": track, "head": answer.get("head"), "updated": moved,
                "kept": kept, "stats": stats}
    finally:
        ep.close()


def pull(repo: Repository, remote: str = "origin", *, token: str | None = None,
         progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Fetch, then merge the current branch's counterpart on the remote into it."""
    from demoai.porcelain.merge import merge
    fetched = fetch(repo, remote, token=token, progress=progress)
    branch = repo.current_branch()
    if branch is None:
        raise RefNotFound("pull needs HEAD on a branch")
    tracking = f"refs/remotes/{fetched['remote']}/{branch}"
    if repo.ref_value(tracking) is None:
        raise RefNotFound(f"the remote has no branch {branch!r}", ref=branch)
    if repo.head_commit() is None:   # an empty branch: take the remote's as it is
        from demoai.porcelain.checkout import checkout
        repo.set_ref(f"refs/heads/{branch}", repo.ref_value(tracking), None, "pull")
        checkout(repo, branch, force=True, progress=progress)
        merged: dict[str, Any] = {"fast_forward": True}
    else:
        merged = merge(repo, tracking, progress=progress)
    return {"fetch": fetched, "merge": merged}
