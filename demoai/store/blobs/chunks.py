"""Content-addressed chunk storage for large binary files (model weights, images).

A file is cut with content-defined chunking (FastCDC, ~62 KiB mean, 256 KiB max), each chunk is
named by the BLAKE3 of its raw bytes and compressed with zstd when a sample shows that saves at
least 10 %. Two versions of a file that differ in a few MiB share every other chunk.

This module holds the chunking and hashing, the store interface and the in-memory store;
how one chunk is encoded is :mod:`demoai.store.blobs.codec`, the thread pools are
:mod:`demoai.store.blobs.workers`, and the on-disk pack format and store are
:mod:`demoai.store.blobs.packs`.
"""
from __future__ import annotations

import abc
import contextlib
import itertools
import mmap
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import blake3
from pyfastcdc.cy import FastCDC

from demoai.errors import IntegrityError, InvalidArtifact, MissingObject
from demoai.store.blobs.codec import F_ZSTD, ZSTD_LEVEL, chunk_id, decode_chunk, encode_chunk
from demoai.store.blobs.workers import Flusher, get_pool, nworkers, write_all
from demoai.store.fsutil import fsync_dir, tmp_name

__all__ = ["BlobManifest", "BlobStore", "MemoryBlobStore", "chunk_boundaries",
           "compute_manifest", "AVG_CHUNK", "MIN_CHUNK", "MAX_CHUNK", "ZSTD_LEVEL"]

Progress = Optional[Callable[[int, int], None]]

# avg == min == 45 KiB: FastCDC skips the first min_size bytes of every chunk (cut-point
# skipping), so a large min_size doubles chunking speed; 45 KiB still rounds to a 2^15 mask,
# which puts the mean chunk at ~62 KiB (measured on GGUF and random data).
AVG_CHUNK = MIN_CHUNK = 46080
MAX_CHUNK = 262144
BATCH_BYTES = 4 << 20       # unit of work for the thread pool: big enough to amortise Python
SEGMENT = 16 << 20          # unit of cutting (and of whole-file hashing) for the pool


@dataclass(frozen=True)
class BlobManifest:
    """What a stored file is: its whole-content digest, size and ordered chunk list."""

    digest: str
    size: int
    chunks: tuple[tuple[str, int], ...]

    def to_dict(self) -> dict:
        """A JSON-ready dict (chunks as ``[id, raw_length]`` pairs)."""
        return {"digest": self.digest, "size": self.size,
                "chunks": [[cid, n] for cid, n in self.chunks]}

    @classmethod
    def from_dict(cls, d: dict) -> "BlobManifest":
        """Rebuild and sanity-check a manifest; ``InvalidArtifact`` if malformed."""
        try:
            m = cls(str(d["digest"]), int(d["size"]),
                    tuple((str(c), int(n)) for c, n in d["chunks"]))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidArtifact(f"malformed blob manifest: {e}") from e
        if not m.digest.startswith("blake3:") or sum(n for _, n in m.chunks) != m.size:
            raise InvalidArtifact("blob manifest digest or chunk lengths are inconsistent")
        return m


# ---------------------------------------------------------------- chunking


def _cut(mv: memoryview, start: int, stop: int) -> list[int]:
    """Cut positions from ``start`` (itself a cut) up to the first one >= ``stop``."""
    pos, p = [start], start
    for c in FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK).cut_buf(mv[start:]):
        p += c.length
        pos.append(p)
        if p >= stop:
            break
    return pos


