"""MinHash signatures of texts, vectorized with numpy, and the LSH banding parameters.

A text becomes a set of shingles (word or character n-grams of its normalized form), every
shingle a 32-bit hash, and the signature the minimum of ``num_perm`` affine permutations
``a_k * fmix32(h) + b_k mod 2**32`` over the set (``a_k`` odd, so each is a bijection). This is
datasketch's ``affine32`` scheme (its default since 2.0) with the same draw of ``(a, b)`` from
``numpy.random.RandomState(seed)``: with ``hash="sha1"`` (the first four bytes of SHA-1 of the
shingle's UTF-8, datasketch's ``sha1_hash32``) a signature is bit-for-bit the one
``datasketch.MinHash(num_perm, seed)`` gives for the same shingles. The default ``hash="fast"``
hashes every token once, in bulk, from the Arrow buffers (a polynomial hash modulo 2**64 with
the MurmurHash3 finalizer) and combines token hashes into n-gram hashes with numpy: the
signatures differ from datasketch's but estimate the same Jaccard similarity.

Defaults follow text-dedup and datatrove: word 5-grams of lower-cased text with punctuation
removed, 128 permutations (datasketch's default; datatrove uses 112, text-dedup 256), seed 1.
``optimal_bands`` picks bands x rows for a threshold by the false-positive/false-negative
weighted optimum, the same grid search datasketch's ``MinHashLSH`` does, but with exact
Gauss-Legendre quadrature (the integrands are polynomials of degree ``b*r <= num_perm``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from demoai.errors import InvalidArtifact

__all__ = [
    "MinHashParams", "Signatures", "minhash_signatures", "shingle_hashes", "permutations",
    "optimal_bands", "check_threshold", "text_hashes", "normalize_texts", "EMPTY_HASH",
    "ngram_hashes64",
]

EMPTY_HASH = np.uint32(0xFFFFFFFF)     # the signature value of a text with no shingles
_M64 = (1 << 64) - 1
_P = np.uint64(0x100000001B3)          # odd: invertible modulo 2**64
_PINV = np.uint64(pow(int(_P), -1, 1 << 64))
_Q = np.uint64(0x9E3779B97F4A7C15)     # n-gram combination base
_LEN = np.uint64(0xC2B2AE3D27D4EB4F)
_PUNCT = r"[^\pL\pN\s]+"               # RE2: letters and digits of every script are kept
_BATCH_DOCS = 4096                     # texts hashed together
_CHUNK_SHINGLES = 4096                 # columns of the (num_perm x shingles) buffer
_META_KEY = b"demoai.minhash"
# Whitespace as str.split() knows it (RE2's \s is ASCII only).
_SPACE = (r"[\s\x{0b}\x{1c}-\x{1f}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
          r"\x{202f}\x{205f}\x{3000}]")
# What str.split() treats as whitespace, other than a single space between two words.
_ODD_SPACE = (r"^ | $|  |[\t\n\v\f\r\x{1c}-\x{1f}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}"
              r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]")


@dataclass(frozen=True)
class MinHashParams:
    """How texts become signatures. ``unit`` is ``"word"`` or ``"char"`` n-grams of size
    ``ngram``; ``normalize`` lower-cases, turns punctuation into spaces and collapses
    whitespace first; ``hash`` is ``"fast"`` (bulk numpy) or ``"sha1"`` (datasketch's
    ``sha1_hash32`` of each shingle, slow, for bit-exact comparison)."""

    num_perm: int = 128
    ngram: int = 5
    unit: str = "word"
    seed: int = 1
    normalize: bool = True
    hash: str = "fast"

    def __post_init__(self) -> None:
        if not isinstance(self.num_perm, int) or not 2 <= self.num_perm <= 4096:
            raise InvalidArtifact(f"minhash: num_perm must be an integer in [2, 4096], "
                                  f"not {self.num_perm!r}")
        if not isinstance(self.ngram, int) or not 1 <= self.ngram <= 64:
            raise InvalidArtifact(f"minhash: ngram must be an integer in [1, 64], "
                                  f"not {self.ngram!r}")
        if self.unit not in ("word", "char"):
            raise InvalidArtifact(f"minhash: unit must be 'word' or 'char', not {self.unit!r}")
        if self.hash not in ("fast", "sha1"):
            raise InvalidArtifact(f"minhash: hash must be 'fast' or 'sha1', not {self.hash!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 32:
            raise InvalidArtifact(f"minhash: seed must be an integer in [0, 2**32), "
                                  f"not {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a JSON-ready dict (stored with signatures and in lineage)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MinHashParams":
        """Parameters from :meth:`to_dict` output; unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise InvalidArtifact(f"minhash: unknown parameters {sorted(extra)}")
        return cls(**d)


