"""Git conflict blocks in dataset files: what a merge writes where rows conflict, and how
``add`` finds one left unresolved.

A JSONL or CSV file (the formats a person edits as text) gets, in place of each
conflicting row, the block git writes for a conflicting line::

    <<<<<<< HEAD
    {"id": 2, "response": "ours"}
    =======
    {"id": 2, "response": "theirs"}
    >>>>>>> experiment

(an empty side: the row was deleted there). Every other row is written as
:func:`~demoai.store.tables.io.write_file` writes it, in our file's order.
"""
from __future__ import annotations

import io
import json
import mmap
import os
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.csv as pacsv

from demoai.errors import InvalidArtifact
from demoai.store.fsutil import replacing
from demoai.store.tables.io import jsonable

__all__ = ["write_conflicted", "conflict_marker_line", "CONFLICT_START", "CONFLICT_MID",
           "CONFLICT_END"]

CONFLICT_START, CONFLICT_MID, CONFLICT_END = b"<<<<<<< ", b"=======", b">>>>>>> "
_TEXT_WRITE_FORMATS = ("jsonl", "csv", "tsv")


def conflict_marker_line(path: str | os.PathLike) -> int | None:
    """The line of the first git conflict block (``<<<<<<< ``, ``=======``, ``>>>>>>> ``
    lines, in that order) in a text file, or None: a merge left it unresolved."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return None
    with open(p, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        start = 0 if mm[:len(CONFLICT_START)] == CONFLICT_START else mm.find(b"\n" + CONFLICT_START)
        while start != -1:
            at = start if mm[start:start + 1] != b"\n" else start + 1
            mid = mm.find(b"\n" + CONFLICT_MID, at)
            if mid != -1 and mm.find(b"\n" + CONFLICT_END, mid) != -1:
                return mm[:at].count(b"\n") + 1
            start = mm.find(b"\n" + CONFLICT_START, at + 1)
    return None


def _text_rows(table: pa.Table, fmt: str, header: bool = False) -> bytes:
    """``table``'s rows as the bytes ``write_file`` writes for ``fmt`` (no header unless
    asked)."""
    if fmt == "jsonl":   # as write_file writes a JSONL line
        return "".join(json.dumps(jsonable(row), ensure_ascii=False) + "\n"
                       for row in table.to_pylist()).encode()
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, write_options=pacsv.WriteOptions(
        include_header=header, delimiter="\t" if fmt == "tsv" else ",", quoting_style="needed"))
    return buf.getvalue()


def write_conflicted(ours: pa.Table, theirs: pa.Table, key: str, conflict_keys: Iterable[Any],
                     path: str | os.PathLike, fmt: str, ours_label: str = "HEAD",
                     theirs_label: str = "theirs") -> None:
    """Write ``ours`` as ``fmt`` (jsonl, csv or tsv) where each row whose ``key`` is in
    ``conflict_keys`` becomes a git conflict block holding our row and theirs (either may
    be empty: deleted on that side), at our row's place (rows we deleted: at the end).
    ``add`` refuses the file until the blocks are resolved (:func:`conflict_marker_line`).
    Atomic, as :func:`write_file`."""
    if fmt == "json":
        fmt = "jsonl"
    if fmt not in _TEXT_WRITE_FORMATS:
        raise InvalidArtifact(f"{path}: conflict markers need a text format, not {fmt!r}",
                              path=str(path))
    wanted = set(conflict_keys)
    ours_keys = ours[key].to_pylist()
    theirs_at = {k: i for i, k in enumerate(theirs[key].to_pylist()) if k in wanted}
    start = CONFLICT_START + ours_label.encode() + b"\n"
    mid, end = CONFLICT_MID + b"\n", CONFLICT_END + theirs_label.encode() + b"\n"

    def block(i: int | None, k: Any) -> bytes:
        mine = _text_rows(ours.slice(i, 1), fmt) if i is not None else b""
        j = theirs_at.get(k)
        other = _text_rows(theirs.slice(j, 1), fmt) if j is not None else b""
        return start + mine + mid + other + end

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with replacing(p) as tmp:
        with open(tmp, "wb") as fh:
            if fmt != "jsonl":
                fh.write(_text_rows(ours.slice(0, 0), fmt, header=True))
            seg = 0
            for i, k in enumerate(ours_keys):
                if k in wanted:
                    fh.write(_text_rows(ours.slice(seg, i - seg), fmt) if i > seg else b"")
                    fh.write(block(i, k))
                    seg = i + 1
            if seg < ours.num_rows:
                fh.write(_text_rows(ours.slice(seg), fmt))
            present = set(ours_keys)
            for k in sorted((k for k in wanted if k not in present), key=repr):
                fh.write(block(None, k))
