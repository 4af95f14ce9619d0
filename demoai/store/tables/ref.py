"""A stored table version's ref (:class:`TableRef`) and the file hashes that make it
trustworthy: what a commit's manifest records of a dataset, readable without Lance.

Importing this module imports neither Lance nor pyarrow (they load when a schema is
decoded or encoded): commands that only pass refs along (push, clone, gc's walk) do not
pay ~0.3 s for them."""
from __future__ import annotations

import base64
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from typing import TYPE_CHECKING

import blake3

from demoai.errors import InvalidArtifact
from demoai.store.fsutil import atomic_write

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["TABLE_ID", "DigestIndex", "TableRef", "check_delta", "check_order", "file_blake3",
           "schema_meta", "sub_schema"]

TABLE_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class TableRef:
    """One stored version of a table: where it is and what it must hash to."""

    table_id: str
    version: int
    rows: int
    digest: str
    key: str | None
    schema: dict            # {"fields": [{"name", "type", "nullable"}], "arrow": base64 IPC}
    files: dict[str, str]   # relpath inside <table_id>.lance -> blake3 hex
    # What this version changed, when it was written as a keyed delta on another version:
    # {"base": base digest, "key", "added", "removed", "modified", "columns": {col: cells}}.
    # Lets a diff against that base skip reading every modified row (see diff).
    delta: dict | None = None
    # The row order of the file this version was made from (see tables/order.py):
    # {"digest": BLAKE3 of the row hashes in file order, "file": the permutation's file,
    # absent when Lance's scan order is the file order}. None: written before orders were
    # recorded (scan order is all there is).
    order: dict | None = None

    def __hash__(self) -> int:
        return hash((self.table_id, self.version, self.digest, self.key))

    def to_dict(self) -> dict:
        """A JSON-ready form (what a commit's manifest stores)."""
        return {"table_id": self.table_id, "version": self.version, "rows": self.rows,
                "digest": self.digest, "key": self.key, "schema": self.schema,
                "files": dict(sorted(self.files.items())),
                **({"delta": self.delta} if self.delta else {}),
                **({"order": self.order} if self.order else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "TableRef":
        """Rebuild a ref from :meth:`to_dict` output; raises InvalidArtifact if malformed."""
        try:
            ref = cls(table_id=str(d["table_id"]), version=int(d["version"]),
                      rows=int(d["rows"]), digest=str(d["digest"]), key=d.get("key"),
                      schema=dict(d["schema"]), files={str(k): str(v)
                                                       for k, v in d["files"].items()},
                      delta=check_delta(d.get("delta")), order=check_order(d.get("order")))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            msg = " ".join(repr(e).split())
            raise InvalidArtifact(f"malformed table ref: {msg}") from None
        if not TABLE_ID.match(ref.table_id) or any(
                ".." in Path(p).parts or p.startswith("/") for p in ref.files):
            raise InvalidArtifact(f"malformed table ref: bad table id or file path "
                                  f"in {ref.table_id!r}")
        if ref.order and ref.order.get("file") and ref.order["file"] not in ref.files:
            raise InvalidArtifact(f"malformed table ref: row order file of {ref.table_id!r} "
                                  "is not among its files")
        return ref

    def arrow_schema(self) -> pa.Schema:
        """The exact Arrow schema the table was written with."""
        import pyarrow as pa
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.schema["arrow"])))


def schema_meta(schema: pa.Schema) -> dict:
    """What a ref records of a schema: readable fields and the exact Arrow schema."""
    from demoai.store.tables.io import canonical_type
    return {"fields": [{"name": f.name, "type": canonical_type(f.type), "nullable": f.nullable}
                       for f in schema],
            "arrow": base64.b64encode(schema.serialize().to_pybytes()).decode()}


# ----------------------------------------------------------------------------- file hashes

_HASH_CACHE: dict[str, tuple[tuple, str]] = {}
_HASH_LOCK = threading.Lock()


def _stat_sig(st: os.stat_result) -> tuple:
    # ctime cannot be set from user space, so any rewrite of the file invalidates the entry.
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_blake3(path: str | os.PathLike, *, cache: bool = True) -> str:
    """BLAKE3 hex of a file, read in 1 MiB blocks (low memory).

    With ``cache``, a file already hashed by this process and unchanged since (same
    inode, size, mtime and ctime) is not read again.
    """
    path = os.fspath(path)
    st = os.stat(path)
    sig = _stat_sig(st)
    if cache:
        with _HASH_LOCK:
            hit = _HASH_CACHE.get(path)
        if hit and hit[0] == sig:
            return hit[1]
    # One thread and a 1 MiB buffer: reading from the page cache is the limit (~4 GB/s
    # either way) and a small buffer keeps peak memory low.
    h = blake3.blake3()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    hexd = h.hexdigest()
    if _stat_sig(os.stat(path)) == sig:
        with _HASH_LOCK:
            _HASH_CACHE[path] = (sig, hexd)
    return hexd