def check_threshold(threshold: float, what: str = "threshold") -> float:
    """``threshold`` as a float in (0, 1], or :class:`InvalidArtifact`."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise InvalidArtifact(f"{what} must be a number in (0, 1], not {threshold!r}",
                              threshold=str(threshold)) from None
    if not 0.0 < t <= 1.0:          # also rejects NaN
        raise InvalidArtifact(f"{what} must be in (0, 1], not {threshold!r}", threshold=t)
    return t


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(a, b)`` uint32 arrays of the affine permutations for ``seed``: ``a`` odd.
    Drawn in the order datasketch's ``affine32`` scheme draws them."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _powers(base: np.uint64, n: int) -> np.ndarray:
    out = np.full(n, base, dtype=np.uint64)
    if n:
        out[0] = 1
        np.cumprod(out, out=out)        # wraps modulo 2**64, as intended
    return out


def _string_hashes(arr: pa.Array) -> np.ndarray:
    """A 64-bit hash of every string of a (non-null) string array, from its buffers at once:
    ``sum((byte_k + 1) * P**k)`` by prefix sums, then the length mixed in and finalized."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_large_string(arr.type):
        off_t = np.int64
    else:
        arr = arr.cast(pa.string())
        off_t = np.int32
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    bufs = arr.buffers()
    off = np.frombuffer(bufs[1], dtype=off_t, count=n + 1,
                        offset=arr.offset * np.dtype(off_t).itemsize)
    base, end = int(off[0]), int(off[-1])
    data = (np.frombuffer(bufs[2], dtype=np.uint8)[base:end] if bufs[2] is not None and end > base
            else np.zeros(0, dtype=np.uint8))
    lo = (off[:-1] - base).astype(np.int64)
    hi = (off[1:] - base).astype(np.int64)
    pw = _powers(_P, len(data) + 1)
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum((data.astype(np.uint64) + np.uint64(1)) * pw[:-1], out=prefix[1:])
    h = (prefix[hi] - prefix[lo]) * _powers(_PINV, len(data) + 1)[lo]
    return _fmix64(h ^ ((hi - lo).astype(np.uint64) * _LEN))


def normalize_texts(texts: pa.Array, params: MinHashParams) -> pa.Array:
    """The form of the texts that is shingled (nulls become empty strings)."""
    arr = pc.fill_null(texts, "")
    if params.normalize:
        arr = pc.utf8_lower(arr)
        arr = pc.replace_substring_regex(arr, _PUNCT, " ")
    if params.unit == "char":
        arr = _collapse_whitespace(arr)
    return arr


def _collapse_whitespace(arr: pa.Array) -> pa.Array:
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(arr, _SPACE + "+", " "))


