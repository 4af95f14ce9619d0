"""The on-disk chunk store: chunks appended to pack files, each published by its index.

On disk (``DiskBlobStore(root)``)::

    <root>/packs/pack-<16 hex>.pack   b"DAIPACK1" + chunk payloads back to back
    <root>/packs/pack-<16 hex>.idx    b"DAIIDX01" + entries + BLAKE3 of everything before it
    <root>/gc.lock                    flock: writers hold it shared, gc exclusive

An idx entry is ``chunk id (32 bytes), offset u64, stored length u32, raw length u32, flags u8``.
A pack is written under a temp name, fsynced and renamed; its idx is then written the same way.
The idx rename is the commit point: a pack without an idx is garbage that gc removes. Names are
random, so concurrent writer processes never collide; a chunk stored in several packs is fine.
"""
from __future__ import annotations

import contextlib
import os
import struct
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import blake3

from demoai.errors import IntegrityError, MissingObject
from demoai.store.blobs.chunks import BlobStore
from demoai.store.blobs.codec import ZSTD_LEVEL, decode_chunk, encode_chunk
from demoai.store.blobs.workers import Flusher, get_pool, write_all
from demoai.store.fsutil import FileLock, atomic_write, fsync_dir, tmp_name

__all__ = ["DiskBlobStore", "PACK_MAGIC", "IDX_MAGIC", "IDX_ENTRY", "PACK_ROLLOVER",
           "DIRECT_MIN", "DIRECT_IO", "read_idx"]

PACK_MAGIC, IDX_MAGIC = b"DAIPACK1", b"DAIIDX01"
IDX_ENTRY = struct.Struct("<32sQIIB")   # chunk id, offset, stored length, raw length, flags
PACK_ROLLOVER = 256 << 20   # a writer starts a new pack past this size
# Long runs of new raw chunks of a file read through mmap are written with O_DIRECT straight
# from the mapping (no copy into the page cache, no writeback at fsync time): the pack
# places such a run at an offset congruent to its file offset modulo _ALIGN.
_ALIGN = 4096
DIRECT_MIN = 1 << 20        # shorter runs go through the page cache
DIRECT_IO = 4 << 20         # bytes per direct write


