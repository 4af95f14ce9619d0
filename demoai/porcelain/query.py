"""``demoai query SQL``: DuckDB over any dataset at any revision, plus the history itself.

In the SQL, ``table('data/train.jsonl')`` is the dataset at HEAD, ``table('PATH', 'REV')``
at any revision (``'INDEX'`` for the staged version), and ``commits`` is one row per
commit reachable from any branch or tag, with its lineage fields.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from demoai.errors import InvalidArtifact, QueryError
from demoai.objects import Dataset, decode_manifest
from demoai.porcelain.log import decorations, topo_order
from demoai.store import Repository, normalize_path
from demoai.store.kinds import load_table

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["query", "commits_table"]

_TABLE_CALL = re.compile(r"""\btable\(\s*'((?:[^']|'')*)'\s*(?:,\s*'((?:[^']|'')*)'\s*)?\)""", re.IGNORECASE)


def commits_table(repo: Repository) -> "pa.Table":
    """The commit graph as a table: id, parents, author, time, message, refs, lineage."""
    import pyarrow as pa
    heads = sorted(set(repo.branches().values()) | set(repo.tags().values()))
    deco = decorations(repo)
    rows = []
    for ci in topo_order(repo, heads):
        lin = repo.lineage(ci.id)
        env = lin.get("environment", {})
        rows.append({
            "id": ci.id, "short_id": ci.id[:12], "parents": list(ci.parents), "author": ci.author,
            "time": datetime.fromtimestamp(ci.time, tz=timezone.utc), "message": ci.message.rstrip("\n"),
            "refs": deco.get(ci.id, []), "command": lin.get("command"),
            "inputs": json.dumps(lin.get("inputs", {}), sort_keys=True),
            "parameters": json.dumps(lin.get("parameters", {}), sort_keys=True),
            "demoai_version": env.get("demoai"), "python": env.get("python"),
            "host_cpu": env.get("host", {}).get("cpu"), "lineage": json.dumps(lin, sort_keys=True),
        })
    schema = pa.schema([("id", pa.string()), ("short_id", pa.string()), ("parents", pa.list_(pa.string())),
                        ("author", pa.string()), ("time", pa.timestamp("s", tz="UTC")),
                        ("message", pa.string()), ("refs", pa.list_(pa.string())), ("command", pa.string()),
                        ("inputs", pa.string()), ("parameters", pa.string()),
                        ("demoai_version", pa.string()), ("python", pa.string()),
                        ("host_cpu", pa.string()), ("lineage", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


def _dataset_at(repo: Repository, path: str, rev: str) -> "pa.Table":
    path = normalize_path(path)
    if rev.upper() == "INDEX":
        entries = repo.index.read().entries
        if path not in entries:
            raise QueryError(f"table({path!r}, 'INDEX'): not staged")
        art = decode_manifest(entries[path], path)
    else:
        art = repo.artifact_at(rev, path)
    if not isinstance(art, Dataset):
        raise InvalidArtifact(f"table({path!r}): {path} is a {art.kind}, not a dataset", path=path)
    return load_table(repo, art)


def query(repo: Repository, sql: str) -> "pa.Table":
    """Run DuckDB ``sql`` with ``table(PATH[, REV])`` and ``commits`` available."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    try:
        registered: dict[tuple[str, str], str] = {}

        def substitute(m: re.Match[str]) -> str:
            path, rev = m.group(1).replace("''", "'"), (m.group(2) or "HEAD").replace("''", "'")
            if (path, rev) not in registered:
                name = f"__demoai_t{len(registered)}"
                con.register(name, _dataset_at(repo, path, rev))
                registered[(path, rev)] = name
            return registered[(path, rev)]

        rewritten = _TABLE_CALL.sub(substitute, sql)
        if re.search(r"\bcommits\b", rewritten, re.IGNORECASE):
            con.register("commits", commits_table(repo))
        try:
            rel = con.sql(rewritten)
            return rel.to_arrow_table() if rel is not None else pa.table({})
        except duckdb.Error as e:
            raise QueryError(f"query failed: {str(e).splitlines()[0]}", sql=sql) from None
    finally:
        con.close()


def to_rows(table: "pa.Table") -> list[dict[str, Any]]:
    """JSON-ready rows of a query result."""
    return table.to_pylist()