def _words(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The whitespace-separated words of every text, flattened, and the count per text.
    (Arrow's split keeps the empty strings between adjacent separators: they are dropped.)"""
    tokens = pc.utf8_split_whitespace(arr)
    flat = pc.list_flatten(tokens)
    parent = pc.list_parent_indices(tokens).to_numpy(zero_copy_only=False)
    nonempty = pc.greater(pc.binary_length(flat), 0)
    flat = flat.filter(nonempty)
    parent = parent[nonempty.to_numpy(zero_copy_only=False)]
    return flat, np.bincount(parent, minlength=len(arr)).astype(np.int64)


def _as_array(texts: Iterable[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        return texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    if isinstance(texts, pa.Array):
        return texts
    return pa.array(list(texts), type=pa.string())


def _ngram_hashes(units: np.ndarray, counts: np.ndarray, n: int, wide: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the n-grams of each document's unit sequence (a document with fewer than n
    units but at least one gives one shingle of all of them); returns (uint32 hashes, or
    uint64 with ``wide``, shingles per document)."""
    counts = counts.astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    per_doc = np.where(counts >= n, counts - n + 1, np.minimum(counts, 1))
    total = int(per_doc.sum())
    if total == 0:
        return np.zeros(0, dtype=np.uint64 if wide else np.uint32), per_doc
    doc = np.repeat(np.arange(len(counts)), per_doc)
    first = np.concatenate([[0], np.cumsum(per_doc)[:-1]])
    pos = starts[doc] + (np.arange(total) - first[doc])
    length = np.minimum(counts[doc], n).astype(np.uint64)
    g = np.zeros(total, dtype=np.uint64)
    qpow = _powers(_Q, n)
    last = len(units) - 1
    for j in range(n):
        take = units[np.minimum(pos + j, last)]
        g += take * (qpow[j] * (length > np.uint64(j)).astype(np.uint64))
    g = _fmix64(g ^ (length * _LEN))
    if wide:
        return g, per_doc
    return (g >> np.uint64(32)).astype(np.uint32), per_doc


def _sha1_shingles(norm: pa.Array, params: MinHashParams) -> tuple[np.ndarray, np.ndarray]:
    n, hashes, per_doc = params.ngram, [], []
    for text in norm.to_pylist():
        units: Sequence[str] = text.split() if params.unit == "word" else text
        sep = " " if params.unit == "word" else ""
        k = len(units)
        shingles = ({sep.join(units[i:i + n]) for i in range(k - n + 1)} if k >= n
                    else ({sep.join(units)} if k else set()))
        per_doc.append(len(shingles))
        hashes.extend(int.from_bytes(hashlib.sha1(s.encode()).digest()[:4], "little")
                      for s in shingles)
    return np.array(hashes, dtype=np.uint32), np.array(per_doc, dtype=np.int64)


def shingle_hashes(texts: Iterable[str] | pa.Array, params: MinHashParams = MinHashParams()
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The 32-bit shingle hashes of every text, concatenated, and the count per text (with
    ``hash="fast"`` a shingle repeated in a text is listed as often as it occurs)."""
    norm = normalize_texts(_as_array(texts), params)
    if params.hash == "sha1":
        return _sha1_shingles(norm, params)
    if params.unit == "word":
        flat, counts = _words(norm)
        # Hash each distinct token once: the dictionary is far smaller than the token stream.
        enc = pc.dictionary_encode(flat)
        units = _string_hashes(enc.dictionary)[enc.indices.to_numpy(zero_copy_only=False)]
    else:
        counts = pc.utf8_length(norm).to_numpy(zero_copy_only=False)
        joined = "".join(norm.to_pylist()).encode("utf-32-le")
        units = np.frombuffer(joined, dtype=np.uint32).astype(np.uint64) + np.uint64(1)
        units = _fmix64(units * _LEN)
    return _ngram_hashes(units, counts, params.ngram)


def ngram_hashes64(texts: Iterable[str] | pa.Array, n: int = 13, unit: str = "word",
                   normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The 64-bit hashes of the word (or character) ``n``-grams of every text's normalized
    form (:func:`normalize_texts`), concatenated, and the count per text: wide enough to test
    membership in a set of millions of n-grams without false hits (contamination checks).
    A text with fewer than ``n`` units gives one hash of all of them."""
    params = MinHashParams(ngram=n, unit=unit, normalize=normalize)
    norm = normalize_texts(_as_array(texts), params)
    if unit == "word":
        flat, counts = _words(norm)
        enc = pc.dictionary_encode(flat)
        units = _string_hashes(enc.dictionary)[enc.indices.to_numpy(zero_copy_only=False)]
    else:
        counts = pc.utf8_length(norm).to_numpy(zero_copy_only=False)
        joined = "".join(norm.to_pylist()).encode("utf-32-le")
        units = _fmix64((np.frombuffer(joined, dtype=np.uint32).astype(np.uint64) + np.uint64(1))
                        * _LEN)
    return _ngram_hashes(units, counts, n, wide=True)


def _signatures_of(hashes: np.ndarray, per_doc: np.ndarray, a: np.ndarray, b: np.ndarray
                   ) -> np.ndarray:
    sig = np.full((len(per_doc), len(a)), EMPTY_HASH, dtype=np.uint32)
    if len(hashes) == 0:
        return sig
    hv = _fmix32(hashes)
    doc = np.repeat(np.arange(len(per_doc)), per_doc)
    # (num_perm, chunk) layout: the segment minimum then runs along contiguous memory, which
    # is several times faster than reducing over rows, and the buffer stays in cache.
    buf = np.empty((len(a), _CHUNK_SHINGLES), dtype=np.uint32)
    a_col, b_col = a[:, None], b[:, None]
    for s in range(0, len(hv), _CHUNK_SHINGLES):
        h, d = hv[s:s + _CHUNK_SHINGLES], doc[s:s + _CHUNK_SHINGLES]
        out = buf[:, :len(h)]
        np.multiply(a_col, h[None, :], out=out)
        out += b_col
        seg = np.flatnonzero(np.concatenate([[True], d[1:] != d[:-1]]))
        mins = np.minimum.reduceat(out, seg, axis=1)
        rows = d[seg]
        sig[rows] = np.minimum(sig[rows], mins.T)
    return sig


def minhash_signatures(texts: Iterable[str] | pa.Array | pa.ChunkedArray,
                       params: MinHashParams = MinHashParams(), progress: Any = None
                       ) -> np.ndarray:
    """The ``(len(texts), num_perm)`` uint32 MinHash signatures of the texts. A text with no
    shingle (empty after normalization) has the all-``EMPTY_HASH`` signature.
    ``progress(done, total)`` is called after every batch when given."""
    arr = _as_array(texts)
    a, b = permutations(params.num_perm, params.seed)
    out = np.empty((len(arr), params.num_perm), dtype=np.uint32)
    for s in range(0, len(arr), _BATCH_DOCS):
        h, per_doc = shingle_hashes(arr.slice(s, _BATCH_DOCS), params)
        out[s:s + len(per_doc)] = _signatures_of(h, per_doc, a, b)
        if progress is not None:
            progress(min(s + _BATCH_DOCS, len(arr)), len(arr))
    return out


def text_hashes(texts: Iterable[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A uint64 hash of every text's normalized form (NFKC, lower case, whitespace collapsed
    and trimmed), from BLAKE2b: equal for texts that differ only in case or spacing."""
    arr = pc.utf8_lower(pc.utf8_normalize(pc.fill_null(_as_array(texts), ""), "NFKC"))
    # Only texts with other spacing than single inner spaces go through split/join.
    odd = pc.match_substring_regex(arr, _ODD_SPACE).to_numpy(zero_copy_only=False)
    texts_ = arr.to_pylist()
    for i in np.flatnonzero(odd):
        texts_[i] = " ".join(texts_[i].split())
    blake = hashlib.blake2b
    digests = b"".join([blake(t.encode(), digest_size=8).digest() for t in texts_])
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def _gauss_integral(threshold: float, lo: float, hi: float, b: np.ndarray, r: np.ndarray,
                    nodes: int, miss: bool) -> np.ndarray:
    x, w = np.polynomial.legendre.leggauss(nodes)
    s = (hi - lo) / 2 * x + (hi + lo) / 2
    hit = 1.0 - (1.0 - s[None, :] ** r[:, None]) ** b[:, None]
    f = 1.0 - hit if miss else hit
    return (hi - lo) / 2 * (f @ w)


def optimal_bands(threshold: float, num_perm: int = 128,
                  weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """Bands ``b`` and rows per band ``r`` (``b*r <= num_perm``) minimizing
    ``w_fp * P(false positive) + w_fn * P(false negative)`` for Jaccard ``threshold``, where a
    pair of similarity s becomes a candidate with probability ``1 - (1 - s**r)**b``; the
    false-positive area is its integral over [0, t], the false-negative area that of its
    complement over [t, 1] (Leskovec et al., Mining of Massive Datasets, 3.4)."""
    t = check_threshold(threshold)
    if len(weights) != 2 or any(w < 0 for w in weights) or not np.isclose(sum(weights), 1.0):
        raise InvalidArtifact(f"minhash: weights must be two non-negative numbers summing to 1, "
                              f"not {weights!r}")
    pairs = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
    bb = np.array([p[0] for p in pairs], dtype=np.float64)
    rr = np.array([p[1] for p in pairs], dtype=np.float64)
    nodes = num_perm // 2 + 2           # exact for polynomials of degree <= num_perm + 2
    fp = _gauss_integral(t, 0.0, t, bb, rr, nodes, miss=False)
    fn = _gauss_integral(t, t, 1.0, bb, rr, nodes, miss=True)
    err = weights[0] * fp + weights[1] * fn
    return pairs[int(np.argmin(err))]


@dataclass
class Signatures:
    """Signatures of a dataset's rows, in row order, as stored with a dataset version:
    ``values`` (n, num_perm) uint32 MinHash, ``text_hash`` (n,) uint64 normalized-text hash."""

    params: MinHashParams
    values: np.ndarray
    text_hash: np.ndarray

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.uint32).reshape(-1, self.params.num_perm)
        self.text_hash = np.asarray(self.text_hash, dtype=np.uint64).reshape(-1)
        if len(self.values) != len(self.text_hash):
            raise InvalidArtifact("signatures: values and text hashes differ in length")

    def __len__(self) -> int:
        return len(self.values)

    def take(self, rows: np.ndarray | Sequence[int]) -> "Signatures":
        """The signatures of the given rows (indices or a boolean mask)."""
        return Signatures(self.params, self.values[rows], self.text_hash[rows])

    @staticmethod
    def concat(parts: Sequence["Signatures"]) -> "Signatures":
        """One Signatures from several with the same parameters (e.g. stored + new rows)."""
        if not parts:
            raise InvalidArtifact("signatures: nothing to concatenate")
        for p in parts[1:]:
            parts[0].check_compatible(p.params)
        return Signatures(parts[0].params, np.concatenate([p.values for p in parts]),
                          np.concatenate([p.text_hash for p in parts]))

    def check_compatible(self, params: MinHashParams) -> None:
        """Refuse signatures made with other parameters (they cannot be compared)."""
        if params != self.params:
            raise InvalidArtifact(f"signatures: made with {self.params.to_dict()}, "
                                  f"cannot be compared with {params.to_dict()}")

    def to_arrow(self) -> pa.Table:
        """A table (``minhash``: each signature as ``4 * num_perm`` bytes, little-endian
        uint32; ``text_hash`` uint64) with the parameters in the schema metadata, ready to
        store beside the dataset version. Fixed-size binary reads back several times faster
        than a list column."""
        raw = np.ascontiguousarray(self.values.astype("<u4", copy=False)).tobytes()
        col = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 * self.params.num_perm),
                                                   len(self), [None, pa.py_buffer(raw)])
        meta = {_META_KEY: json.dumps(self.params.to_dict()).encode()}
        return pa.table({"minhash": col, "text_hash": pa.array(self.text_hash)}
                        ).replace_schema_metadata(meta)

    @classmethod
    def from_arrow(cls, table: pa.Table) -> "Signatures":
        """Signatures from :meth:`to_arrow` output."""
        meta = table.schema.metadata or {}
        if _META_KEY not in meta or not {"minhash", "text_hash"} <= set(table.column_names):
            raise InvalidArtifact("signatures: the table lacks the minhash column or parameters")
        params = MinHashParams.from_dict(json.loads(meta[_META_KEY]))
        col = table.column("minhash").combine_chunks()
        if col.type != pa.binary(4 * params.num_perm):
            raise InvalidArtifact(f"signatures: minhash column is {col.type}, expected "
                                  f"{pa.binary(4 * params.num_perm)}")
        if col.null_count:
            raise InvalidArtifact("signatures: the minhash column has nulls")
        buf = col.buffers()[1]
        width = 4 * params.num_perm
        raw = np.frombuffer(buf, dtype="<u4", count=len(col) * params.num_perm,
                            offset=col.offset * width)
        values = raw.reshape(-1, params.num_perm).astype(np.uint32, copy=False)
        th = table.column("text_hash").to_numpy()
        return cls(params, values, th)
