"""Canonical table content (row hashes, digests) and file import/export.

A dataset is a *multiset of rows with a schema*. Its identity is
``content_digest(table, key)``: BLAKE3 over a canonical schema string, the declared key
and the sorted 128-bit hashes of its rows. Row order, chunking, ``string`` vs
``large_string``, dictionary encoding, nullability flags and the file format it came
from do not change the digest; a changed cell, column name, column order or type does.

Row hashes are MD5 (DuckDB, vectorised, ~350 MB/s per core) over a self-delimiting
canonical row text: every cell becomes ``<tag><byte length>:<text>`` (``N`` for null),
so no two different rows share a text. MD5 is used as a fast 128-bit fingerprint
for matching rows, not as a defence against crafted collisions; file integrity
rests on BLAKE3 (see ``tables.py``).

File formats: ``.jsonl``/``.ndjson``/``.json``, ``.csv``/``.tsv``, ``.parquet``,
``.arrow``/``.feather`` and saved Hugging Face ``datasets`` folders (read with pyarrow
alone). Malformed input raises :class:`~demoai.errors.InvalidArtifact` naming the file
and, for the text formats, the file's line (once: never a row number beside it), with the
column where it helps (a JSON syntax error's column, a mixed-type column's name).
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

import blake3
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from demoai.errors import InvalidArtifact
from demoai.store.fsutil import replacing

__all__ = [
    "content_digest", "row_hashes", "cell_hashes", "digest_from_hashes", "canonical_schema",
    "canonical_type", "schema_json", "one_line", "read_file", "write_file", "write_batches",
    "detect_format",
    "jsonable", "sort_hashes", "check_arrow_data", "digest_from_sorted",
]

_DIGEST_DOMAIN = b"demoai.table.v1\n"


# ----------------------------------------------------------------------------- schema

def canonical_type(t: pa.DataType) -> str:
    """A type's name with physical-layout choices removed (large/view/dictionary variants)."""
    if pa.types.is_dictionary(t):
        return canonical_type(t.value_type)
    if isinstance(t, pa.ExtensionType):
        return canonical_type(t.storage_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or _is(t, "is_string_view"):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or _is(t, "is_binary_view"):
        return "binary"
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list<{canonical_type(t.value_type)}>[{t.list_size}]"
    if (pa.types.is_list(t) or pa.types.is_large_list(t) or _is(t, "is_list_view")
            or _is(t, "is_large_list_view")):
        return f"list<{canonical_type(t.value_type)}>"
    if pa.types.is_map(t):
        return f"map<{canonical_type(t.key_type)},{canonical_type(t.item_type)}>"
    if pa.types.is_struct(t):
        inner = ",".join(f"{json.dumps(t.field(i).name)}:{canonical_type(t.field(i).type)}"
                         for i in range(t.num_fields))
        return f"struct<{inner}>"
    return str(t)


def _is(t: pa.DataType, pred: str) -> bool:
    fn = getattr(pa.types, pred, None)
    return bool(fn and fn(t))


def canonical_schema(schema: pa.Schema) -> list[list[str]]:
    """``[[name, canonical type], ...]`` in column order."""
    return [[f.name, canonical_type(f.type)] for f in schema]


def schema_json(schema: pa.Schema, key: str | None) -> bytes:
    """The canonical schema text that a digest covers (column order and key included)."""
    return json.dumps({"fields": canonical_schema(schema), "key": key}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode()


# ----------------------------------------------------------------------------- hashing

def _hashable_column(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Recast a column so DuckDB sees a type whose text form is canonical and TZ-free."""
    t = col.type
    if isinstance(t, pa.ExtensionType):
        col = pa.chunked_array([c.storage for c in col.chunks], type=t.storage_type)
        t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if pa.types.is_temporal(t):  # timestamps, dates, times, durations -> their integer
        width = 32 if t.bit_width == 32 else 64
        col = col.cast(pa.int32() if width == 32 else pa.int64()).cast(pa.int64())
    elif pa.types.is_decimal(t):
        col = col.cast(pa.string())
    elif pa.types.is_float16(t):
        col = col.cast(pa.float32())
    elif pa.types.is_fixed_size_binary(t) or _is(t, "is_binary_view"):
        col = col.cast(pa.binary())
    return col


def _cell_expr(name: str, t: pa.DataType, json_text: bool = False) -> str:
    q = '"' + name.replace('"', '""') + '"'
    if pa.types.is_null(t):
        return "'N'"
    if json_text:  # a nested column already turned into JSON text in Python
        tag, text = "J", q
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or _is(t, "is_string_view"):
        tag, text = "S", q
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
        tag, text = "B", f"hex({q})"
    elif pa.types.is_nested(t):
        tag, text = "J", f"CAST(to_json({q}) AS VARCHAR)"
    else:
        tag, text = "V", f"CAST({q} AS VARCHAR)"
    return (f"CASE WHEN {q} IS NULL THEN 'N' ELSE "
            f"concat('{tag}', strlen({text}), ':', {text}) END")


def _python_json_column(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Fallback canonical text for nested types DuckDB cannot take (rare)."""
    out = [None if v is None else json.dumps(jsonable(v), ensure_ascii=False,
                                             separators=(",", ":"))
           for v in col.to_pylist()]
    return pa.chunked_array([pa.array(out, type=pa.string())])


def _connect():
    import duckdb  # imported on first use: reading and metadata diffs never need it

    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    return con


_LOCAL = threading.local()


def _thread_connection():
    """This thread's DuckDB connection for hashing (opening one costs ~20 ms: a table
    hashed in batches reuses it)."""
    con = getattr(_LOCAL, "con", None)
    if con is None:
        con = _LOCAL.con = _connect()
    return con


def _md5_sql(text_sql: str) -> str:
    global _MD5_NUMBER_OK
    if _MD5_NUMBER_OK is None:
        _MD5_NUMBER_OK = _md5_number_ok()
    return f"md5_number({text_sql})" if _MD5_NUMBER_OK else f"unhex(md5({text_sql}))"


def _to_u64x2(col: pa.ChunkedArray) -> np.ndarray:
    """Turn DuckDB's 128-bit md5 result (decimal128 bytes or 16-byte blobs) into (n, 2) u64."""
    parts = []
    for chunk in col.chunks:
        if len(chunk) == 0:
            continue
        if pa.types.is_decimal(chunk.type):
            buf = chunk.buffers()[1]
            arr = np.frombuffer(buf, dtype="<u8", count=2 * (chunk.offset + len(chunk)))
            parts.append(arr.reshape(-1, 2)[chunk.offset:])
        else:
            data = b"".join(chunk.to_pylist())
            parts.append(np.frombuffer(data, dtype="<u8").reshape(-1, 2))
    if not parts:
        return np.zeros((0, 2), dtype=np.uint64)
    return np.ascontiguousarray(np.concatenate(parts).astype(np.uint64, copy=False))


def _hash_query(table: pa.Table, per_cell: bool, py_json: bool,
                extra: Callable[[list[pa.DataType]], str] | None = None) -> list[np.ndarray]:
    """The MD5 row (or cell) hashes; ``extra(column types)``: one more SQL expression over
    the columns ``c0``, ``c1``..., computed in the same scan and returned last, as is."""
    names = [f"c{i}" for i in range(table.num_columns)]  # no quoting surprises
    cols, exprs = [], []
    for name, col in zip(names, table.columns):
        col = _hashable_column(col)
        as_json = py_json and pa.types.is_nested(col.type)
        if as_json:
            col = _python_json_column(col)
        cols.append(col)
        exprs.append(_cell_expr(name, col.type, json_text=as_json))
    if not per_cell:
        exprs = ["concat(" + ", ".join(exprs) + ")" if exprs else "''"]
    sel = ", ".join(f"{_md5_sql(e)} AS h{i}" for i, e in enumerate(exprs))
    if extra is not None:
        sel += f", {extra([c.type for c in cols])} AS x"
    res = _select(cols, names, sel, table.num_rows)
    out = [_to_u64x2(res.column(i)) for i in range(len(exprs))]
    if extra is not None:
        out.append(res.column(len(exprs)).to_numpy())
    return out


def _select(cols: list, names: list[str], sel: str, rows: int) -> pa.Table:
    """``SELECT sel`` over the columns ``cols`` named ``names``, on this thread's DuckDB
    connection (no columns: over ``rows`` empty rows)."""
    con = _thread_connection()
    if not cols:
        return con.sql(f"SELECT {sel} FROM range({rows})").to_arrow_table()
    con.register("__t", pa.table(cols, names=names))
    try:
        return con.sql(f"SELECT {sel} FROM __t").to_arrow_table()
    finally:
        con.unregister("__t")


def _hashes(table: pa.Table, per_cell: bool) -> list[np.ndarray]:
    import duckdb

    try:
        return _hash_query(table, per_cell, py_json=False)
    except duckdb.Error:
        # Some nested types (e.g. list<float16>) do not reach DuckDB: those columns get a
        # Python JSON text instead. Which path runs depends only on the types: stable.
        return _hash_query(table, per_cell, py_json=True)


def row_hashes(table: pa.Table) -> np.ndarray:
    """Per-row 128-bit fingerprints as an ``(n, 2)`` uint64 array, in row order."""
    if table.num_rows == 0:
        return np.zeros((0, 2), dtype=np.uint64)
    return _hashes(table, per_cell=False)[0]


def cell_hashes(table: pa.Table) -> list[np.ndarray]:
    """Per-cell 128-bit fingerprints, one ``(n, 2)`` array per column (for cell diffs)."""
    if table.num_rows == 0 or table.num_columns == 0:
        return [np.zeros((table.num_rows, 2), dtype=np.uint64) for _ in table.columns]
    return _hashes(table, per_cell=True)


def _sorted_order(hashes: np.ndarray) -> np.ndarray:
    """Positions of row hashes in (high word, low word) order; argsort on one word is ~4x
    a lexsort, and equal high words (rare in MD5 output) are checked, in blocks."""
    hi, lo = hashes[:, 0], hashes[:, 1]
    order = np.argsort(hi)
    step = 1 << 20
    for s in range(0, len(order), step):
        o = order[s:s + step + 1]
        hs, ls = hi[o], lo[o]
        if np.any((hs[1:] == hs[:-1]) & (ls[1:] < ls[:-1])):  # equal high words out of order
            return np.lexsort((lo, hi))
    return order


def sort_hashes(hashes: np.ndarray) -> np.ndarray:
    """Row hashes sorted by (high word, low word)."""
    return hashes[_sorted_order(hashes)]


def digest_from_hashes(schema: pa.Schema, key: str | None, hashes: np.ndarray) -> str:
    """``blake3:<hex>`` over the canonical schema and the *sorted* row hashes."""
    def blocks() -> Iterable[np.ndarray]:   # no sorted copy of all the hashes
        order = _sorted_order(hashes)
        for s in range(0, len(order), 1 << 20):
            yield hashes[order[s:s + (1 << 20)]]
    return digest_from_sorted(schema, key, len(hashes), blocks() if len(hashes) else ())


def digest_from_sorted(schema: pa.Schema, key: str | None, rows: int,
                       blocks: Iterable[np.ndarray]) -> str:
    """:func:`digest_from_hashes` of ``rows`` row hashes given already sorted, as
    consecutive ``(n, 2)`` blocks (a table's hashes sorted on disk, a bucket at a time)."""
    h = blake3.blake3(_DIGEST_DOMAIN)
    h.update(schema_json(schema, key))
    h.update(b"\n")
    h.update(int(rows).to_bytes(8, "little"))
    for block in blocks:
        h.update(np.ascontiguousarray(block, dtype="<u8").tobytes())
    return "blake3:" + h.hexdigest()


def content_digest(table: pa.Table, key: str | None = None) -> str:
    """The order-insensitive identity of a table's content: ``blake3:<hex>``.

    Equal for the same multiset of rows under the same canonical schema and key,
    whatever the source format, chunking or row order; stable across processes.
    """
    return digest_from_hashes(table.schema, key, row_hashes(table))


def _md5_number_ok() -> bool:
    try:   # on this thread's connection: a second DuckDB database costs ~20 ms and memory
        res = _thread_connection().sql("SELECT md5_number('demoai') AS h").to_arrow_table()
        got = _to_u64x2(res.column(0)).astype("<u8").tobytes()
        return got == hashlib.md5(b"demoai").digest()
    except Exception:  # any surprise -> use the slower but explicit blob form
        return False


_MD5_NUMBER_OK: bool | None = None  # DuckDB's md5_number gives the raw digest bytes?


# ----------------------------------------------------------------------------- values

def jsonable(v: Any) -> Any:
    """A JSON-ready copy of a Python value from ``to_pylist`` (bytes -> base64 etc.)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        # maps come back as lists of (key, value) tuples
        return [jsonable(x) for x in v]
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


# ----------------------------------------------------------------------------- reading

def one_line(e: BaseException | str) -> str:
    """An error text on one line (Arrow's messages can carry newlines)."""
    return " ".join(str(e).split())


_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
            ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow",
            ".feather": "arrow", ".ipc": "arrow"}


def detect_format(path: str | os.PathLike) -> str:
    """``jsonl``, ``json``, ``csv``, ``tsv``, ``parquet``, ``arrow`` or ``hf`` (a folder)."""
    p = Path(path)
    if p.is_dir():
        return "hf"
    fmt = _FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise InvalidArtifact(f"{p}: unknown table format {p.suffix!r} "
                              f"(use .jsonl, .csv, .tsv, .parquet, .arrow or a datasets folder)",
                              path=str(p))
    return fmt


def check_arrow_data(table: pa.Table, source: str | os.PathLike | None = None,
                     fmt: str | None = None, row_offset: int = 0) -> None:
    """Raise :class:`InvalidArtifact` unless every column holds valid Arrow data, text
    columns valid UTF-8 included, naming the column, the row (``table`` being a batch
    that starts at row ``row_offset`` of the file) and, for a text file read from
    ``source``, its line."""
    for name in table.column_names:
        col = table[name]
        try:
            col.validate(full=True)
        except (pa.ArrowInvalid, pa.ArrowException) as e:
            where = f"{source}: " if source else ""
            row = _first_bad_row(col)
            row = None if row is None else row + row_offset
            line = _first_bad_line(Path(source), fmt) if source and fmt in _TEXT_FORMATS else None
            at = f"line {line}" if line else (f"row {row + 1}" if row is not None else "a row")
            reason = "invalid UTF-8" if "utf" in str(e).lower() else one_line(e)
            raise InvalidArtifact(
                f"{where}{at}: column {name!r} holds {reason}; text columns must be UTF-8 "
                "(fix the file, or store the bytes in a binary column: Parquet/Arrow `binary`)",
                path=str(source) if source else None, column=name, line=line,
                row=None if row is None else row + 1) from None


_TEXT_FORMATS = ("jsonl", "json", "csv", "tsv")


def _first_bad_row(col: pa.ChunkedArray) -> int | None:
    """Index of the first row of a text column that is not UTF-8 (None if not found)."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return None
    offset = 0
    binary = pa.large_binary() if pa.types.is_large_string(col.type) else pa.binary()
    for chunk in col.chunks:
        try:
            chunk.validate(full=True)
        except pa.ArrowException:
            for i, v in enumerate(chunk.view(binary).to_pylist()):
                if v is not None:
                    try:
                        v.decode("utf-8")
                    except UnicodeDecodeError:
                        return offset + i
        offset += len(chunk)
    return None


def _first_bad_line(p: Path, fmt: str | None) -> int | None:
    """The first line of a text file that is not UTF-8."""
    try:
        with open(p, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return lineno
    except OSError:
        return None
    return None


def read_file(path: str | os.PathLike, fmt: str | None = None) -> pa.Table:
    """Load a table from JSONL/JSON, CSV/TSV, Parquet, Arrow IPC or a saved HF dataset folder.

    Raises :class:`InvalidArtifact` (with the file and, where known, the line) for
    malformed input, and for a missing file.
    """
    p = Path(path)
    if not p.exists():
        raise InvalidArtifact(f"{p}: no such file or folder", path=str(p))
    fmt = fmt or detect_format(p)
    readers = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv,
               "tsv": lambda q: _read_csv(q, delimiter="\t"), "parquet": _read_parquet,
               "arrow": _read_arrow, "hf": _read_hf}
    if fmt not in readers:
        raise InvalidArtifact(f"{p}: unknown table format {fmt!r}", path=str(p))
    table = readers[fmt](p)
    check_arrow_data(table, p, fmt)
    return table


def _read_jsonl(p: Path) -> pa.Table:
    if p.stat().st_size == 0:
        return pa.table({})
    try:
        return pajson.read_json(p)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass   # Arrow names rows, not lines: read again to say which line is wrong
    rows, lines = [], []
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except UnicodeDecodeError as e:
                raise InvalidArtifact(f"{p}: line {lineno}, column {e.start + 1}: invalid UTF-8",
                                      path=str(p), line=lineno, column=e.start + 1) from None
            except json.JSONDecodeError as e:   # one record per line: its column is the line's
                raise InvalidArtifact(f"{p}: line {lineno}, column {e.colno}: invalid JSON: {e.msg}",
                                      path=str(p), line=lineno, column=e.colno) from None
            except (ValueError, RecursionError) as e:
                raise InvalidArtifact(f"{p}: line {lineno}: invalid JSON: {one_line(e)}",
                                      path=str(p), line=lineno) from None
            if not isinstance(obj, dict):
                raise InvalidArtifact(f"{p}: line {lineno}: expected a JSON object, got "
                                      f"{_json_kind(obj)}", path=str(p), line=lineno)
            rows.append(obj)
            lines.append(lineno)
    return _from_rows(p, rows, lambda: lines)


def _read_json(p: Path) -> pa.Table:
    with open(p, "rb") as fh:
        head = fh.read(4096).lstrip()
    if not head.startswith(b"["):
        return _read_jsonl(p)
    data = p.read_bytes()
    try:
        text = data.decode(json.detect_encoding(data))
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise InvalidArtifact(f"{p}: line {line}, column {column}: invalid UTF-8",
                              path=str(p), line=line, column=column) from None
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidArtifact(f"{p}: line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}",
                              path=str(p), line=e.lineno, column=e.colno) from None
    except (ValueError, RecursionError) as e:
        raise InvalidArtifact(f"{p}: invalid JSON: {one_line(e)}", path=str(p)) from None
    if not isinstance(rows, list):
        raise InvalidArtifact(f"{p}: expected a JSON array of objects, got {_json_kind(rows)}",
                              path=str(p))
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        line = _array_item_lines(text)[bad]
        raise InvalidArtifact(f"{p}: line {line}: item {bad + 1} of the array is "
                              f"{_json_kind(rows[bad])}, not a JSON object",
                              path=str(p), line=line, item=bad + 1)
    return _from_rows(p, rows, lambda: _array_item_lines(text))


def _array_item_lines(text: str) -> list[int]:
    """The line each item of a (valid) top-level JSON array starts on."""
    dec, ws = json.JSONDecoder(), " \t\n\r"
    i, line, counted, out = text.index("[") + 1, 1, 0, []
    while True:
        while i < len(text) and text[i] in ws:
            i += 1
        if i >= len(text) or text[i] == "]":
            return out
        line += text.count("\n", counted, i)
        counted = i
        out.append(line)
        _, i = dec.raw_decode(text, i)
        while i < len(text) and text[i] in ws:
            i += 1
        if i < len(text) and text[i] == ",":
            i += 1


def _json_kind(v: Any) -> str:
    """What a JSON value is, for messages: ``a number``, ``a string``, ``an array``..."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, (list, tuple)):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


_ROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError)


def _from_rows(p: Path, rows: list[dict], lines: Any) -> pa.Table:
    """``rows`` as a table; values of one column that do not agree name the file line
    (``lines()``: the line of each row) and the column."""
    try:
        return pa.Table.from_pylist(rows)
    except _ROW_ERRORS as e:
        raise _mixed_values_error(p, rows, lines(), e) from None


def _mixed_values_error(p: Path, rows: list[dict], lines: list[int],
                        err: Exception) -> InvalidArtifact:
    """The first row (by bisection on prefixes) and column whose value does not fit."""
    def fails(part: list[Any], column: str | None = None) -> Exception | None:
        try:
            if column is None:
                pa.Table.from_pylist(part)
            else:
                pa.array(part)
        except _ROW_ERRORS as e:
            return e
        return None

    lo, hi = 1, len(rows)            # rows[:hi] fails; find the shortest failing prefix
    while lo < hi:
        mid = (lo + hi) // 2
        if fails(rows[:mid]) is not None:
            hi = mid
        else:
            lo = mid + 1
    bad = hi - 1
    line = lines[bad]
    for col, value in rows[bad].items():
        col_err = fails([r.get(col) for r in rows[:bad + 1]], col)
        if col_err is None:
            continue
        here = _json_kind(value)
        earlier = [(i, r[col]) for i, r in enumerate(rows[:bad]) if r.get(col) is not None]
        other = next(((i, v) for i, v in earlier if _json_kind(v) != here), None)
        if other is not None:
            reason = f"holds {here} where line {lines[other[0]]} holds {_json_kind(other[1])}"
        else:
            reason = f"holds a value that does not fit the column's type: {one_line(col_err)}"
        return InvalidArtifact(f"{p}: line {line}: column {col!r} {reason}",
                               path=str(p), line=line, column=col)
    return InvalidArtifact(f"{p}: line {line}: inconsistent values across rows: {one_line(err)}",
                           path=str(p), line=line)


def _read_csv(p: Path, delimiter: str = ",") -> pa.Table:
    try:
        table = pacsv.read_csv(
            p, parse_options=pacsv.ParseOptions(delimiter=delimiter),
            # Only an unquoted empty field is null: "NA", "null" or "nan" stay values,
            # so write_file -> read_file round-trips exactly.
            convert_options=pacsv.ConvertOptions(null_values=[""], strings_can_be_null=True,
                                                 quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        line, reason = _locate_csv_error(p, delimiter)
        where = f"line {line}: " if line else ""
        raise InvalidArtifact(f"{p}: {where}{one_line(reason or e)}", path=str(p),
                              line=line) from None
    names = table.column_names
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        raise InvalidArtifact(f"{p}: line 1: column {dup!r} appears more than once in the header",
                              path=str(p), line=1, column=dup)
    binary = [f.name for f in table.schema if pa.types.is_binary(f.type)]
    if binary:   # Arrow reads a CSV column that is not UTF-8 as bytes: text files hold text
        line = _first_bad_line(p, "csv")
        raise InvalidArtifact(f"{p}: {f'line {line}: ' if line else ''}column {binary[0]!r} "
                              "holds invalid UTF-8; text columns must be UTF-8 (fix the file)",
                              path=str(p), column=binary[0], line=line)
    return table


def _locate_csv_error(p: Path, delimiter: str) -> tuple[int | None, str | None]:
    """Find the first line that breaks the CSV, to name it in the error."""
    try:
        text = p.read_bytes()
    except OSError:
        return None, None
    for lineno, raw in enumerate(text.split(b"\n"), 1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return lineno, f"invalid UTF-8: {e.reason}"
    reader = csv.reader(io.StringIO(text.decode("utf-8", errors="replace"), newline=""),
                        delimiter=delimiter)
    width = None
    try:
        for row in reader:
            if width is None:
                width = len(row)
                if width == 0:
                    return reader.line_num, "empty header"
            elif row and len(row) != width:
                return reader.line_num, f"expected {width} fields, got {len(row)}"
    except csv.Error as e:
        return reader.line_num, str(e)
    if width is None:
        return None, "empty CSV file"
    return None, None


def _read_parquet(p: Path) -> pa.Table:
    try:
        return pq.read_table(p)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise InvalidArtifact(f"{p}: not a readable Parquet file: {one_line(e)}",
                              path=str(p)) from None


def _read_ipc(p: Path) -> pa.Table:
    try:
        with pa.memory_map(str(p)) as src:
            return pa.ipc.open_stream(src).read_all()
    except pa.ArrowInvalid:
        pass
    try:
        with pa.memory_map(str(p)) as src:
            return pa.ipc.open_file(src).read_all()
    except (pa.ArrowInvalid, OSError) as e:
        raise InvalidArtifact(f"{p}: not an Arrow IPC stream or file: {one_line(e)}",
                              path=str(p)) from None


def _read_arrow(p: Path) -> pa.Table:
    return _read_ipc(p).combine_chunks()


def _read_hf(p: Path) -> pa.Table:
    """A folder written by ``datasets.Dataset.save_to_disk`` (Arrow stream shards)."""
    if (p / "dataset_dict.json").exists():
        try:
            splits = json.loads((p / "dataset_dict.json").read_text())["splits"]
        except (ValueError, KeyError, OSError):
            splits = []
        raise InvalidArtifact(f"{p}: is a DatasetDict; pass one split folder "
                              f"(e.g. {p / (splits[0] if splits else 'train')})",
                              path=str(p), splits=list(splits))
    state = p / "state.json"
    if state.exists():
        try:
            files = [p / f["filename"] for f in json.loads(state.read_text())["_data_files"]]
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidArtifact(f"{state}: malformed state.json: {one_line(e)}",
                                  path=str(state)) from None
    else:
        files = sorted(p.glob("*.arrow"))
    if not files:
        raise InvalidArtifact(f"{p}: no Arrow data files (not a saved datasets folder)",
                              path=str(p))
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise InvalidArtifact(f"{p}: data file listed in state.json is missing: {missing[0]}",
                              path=str(p))
    tables = [_read_ipc(f) for f in files]
    try:
        return pa.concat_tables(tables).combine_chunks()
    except pa.ArrowInvalid as e:
        raise InvalidArtifact(f"{p}: shards have different schemas: {one_line(e)}",
                              path=str(p)) from None


# ----------------------------------------------------------------------------- writing

def write_file(table: pa.Table, path: str | os.PathLike, fmt: str | None = None) -> None:
    """Export ``table`` as JSONL, CSV/TSV or Parquet, atomically (temp file + rename)."""
    write_batches(table.schema, table.to_batches(max_chunksize=1 << 17), path, fmt)


def write_batches(schema: pa.Schema, batches: Iterable[pa.RecordBatch], path: str | os.PathLike,
                  fmt: str | None = None) -> None:
    """Export record batches as JSONL, CSV/TSV or Parquet, one batch in memory at a time,
    atomically: the file appears whole, or not at all if ``batches`` raises part-way."""
    p = Path(path)
    fmt = fmt or _FORMATS.get(p.suffix.lower())
    if fmt == "json":
        fmt = "jsonl"
    if fmt not in ("jsonl", "csv", "tsv", "parquet"):
        raise InvalidArtifact(f"{p}: cannot export to format {fmt!r} "
                              f"(use .jsonl, .csv, .tsv or .parquet)", path=str(p))
    p.parent.mkdir(parents=True, exist_ok=True)
    with replacing(p) as tmp:
        if fmt == "jsonl":
            with open(tmp, "w", encoding="utf-8") as fh:
                for batch in batches:
                    for line in _jsonl_lines(batch):
                        fh.write(line)
        elif fmt == "parquet":
            with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
                for batch in batches:
                    w.write_batch(batch)
        else:
            opts = pacsv.WriteOptions(delimiter="\t" if fmt == "tsv" else ",", quoting_style="needed")
            with pacsv.CSVWriter(tmp, schema, write_options=opts) as w:
                for batch in batches:
                    w.write_batch(batch)


def _jsonl_lines(data: pa.Table | pa.RecordBatch) -> Iterable[str]:
    for batch in data.to_batches(max_chunksize=8192) if isinstance(data, pa.Table) else [data]:
        for row in batch.to_pylist():
            yield json.dumps(jsonable(row), ensure_ascii=False) + "\n"

