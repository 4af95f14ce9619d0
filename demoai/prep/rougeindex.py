"""Which texts of a growing pool are ROUGE-L similar to a new one, without comparing it to
every text: an inverted index with prefix filtering (the set-similarity-join technique of
AllPairs/PPJoin), then exact ROUGE-L on the few candidates left.

ROUGE-L's F-measure is ``2 * LCS / (x + y)`` for token sequences of lengths x and y, and the
LCS is at most the size of their multiset intersection. So a pair with F >= t shares at
least ``t * (x + y) / 2`` tokens (counting repeats), its lengths are within a factor
``(2 - t) / t`` of each other, and -- with every text's tokens (token, occurrence) sorted in one
global order, rarest first -- the first ``x - ceil(t x / (2 - t)) + 1`` tokens of each share
one. Only texts sharing an indexed prefix token with the query's prefix are compared, and
the comparison is exact (bit-parallel LCS, vectorized over the candidates with numpy for
queries of up to 63 tokens), so nothing a brute-force scan would find is missed. A
positional filter (PPJoin's) drops candidates whose first shared token comes too late to
leave enough shared tokens. Scores are computed as ``rouge-score`` computes them
(``target`` = the new text, ``prediction`` = the pool text: ``2pr / (p + r)``), to the bit.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Iterable, Sequence

import numpy as np

__all__ = ["RougeIndex", "lcs_length", "rouge_l_f"]

_EPS = 1e-9
_POS = 1024          # postings hold pos * _POS + (place of the token in the text's prefix)


def lcs_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common subsequence of two token id sequences (bit-parallel)."""
    if len(a) > len(b):
        a, b = b, a
    if not a:
        return 0
    masks: dict[int, int] = {}
    for i, t in enumerate(a):
        masks[t] = masks.get(t, 0) | (1 << i)
    return _lcs_masks(masks, len(a), b)


def _lcs_masks(masks: dict[int, int], m: int, b: Sequence[int]) -> int:
    full = (1 << m) - 1
    v = full
    get = masks.get
    for t in b:
        u = v & get(t, 0)
        v = ((v + u) | (v - u)) & full
    return m - bin(v).count("1")


def rouge_l_f(lcs: int, target_len: int, prediction_len: int) -> float:
    """ROUGE-L F-measure from an LCS length, in rouge-score's arithmetic."""
    if not target_len or not prediction_len or not lcs:
        return 0.0
    p, r = lcs / prediction_len, lcs / target_len
    return 2 * p * r / (p + r)


