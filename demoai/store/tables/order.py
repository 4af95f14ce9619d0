"""Row order: each table version remembers the order of the file it was made from.

A dataset's identity ignores row order (the content digest is over *sorted* row hashes),
and Lance's scan order drifts from the file's as deltas are written (an edited row goes
through ``merge_insert`` into a new fragment; appended rows land at the end). So a version
records its order beside its rows, without touching either:

* ``order["digest"]``: BLAKE3 over the row hashes *in file order* (the order-sensitive
  twin of the content digest), so a re-import of the same rows in the same order is
  recognised without reading the table;
* ``order["file"]``: when the scan order is not the file order, a small file
  ``data/demoai-order-<blake3>.bin`` in the lineage's folder holding the permutation
  (``perm[i]`` = scan position of the file's row ``i``), delta-encoded and zstd-compressed:
  a version that moved 1% of the rows costs a few bytes per moved row. The file is listed
  in the ref's ``files`` like Lance's own, so it is hash-checked, sent by push/fetch,
  repaired and kept by gc the same way. It sits in Lance's ``data/`` folder (which
  alternates share, and which the sync protocol carries) under a name Lance never takes
  for its own (Lance's data files end in ``.lance``; its cleanup leaves others alone:
  ``tests/test_worktree_cli.py`` checks it), and gc removes those no live ref lists.

Versions written from scratch keep the file order in Lance and need no file. Reads in file
order apply the permutation (:meth:`OrderMixin.order_of`).

:class:`OrderMixin` is part of :class:`~demoai.store.tables.store.TableStore`.
"""
from __future__ import annotations

import struct
from dataclasses import replace
from typing import Any

import blake3
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from demoai.errors import IntegrityError, MissingObject
from demoai.store.fsutil import atomic_write
from demoai.store.tables.diff import int_keys
from demoai.store.tables.io import row_hashes
from demoai.store.tables.ref import TableRef, file_blake3

__all__ = ["OrderMixin", "ORDER_PREFIX", "is_order_file", "apply_order", "sequence_digest", "perm_by_keys", "perm_by_hashes",
           "encode_perm", "decode_perm", "hash_order", "sequence_digest_blocks"]

ORDER_PREFIX = "data/demoai-order-"
_MAGIC = b"DMAIORD1"
_SEQ_DOMAIN = b"demoai.table.order.v1\n"


def is_order_file(rel: str) -> bool:
    """Whether ``rel`` (a file of a table version) is a row-order file."""
    return rel.startswith(ORDER_PREFIX) and rel.endswith(".bin")


def sequence_digest(hashes: np.ndarray) -> str:
    """``blake3:<hex>`` over row hashes in the order given (a file's row order)."""
    return sequence_digest_blocks(len(hashes), (hashes[s:s + (1 << 20)]
                                                for s in range(0, len(hashes), 1 << 20)))


def sequence_digest_blocks(rows: int, blocks) -> str:
    """:func:`sequence_digest` of ``rows`` row hashes given as consecutive ``(n, 2)``
    blocks in file order (hashes spilled to disk)."""
    h = blake3.blake3(_SEQ_DOMAIN)
    h.update(int(rows).to_bytes(8, "little"))
    for block in blocks:
        h.update(np.ascontiguousarray(block).astype("<u8", copy=False).tobytes())
    return "blake3:" + h.hexdigest()


def hash_order(hashes: np.ndarray) -> np.ndarray:
    """Positions of ``hashes`` ((n, 2) uint64) sorted by (high, low) word."""
    if len(hashes) == 0:
        return np.zeros(0, dtype=np.int64)
    hi, lo = hashes[:, 0], hashes[:, 1]
    order = np.argsort(hi, kind="stable")   # one word: ~4x faster than a lexsort
    hs, ls = hi[order], lo[order]
    if np.any((hs[1:] == hs[:-1]) & (ls[1:] < ls[:-1])):
        order = np.lexsort((lo, hi))
    return order


