"""``demoai data label``: people label rows (or pick the better of two texts), and the labels
are committed as a dataset: who labelled what and when.

The loop is the caller's: :func:`label` hands each row to ``ask(item)`` and takes back the
answer (a label, its number from 1, ``s`` to skip the row, ``q`` or None to stop); a wrong
answer is asked again with ``item.error`` set. The labels go to OUT (default
``PATH_stem.labels.jsonl``), keyed ``label_id`` (``KEY@LABELLER``), with ``key``, ``label``
(``a``, ``b`` or ``tie`` in pairwise mode), the columns shown, ``labeller`` (the
repository's identity) and ``labelled_at`` (UTC, ISO 8601). Rows this labeller already
labelled in OUT are not asked again, so a stopped session resumes.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pyarrow as pa

from demoai.errors import InvalidArtifact, PathNotFound
from demoai.porcelain.data.prepare import check_worktree, load_source, text_columns, write_commit
from demoai.store import Repository

__all__ = ["LabelItem", "LabelResult", "label", "PAIRWISE_CHOICES"]

PAIRWISE_CHOICES = ("a", "b", "tie")
_SCHEMA = pa.schema([("label_id", pa.string()), ("key", pa.string()), ("label", pa.string()),
                     ("columns", pa.string()), ("labeller", pa.string()),
                     ("labelled_at", pa.string())])


@dataclass
class LabelItem:
    """One row to label: its key, position (``index`` of ``total``), the texts by column,
    the choices, and the complaint about the last answer (``error``)."""

    key: str
    index: int
    total: int
    texts: dict[str, str]
    choices: list[str]
    pairwise: bool = False
    error: str | None = None


@dataclass
class LabelResult:
    """The session: labels given (key -> label), rows skipped, the commit and OUT."""

    path: str
    out: str
    labeller: str
    commit: str | None
    labels: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    remaining: int = 0
    stopped: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


def _answer(raw: str | None, choices: Sequence[str]) -> str | None:
    """A choice, ``"skip"``, ``"quit"``, or None for an answer that is none of these."""
    if raw is None:
        return "quit"
    a = raw.strip()
    if a.lower() in ("q", "quit"):
        return "quit"
    if a.lower() in ("s", "skip"):
        return "skip"
    if a.isdigit() and 1 <= int(a) <= len(choices):
        return choices[int(a) - 1]
    for c in choices:
        if a.lower() == c.lower():
            return c
    return None


def label(repo: Repository, path: str, *, columns: Sequence[str], ask: Callable[[LabelItem],
          str | None], labels: Sequence[str] = (), pairwise: bool = False,
          out: str | None = None, limit: int | None = None, rev: str = "HEAD",
          labeller: str | None = None, message: str | None = None) -> LabelResult:
    """Ask for a label (one of ``labels``) of each row's ``columns``, or with ``pairwise``
    which of two columns is better (``a``, ``b``, ``tie``), at most ``limit`` rows, and
    commit the labels given (see the module docstring)."""
    from demoai.porcelain._util import repo_path
    src = load_source(repo, path, rev)
    cols = list(columns)
    if pairwise:
        if len(cols) != 2:
            raise InvalidArtifact("label --pairwise: name the two columns to compare "
                                  "(--column A --column B)", reason="columns")
        choices = list(PAIRWISE_CHOICES)
    else:
        choices = [x.strip() for x in labels if x.strip()]
        if len(choices) < 2 or len(set(choices)) != len(choices):
            raise InvalidArtifact("label: give at least two distinct labels (--labels a,b)",
                                  reason="labels")
        if not cols:
            raise InvalidArtifact("label: name the column to show (--column)", reason="columns")
    text_columns(src.table, cols, src.art.key, "label")
    rel = repo_path(repo, out) if out else str(Path(src.path).with_name(
        f"{Path(src.path).stem}.labels.jsonl"))
    if Path(rel).suffix.lower() not in (".jsonl", ".parquet", ".csv"):
        raise InvalidArtifact(f"{rel}: the labels file must end in .jsonl, .parquet or .csv",
                              path=rel)
    who = labeller or repo.identity()
    prev = None
    try:
        prev = load_source(repo, rel, rev, rel=rel)
    except PathNotFound:
        pass
    check_worktree(repo, [rel])
    done = {r["key"] for r in (prev.table.to_pylist() if prev else []) if r["labeller"] == who}
    keys = src.keys
    todo = [i for i, k in enumerate(keys) if k not in done]
    if limit is not None:
        todo = todo[:limit]
    texts = {c: src.table.column(c).to_pylist() for c in cols}
    res = LabelResult(src.path, rel, who, None)
    new: list[dict[str, Any]] = []
    for n, i in enumerate(todo):
        item = LabelItem(keys[i], n + 1, len(todo), {c: texts[c][i] or "" for c in cols},
                         choices, pairwise)
        while True:
            got = _answer(ask(item), choices)
            if got is not None:
                break
            item.error = f"answer one of {', '.join(choices)} (or 1-{len(choices)}), s, q"
        if got == "quit":
            res.stopped = True
            res.remaining = len(todo) - n
            break
        if got == "skip":
            res.skipped += 1
            continue
        when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        res.labels[keys[i]] = got
        new.append({"label_id": f"{keys[i]}@{who}", "key": keys[i], "label": got,
                    "columns": ",".join(cols), "labeller": who, "labelled_at": when})
    if not new:
        return res
    table = pa.Table.from_pylist(new, schema=_SCHEMA)
    if prev is not None:
        table = pa.concat_tables([prev.table.cast(_SCHEMA), table])
    fmt = {".jsonl": "jsonl", ".parquet": "parquet", ".csv": "csv"}[Path(rel).suffix.lower()]
    mode = "pairwise" if pairwise else "labels"
    msg = message or f"data label {src.path}: {len(new)} {mode} by {who}"
    res.commit = write_commit(repo, {rel: (table, fmt)}, msg, keys={rel: "label_id"},
                              inputs={"source": src.art.digest},
                              parameters={"verb": "label", "source": src.path, "mode": mode,
                                          "choices": choices, "columns": cols,
                                          "labeller": who, "rows": len(new)})
    return res
