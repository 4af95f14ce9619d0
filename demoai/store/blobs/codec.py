"""How one chunk is stored: named by the BLAKE3 of its raw bytes, compressed with zstd when
that saves at least ``MIN_SAVING``, and checked against its name whenever it is read back.

A stored chunk is ``(payload, raw length, flags)``; ``F_ZSTD`` in the flags means the
payload is a zstd frame. Both stores (memory and packs) and transfers keep chunks in this
form, so a chunk is never recompressed on its way between repositories.
"""
from __future__ import annotations

import threading
from typing import Any

import blake3
import zstandard

from demoai.errors import IntegrityError

__all__ = ["F_ZSTD", "ZSTD_LEVEL", "MIN_SAVING", "SAMPLE", "chunk_id", "encode_chunk",
           "decode_chunk"]

F_ZSTD = 1
ZSTD_LEVEL = 1              # level 3 is no smaller on quantized weights and slower
MIN_SAVING = 0.10           # below this, compressing on write (~6x the CPU of hashing) and
                            # decompressing on every read is not worth it: quantized weights
                            # save 3-7 % and are stored raw
SAMPLE = 8192               # a chunk is first tried on this much of itself (cheap reject)

_tls = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # zstd contexts are not thread-safe: one per worker thread (and level).
    cs = _tls.__dict__.setdefault("zc", {})
    if level not in cs:
        cs[level] = zstandard.ZstdCompressor(level=level)
    return cs[level]


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_tls, "zd", None)
    if d is None:
        d = _tls.zd = zstandard.ZstdDecompressor()
    return d


def chunk_id(data: Any) -> str:
    """The id of a chunk: the BLAKE3 (hex) of its raw bytes."""
    return blake3.blake3(data).hexdigest()


def encode_chunk(piece: memoryview, level: int | None, skip: bool = False) -> tuple[Any, int]:
    """``(payload, flags)`` to store the raw bytes ``piece`` as: zstd at ``level`` when that
    saves ``MIN_SAVING``, else the bytes as they are (also when ``level`` is None or
    ``skip``). A large chunk whose first ``SAMPLE`` bytes do not compress is not tried whole."""
    if level is not None and not skip:
        zc = _compressor(level)
        if len(piece) >= 4 * SAMPLE and \
                len(zc.compress(piece[:SAMPLE])) > SAMPLE * (1 - MIN_SAVING):
            return piece, 0   # the sample does not compress: the chunk will not either
        comp = zc.compress(piece)
        if len(comp) <= len(piece) * (1 - MIN_SAVING):
            return comp, F_ZSTD
    return piece, 0


def decode_chunk(cid: str, payload: bytes, raw_len: int, flags: int, where: str) -> bytes:
    """Raw bytes of a stored chunk, verified against its id; ``IntegrityError`` (naming
    ``where`` it was read from) otherwise."""
    raw = payload
    if flags & F_ZSTD:
        try:
            raw = _decompressor().decompress(payload, max_output_size=raw_len)
        except zstandard.ZstdError as e:
            raise IntegrityError(f"chunk {cid} in {where}: cannot decompress ({e})",
                                 chunk=cid, pack=where) from e
    if len(raw) != raw_len or chunk_id(raw) != cid:
        raise IntegrityError(f"chunk {cid} in {where}: hash mismatch", chunk=cid, pack=where)
    return raw