def chunk_boundaries(buf: Any, segments: int | None = None) -> list[int]:
    """Cut positions ``[0, c1, ..., len(buf)]``, identical to one sequential FastCDC pass.

    FastCDC's decision where a chunk ends depends only on the bytes from the chunk's start,
    so segments can be cut in parallel from arbitrary offsets; once the cuts of segment k-1
    land on a cut of segment k, everything after agrees. If they never meet (e.g. long runs
    of one byte value), we keep cutting sequentially, so the result is always exact.
    """
    mv = memoryview(buf)
    n = len(mv)
    segs = max(1, min(segments or nworkers(), n // (4 * MAX_CHUNK)))
    out = [0]
    for cuts in _iter_cuts(mv, -(-n // segs) if n else 1):
        out.extend(cuts)
    return out


def _iter_cuts(mv: memoryview, seg_len: int = SEGMENT) -> Iterator[list[int]]:
    """The cut positions after 0, as in :func:`chunk_boundaries`, in lists yielded as soon as
    they are certain: segments of ``seg_len`` bytes are cut on the pool a few ahead, so that
    hashing (and writing) can start long before the whole file is cut."""
    n = len(mv)
    if n == 0:
        return
    starts = list(range(0, n, max(seg_len, 4 * MAX_CHUNK))) + [n]
    if len(starts) <= 2:
        yield _cut(mv, 0, n)[1:]
        return
    pool, ahead = get_pool(), deque()
    nxt = 0

    def submit_more() -> None:
        nonlocal nxt
        while nxt < len(starts) - 1 and len(ahead) < nworkers() + 1:
            ahead.append(pool.submit(_cut, mv, starts[nxt], starts[nxt + 1]))
            nxt += 1

    try:
        submit_more()
        last = 0
        while ahead:
            part = ahead.popleft().result()
            submit_more()
            if part[0] == 0:
                new = part[1:]
            else:
                where = {p: i for i, p in enumerate(part)}
                new = []
                while last not in where and last < part[-1]:
                    ext = _cut(mv, last, last + 1)[1:]
                    new.extend(ext)
                    last = ext[-1]
                if last in where:
                    new.extend(part[where[last] + 1:])
            if new:
                last = new[-1]
                yield new
        if last < n:
            yield _cut(mv, last, n)[1:]
    finally:
        for f in ahead:
            f.cancel()


def _batches(bounds: list[int]) -> Iterator[tuple[int, int]]:
    i0 = 0
    for i in range(1, len(bounds)):
        if bounds[i] - bounds[i0] >= BATCH_BYTES or i == len(bounds) - 1:
            yield i0, i
            i0 = i


def _hash_compress(mv: memoryview, bounds: list[int], i0: int, i1: int,
                   known: Callable[[str], bool], level: int | None
                   ) -> list[tuple[str, int, Any, int]]:
    """Worker: hash chunks i0..i1, compress the ones the store lacks."""
    out, raw_streak = [], 0
    for i in range(i0, i1):
        piece = mv[bounds[i]:bounds[i + 1]]
        cid = chunk_id(piece)
        if known(cid):
            out.append((cid, len(piece), None, 0))
            continue
        # Incompressible data (random, already compressed) costs zstd time for nothing: after
        # four raw chunks in a row, only every 8th chunk probes whether that is still so.
        payload, flags = encode_chunk(piece, level, raw_streak >= 4 and (i - i0) % 8 != 0)
        raw_streak = 0 if flags else raw_streak + 1
        out.append((cid, len(piece), payload, flags))
    return out


def compute_manifest(data: Any) -> BlobManifest:
    """The manifest ``data`` (bytes, or a path) would get, without storing anything.

    Cheap enough for change detection: it chunks and hashes but does not compress or write.
    """
    if isinstance(data, (str, os.PathLike)):
        with open(data, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return compute_manifest(b"")
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    mv = memoryview(data)
    digest, batches = _scan(mv, lambda _: True, None)
    chunks = tuple((cid, n) for res in batches for cid, n, _, _ in res)
    return BlobManifest("blake3:" + digest.result(), len(mv), chunks)


class _Digest:
    """BLAKE3 of a whole buffer, computed by a chain of pool tasks of ``SEGMENT`` bytes each
    (each submitted when the previous one finishes), so that it interleaves with the chunk
    work instead of holding a worker for the whole file."""

    def __init__(self, mv: memoryview) -> None:
        self.mv, self.h, self.done = mv, blake3.blake3(), threading.Event()
        self.err: BaseException | None = None
        self._step(0)

    def _step(self, off: int) -> None:
        if off >= len(self.mv) and off:
            self.done.set()
            return
        get_pool().submit(self._run, off)

    def _run(self, off: int) -> None:
        try:
            self.h.update(self.mv[off:off + SEGMENT])
        except BaseException as e:  # noqa: BLE001 - handed to result()
            self.err = e
            self.done.set()
            return
        self._step(off + SEGMENT)

    def result(self) -> str:
        self.done.wait()
        if self.err is not None:
            raise self.err
        return self.h.hexdigest()


def _scan(mv: memoryview, known: Callable[[str], bool], level: int | None) -> tuple[Any, Iterator]:
    """Chunk ``mv``; return a future of its digest and the per-batch worker results in order.

    Cutting, hashing the chunks and hashing the whole buffer all run as pool tasks, in a
    pipeline: the first batches are hashed (and written) while later segments are cut.
    """
    bounds = [0]

    def jobs() -> Iterator[tuple]:
        i0, n = 0, len(mv)
        for cuts in _iter_cuts(mv):
            first = len(bounds)
            bounds.extend(cuts)  # only appended to: the workers' indices stay valid
            for i in range(first, len(bounds)):
                if bounds[i] - bounds[i0] >= BATCH_BYTES or bounds[i] == n:
                    yield mv, bounds, i0, i, known, level
                    i0 = i

    digest = _Digest(mv)
    return digest, _run_windowed(_hash_compress, jobs())


def _run_windowed(fn: Callable, jobs: Iterable[tuple]) -> Iterator[Any]:
    """``fn(*job)`` on the pool, results in order, at most a few batches in flight (memory)."""
    pool, window = get_pool(), deque()
    try:
        for job in jobs:
            window.append(pool.submit(fn, *job))
            if len(window) >= 2 * nworkers() + 2:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        for f in window:
            f.cancel()
        for f in window:
            with contextlib.suppress(BaseException):
                f.result()


# ---------------------------------------------------------------- the store


class BlobStore(abc.ABC):
    """Base class: chunking, hashing, compression and verification; subclasses keep chunks.

    ``zstd_level`` (a constructor argument of both stores) is the zstd level new chunks are
    tried with; ``None`` stores everything raw. Reads never depend on it.
    """

    zstd_level: int | None = ZSTD_LEVEL

    # --- what a backend provides
    @abc.abstractmethod
    def _contains(self, cid: str) -> bool: """Known chunk, without refreshing (fast)."""

    @abc.abstractmethod
    def _refresh(self) -> None: """Pick up chunks other processes wrote."""

    @abc.abstractmethod
    def _write_session(self) -> contextlib.AbstractContextManager: """Yields a writer."""

    @abc.abstractmethod
    def _read_stored(self, cid: str) -> tuple[bytes, int, int, str]:
        """(payload, raw length, flags, location) of a chunk, or ``MissingObject``."""

    @abc.abstractmethod
    def _entries(self) -> Iterator[tuple[str, int, Callable[[], tuple[bytes, int, int, str]]]]:
        """Every stored copy: (chunk id, raw length, loader returning as ``_read_stored``)."""

    @abc.abstractmethod
    def iter_chunk_ids(self) -> Iterator[str]:
        """Every distinct chunk id in the store."""

    @abc.abstractmethod
    def stored_bytes(self) -> int:
        """Bytes the store occupies (payloads plus index)."""

    @abc.abstractmethod
    def gc(self, live_chunk_ids: set[str] | Callable[[], set[str]]) -> dict:
        """Drop every chunk not in ``live_chunk_ids``; ``{"removed_chunks", "freed_bytes"}``."""

    def _problems(self) -> list[str]:
        return []

    # --- writing
    def put_file(self, path: str | os.PathLike, progress: Progress = None) -> BlobManifest:
        """Store a file's content (read through mmap) and return its manifest.

        Raises ``IntegrityError`` if the file changed while it was being read.
        """
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size == 0:
                return self.put_bytes(b"")
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        with contextlib.suppress(AttributeError, OSError):
            mm.madvise(mmap.MADV_WILLNEED)  # start readahead while chunking begins
        m = self._put_view(memoryview(mm), progress, direct=True)
        st2 = os.stat(path)
        if (st2.st_size, st2.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            raise IntegrityError(f"{path} changed while it was being stored", path=str(path))
        return m

    def put_bytes(self, data: bytes) -> BlobManifest:
        """Store ``data`` and return its manifest."""
        return self._put_view(memoryview(data), None)

    def _put_view(self, mv: memoryview, progress: Progress, direct: bool = False) -> BlobManifest:
        """Store ``mv``; ``direct``: it is a page-aligned mapping, so runs of raw chunks may
        be written to disk from it without a copy."""
        n, chunks, written, done = len(mv), [], set(), 0
        with self._write_session() as writer:
            digest, batches = _scan(mv, self._contains, self.zstd_level)
            for results in batches:
                for cid, raw_len, payload, flags in results:
                    chunks.append((cid, raw_len))
                    if payload is not None and cid not in written:
                        if direct and not flags:
                            writer.add(cid, payload, raw_len, flags, src=done)
                        else:
                            writer.add(cid, payload, raw_len, flags)
                        written.add(cid)
                    done += raw_len
                if progress:
                    progress(done, n)
            return BlobManifest("blake3:" + digest.result(), n, tuple(chunks))

    def put_chunk(self, chunk_id: str, data: bytes) -> None:
        """Store one chunk received from elsewhere, after checking that ``data`` hashes to it."""
        self.put_chunks([(chunk_id, data)])

    def put_chunks(self, items: Iterable[tuple[str, bytes]]) -> int:
        """Store many received chunks in one pack (verified); returns how many were new."""
        added = 0
        with self._write_session() as writer:
            seen: set[str] = set()
            for cid, data in items:
                if chunk_id(data) != cid:
                    raise IntegrityError(f"chunk {cid}: received bytes hash to {chunk_id(data)}",
                                         chunk=cid)
                if cid in seen or self._contains(cid):
                    continue
                payload, flags = encode_chunk(memoryview(data), self.zstd_level)
                writer.add(cid, payload, len(data), flags)
                seen.add(cid)
                added += 1
        return added

    def put_stored(self, items: Iterable[tuple[str, bytes, int, int]]) -> int:
        """Store chunks received in their stored form ``(id, payload, raw_len, flags)``
        (as :meth:`get_stored` gives them), each verified by decoding it first; the payload
        is kept as it came, so a transfer never recompresses. Returns how many were new."""
        added = 0
        with self._write_session() as writer:
            seen: set[str] = set()
            for cid, payload, raw_len, flags in items:
                if flags & ~F_ZSTD:
                    raise IntegrityError(f"chunk {cid}: unknown flags {flags}", chunk=cid)
                decode_chunk(cid, payload, raw_len, flags, "received data")
                if cid in seen or self._contains(cid):
                    continue
                writer.add(cid, payload, raw_len, flags)
                seen.add(cid)
                added += 1
        return added

    def get_stored(self, chunk_id: str) -> tuple[bytes, int, int]:
        """A chunk as stored: ``(payload, raw_len, flags)``, checked against its id."""
        payload, raw_len, flags, where = self._read_stored(chunk_id)
        decode_chunk(chunk_id, payload, raw_len, flags, where)
        return payload, raw_len, flags

    # --- reading
    def has_chunk(self, chunk_id: str) -> bool:
        """Whether the chunk is stored (looking for packs other processes wrote if needed)."""
        if self._contains(chunk_id):
            return True
        self._refresh()
        return self._contains(chunk_id)

    def missing_chunks(self, chunk_ids: Iterable[str]) -> list[str]:
        """The ids among ``chunk_ids`` not stored, in order, without repeats."""
        ids = list(dict.fromkeys(chunk_ids))
        if any(not self._contains(c) for c in ids):
            self._refresh()
        return [c for c in ids if not self._contains(c)]

    def get_chunk(self, chunk_id: str) -> bytes:
        """Raw bytes of one chunk, verified; ``MissingObject`` / ``IntegrityError``."""
        payload, raw_len, flags, where = self._read_stored(chunk_id)
        return decode_chunk(chunk_id, payload, raw_len, flags, where)

    def _get_batch(self, chunks: tuple[tuple[str, int], ...]) -> list[bytes]:
        out = []
        for cid, n in chunks:
            raw = self.get_chunk(cid)
            if len(raw) != n:
                raise IntegrityError(f"chunk {cid}: {len(raw)} bytes, manifest says {n}", chunk=cid)
            out.append(raw)
        return out

    def _iter_raw(self, m: BlobManifest, progress: Progress) -> Iterator[bytes]:
        """Verified chunks of ``m`` in order, then a check of the whole digest."""
        bounds = [0, *itertools.accumulate(n for _, n in m.chunks)]
        jobs = ((m.chunks[i0:i1],) for i0, i1 in _batches(bounds))
        h, done = blake3.blake3(), 0
        for raws in _run_windowed(self._get_batch, jobs):
            for raw in raws:
                h.update(raw)
                done += len(raw)
                yield raw
            if progress:
                progress(done, m.size)
        if done != m.size or "blake3:" + h.hexdigest() != m.digest:
            raise IntegrityError(f"blob {m.digest}: reassembled content does not match",
                                 digest=m.digest)

    def read_bytes(self, m: BlobManifest) -> bytes:
        """The file content of ``m``; every chunk and the whole digest are verified."""
        return b"".join(list(self._iter_raw(m, None)))

    def write_to(self, m: BlobManifest, out_path: str | os.PathLike,
                 progress: Progress = None) -> None:
        """Write the content of ``m`` to ``out_path`` atomically, after verifying all of it."""
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_name(out_path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        flusher = Flusher(fd)
        try:
            for raw in self._iter_raw(m, progress):
                write_all(fd, raw)
                flusher.wrote(len(raw))
            flusher.fsync()
        except BaseException:
            flusher.wait()
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, out_path)
        fsync_dir(out_path.parent)

    def verify(self, chunk_ids: Iterable[str] | None = None,
               progress: Progress = None) -> list[str]:
        """fsck: re-read and rehash every stored copy (or the given chunks); list the problems.

        Never raises for corruption; problems read like ``chunk <id> in pack-x.pack: ...``.
        """
        self._refresh()
        want = None if chunk_ids is None else dict.fromkeys(chunk_ids)
        problems = self._problems() if want is None else [
            f"chunk {c}: missing" for c in want if not self._contains(c)]
        targets = [t for t in self._entries() if want is None or t[0] in want]
        total, done = sum(t[1] for t in targets), 0

        def check(batch: list) -> tuple[list[str], int]:
            bad = []
            for cid, _, load in batch:
                try:
                    decode_chunk(cid, *load())
                except IntegrityError as e:
                    bad.append(str(e))
                except OSError as e:
                    bad.append(f"chunk {cid}: unreadable ({e})")
            return bad, sum(t[1] for t in batch)

        jobs = [(targets[i:i + 64],) for i in range(0, len(targets), 64)]
        for bad, nbytes in _run_windowed(check, jobs):
            problems += bad
            done += nbytes
            if progress:
                progress(done, total)
        return problems


class _MemoryWriter(dict):
    def add(self, cid: str, payload: Any, raw_len: int, flags: int, src: int | None = None) -> None:
        self[cid] = (bytes(payload), raw_len, flags)


class MemoryBlobStore(BlobStore):
    """Chunks in a dict (compressed as on disk): for tests and throwaway repositories."""

    def __init__(self, zstd_level: int | None = ZSTD_LEVEL) -> None:
        self.zstd_level = zstd_level
        self._chunks: dict[str, tuple[bytes, int, int]] = {}
        self._mu = threading.Lock()

    def _contains(self, cid: str) -> bool:
        return cid in self._chunks

    def _refresh(self) -> None:
        pass

    @contextlib.contextmanager
    def _write_session(self) -> Iterator[_MemoryWriter]:
        w = _MemoryWriter()
        yield w
        with self._mu:
            for cid, v in w.items():
                self._chunks.setdefault(cid, v)

    def _read_stored(self, cid: str) -> tuple[bytes, int, int, str]:
        try:
            return (*self._chunks[cid], "memory")
        except KeyError:
            raise MissingObject(f"chunk {cid} is not in the store", chunk=cid) from None

    def _entries(self) -> Iterator[tuple[str, Callable]]:
        for cid, v in list(self._chunks.items()):
            yield cid, v[1], lambda v=v: (*v, "memory")

    def iter_chunk_ids(self) -> Iterator[str]:
        """Every chunk id in the store."""
        return iter(list(self._chunks))

    def stored_bytes(self) -> int:
        """Sum of stored (compressed) payload sizes."""
        return sum(len(p) for p, _, _ in self._chunks.values())

    def gc(self, live_chunk_ids: set[str] | Callable[[], set[str]]) -> dict:
        """Drop chunks not in ``live_chunk_ids`` (a set, or a callable returning one)."""
        with self._mu:
            live = live_chunk_ids() if callable(live_chunk_ids) else live_chunk_ids
            dead = [c for c in self._chunks if c not in live]
            freed = sum(len(self._chunks.pop(c)[0]) for c in dead)
        return {"removed_chunks": len(dead), "freed_bytes": freed}
