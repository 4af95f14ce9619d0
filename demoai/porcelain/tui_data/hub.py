"""Branches here against a hub: :func:`hub_status` asks the hub for its refs (or, when it
cannot be reached, reads the remote-tracking refs of the last fetch or push) and counts
commits ahead and behind per branch with :func:`ahead_behind`."""
from __future__ import annotations

import heapq
from dataclasses import dataclass

from demoai.store import Repository

__all__ = ["BranchSync", "HubStatus", "ahead_behind", "hub_status"]


@dataclass(frozen=True)
class BranchSync:
    """One branch here and on the remote: commits ``ahead`` (here, not there) and ``behind``
    (there, not here); both None when the remote's commit is not here yet (fetch first)."""

    branch: str
    local: str | None
    remote: str | None
    ahead: int | None
    behind: int | None

    @property
    def state(self) -> str:
        """``up to date``, ``ahead``, ``behind``, ``diverged``, ``local only``,
        ``remote only`` or ``fetch to compare``."""
        if self.remote is None:
            return "local only"
        if self.local is None:
            return "remote only"
        if self.ahead is None or self.behind is None:
            return "fetch to compare"
        if self.ahead and self.behind:
            return "diverged"
        return "ahead" if self.ahead else "behind" if self.behind else "up to date"


@dataclass(frozen=True)
class HubStatus:
    """A remote and every branch compared: ``source`` is ``hub`` (its refs, asked just now)
    or ``tracking`` (the remote-tracking refs of the last fetch or push, with ``error``
    saying why the hub was not asked)."""

    remote: str
    url: str
    source: str
    branches: list[BranchSync]
    error: str | None = None


def ahead_behind(repo: Repository, a: str, b: str) -> tuple[int, int]:
    """(commits reachable from ``a`` and not ``b``, from ``b`` and not ``a``), walking both
    histories newest first and stopping where only shared commits are left (as git does)."""
    if a == b:
        return 0, 0
    flags: dict[str, int] = {a: 1}
    flags[b] = flags.get(b, 0) | 2
    heap = [(-repo.commit_info(c).time, c) for c in flags]
    heapq.heapify(heap)
    # Counted at the end, not when popped: commits made in the same second pop in any order,
    # so a commit may learn late that the other side reaches it too; it is then pushed again
    # to pass that on to its parents.
    while heap and any(flags[c] != 3 for _, c in heap):
        _, c = heapq.heappop(heap)
        f = flags[c]
        for p in repo.commit_info(c).parents:
            old = flags.get(p, 0)
            if old | f != old:
                flags[p] = old | f
                heapq.heappush(heap, (-repo.commit_info(p).time, p))
    return sum(f == 1 for f in flags.values()), sum(f == 2 for f in flags.values())


def hub_status(repo: Repository, remote: str = "origin", *, token: str | None = None,
               online: bool = True) -> HubStatus:
    """Every branch here and on ``remote`` (a name or URL) with ahead/behind counts. With
    ``online`` the hub is asked for its refs; if it cannot be reached (or ``online`` is
    False) the remote-tracking refs stand in for it. RemoteNotFound for an unknown remote."""
    from demoai.errors import RemoteNotFound
    from demoai.porcelain.remote import open_remote, remote_url
    url, name = remote_url(repo, remote)
    theirs: dict[str, str] | None = None
    error = None
    if online:
        try:
            ep = open_remote(url, token)
            try:
                refs = ep.refs()["refs"]
            finally:
                ep.close()
            theirs = {r[len("refs/heads/"):]: s for r, s in refs.items() if r.startswith("refs/heads/")}
        except RemoteNotFound:
            theirs = {}                   # not on the hub yet: every branch is local only
        except Exception as e:            # unreachable, refused, ...: say so, use tracking refs
            error = str(e) or type(e).__name__
    source = "hub" if theirs is not None else "tracking"
    if theirs is None:
        prefix = f"refs/remotes/{name or 'fetched'}/"
        theirs = {r[len(prefix):]: s for r, s in repo.refs().items() if r.startswith(prefix)}
    mine = {r.removeprefix("refs/heads/"): c for r, c in repo.branches().items()}
    rows = []
    for b in sorted(set(mine) | set(theirs)):
        lo, re_ = mine.get(b), theirs.get(b)
        ahead = behind = None
        if lo and re_ and repo.has_object(re_):
            ahead, behind = ahead_behind(repo, lo, re_)
        rows.append(BranchSync(b, lo, re_, ahead, behind))
    return HubStatus(name or url, url, source, rows, error)
