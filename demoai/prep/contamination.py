"""Contamination: which rows of a test set also occur in training data.

Two checks, as evaluation papers and harnesses do them:

- **n-gram overlap** (GPT-3 and lm-evaluation-harness style): a test row is contaminated
  when any of its word ``n``-grams (13 by default) occurs in any training row. Texts are
  normalized first as :func:`demoai.prep.minhash.normalize_texts` does: lower case,
  every character that is not a letter or a digit (of any script) becomes a space, then
  split on whitespace. (lm-eval's janitor deletes punctuation instead, so ``don't`` is
  ``dont`` there and ``don t`` here; both then compare words.) A test row with fewer than
  ``n`` words is one gram of all its words: it matches a training row with exactly the same
  words. N-grams are 64-bit hashes: the test set's hashes are sorted once, each training
  batch is hashed in bulk, a 2**24-bit filter drops most training n-grams before a binary
  search confirms the rest. Memory: the test set's n-grams plus one training batch.
- **near-duplicates**: MinHash signatures of the test rows against the training rows'
  (stored signatures are reused when their parameters match), LSH band keys, then the
  estimated Jaccard similarity against ``threshold``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa

from demoai.errors import InvalidArtifact
from demoai.prep.dedup import DEFAULT_THRESHOLD, band_keys
from demoai.prep.minhash import (
    EMPTY_HASH, MinHashParams, Signatures, check_threshold, minhash_signatures, ngram_hashes64,
    optimal_bands,
)

__all__ = ["ContaminationResult", "find_contamination", "DEFAULT_NGRAM"]

DEFAULT_NGRAM = 13
_FILTER_BITS = 24
_BATCH = 65536
_HIT_SCHEMA = pa.schema([("row", pa.int64()), ("method", pa.string()), ("source", pa.string()),
                         ("train_row", pa.int64()), ("ngrams", pa.int64()),
                         ("similarity", pa.float64())])


@dataclass
class ContaminationResult:
    """What :func:`find_contamination` found. ``contaminated``: mask over the test rows;
    ``hits``: one row per (test row, method, source): the first training row that matched,
    how many distinct n-grams of the test row occur in that source (ngram method) or the
    estimated Jaccard similarity (minhash method); ``stats``: counts and parameters."""

    contaminated: np.ndarray
    hits: pa.Table
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """How many test rows are contaminated."""
        return int(self.contaminated.sum())


class _TestGrams:
    """The test set's n-gram hashes, sorted, with the test row of each, and a bit filter."""

    def __init__(self, texts: pa.Array, n: int) -> None:
        h, per_doc = ngram_hashes64(texts, n)
        doc = np.repeat(np.arange(len(per_doc)), per_doc)
        order = np.argsort(h, kind="stable")
        self.hash, self.doc = h[order], doc[order]
        self.unique = np.unique(self.hash)
        self.bits = np.zeros(1 << _FILTER_BITS, dtype=bool)
        self.bits[(self.unique & np.uint64((1 << _FILTER_BITS) - 1)).astype(np.int64)] = True
        self.total = len(h)

    def match(self, texts: pa.Array, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(test row, training row within ``texts``, hash) of every shared n-gram."""
        g, per_doc = ngram_hashes64(texts, n)
        if not len(g) or not len(self.unique):
            return (np.zeros(0, np.int64),) * 2 + (np.zeros(0, np.uint64),)
        maybe = np.flatnonzero(self.bits[(g & np.uint64((1 << _FILTER_BITS) - 1)).astype(np.int64)])
        gm = g[maybe]
        pos = np.minimum(np.searchsorted(self.unique, gm), len(self.unique) - 1)
        ok = self.unique[pos] == gm
        found, hashes = maybe[ok], gm[ok]
        if not len(found):
            return (np.zeros(0, np.int64),) * 2 + (np.zeros(0, np.uint64),)
        owner = np.repeat(np.arange(len(per_doc)), per_doc)[found]
        lo = np.searchsorted(self.hash, hashes, "left")
        hi = np.searchsorted(self.hash, hashes, "right")
        reps = hi - lo
        idx = np.repeat(lo, reps) + (np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps))
        return self.doc[idx], np.repeat(owner, reps), np.repeat(hashes, reps)


def _batches(texts: pa.Array | Iterable[pa.Array]) -> Iterable[pa.Array]:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if isinstance(texts, pa.Array):
        for s in range(0, len(texts), _BATCH):
            yield texts.slice(s, _BATCH)
    else:
        yield from texts


def _near_hits(test_sig: np.ndarray, train_sig: np.ndarray, offset: int, bands: tuple[int, int],
               threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b, r = bands
    tk = band_keys(test_sig, b, r)
    gk = band_keys(train_sig, b, r)
    pairs = []
    for k in range(b):
        order = np.argsort(tk[k], kind="stable")
        sk = tk[k][order]
        pos = np.minimum(np.searchsorted(sk, gk[k]), len(sk) - 1)
        hit = np.flatnonzero(sk[pos] == gk[k])
        for j in hit:        # few: a band shared with a test row
            lo, hi = np.searchsorted(sk, gk[k][j], "left"), np.searchsorted(sk, gk[k][j], "right")
            pairs.extend((int(order[i]), int(j)) for i in range(lo, hi))
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    p = np.unique(np.array(pairs, dtype=np.int64), axis=0)
    ok = (test_sig[p[:, 0], 0] != EMPTY_HASH) & (train_sig[p[:, 1], 0] != EMPTY_HASH)
    p = p[ok]
    sim = (test_sig[p[:, 0]] == train_sig[p[:, 1]]).mean(axis=1)
    keep = sim >= threshold
    return p[keep, 0], p[keep, 1] + offset, sim[keep]


def find_contamination(test: pa.Array | Sequence[str],
                       train: Sequence[tuple[str, pa.Array | Iterable[pa.Array]]], *,
                       n: int = DEFAULT_NGRAM, ngram: bool = True, near: bool = True,
                       threshold: float = DEFAULT_THRESHOLD,
                       params: MinHashParams = MinHashParams(),
                       signatures: dict[str, Signatures] | None = None,
                       progress: Callable[[str, int, int], None] | None = None
                       ) -> ContaminationResult:
    """Check the ``test`` texts against each ``(source name, texts)`` of ``train`` (an
    Arrow array, or an iterable of arrays for data read in batches): n-gram overlap
    (``n``-word grams) and, with ``near``, MinHash near-duplicates at Jaccard ``threshold``
    (``signatures[source]``, when given and made with ``params``, spares hashing that
    source again). ``progress(stage, done, total)`` reports each source's rows."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 64:
        raise InvalidArtifact(f"contamination: n must be an integer in [1, 64], not {n!r}",
                              parameter="n")
    threshold = check_threshold(threshold)
    if not ngram and not near:
        raise InvalidArtifact("contamination: turn on the n-gram check, the near-duplicate "
                              "check, or both")
    test_arr = test if isinstance(test, (pa.Array, pa.ChunkedArray)) else pa.array(
        list(test), type=pa.string())
    if isinstance(test_arr, pa.ChunkedArray):
        test_arr = test_arr.combine_chunks()
    m = len(test_arr)
    grams = _TestGrams(test_arr, n) if ngram else None
    test_sig = minhash_signatures(test_arr, params) if near else None
    bands = optimal_bands(threshold, params.num_perm)
    rows: list[tuple] = []
    stats: dict[str, Any] = {"test_rows": m, "n": n, "threshold": threshold,
                             "test_ngrams": grams.total if grams else 0, "sources": {},
                             "params": params.to_dict() if near else None}
    for name, texts in train:
        seen = 0
        tr, gr, hs = [], [], []
        ntr, ngr, nsim = [], [], []
        stored = (signatures or {}).get(name)
        if stored is not None and stored.params != params:
            stored = None
        for batch in _batches(texts):
            if grams is not None:
                a, b, h = grams.match(batch, n)
                tr.append(a)
                gr.append(b + seen)
                hs.append(h)
            if test_sig is not None and stored is None:
                a, b, s = _near_hits(test_sig, minhash_signatures(batch, params), seen, bands,
                                     threshold)
                ntr.append(a), ngr.append(b), nsim.append(s)
            seen += len(batch)
            if progress is not None:
                progress(name, seen, seen)
        if test_sig is not None and stored is not None:
            a, b, s = _near_hits(test_sig, stored.values, 0, bands, threshold)
            ntr.append(a), ngr.append(b), nsim.append(s)
        src = {"rows": seen, "ngram_rows": 0, "near_rows": 0,
               "signatures": "stored" if stored is not None else "computed"}
        if tr:
            a, b, h = np.concatenate(tr), np.concatenate(gr), np.concatenate(hs)
            if len(a):
                first = np.full(m, np.iinfo(np.int64).max, dtype=np.int64)
                np.minimum.at(first, a, b)
                per = np.unique(np.stack([a, h.view(np.int64)], axis=1), axis=0)
                cnt = np.bincount(per[:, 0], minlength=m)
                hit_rows = np.flatnonzero(cnt)
                rows.extend((int(i), "ngram", name, int(first[i]), int(cnt[i]), None)
                            for i in hit_rows)
                src["ngram_rows"] = len(hit_rows)
        if ntr:
            a, b, s = np.concatenate(ntr), np.concatenate(ngr), np.concatenate(nsim)
            best: dict[int, tuple[float, int]] = {}
            for i, j, v in zip(a.tolist(), b.tolist(), s.tolist()):
                if i not in best or (v, -j) > (best[i][0], -best[i][1]):
                    best[i] = (v, j)
            for i in sorted(best):
                rows.append((i, "minhash", name, best[i][1], None, best[i][0]))
            src["near_rows"] = len(best)
        stats["sources"][name] = src
    rows.sort(key=lambda t: (t[0], t[1], t[2]))
    hits = pa.Table.from_pylist([dict(zip(_HIT_SCHEMA.names, t)) for t in rows],
                                schema=_HIT_SCHEMA)
    bad = np.zeros(m, dtype=bool)
    if rows:
        bad[np.array([t[0] for t in rows])] = True
    stats["contaminated"] = int(bad.sum())
    return ContaminationResult(contaminated=bad, hits=hits, stats=stats)
