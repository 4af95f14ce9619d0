"""``demoai query SQL``: DuckDB over any dataset at any revision, plus the history itself.

In the SQL, ``table('data/train.jsonl')`` is the dataset at HEAD, ``table('PATH', 'REV')``
at any revision (``'INDEX'`` for the staged version), and ``commits`` is one row per
commit reachable from any branch or tag, with its lineage fields; ``evals`` is one row per
evaluation result and metric, at the commit that recorded it (a leaderboard over history).

A query over ``commits`` without an ORDER BY (anywhere in it) returns its rows in history
order, newest first, as ``log --all`` lists them, whenever the result has an ``id`` or
``short_id`` column of commit ids: SQL itself promises no order, and DuckDB's grouping
or DISTINCT would otherwise hand them back in hash order.
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

__all__ = ["query", "commits_table", "evals_table", "in_history_order"]

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


def evals_table(repo: Repository) -> "pa.Table":
    """Every evaluation result in the history, one row per metric, at the commit that wrote
    it (a result unchanged from the first parent is not repeated): commit, time, path, suite,
    model, task, metric, value, stderr, interval, examples, errored and the pinned digests."""
    import pyarrow as pa
    from demoai.objects import EvalResult
    heads = sorted(set(repo.branches().values()) | set(repo.tags().values()))
    rows: list[dict[str, Any]] = []
    cache: dict[str, dict[str, bytes]] = {}

    def evals_at(commit: str) -> dict[str, bytes]:
        if commit not in cache:
            cache[commit] = {p: raw for p, raw in repo.tree_entries(commit).items()
                             if p.endswith(".eval.json")}
        return cache[commit]
    for ci in topo_order(repo, heads):
        parent = evals_at(ci.parents[0]) if ci.parents else {}
        for path, raw in sorted(evals_at(ci.id).items()):
            if parent.get(path) == raw:
                continue
            res = decode_manifest(raw, path)
            if not isinstance(res, EvalResult):
                continue
            for metric, s in res.scores.items():
                ci_ = s.get("ci") or [None, None]
                rows.append({
                    "commit": ci.id, "short_id": ci.id[:12],
                    "time": datetime.fromtimestamp(ci.time, tz=timezone.utc), "path": path,
                    "suite": res.suite_name, "model": res.model_ref, "task": res.task,
                    "metric": metric, "value": float(s["value"]),
                    "stderr": s.get("stderr"), "ci_low": ci_[0], "ci_high": ci_[1],
                    "examples": res.counts.get("examples"), "errored": res.counts.get("errored"),
                    "model_digest": res.model, "adapter_digest": res.adapter,
                    "dataset_digest": res.dataset, "suite_digest": res.suite, "result": res.digest})
    schema = pa.schema([("commit", pa.string()), ("short_id", pa.string()),
                        ("time", pa.timestamp("s", tz="UTC")), ("path", pa.string()),
                        ("suite", pa.string()), ("model", pa.string()), ("task", pa.string()),
                        ("metric", pa.string()), ("value", pa.float64()), ("stderr", pa.float64()),
                        ("ci_low", pa.float64()), ("ci_high", pa.float64()), ("examples", pa.int64()),
                        ("errored", pa.int64()), ("model_digest", pa.string()),
                        ("adapter_digest", pa.string()), ("dataset_digest", pa.string()),
                        ("suite_digest", pa.string()), ("result", pa.string())])
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
        commits = None
        if re.search(r"\bcommits\b", rewritten, re.IGNORECASE):
            commits = commits_table(repo)
            con.register("commits", commits)
        if re.search(r"\bevals\b", rewritten, re.IGNORECASE):
            con.register("evals", evals_table(repo))
        try:
            rel = con.sql(rewritten)
            result = rel.to_arrow_table() if rel is not None else pa.table({})
        except duckdb.Error as e:
            raise QueryError(f"query failed: {str(e).splitlines()[0]}", sql=sql) from None
        if commits is not None and result.num_rows > 1 and not _has_order_by(con, rewritten):
            result = in_history_order(result, commits)
        return result
    finally:
        con.close()


def _has_order_by(con: Any, sql: str) -> bool:
    """Whether ``sql`` orders its rows anywhere (DuckDB's own parse; unparsable: say yes,
    so nothing is reordered behind the writer's back)."""
    import duckdb
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    except (duckdb.Error, TypeError, ValueError):
        return True
    if tree.get("error"):
        return True

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            if node.get("type") == "ORDER_MODIFIER" and node.get("orders"):
                return True      # (an aggregate carries an empty one)
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False
    return walk(tree)


def in_history_order(result: "pa.Table", commits: "pa.Table") -> "pa.Table":
    """``result``'s rows sorted as ``commits`` lists them (newest first), by its ``id`` or
    ``short_id`` column; unchanged when neither holds only commit ids. Stable: rows of one
    commit keep their order, rows without a commit id go last."""
    ids = commits.column("id").to_pylist()
    for col, key in (("id", lambda c: c), ("short_id", lambda c: c[:12])):
        if col not in result.column_names:
            continue
        rank = {key(c): i for i, c in enumerate(ids)}
        values = result.column(col).to_pylist()
        if not all(v is None or (isinstance(v, str) and v in rank) for v in values):
            continue
        last = len(ids)
        order = sorted(range(len(values)), key=lambda i: last if values[i] is None else rank[values[i]])
        return result.take(order)
    return result


def to_rows(table: "pa.Table") -> list[dict[str, Any]]:
    """JSON-ready rows of a query result."""
    return table.to_pylist()
