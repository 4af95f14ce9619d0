"""What two versions of one Lance dataset do not share, from metadata alone.

A Lance version is a list of fragments; a fragment is a set of immutable data files plus
an optional deletion file, and (with stable row ids) a sequence of row ids, one per
physical row. Two versions share a row iff the same data files hold it at the same
offset and neither version's deletion vector hides it. So the rows that differ are
found from fragment lists, deletion files and the inline row-id sequences, without
reading a data page; only those rows are then fetched. Deletion files and row-id
sequences are decoded here (Roaring bitmap / Arrow IPC; protobuf), each decoder checked
against the counts in the manifest, with a slower Lance-scan fallback if anything
looks unfamiliar.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lance
import numpy as np
import pyarrow as pa

__all__ = ["Frag", "fragments", "candidates", "take_rows", "take_picked", "roaring_u32",
           "row_id_sequence"]

TAKE_CHUNK = 2048          # rows per Lance take: bounds memory (see bench/bench_tables.py)
SCAN_ROWS = 1 << 16        # whole new fragments above this size are scanned, not taken


@dataclass
class Frag:
    frag: Any                # lance.LanceFragment of one version
    files: tuple[str, ...]   # its data files: they identify a fragment across versions
    physical: int
    live: int
    start: int               # position of its first live row in its version's scan order


def fragments(ds: lance.LanceDataset) -> list[Frag]:
    """The fragments of a checked-out version, in scan order."""
    out, start = [], 0
    for f in ds.get_fragments():
        md = f.metadata
        dead = md.deletion_file.num_deleted_rows if md.deletion_file is not None else 0
        live = md.physical_rows - dead
        out.append(Frag(f, tuple(sorted(df.path for df in md.files)), md.physical_rows,
                        live, start))
        start += live
    return out


# ----------------------------------------------------------------------------- decoders

def roaring_u32(b: bytes) -> np.ndarray:
    """Decode a 32-bit Roaring bitmap (portable format, as Lance writes large deletion
    vectors) into sorted values. Raises ValueError on anything unexpected."""
    cookie = int.from_bytes(b[:4], "little")
    if cookie == 12346:                       # no run containers
        n, pos = int.from_bytes(b[4:8], "little"), 8
        runs, has_offsets = np.zeros(n, dtype=bool), True
    elif cookie & 0xFFFF == 12347:            # with run containers
        n, pos = (cookie >> 16) + 1, 4
        nb = (n + 7) // 8
        runs = np.unpackbits(np.frombuffer(b, np.uint8, nb, pos), bitorder="little")[:n] > 0
        pos += nb
        has_offsets = n >= 4
    else:
        raise ValueError("not a roaring bitmap")
    hdr = np.frombuffer(b, "<u2", 2 * n, pos).reshape(n, 2)
    pos += 4 * n + (4 * n if has_offsets else 0)
    out = []
    for i in range(n):
        card = int(hdr[i, 1]) + 1
        if runs[i]:
            nr = int.from_bytes(b[pos:pos + 2], "little")
            r = np.frombuffer(b, "<u2", 2 * nr, pos + 2).reshape(nr, 2).astype(np.int64)
            pos += 2 + 4 * nr
            vals = (np.concatenate([np.arange(s, s + ln + 1) for s, ln in r]) if nr
                    else np.zeros(0, dtype=np.int64))
        elif card <= 4096:
            vals = np.frombuffer(b, "<u2", card, pos)
            pos += 2 * card
        else:
            vals = np.flatnonzero(np.unpackbits(np.frombuffer(b, np.uint8, 8192, pos),
                                                bitorder="little"))
            pos += 8192
        if len(vals) != card:
            raise ValueError("roaring container cardinality mismatch")
        out.append((int(hdr[i, 0]) << 16) + vals.astype(np.int64))
    if pos != len(b):
        raise ValueError("trailing bytes after roaring bitmap")
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def deleted_offsets(uri: Path, fr: Frag) -> np.ndarray | None:
    """Sorted deleted offsets of a fragment, read straight from its deletion file (which
    the caller hash-checked); None if the file's format is not understood."""
    df = fr.frag.metadata.deletion_file
    if df is None:
        return np.zeros(0, dtype=np.int64)
    try:
        data = (uri / df.path(fr.frag.fragment_id)).read_bytes()
        if str(getattr(df, "file_type", "")).lower().endswith("array"):
            col = pa.ipc.open_file(pa.py_buffer(data)).read_all().column(0)
            dead = np.sort(col.to_numpy().astype(np.int64))
        else:
            dead = roaring_u32(data)
    except (OSError, ValueError, pa.ArrowException):
        return None
    if len(dead) != df.num_deleted_rows or (len(dead) and (
            dead[-1] >= fr.physical or np.any(np.diff(dead) <= 0))):
        return None
    return dead


