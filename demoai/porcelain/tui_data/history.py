"""The history as the TUI reads it: :class:`HistoryWalker` hands out the commits of every
ref a page at a time with their ``log --graph`` lanes; :func:`changed_paths` and
:func:`commit_pane` describe one commit from its manifests (no table or blob is read)."""
from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass
from typing import Any

from demoai.objects import decode_manifest
from demoai.porcelain.browse import CommitSummary, clean
from demoai.porcelain.log import decorations, graph_step
from demoai.store import Repository
from demoai.store.sessions.log import SESSION_REF

__all__ = ["HistoryRow", "HistoryWalker", "changed_paths", "CommitPane", "commit_pane"]


@dataclass(frozen=True)
class HistoryRow:
    """A line of the graph: its lane prefix and the commit on it (None on a connector line)."""

    graph: str
    commit: CommitSummary | None


class HistoryWalker:
    """Commits reachable from every branch and tag (``sessions``: session refs too), in the
    order ``log --graph --all`` lists them (every child before its parents, newer first), one
    page at a time, each with its graph lanes. Thread-safe: pages may be read from a worker.

    The walk reads ``LOOKAHEAD`` commits past what it hands out, so that a commit is only
    handed out once its children are known; the order is then the one :func:`topo_order`
    computes over the whole history (it can differ only where commit times go backwards by
    more than the look-ahead). Each commit object is read once."""

    LOOKAHEAD = 256

    def __init__(self, repo: Repository, *, sessions: bool = False) -> None:
        self.repo = repo
        refs = dict(repo.branches())
        refs.update(repo.tags())
        if sessions:
            refs.update({r: c for r, c in repo.refs().items() if r.startswith(SESSION_REF)})
        self.deco = _decorations(repo) if sessions else decorations(repo)
        self.heads = sorted(set(refs.values()))
        self._walk: list[tuple[int, str]] = []       # (-time, id) of commits not read yet
        self._queued: dict[str, Any] = {}            # their commit records (read when queued)
        self._seen: set[str] = set()
        self._info: dict[str, Any] = {}              # read, not handed out yet
        self._left: dict[str, int] = {}              # children read and not handed out yet
        self._ready: list[tuple[int, str]] = []
        self._lanes: list[str] = []
        self._lock = threading.Lock()
        for c in self.heads:
            self._push(c)
        self.done = not self._walk

    def _push(self, cid: str) -> None:
        if cid not in self._seen:
            self._seen.add(cid)
            ci = self.repo.commit_info(cid)
            self._queued[cid] = ci
            heapq.heappush(self._walk, (-ci.time, cid))

    def _read_one(self) -> None:
        _, cid = heapq.heappop(self._walk)
        ci = self._queued.pop(cid)
        self._info[cid] = ci
        for p in ci.parents:
            self._left[p] = self._left.get(p, 0) + 1
            self._push(p)
        if not self._left.get(cid):
            heapq.heappush(self._ready, (-ci.time, cid))

    def _next(self) -> Any:
        while True:
            while self._walk and len(self._info) < self.LOOKAHEAD:
                self._read_one()
            while self._ready:
                _, cid = heapq.heappop(self._ready)
                if cid in self._info and not self._left.get(cid):
                    ci = self._info.pop(cid)
                    for p in ci.parents:
                        self._left[p] -= 1
                        if not self._left[p] and p in self._info:
                            heapq.heappush(self._ready, (-self._info[p].time, p))
                    return ci
            if not self._walk:
                return None
            self._read_one()

    def _lane_rows(self, ci: Any) -> list[HistoryRow]:
        self._lanes, prefix, links = graph_step(self._lanes, ci)
        return [HistoryRow(prefix, CommitSummary.of(ci, self.deco))] + [HistoryRow(x, None) for x in links]

    def next_page(self, n: int = 200) -> list[HistoryRow]:
        """The next ``n`` commits (and the connector lines between them); [] when done."""
        out: list[HistoryRow] = []
        with self._lock:
            for _ in range(n):
                ci = self._next()
                if ci is None:
                    break
                out.extend(self._lane_rows(ci))
            self.done = not self._walk and not self._info
        return out


def changed_paths(repo: Repository, commit: str) -> dict[str, tuple[str, str]]:
    """path -> (status, kind) of the artifacts ``commit`` changed against its first parent
    (every artifact for a root commit): manifests are compared, no table or blob is read."""
    ci = repo.commit_info(commit)
    new = repo.tree_entries(commit)
    old = repo.tree_entries(ci.parents[0]) if ci.parents else {}
    out: dict[str, tuple[str, str]] = {}
    for p in sorted(set(old) | set(new)):
        if old.get(p) == new.get(p):
            continue
        raw = new.get(p) if p in new else old[p]
        try:
            kind = decode_manifest(raw, p).kind
        except Exception:        # a kind this version cannot read is still a change
            kind = "unknown"
        out[p] = ("added" if p not in old else "deleted" if p not in new else "modified", kind)
    return out


@dataclass(frozen=True)
class CommitPane:
    """What the history screen shows beside a commit: the commit, its lineage record and the
    artifacts it changed (path -> (status, kind)), without computing the typed diff."""

    commit: CommitSummary
    lineage: dict[str, Any]
    changes: dict[str, tuple[str, str]]


def _decorations(repo: Repository) -> dict[str, list[str]]:
    """commit -> ref names, as ``log --decorate`` and the walker's session refs name them."""
    deco = decorations(repo)
    for r, c in sorted(repo.refs().items()):
        if r.startswith(SESSION_REF):
            deco.setdefault(c, []).append("session: " + r[len(SESSION_REF):])
    return deco


def commit_pane(repo: Repository, commit: str) -> CommitPane:
    """The :class:`CommitPane` of ``commit`` (a full commit id or any revision)."""
    cid = repo.resolve(commit)
    try:
        lin = repo.lineage(cid)
    except ValueError as e:
        lin = {"error": f"unreadable lineage record ({e})"}
    return CommitPane(CommitSummary.of(repo.commit_info(cid), _decorations(repo)),
                      clean(lin) if isinstance(lin, dict) else {"value": clean(lin)},
                      changed_paths(repo, cid))