def perm_by_hashes(scan_h: np.ndarray, file_h: np.ndarray) -> np.ndarray:
    """``perm`` with ``scan_h[perm] == file_h``: the same multiset of rows, paired in hash
    order (equal rows are interchangeable). Raises IntegrityError if the multisets differ."""
    if len(scan_h) != len(file_h):
        raise IntegrityError(f"row order: {len(scan_h)} stored rows, {len(file_h)} in the file")
    perm = np.empty(len(file_h), dtype=np.int64)
    perm[hash_order(file_h)] = hash_order(scan_h)
    if len(perm) and not np.array_equal(scan_h[perm], file_h):
        raise IntegrityError("row order: the stored rows are not the file's rows")
    return perm


def perm_by_keys(scan_keys: pa.ChunkedArray | pa.Array, file_keys: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """``perm`` with ``scan_keys[perm] == file_keys`` for unique keys."""
    sk = scan_keys.combine_chunks() if isinstance(scan_keys, pa.ChunkedArray) else scan_keys
    fk = file_keys.combine_chunks() if isinstance(file_keys, pa.ChunkedArray) else file_keys
    if len(sk) != len(fk):
        raise IntegrityError(f"row order: {len(sk)} stored rows, {len(fk)} in the file")
    ns = int_keys(sk)
    nf = int_keys(fk) if ns is not None else None
    if nf is not None:   # integer keys: a sort, far smaller than a hash table
        order = np.argsort(ns, kind="stable")
        ss = ns[order]
        pos = np.minimum(np.searchsorted(ss, nf), max(len(ss) - 1, 0))
        if len(nf) and not np.array_equal(ss[pos], nf):
            raise IntegrityError("row order: a key of the file is not stored")
        return order[pos].astype(np.int64)
    if fk.type != sk.type:
        fk = fk.cast(sk.type)
    where = pc.index_in(fk, value_set=sk)
    if where.null_count:
        raise IntegrityError("row order: a key of the file is not stored")
    return where.to_numpy(zero_copy_only=False).astype(np.int64)


def apply_order(table: pa.Table, perm: np.ndarray) -> pa.Table:
    """``table`` (scan order) in file order: ``table.take(perm)``. A delta leaves long runs
    of rows in place, so when runs are long the result is those runs sliced out (no copy:
    ~4x faster than a take on a million rows), else a take."""
    if len(perm) == 0:
        return table
    starts = np.flatnonzero(np.diff(perm, prepend=perm[0] - 2) != 1)
    if len(starts) * 16 <= len(perm):
        lens = np.diff(np.append(starts, len(perm)))
        return pa.concat_tables([table.slice(int(perm[i]), int(n)) for i, n in zip(starts, lens)])
    return table.take(pa.array(perm, type=pa.int64()))


_STREAM_ROWS = 1 << 22   # longer orders are encoded a block at a time


def encode_perm(perm: np.ndarray) -> bytes:
    """The order file's bytes: magic, row count, zstd of the int64 deltas (runs of +1, as a
    delta leaves most rows, compress to almost nothing). Past :data:`_STREAM_ROWS` rows
    the deltas are made and compressed a block at a time, into one zstd frame that
    :func:`decode_perm` reads the same: no copy of the whole order, and no compression
    buffer of its size (tens of millions of rows stay within the memory bound)."""
    if len(perm) <= _STREAM_ROWS:
        deltas = np.diff(perm.astype(np.int64, copy=False), prepend=np.int64(0))
        deltas = deltas.astype("<i8", copy=False)
        body = pa.compress(memoryview(deltas).cast("B"), codec="zstd", asbytes=True)
        return _MAGIC + struct.pack("<Q", len(perm)) + body
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        prev = np.int64(0)
        for s in range(0, len(perm), 1 << 20):
            block = perm[s:s + (1 << 20)].astype(np.int64, copy=False)
            out.write(memoryview(np.diff(block, prepend=prev).astype("<i8", copy=False))
                      .cast("B"))
            prev = block[-1]
    return _MAGIC + struct.pack("<Q", len(perm)) + sink.getvalue().to_pybytes()


def decode_perm(data: bytes, rows: int) -> np.ndarray:
    """The permutation in an order file of a ``rows``-row version; IntegrityError if the
    bytes are not one."""
    if data[:8] != _MAGIC or len(data) < 16:
        raise IntegrityError("row order file: bad header")
    (n,) = struct.unpack("<Q", data[8:16])
    if n != rows:
        raise IntegrityError(f"row order file: {n} rows, the version has {rows}")
    try:
        raw = pa.decompress(data[16:], decompressed_size=8 * n, codec="zstd", asbytes=True)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise IntegrityError(f"row order file: cannot decompress ({e})") from None
    perm = np.cumsum(np.frombuffer(raw, dtype="<i8")).astype(np.int64)
    seen = np.zeros(n, dtype=bool)
    if n and (perm.min() < 0 or perm.max() >= n):
        raise IntegrityError("row order file: a position out of range")
    seen[perm] = True
    if not seen.all():
        raise IntegrityError("row order file: not a permutation")
    return perm


def _is_identity(perm: np.ndarray) -> bool:
    """Whether ``perm`` is ``0, 1, 2, ...`` (a block at a time: no whole-size temporary)."""
    step = 1 << 20
    return all(np.array_equal(perm[s:s + step], np.arange(s, min(s + step, len(perm))))
               for s in range(0, len(perm), step))


class OrderMixin:
    """Recording and reading row orders (part of ``TableStore``: uses its folders)."""

    def with_order(self, ref: TableRef, perm: np.ndarray | None, seq: str) -> TableRef:
        """``ref`` recording the file order ``perm`` (None or the identity: the scan order)
        whose row-hash sequence digest is ``seq``; the order file is written if needed."""
        files = {r: h for r, h in ref.files.items() if not is_order_file(r)}
        order: dict[str, Any] = {"digest": seq}
        if perm is not None and not _is_identity(perm):
            data = encode_perm(perm)
            hexd = blake3.blake3(data).hexdigest()
            rel = f"{ORDER_PREFIX}{hexd}.bin"
            path = self._dir_for(ref) / rel
            if not path.exists() or file_blake3(path) != hexd:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, data)
            files[rel] = hexd
            order["file"] = rel
        return replace(ref, files=files, order=order)

    def order_of(self, ref: TableRef) -> np.ndarray | None:
        """The permutation taking ``ref``'s scan order to its file order (None: they are
        the same). The file is hash-checked with the version's other files on reads."""
        rel = (ref.order or {}).get("file")
        if not rel:
            return None
        try:
            data = (self._dir_for(ref) / rel).read_bytes()
        except OSError:
            found = self.find_file(ref.table_id, rel, ref.files.get(rel, ""))
            if found is None:
                raise MissingObject(f"table {ref.table_id} v{ref.version}: row order file "
                                    f"{rel} is missing", table_id=ref.table_id) from None
            data = found.read_bytes()
        if blake3.blake3(data).hexdigest() != ref.files.get(rel):
            raise IntegrityError(f"table {ref.table_id}: {rel}: BLAKE3 mismatch",
                                 table_id=ref.table_id, file=rel)
        return decode_perm(data, ref.rows)

    def _scan_perm(self, ref: TableRef, table: pa.Table, hashes: np.ndarray,
                   key: str | None) -> np.ndarray:
        """The permutation from ``ref``'s scan order to ``table``'s rows (same content):
        by key (one column read) or by row hashes (the side files kept with the data, else
        every row read). ``table`` needs only the key column."""
        ds = self._checked(ref)
        if key is not None:
            return perm_by_keys(ds.to_table(columns=[key])[key], table[key])
        stored = self.version_hashes(ds, self._dir_for(ref), ref.files)
        if stored is None:
            stored = row_hashes(ds.to_table(columns=ref.arrow_schema().names))
        return perm_by_hashes(stored, hashes)

    def _same_rows(self, ref: TableRef, table: pa.Table, hashes: np.ndarray, seq: str,
                   key: str | None) -> TableRef:
        """``ref`` (same content as ``table``) with ``table``'s row order: ``ref`` itself
        when it already records that order."""
        if ref.order is not None and ref.order.get("digest") == seq:
            return ref
        return self.with_order(ref, self._scan_perm(ref, table, hashes, key), seq)
