"""What the terminal UI reads, lazily: history in pages with graph lanes, the artifacts a
commit changed, and dataset rows or query results a page at a time.

The TUI must paint at once on a repository of tens of thousands of commits and scroll a
million-row table in bounded memory, so nothing here reads a whole history or a whole table:

- :class:`HistoryWalker` walks every branch, tag (and optionally session) ref newest first,
  as ``log --all`` does by date, one page per call, and draws ``log --graph`` lanes as it goes;
- :func:`changed_paths` compares a commit's tree with its first parent's (manifests only),
  which is what filtering history by path or kind needs;
- :class:`DatasetPager` opens one dataset version once and hands out rows by offset (Lance
  ``take``/``limit``, never the whole table); :class:`QueryPager` pages a DuckDB result.

Rows come back as display text (cells cut at ``MAX_CELL`` characters), which is what a table
widget draws and keeps a page's memory small.
"""
from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass, field
from typing import Any

from demoai.errors import InvalidArtifact
from demoai.objects import Dataset, decode_manifest
from demoai.porcelain.browse import CommitSummary, clean, resolve_ref
from demoai.porcelain.log import decorations
from demoai.porcelain.query import query
from demoai.store import Repository, normalize_path
from demoai.store.kinds import handler_for
from demoai.store.sessions.log import SESSION_REF

__all__ = ["HistoryRow", "HistoryWalker", "changed_paths", "commit_pane", "CommitPane", "cell_text", "DatasetPager",
           "QueryPager", "MAX_CELL"]

MAX_CELL = 120        # characters of one cell kept for display


def cell_text(v: Any) -> str:
    """One cell as display text: None as empty, nested values as compact JSON-ish text,
    cut at ``MAX_CELL`` characters, newlines shown as ``⏎``."""
    if v is None:
        return ""
    if isinstance(v, float):
        s = f"{v:.6g}"
    elif isinstance(v, (dict, list, tuple)):
        import json
        s = json.dumps(clean(v), ensure_ascii=False, separators=(",", ":"))
    else:
        s = str(clean(v))
    s = s.replace("\r\n", "⏎").replace("\n", "⏎").replace("\t", " ")
    return s if len(s) <= MAX_CELL else s[:MAX_CELL - 1] + "…"


