"""What the terminal UI reads, lazily: history in pages with graph lanes, the artifacts a
commit changed, and dataset rows or query results a page at a time.

The TUI must paint at once on a repository of tens of thousands of commits and scroll a
million-row table in bounded memory, so nothing here reads a whole history or a whole table:

- :class:`HistoryWalker` walks every branch, tag (and optionally session) ref newest first,
  as ``log --all`` does by date, one page per call, and draws ``log --graph`` lanes as it goes;
- :func:`changed_paths` compares a commit's tree with its first parent's (manifests only),
  which is what filtering history by path or kind needs;
- :class:`DatasetPager` opens one dataset version once and hands out rows by offset (Lance
  ``take``/``limit``, never the whole table); :class:`QueryPager` pages a DuckDB result;
- :func:`row_last_change` finds the commit that last changed one row (by key);
  :func:`hub_status` compares branches with a remote (ahead/behind); :func:`scan_grid` and
  :func:`eval_records` read brain scans, gate decisions and arenas for their views.

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
           "QueryPager", "MAX_CELL", "RowChange", "row_last_change", "BranchSync", "HubStatus", "ahead_behind",
           "hub_status", "ScanGrid", "SCAN_VALUES", "scan_grid", "EvalRecords", "eval_records"]

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


# ---------------------------------------------------------------------------- one row's history
@dataclass(frozen=True)
class RowChange:
    """The commit that last changed one dataset row: ``status`` is ``added`` (the row, or
    the dataset, appeared there) or ``modified``; ``before``/``after`` the row's values."""

    commit: CommitSummary
    path: str
    key: str
    status: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def _row_at(repo: Repository, commit: str, path: str, key: str, value: str) -> dict[str, Any] | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from demoai.store.kinds import load_table
    raw = repo.tree_entries(commit).get(path)
    if raw is None:
        return None
    table = load_table(repo, decode_manifest(raw, path))
    if key not in table.column_names:
        return None
    hit = table.filter(pc.equal(pc.cast(table.column(key), pa.string()), value))
    return clean(hit.slice(0, 1).to_pylist()[0]) if hit.num_rows else None


def row_last_change(repo: Repository, path: str, key_value: Any, ref: str | None = None, *,
                    limit: int = 10_000) -> RowChange | None:
    """The commit, first-parent history from ``ref``, that last changed the row whose key is
    ``key_value`` (compared as text) in dataset ``path``: the newest commit whose version of
    that row differs from its parent's. Only versions of the dataset are read (commits that
    did not touch ``path`` are skipped by their tree entry). None when that is further back
    than ``limit`` commits; PathNotFound when there is no such row at ``ref``; InvalidArtifact
    when the dataset has no key."""
    from demoai.errors import PathNotFound
    name, cid = resolve_ref(repo, ref)
    path = normalize_path(path)
    raw = repo.tree_entries(cid).get(path)
    if raw is None:
        raise PathNotFound(f"{path} is not in {name}", path=path, ref=name)
    art = decode_manifest(raw, path)
    key = getattr(art, "key", None)
    if not key:
        raise InvalidArtifact(f"{path} has no key column, so its rows have no identity", path=path)
    value = str(key_value)
    row = _row_at(repo, cid, path, key, value)
    if row is None:
        raise PathNotFound(f"no row {key}={value} in {path} at {name}", path=path, ref=name)
    c, entry = cid, repo.entry_id(cid, path)
    for _ in range(limit):
        parents = repo.commit_info(c).parents
        if not parents:
            return RowChange(CommitSummary.of(repo.commit_info(c)), path, value, "added", None, row)
        p = parents[0]
        p_entry = repo.entry_id(p, path)
        if p_entry != entry:
            before = _row_at(repo, p, path, key, value) if p_entry is not None else None
            if before != row:
                return RowChange(CommitSummary.of(repo.commit_info(c), decorations(repo)), path, value,
                                 "added" if before is None else "modified", before, row)
        c, entry = p, p_entry
    return None


# ---------------------------------------------------------------------------- hub
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


# ---------------------------------------------------------------------------- records
@dataclass(frozen=True)
class ScanGrid:
    """A brain scan as a layer x module grid of one statistic (None where no tensor is)."""

    path: str
    value: str
    values: list[str]
    layers: list[int]
    modules: list[str]
    grid: list[list[float | None]]
    other: int                       # tensors outside the numbered layers


SCAN_VALUES = ("norm", "ratio", "max_abs", "std", "mean", "near_zero", "base_norm")


def scan_grid(repo: Repository, path: str, ref: str | None = None, value: str | None = None) -> ScanGrid:
    """The scan dataset at ``path`` (``scans/*.parquet``, written by ``demoai scan``) as a
    grid of ``value`` (default ``ratio`` for adapter and diff scans, else ``norm``)."""
    from demoai.store.kinds import load_table
    name, cid = resolve_ref(repo, ref)
    path = normalize_path(path)
    raw = repo.tree_entries(cid).get(path)
    if raw is None:
        from demoai.errors import PathNotFound
        raise PathNotFound(f"{path} is not in {name}", path=path, ref=name)
    rows = load_table(repo, decode_manifest(raw, path)).to_pylist()
    if not rows or "layer" not in rows[0] or "module" not in rows[0]:
        raise InvalidArtifact(f"{path} is not a scan (no layer and module columns)", path=path)
    have = [v for v in SCAN_VALUES if any(isinstance(r.get(v), (int, float)) for r in rows)]
    if value is None:
        value = "ratio" if "ratio" in have else "norm" if "norm" in have else (have or ["norm"])[0]
    if value not in have:
        raise InvalidArtifact(f"{path} has no {value!r} values (it has {', '.join(have)})", path=path)
    numbered = [r for r in rows if r.get("layer") is not None and isinstance(r.get(value), (int, float))]
    layers = sorted({int(r["layer"]) for r in numbered})
    modules = sorted({str(r["module"]) for r in numbered})
    grid: list[list[float | None]] = [[None] * len(modules) for _ in layers]
    li, mi = {x: i for i, x in enumerate(layers)}, {x: i for i, x in enumerate(modules)}
    for r in numbered:
        grid[li[int(r["layer"])]][mi[str(r["module"])]] = float(r[value])
    return ScanGrid(path, value, have, layers, modules, grid, len(rows) - len(numbered))


@dataclass(frozen=True)
class EvalRecords:
    """The gate decisions and arenas in the tree at a ref (manifests only)."""

    ref: str
    gates: list[dict[str, Any]]
    arenas: list[dict[str, Any]]


def eval_records(repo: Repository, ref: str | None = None) -> EvalRecords:
    """Every ``*.gate.json`` (outcome, metric, test, flips) and ``*.arena.json`` (ratings
    with intervals) at ``ref``."""
    name, cid = resolve_ref(repo, ref)
    gates, arenas = [], []
    for path, raw in sorted(repo.tree_entries(cid).items()):
        if not path.endswith((".gate.json", ".arena.json")):
            continue
        try:
            art = decode_manifest(raw, path)
        except Exception:
            continue
        if art.kind == "gate":
            gates.append({"path": path, "metric": art.metric, "outcome": art.outcome, "margin": art.margin,
                          "alpha": art.alpha, "test": clean(art.test), "refs": clean(art.refs),
                          "flips": {k: len(v) for k, v in (art.flips or {}).items() if isinstance(v, list)}})
        elif art.kind == "arena":
            arenas.append({"path": path, "name": art.name, "judge": clean(art.judge), "counts": clean(art.counts),
                           "rows": clean((art.leaderboard or {}).get("rows", []))})
    return EvalRecords(name, gates, arenas)