class RougeIndex:
    """A pool of tokenized texts queried for the most ROUGE-L-similar member at or above
    ``threshold``. ``fit(texts)`` fixes the token order (rarest first) from a corpus; tokens
    seen later rank as rarest. ``tokenize(text) -> list[str]`` must be rouge-score's
    tokenizer for the scores to be rouge-score's."""

    def __init__(self, tokenize: Callable[[str], list[str]], threshold: float = 0.7) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], not {threshold}")
        self.tokenize, self.threshold = tokenize, threshold
        self._vocab: dict[str, int] = {}
        self._freq: Counter[tuple[int, int]] = Counter()
        self._post: dict[tuple[int, int], list[int]] = {}
        self._tokens: list[list[int]] = []
        self._mat = np.zeros((1024, 32), dtype=np.int32)      # token id + 1; 0 pads
        self._lens = np.zeros(1024, dtype=np.int64)
        self._masks = np.zeros(1024, dtype=np.uint64)
        self.labels: list[object] = []
        self.compared = 0

    def __len__(self) -> int:
        return len(self._tokens)

    def ids(self, text: str) -> list[int]:
        """The token ids of ``text`` (new tokens get new ids)."""
        voc = self._vocab
        out = []
        for w in self.tokenize(text):
            i = voc.get(w)
            if i is None:
                i = voc[w] = len(voc)
            out.append(i)
        return out

    @staticmethod
    def _elements(ids: Sequence[int]) -> list[tuple[int, int]]:
        seen: dict[int, int] = {}
        out = []
        for t in ids:
            k = seen.get(t, 0)
            seen[t] = k + 1
            out.append((t, k))
        return out

    def fit(self, texts: Iterable[str | Sequence[int]]) -> "RougeIndex":
        """Count token frequencies over ``texts`` (or their token ids) to order prefixes
        (call before ``add``)."""
        freq = self._freq
        for text in texts:
            ids = self.ids(text) if isinstance(text, str) else text
            freq.update(set(self._elements(ids)))
        return self

    def _prefix(self, ids: Sequence[int]) -> list[tuple[int, int]]:
        x = len(ids)
        t = self.threshold
        need = max(1, math.ceil(t * x / (2 - t) - _EPS))
        freq = self._freq
        els = sorted(self._elements(ids), key=lambda e: (freq.get(e, 0), e))
        return els[:max(0, x - need + 1)]

    def add(self, text: str | Sequence[int], label: object = None) -> int:
        """Add a text (or its token ids) to the pool; returns its position."""
        ids = self.ids(text) if isinstance(text, str) else list(text)
        pos = len(self._tokens)
        self._tokens.append(ids)
        self.labels.append(label)
        rows, width = self._mat.shape
        if pos >= rows or len(ids) > width:
            grown = np.zeros((max(rows, 2 * pos + 2), max(width, len(ids))), dtype=np.int32)
            grown[:rows, :width] = self._mat
            self._mat = grown
            lens = np.zeros(grown.shape[0], dtype=np.int64)
            lens[:rows] = self._lens
            self._lens = lens
        self._mat[pos, :len(ids)] = np.asarray(ids, dtype=np.int32) + 1
        self._lens[pos] = len(ids)
        post = self._post
        for j, e in enumerate(self._prefix(ids)):
            code = pos * _POS + min(j, _POS - 1)
            lst = post.get(e)
            if lst is None:
                post[e] = [code]
            else:
                lst.append(code)
        return pos

    def best(self, text: str | Sequence[int]) -> tuple[float, int]:
        """(score, position) of the pool text most ROUGE-L-similar to ``text`` among those
        that can reach the threshold; (0.0, -1) when none can."""
        ids = self.ids(text) if isinstance(text, str) else list(text)
        x = len(ids)
        if not x or not self._tokens:
            return 0.0, -1
        t = self.threshold
        lo, hi = t / (2 - t) * x - _EPS, (2 - t) / t * x + _EPS
        post = self._post
        lists, at = [], []
        for i, e in enumerate(self._prefix(ids)):
            lst = post.get(e)
            if lst:
                lists.append(np.asarray(lst, dtype=np.int64))
                at.append(i)
        if not lists:
            return 0.0, -1
        codes = np.concatenate(lists)
        docs = codes // _POS
        # positional filter (PPJoin): the first shared token, at place i of this text's
        # order and j of the other's, leaves at most 1 + min(x-i-1, y-j-1) shared tokens
        cands, first = np.unique(docs, return_index=True)
        i = np.repeat(np.asarray(at, dtype=np.int64), [len(x_) for x_ in lists])[first]
        j = codes[first] % _POS
        y = self._lens[cands]
        need = np.ceil(t * (x + y) / 2 - _EPS)
        ok = (y >= lo) & (y <= hi) & (1 + np.minimum(x - i - 1, y - j - 1) >= need)
        cands, y = cands[ok], y[ok]
        if not len(cands):
            return 0.0, -1
        self.compared += len(cands)
        if x <= 63:
            lcs = self._lcs_many(ids, cands, int(y.max()))
        else:
            toks = self._tokens
            masks: dict[int, int] = {}
            for i, tok in enumerate(ids):
                masks[tok] = masks.get(tok, 0) | (1 << i)
            lcs = np.array([_lcs_masks(masks, x, toks[c]) for c in cands.tolist()])
        f = [rouge_l_f(int(c), x, int(n)) for c, n in zip(lcs.tolist(), y.tolist())] \
            if len(cands) < 8 else _f_many(lcs, x, y)
        k = int(np.argmax(f))
        return (float(f[k]), int(cands[k])) if f[k] > 0 else (0.0, -1)

    def _lcs_many(self, ids: Sequence[int], cands: np.ndarray, width: int) -> np.ndarray:
        """LCS of ``ids`` (at most 63 tokens) with each pool text ``cands`` (bit-parallel,
        one uint64 per candidate)."""
        need = len(self._vocab) + 1
        if len(self._masks) < need:
            self._masks = np.zeros(max(need, 2 * len(self._masks)), dtype=np.uint64)
        masks = self._masks
        for i, tok in enumerate(ids):
            masks[tok + 1] |= np.uint64(1 << i)
        try:
            cols = masks[self._mat[cands, :width].T]       # (width, n): one row per position
            full = np.uint64((1 << len(ids)) - 1)
            v = np.full(len(cands), full, dtype=np.uint64)
            u, w = np.empty_like(v), np.empty_like(v)
            for j in range(width):
                np.bitwise_and(v, cols[j], out=u)
                np.add(v, u, out=w)
                np.subtract(v, u, out=v)
                np.bitwise_or(w, v, out=v)
                np.bitwise_and(v, full, out=v)
        finally:
            for tok in ids:
                masks[tok + 1] = 0
        return len(ids) - np.bitwise_count(v).astype(np.int64)


def _f_many(lcs: np.ndarray, x: int, y: np.ndarray) -> np.ndarray:
    """ROUGE-L F-measures in rouge-score's arithmetic (IEEE doubles, same operations)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p, r = lcs / y, lcs / x
        return np.where(lcs > 0, 2 * p * r / (p + r), 0.0)