def _open_direct(path: str) -> int | None:
    """A second, O_DIRECT descriptor on ``path``; None where the filesystem refuses it."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        return os.open(path, os.O_WRONLY | flag)
    except OSError:
        return None


class _PackWriter:
    """Appends payloads to a temp pack; ``commit`` publishes pack then idx (the commit point).

    Payloads go through the page cache (``pwrite``), except long runs of raw chunks that are
    consecutive in a page-aligned source mapping (``add(..., src=offset)``): those are placed
    at a pack offset congruent to ``src`` modulo ``_ALIGN`` (up to 4 KiB of zero padding
    before the run) and their whole blocks are written with O_DIRECT from the mapping by the
    io thread, while the CPU pool goes on hashing. No block is written both ways. One fsync
    at commit makes everything durable.
    """

    def __init__(self, store: "DiskBlobStore") -> None:
        self.store, self.fd = store, None

    def _open(self) -> None:
        self.stem = f"pack-{os.urandom(8).hex()}"
        self.tmp = tmp_name(self.store.packs / f"{self.stem}.pack")
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.dfd, self.direct_futs = -1, []   # -1: not opened yet; None: unavailable
        write_all(self.fd, PACK_MAGIC)
        self.off, self.entries, self.flusher = len(PACK_MAGIC), [], Flusher(self.fd)
        # the pending run: pack offset, source view and offset of its first byte, length,
        # index in self.entries of its first entry, whether it was aligned
        self.run: list | None = None

    def add(self, cid: str, payload: Any, raw_len: int, flags: int,
            src: int | None = None) -> None:
        if self.fd is None:
            self._open()
        n = len(payload)
        run = self.run
        if src is not None and run is not None and run[2] + run[3] == src:
            run[3] += n                      # the run goes on
        else:
            if run is not None:
                self._flush_run(final=True)
            if src is None:
                self._pwrite(payload, self.off)
            else:
                base = payload.obj if isinstance(payload, memoryview) else None
                if base is None:
                    self._pwrite(payload, self.off)
                else:
                    self.run = run = [self.off, memoryview(base), src, n, len(self.entries), False]
        self.entries.append((cid, self.off, n, raw_len, flags))
        self.off += n
        if run is not None and self.run is run:
            if not run[5] and run[3] >= DIRECT_MIN and self._direct_fd() is not None:
                self._align_run()
            if run[3] >= DIRECT_IO + _ALIGN:
                self._flush_run(final=not run[5])
        if self.off >= PACK_ROLLOVER:
            self.commit()

    def _pwrite(self, data: Any, offset: int) -> None:
        view = memoryview(data)
        while view:
            k = os.pwrite(self.fd, view, offset)
            view, offset = view[k:], offset + k
        self.flusher.wrote(len(data))

    def _align_run(self) -> None:
        """Shift the pending run so that its pack offset is congruent to its source offset."""
        run = self.run
        pad = (run[2] - run[0]) % _ALIGN
        if pad:
            for i in range(run[4], len(self.entries)):
                cid, off, *rest = self.entries[i]
                self.entries[i] = (cid, off + pad, *rest)
            run[0] += pad
            self.off += pad                  # a hole: reads as zeros, never referenced
        run[5] = True

    def _flush_run(self, final: bool) -> None:
        """Write the pending run: whole blocks direct, partial ones through the page cache.
        Not ``final``: keep the part after the last whole block pending (it goes on)."""
        poff, src_view, src, length, _, aligned = self.run
        self.run = None
        data = src_view[src:src + length]
        if not aligned:
            self._pwrite(data, poff)
            return
        a0 = -poff % _ALIGN                  # bytes before the first whole block
        a1 = (poff + length) // _ALIGN * _ALIGN - poff
        if a1 - a0 < _ALIGN or self._direct_fd() is None:
            if final:
                self._pwrite(data, poff)
                return
            a0, a1 = 0, 0
        if a0:
            self._pwrite(data[:a0], poff)
        if a1 > a0:
            self.direct_futs.append(get_pool("io").submit(
                self._direct_write, data[a0:a1], poff + a0))
        if final:
            if a1 < length:
                self._pwrite(data[a1:], poff + a1)
        else:
            self.run = [poff + a1, src_view, src + a1, length - a1, len(self.entries), True]

    def _direct_fd(self) -> int | None:
        if self.dfd == -1:
            self.dfd = _open_direct(self.tmp)
        return self.dfd

    def _direct_write(self, view: memoryview, offset: int) -> None:
        try:
            while view:
                k = os.pwrite(self.dfd, view, offset)
                view, offset = view[k:], offset + k
        except OSError:
            # e.g. EINVAL: this filesystem wants other alignment. The page cache always works.
            while view:
                k = os.pwrite(self.fd, view, offset)
                view, offset = view[k:], offset + k

    def _wait_direct(self, cancel: bool = False) -> None:
        futs, self.direct_futs = self.direct_futs, []
        if cancel:
            for f in futs:
                f.cancel()
        err = None
        for f in futs:
            try:
                f.result()
            except BaseException as e:  # noqa: BLE001 - re-raised below, after all finished
                err = err or e
        if err is not None and not cancel:
            raise err

    def _close_fds(self) -> None:
        if self.dfd not in (-1, None):
            os.close(self.dfd)
        self.dfd = None
        os.close(self.fd)
        self.fd = None

    def commit(self) -> None:
        if self.fd is None:
            return
        if self.run is not None:
            self._flush_run(final=True)
        try:
            self._wait_direct()
            self.flusher.fsync()             # one fsync covers the direct writes too
        except BaseException:
            self.abort()
            raise
        self._close_fds()
        os.replace(self.tmp, self.store.packs / f"{self.stem}.pack")
        fsync_dir(self.store.packs)  # the pack's name is durable before the idx points at it
        idx = IDX_MAGIC + b"".join(IDX_ENTRY.pack(bytes.fromhex(c), *rest)
                                    for c, *rest in self.entries)
        atomic_write(self.store.packs / f"{self.stem}.idx", idx + blake3.blake3(idx).digest())
        self.store._add_pack(self.stem, self.entries)

    def abort(self) -> None:
        if self.fd is not None:
            self.run = None
            self._wait_direct(cancel=True)
            self.flusher.wait()
            self._close_fds()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)


def read_idx(path: Path) -> list[tuple[str, int, int, int, int]]:
    """The entries of a pack's idx file, ``(chunk id, offset, stored length, raw length,
    flags)``, after checking its magic, size and checksum (``IntegrityError`` otherwise)."""
    data = path.read_bytes()
    body = data[len(IDX_MAGIC):-32]
    if (not data.startswith(IDX_MAGIC) or len(data) < len(IDX_MAGIC) + 32
            or len(body) % IDX_ENTRY.size or blake3.blake3(data[:-32]).digest() != data[-32:]):
        raise IntegrityError(f"index {path.name}: corrupt (checksum or size mismatch)")
    return [(cid.hex(), *rest) for cid, *rest in IDX_ENTRY.iter_unpack(body)]



class DiskBlobStore(BlobStore):
    """Chunks in pack files under ``root`` (created if needed); safe across processes."""

    def __init__(self, root: str | os.PathLike, *, zstd_level: int | None = ZSTD_LEVEL,
                 lock_timeout: float = 300.0) -> None:
        self.root, self.zstd_level, self.lock_timeout = Path(root), zstd_level, lock_timeout
        self.packs = self.root / "packs"
        self.packs.mkdir(parents=True, exist_ok=True)
        self.lock_path = self.root / "gc.lock"
        self._mu = threading.RLock()
        self._packs: dict[str, list[tuple[str, int, int, int, int]]] = {}
        self._bad: dict[str, str] = {}   # stem -> why its idx could not be loaded
        self._index: dict[str, tuple[str, int, int, int, int]] | None = None
        self._fds: dict[str, int] = {}

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            with contextlib.suppress(OSError):
                os.close(fd)

    # --- index
    def _refresh(self) -> None:
        with self._mu:
            stems = {n[:-4] for n in os.listdir(self.packs)
                     if n.startswith("pack-") and n.endswith(".idx")}
            gone = [s for s in self._packs if s not in stems]
            for s in gone:
                del self._packs[s]
                with contextlib.suppress(KeyError, OSError):
                    os.close(self._fds.pop(s))
            new = sorted(stems - self._packs.keys())
            for s in new:
                try:
                    self._packs[s] = read_idx(self.packs / f"{s}.idx")
                    self._bad.pop(s, None)
                except FileNotFoundError:
                    pass  # gc removed it since listdir
                except (IntegrityError, OSError) as e:
                    self._bad[s] = str(e)
            if gone or new or self._index is None:
                index: dict[str, tuple[str, int, int, int, int]] = {}
                for s, entries in self._packs.items():
                    for cid, *rest in entries:
                        index.setdefault(cid, (s, *rest))
                self._index = index  # swapped whole: worker threads read it without a lock

    def _add_pack(self, stem: str, entries: list) -> None:
        with self._mu:
            self._packs[stem] = entries
            if self._index is None:
                self._refresh()
            for cid, *rest in entries:
                self._index.setdefault(cid, (stem, *rest))

    def _contains(self, cid: str) -> bool:
        if self._index is None:
            self._refresh()
        return cid in self._index

    def _pread(self, stem: str, offset: int, length: int) -> bytes:
        fd = self._fds.get(stem)
        if fd is None:
            with self._mu:
                fd = self._fds.get(stem)
                if fd is None:
                    fd = self._fds[stem] = os.open(self.packs / f"{stem}.pack", os.O_RDONLY)
        data = os.pread(fd, length, offset)
        if len(data) != length:
            raise IntegrityError(f"pack {stem}.pack: truncated at offset {offset}", pack=stem)
        return data

    def _read_stored(self, cid: str) -> tuple[bytes, int, int, str]:
        for attempt in range(2):
            loc = self._index.get(cid) if self._index is not None else None
            if loc is None:
                self._refresh()
                loc = self._index.get(cid)
            if loc is None:
                raise MissingObject(f"chunk {cid} is not in the store", chunk=cid)
            stem, off, stored, raw_len, flags = loc
            try:
                return self._pread(stem, off, stored), raw_len, flags, f"{stem}.pack"
            except FileNotFoundError:
                self._refresh()  # a concurrent gc moved it to another pack
        raise MissingObject(f"chunk {cid}: its pack vanished", chunk=cid)

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold gc off (shared lock). Hold it across a put and the ref update that makes its
        chunks live, so a gc cannot run between the two."""
        with FileLock(self.lock_path, self.lock_timeout, shared=True):
            yield

    @contextlib.contextmanager
    def _write_session(self) -> Iterator[_PackWriter]:
        with self.write_lock():
            self._refresh()
            w = _PackWriter(self)
            try:
                yield w
            except BaseException:
                w.abort()
                raise
            w.commit()

    def _entries(self) -> Iterator[tuple[str, Callable]]:
        for stem, entries in list(self._packs.items()):
            for cid, off, stored, raw_len, flags in entries:
                yield cid, raw_len, (lambda s=stem, o=off, n=stored, r=raw_len, f=flags:
                                     (self._pread(s, o, n), r, f, f"{s}.pack"))

    def _problems(self) -> list[str]:
        return list(self._bad.values())

    def iter_chunk_ids(self) -> Iterator[str]:
        """Every distinct chunk id in committed packs (including other processes')."""
        self._refresh()
        return iter(list(self._index))

    def stored_bytes(self) -> int:
        """Bytes on disk of every ``.pack`` and ``.idx`` file."""
        total = 0
        for n in os.listdir(self.packs):
            if n.startswith("pack-") and n.endswith((".pack", ".idx")):
                with contextlib.suppress(FileNotFoundError):
                    total += (self.packs / n).stat().st_size
        return total

    def damaged_chunks(self, chunk_ids: Iterable[str] | None = None) -> list[str]:
        """Ids of stored chunks (all, or those given) whose stored copy fails to decode or
        hash to its id; chunks of a pack whose index is unreadable count as missing."""
        self._refresh()
        want = None if chunk_ids is None else set(chunk_ids)
        bad = []
        for cid, _, load in self._entries():
            if want is not None and cid not in want:
                continue
            try:
                decode_chunk(cid, *load())
            except (IntegrityError, OSError):
                bad.append(cid)
        return sorted(set(bad))

    def repair_raw(self, raw: Iterable[tuple[str, bytes]]) -> dict:
        """:meth:`repair` from raw chunk bytes ``(id, bytes)`` (e.g. cut from an intact
        working-tree file); each is encoded as a put would store it."""
        items = []
        for cid, data in raw:
            payload, flags = encode_chunk(memoryview(data), self.zstd_level)
            items.append((cid, bytes(payload), len(data), flags))
        return self.repair(items)

    def repair(self, good: Iterable[tuple[str, bytes, int, int]]) -> dict:
        """Replace damaged stored copies with ``good`` ones ``(id, payload, raw_len, flags)``
        (each verified first). Packs holding a replaced chunk are rewritten without it:
        their other readable chunks move to a new pack with the good copies, then the old
        pack is deleted, so no damaged copy can shadow the good one. Returns
        ``{"replaced", "dropped", "packs_rewritten"}`` (``dropped``: unreadable chunks of
        those packs that had no good copy; they are then missing, as fsck will say)."""
        items = {}
        for cid, payload, raw_len, flags in good:
            decode_chunk(cid, payload, raw_len, flags, "repair data")
            items[cid] = (payload, raw_len, flags)
        with FileLock(self.lock_path, self.lock_timeout), self._mu:
            self._refresh()
            affected = [s for s, es in self._packs.items() if any(e[0] in items for e in es)]
            have = {e[0] for s, es in self._packs.items() if s not in affected for e in es}
            writer, dropped = _PackWriter(self), []
            try:
                for cid, (payload, raw_len, flags) in items.items():
                    writer.add(cid, payload, raw_len, flags)
                    have.add(cid)
                for stem in affected:
                    for cid, off, stored, raw_len, flags in self._packs[stem]:
                        if cid in have:
                            continue
                        try:
                            payload = self._pread(stem, off, stored)
                            decode_chunk(cid, payload, raw_len, flags, f"{stem}.pack")
                        except (IntegrityError, OSError):
                            dropped.append(cid)
                            continue
                        writer.add(cid, payload, raw_len, flags)
                        have.add(cid)
            except BaseException:
                writer.abort()
                raise
            writer.commit()
            for stem in affected:  # idx first: without it the pack is garbage
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.packs / f"{stem}.idx")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.packs / f"{stem}.pack")
                with contextlib.suppress(KeyError, OSError):
                    os.close(self._fds.pop(stem))
            fsync_dir(self.packs)
            self._index = None
            self._packs.clear()
            self._refresh()
            return {"replaced": sorted(items), "dropped": sorted(set(dropped)),
                    "packs_rewritten": len(affected)}

    def gc(self, live_chunk_ids: set[str] | Callable[[], set[str]]) -> dict:
        """Rewrite packs holding dead chunks so that only live ones remain.

        Takes ``gc.lock`` exclusively, so no put is in flight. ``live_chunk_ids`` may be a
        callable, evaluated under the lock. New packs are committed before old ones are
        deleted. A pack whose live chunk fails verification is kept (and reported) rather
        than deleted. Returns ``{"removed_chunks", "freed_bytes", "problems"}``.
        """
        with FileLock(self.lock_path, self.lock_timeout), self._mu:
            self._refresh()
            live = live_chunk_ids() if callable(live_chunk_ids) else live_chunk_ids
            before_ids, before_bytes = set(self._index), self.stored_bytes()
            rewrite = [s for s, es in self._packs.items() if any(e[0] not in live for e in es)]
            have = {e[0] for s, es in self._packs.items() if s not in rewrite for e in es}
            writer, problems, doomed = _PackWriter(self), [], []
            try:
                for stem in rewrite:
                    ok = True
                    for cid, off, stored, raw_len, flags in self._packs[stem]:
                        if cid not in live or cid in have:
                            continue
                        try:
                            payload = self._pread(stem, off, stored)
                            decode_chunk(cid, payload, raw_len, flags, f"{stem}.pack")
                        except (IntegrityError, OSError) as e:
                            problems.append(str(e))
                            ok = False
                            continue
                        writer.add(cid, payload, raw_len, flags)
                        have.add(cid)
                    if ok:
                        doomed.append(stem)
            except BaseException:
                writer.abort()
                raise
            writer.commit()
            for stem in doomed:  # idx first: without it the pack is already garbage
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.packs / f"{stem}.idx")
            fsync_dir(self.packs)
            names = set(os.listdir(self.packs))
            for n in names:  # orphan packs and temp files of crashed writers
                orphan = (n.endswith(".pack") and n.startswith("pack-")
                          and f"{n[:-5]}.idx" not in names and n[:-5] not in self._bad)
                if orphan or n.startswith(".tmp-"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.packs / n)
            self._refresh()
            return {"removed_chunks": len(before_ids - set(self._index)),
                    "freed_bytes": before_bytes - self.stored_bytes(), "problems": problems}