def _varint(b: bytes, i: int) -> tuple[int, int]:
    x = shift = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << shift
        if c < 0x80:
            return x, i
        shift += 7


def _fields(b: bytes):
    """(field number, value) pairs of a protobuf message: ints for varints, else bytes."""
    i = 0
    while i < len(b):
        tag, i = _varint(b, i)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError("unsupported protobuf wire type")
        yield field, v


def _u64_array(b: bytes) -> np.ndarray:
    for f, v in _fields(b):
        if f in (1, 2):                       # U16Array / U32Array: base + offsets
            base, offs = 0, b""
            for ff, vv in _fields(v):
                base, offs = (vv, offs) if ff == 1 else (base, vv)
            return base + np.frombuffer(offs, "<u2" if f == 1 else "<u4").astype(np.int64)
        if f == 3:                            # U64Array
            for ff, vv in _fields(v):
                if ff == 1:
                    return np.frombuffer(vv, "<u8").astype(np.int64)
    return np.zeros(0, dtype=np.int64)


def _segment(b: bytes) -> np.ndarray:
    for f, v in _fields(b):
        if f in (1, 2):                       # Range / RangeWithHoles
            start = end = 0
            holes = np.zeros(0, dtype=np.int64)
            for ff, vv in _fields(v):
                if ff == 1:
                    start = vv
                elif ff == 2:
                    end = vv
                elif ff == 3 and f == 2:
                    holes = _u64_array(vv)
            ids = np.arange(start, end, dtype=np.int64)
            return np.setdiff1d(ids, holes, assume_unique=True) if len(holes) else ids
        if f == 3:                            # RangeWithBitmap: bit i -> start + i present
            start = end = 0
            bits = b""
            for ff, vv in _fields(v):
                start, end, bits = ((vv, end, bits) if ff == 1 else (start, vv, bits)
                                    if ff == 2 else (start, end, vv))
            mask = np.unpackbits(np.frombuffer(bits, np.uint8), bitorder="little")
            if len(mask) < end - start:
                raise ValueError("row id bitmap too short")
            return start + np.flatnonzero(mask[:end - start]).astype(np.int64)
        if f in (4, 5):                       # SortedArray / Array
            return _u64_array(v)
        raise ValueError("unsupported row id segment")
    return np.zeros(0, dtype=np.int64)


def row_id_sequence(fr: Frag) -> np.ndarray | None:
    """The stable row id of every physical row of a fragment, decoded from the inline
    protobuf in the manifest; None where it is external or unfamiliar."""
    meta = fr.frag.metadata.row_id_meta
    if meta is None:
        return None
    try:
        inline = json.loads(meta.json()).get("Inline")
        if inline is None:
            return None
        raw = bytes(inline)
        parts = [_segment(v) for f, v in _fields(raw) if f == 1]
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    except (ValueError, IndexError, TypeError, AttributeError):
        return None
    return ids if len(ids) == fr.physical else None


# ----------------------------------------------------------------------------- candidates

def _mark_live(fr: Frag, mark: np.ndarray, bit: int) -> None:
    # Fallback: scan _rowaddr (Lance derives it from the deletion vector, no data pages).
    for batch in fr.frag.scanner(columns=[], with_row_address=True, batch_size=1 << 16,
                                 batch_readahead=2).to_batches():
        off = batch.column(0).to_numpy() & np.uint64(0xFFFFFFFF)
        mark[off] |= bit