def sub_schema(ref: TableRef, columns: list[str]) -> pa.Schema:
    """The exact Arrow schema of ``columns`` of ``ref``."""
    import pyarrow as pa
    s = ref.arrow_schema()
    return pa.schema([s.field(c) for c in columns])


def check_order(d: Any) -> dict | None:
    """A recorded row order as stored in a manifest, or None; malformed ones are refused."""
    if d is None:
        return None
    ok = (isinstance(d, dict) and isinstance(d.get("digest"), str)
          and d["digest"].startswith("blake3:") and set(d) <= {"digest", "file"}
          and (d.get("file") is None or (isinstance(d["file"], str)
                                          and re.fullmatch(r"data/demoai-order-[0-9a-f]{64}\.bin",
                                                           d["file"]) is not None)))
    if not ok:
        raise ValueError("malformed row order record")
    return d


def check_delta(d: Any) -> dict | None:
    """A recorded delta as stored in a manifest, or None; malformed ones are refused."""
    if d is None:
        return None
    ok = (isinstance(d, dict) and isinstance(d.get("base"), str)
          and isinstance(d.get("key"), str) and isinstance(d.get("columns"), dict)
          and all(isinstance(d.get(n), int) and d[n] >= 0
                  for n in ("added", "removed", "modified"))
          and all(isinstance(c, str) and isinstance(v, int) and v >= 0
                  for c, v in d["columns"].items()))
    if not ok:
        raise ValueError("malformed delta record")
    return d


# ----------------------------------------------------------------------------- digest index

class DigestIndex:
    """Content digest -> the ref of a stored table with that content, so identical content
    is stored once. ``<root>/<hex>.json`` per digest, and an empty ``<root>/shapes/<hex>``
    per schema, key and row count that some stored table has (content with another
    shape cannot be stored already). ``dir_for`` names a ref's folder, whose files an
    entry's ref must still find."""

    def __init__(self, root: Path, dir_for: Callable[[TableRef], Path]) -> None:
        self.root, self._dir_for = root, dir_for

    def _path(self, digest: str) -> Path:
        return self.root / (digest.split(":", 1)[-1] + ".json")

    def _shape(self, schema: pa.Schema, key: str | None, rows: int) -> Path:
        from demoai.store.tables.io import schema_json
        h = blake3.blake3(schema_json(schema, key) + b"\n%d" % rows).hexdigest()[:32]
        return self.root / "shapes" / h

    def may_hold(self, schema: pa.Schema, key: str | None, rows: int) -> bool:
        """False when no stored table has this shape (so not this content either)."""
        return self._shape(schema, key, rows).exists()

    def record(self, ref: TableRef) -> None:
        """Remember ``ref`` under its content digest (and its shape), for reuse."""
        atomic_write(self._path(ref.digest), json.dumps(ref.to_dict()).encode(), durable=False)
        shape = self._shape(ref.arrow_schema(), ref.key, ref.rows)
        if not shape.exists():
            atomic_write(shape, b"", durable=False)

    def lookup(self, digest: str) -> TableRef | None:
        """The recorded ref for ``digest`` if every file it lists is still there."""
        try:
            ref = TableRef.from_dict(json.loads(self._path(digest).read_text()))
        except (OSError, ValueError, InvalidArtifact):
            return None
        uri = self._dir_for(ref)
        if ref.digest != digest or not all((uri / rel).exists() for rel in ref.files):
            return None
        return ref

    def gc(self) -> None:
        """Drop entries whose table is gone, and shapes no remaining entry has."""
        shapes = set()
        for p in self.root.glob("*.json"):
            ref = self.lookup("blake3:" + p.stem)
            if ref is None:
                p.unlink(missing_ok=True)
            else:
                shapes.add(self._shape(ref.arrow_schema(), ref.key, ref.rows).name)
        for p in (self.root / "shapes").glob("*"):
            if p.name not in shapes:
                p.unlink(missing_ok=True)
