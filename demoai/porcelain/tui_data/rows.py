"""Rows as the TUI reads them, a page at a time and as display text: one dataset version
(:class:`DatasetPager`, rows by offset from Lance, never the whole table), a DuckDB query's
result (:class:`QueryPager`), and the commit that last changed one row
(:func:`row_last_change`). Cells come back cut at ``MAX_CELL`` characters, which is what a
table widget draws and keeps a page's memory small."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from demoai.errors import InvalidArtifact, PathNotFound
from demoai.objects import Dataset, decode_manifest
from demoai.porcelain.browse import CommitSummary, clean, resolve_ref
from demoai.porcelain.log import decorations
from demoai.store import Repository, normalize_path
from demoai.store.kinds import handler_for

__all__ = ["MAX_CELL", "cell_text", "DatasetPager", "QueryPager", "RowChange", "row_last_change"]

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
        from demoai.porcelain.query import query
        t = query(repo, sql)
        return cls(sql, list(t.column_names), t.num_rows, t)

    def fetch(self, offset: int, limit: int) -> list[list[str]]:
        """Rows ``offset`` .. ``offset + limit`` of the result as display text."""
        part = self._table.slice(offset, limit).to_pylist()
        return [[cell_text(r.get(c)) for c in self.columns] for r in part]


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