def _shared(uri: Path, fa: Frag, fb: Frag):
    """For one fragment in both versions: (offsets, local indices) only live in a, in b."""
    da, db = deleted_offsets(uri, fa), deleted_offsets(uri, fb)
    if da is not None and db is not None:
        off_a = np.setdiff1d(db, da, assume_unique=True)   # deleted in b only
        off_b = np.setdiff1d(da, db, assume_unique=True)   # deleted in a only
        return ((off_a, off_a - np.searchsorted(da, off_a)),
                (off_b, off_b - np.searchsorted(db, off_b)))
    mark = np.zeros(fa.physical, dtype=np.uint8)
    _mark_live(fa, mark, 1)
    _mark_live(fb, mark, 2)
    res = []
    for bit in (1, 2):
        off = np.flatnonzero(mark == bit)
        rank = np.cumsum((mark & bit).astype(bool), dtype=np.int32)[off] - 1
        res.append((off, rank.astype(np.int64)))
    return tuple(res)


def _whole(uri: Path, fr: Frag) -> tuple[Frag, np.ndarray, np.ndarray | None]:
    dead = deleted_offsets(uri, fr)
    off = None if dead is None else np.setdiff1d(np.arange(fr.physical), dead,
                                                 assume_unique=True)
    return fr, np.arange(fr.live, dtype=np.int64), off


def candidates(uri: Path, dsa: lance.LanceDataset, dsb: lance.LanceDataset):
    """Rows physically present in only one version, per side a list of ``(fragment,
    local indices, physical offsets or None)`` in stored order. Reads fragment metadata
    and deletion files only, never data pages: the cost follows the change."""
    fa, fb = fragments(dsa), fragments(dsb)
    by_files_b = {f.files: f for f in fb}
    out: tuple[list, list] = ([], [])
    shared_b = set()
    for fr in fa:
        other = by_files_b.get(fr.files)
        if other is None:
            out[0].append(_whole(uri, fr))
            continue
        shared_b.add(other.files)
        for side, f, (off, local) in zip((0, 1), (fr, other), _shared(uri, fr, other)):
            if len(off):
                out[side].append((f, local.astype(np.int64), off.astype(np.int64)))
    for fr in fb:
        if fr.files not in shared_b:
            out[1].append(_whole(uri, fr))
    return out


def take_rows(ds: lance.LanceDataset, picks: list, columns: list[str],
              with_rowids: bool) -> tuple[pa.Table, np.ndarray | None]:
    """Fetch picked rows fragment by fragment, in small chunks (bounded memory; the
    fragment take path also maps far less of Lance's code than a dataset take). Row ids
    (for unkeyed diffs) come from the decoded row-id sequence, else from Lance."""
    parts, rids = [], []
    for fr, local, off in picks:
        seq = row_id_sequence(fr) if with_rowids and off is not None else None
        if with_rowids and seq is not None:
            rids.append(seq[off])
        if len(local) == fr.live > SCAN_ROWS:  # a big new fragment: a scan is faster
            t = fr.frag.scanner(columns=columns, with_row_id=with_rowids).to_table()
            if with_rowids and seq is None:
                rids.append(t["_rowid"].to_numpy().astype(np.int64))
            parts.append(t.select(columns))
            continue
        for i in range(0, len(local), TAKE_CHUNK):
            idx = local[i:i + TAKE_CHUNK]
            parts.append(fr.frag.take(idx, columns=columns))
            if with_rowids and seq is None:
                t = ds.take(fr.start + idx, columns=["_rowid"])
                rids.append(t["_rowid"].to_numpy().astype(np.int64))
    if not parts:
        empty = ds.schema.empty_table().select(columns)
        return empty, (np.zeros(0, dtype=np.int64) if with_rowids else None)
    return pa.concat_tables(parts), (np.concatenate(rids) if with_rowids else None)


def take_picked(ds: lance.LanceDataset, picks: list, idx: np.ndarray,
                 columns: list[str]) -> pa.Table:
    """Rows ``idx`` (positions in the concatenation of ``picks``' rows) in ``idx`` order."""
    idx = np.asarray(idx, dtype=np.int64)
    starts = np.cumsum([0] + [len(p[1]) for p in picks])
    srt = np.sort(idx)
    which = np.searchsorted(starts, srt, side="right") - 1
    sub = []
    for j, (fr, local, off) in enumerate(picks):
        sel = srt[which == j] - starts[j]
        if len(sel):
            sub.append((fr, local[sel], None if off is None else off[sel]))
    t, _ = take_rows(ds, sub, columns, False)
    return t.take(pa.array(np.searchsorted(srt, idx), type=pa.int64()))