# ---------------------------------------------------------------------------- history
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
    more than the look-ahead)."""

    LOOKAHEAD = 256

    def __init__(self, repo: Repository, *, sessions: bool = False) -> None:
        self.repo = repo
        refs = dict(repo.branches())
        refs.update(repo.tags())
        if sessions:
            refs.update({r: c for r, c in repo.refs().items() if r.startswith(SESSION_REF)})
        self.deco = decorations(repo)
        if sessions:
            for r, c in sorted(refs.items()):
                if r.startswith(SESSION_REF):
                    self.deco.setdefault(c, []).append("session: " + r[len(SESSION_REF):])
        self.heads = sorted(set(refs.values()))
        self._walk: list[tuple[int, str]] = []       # (-time, id) of commits not read yet
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
            heapq.heappush(self._walk, (-self.repo.commit_info(cid).time, cid))

    def _read_one(self) -> None:
        _, cid = heapq.heappop(self._walk)
        ci = self.repo.commit_info(cid)
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
        lanes = self._lanes
        if ci.id not in lanes:
            lanes.append(ci.id)
        col = lanes.index(ci.id)
        out = [HistoryRow(" ".join("*" if i == col else "|" for i in range(len(lanes))),
                          CommitSummary.of(ci, self.deco))]
        before = len(lanes)
        if ci.parents:
            first = ci.parents[0]
            if first in lanes and lanes.index(first) != col:
                lanes.pop(col)
            else:
                lanes[col] = first
            for p in ci.parents[1:]:
                if p not in lanes:
                    lanes.insert(col + 1, p)
        else:
            lanes.pop(col)
        dedup: list[str] = []
        for lane in lanes:
            if lane not in dedup:
                dedup.append(lane)
        self._lanes = dedup
        if len(dedup) > before:
            out.append(HistoryRow(" ".join("|" for _ in range(col + 1)) + "\\"
                                  + " |" * (len(dedup) - col - 2), None))
        elif len(dedup) < before and dedup:
            out.append(HistoryRow(" ".join("|" for _ in range(len(dedup))) + "/", None))
        return out

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


# ---------------------------------------------------------------------------- pages of rows
@dataclass
class DatasetPager:
    """One dataset version, opened once: ``columns``, ``total`` rows, ``schema`` (name and
    type per column), ``key``; :meth:`fetch` reads rows by offset with a limit."""

    path: str
    ref: str
    commit: str
    columns: list[str]
    total: int
    key: str | None
    schema: list[dict[str, Any]] = field(default_factory=list)
    format: str | None = None
    _repo: Any = None
    _art: Any = None

    @classmethod
    def open(cls, repo: Repository, path: str, ref: str | None = None) -> "DatasetPager":
        """The dataset at ``path`` in ``ref`` (default branch): InvalidArtifact when it is
        not tabular, PathNotFound/RefNotFound as :mod:`browse` raises them."""
        name, cid = resolve_ref(repo, ref)
        path = normalize_path(path)
        raw = repo.tree_entries(cid).get(path)
        if raw is None:
            from demoai.errors import PathNotFound
            raise PathNotFound(f"{path} is not in {name}", path=path, ref=name)
        art = decode_manifest(raw, path)
        h = handler_for(art)
        if not h.tabular:
            raise InvalidArtifact(f"{path} is a {art.kind}, not a table", path=path)
        fields = art.schema.get("fields", []) if isinstance(art, Dataset) else []
        return cls(path, name, cid, h.columns(art), h.row_count(art),
                   getattr(art, "key", None), [clean(f) for f in fields],
                   getattr(art, "format", None), repo, art)

    def fetch(self, offset: int, limit: int) -> list[list[str]]:
        """Rows ``offset`` .. ``offset + limit`` as display text, one list per row."""
        if offset >= self.total or limit <= 0:
            return []
        rows = handler_for(self._art).preview_rows(self._repo, self._art, limit, offset)
        return [[cell_text(r.get(c)) for c in self.columns] for r in rows]


@dataclass
class QueryPager:
    """A DuckDB query's result (``demoai query`` semantics), paged like a dataset."""

    sql: str
    columns: list[str]
    total: int
    _table: Any = None

    @classmethod
    def run(cls, repo: Repository, sql: str) -> "QueryPager":
        """Run ``sql`` (``table('PATH'[, 'REV'])``, ``commits``); QueryError on bad SQL."""
        t = query(repo, sql)
        return cls(sql, list(t.column_names), t.num_rows, t)

    def fetch(self, offset: int, limit: int) -> list[list[str]]:
        """Rows ``offset`` .. ``offset + limit`` of the result as display text."""
        part = self._table.slice(offset, limit).to_pylist()
        return [[cell_text(r.get(c)) for c in self.columns] for r in part]


# ---------------------------------------------------------------------------- one commit
@dataclass(frozen=True)
class CommitPane:
    """What the history screen shows beside a commit: the commit, its lineage record and the
    artifacts it changed (path -> (status, kind)), without computing the typed diff."""

    commit: CommitSummary
    lineage: dict[str, Any]
    changes: dict[str, tuple[str, str]]


def commit_pane(repo: Repository, commit: str) -> CommitPane:
    """The :class:`CommitPane` of ``commit`` (a full commit id or any revision)."""
    cid = repo.resolve(commit)
    try:
        lin = repo.lineage(cid)
    except ValueError as e:
        lin = {"error": f"unreadable lineage record ({e})"}
    return CommitPane(CommitSummary.of(repo.commit_info(cid), decorations(repo)),
                      clean(lin) if isinstance(lin, dict) else {"value": clean(lin)},
                      changed_paths(repo, cid))
