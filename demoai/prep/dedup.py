"""Deduplication of text rows: exact (normalized text hash), near (MinHash LSH) and, given an
``embed`` callable or the rows' ``vectors``, semantic (cosine similarity of embeddings).

The stages run in that order, each on the rows the previous ones kept. Near-duplicates are
found by LSH banding of the signatures (``optimal_bands`` picks bands x rows from the
threshold), candidate pairs are verified by estimated (or exact) Jaccard similarity, and the
verified pairs are joined into clusters (connected components). The first row of a cluster, in
row order, is kept; every other row is dropped and recorded with the kept row it duplicates and
the row it was matched with.

Incremental and cross-dataset: ``existing`` takes the :class:`Signatures` stored with a dataset
version (or several datasets' concatenated). Only the new rows are hashed; they are checked
against the existing rows and each other. Existing rows come first in row order and are never
dropped, so on a deduplicated base ``dedup(new, existing=sig(base))`` drops the same new rows,
as duplicates of the same rows, as deduplicating ``base + new`` at once.

Semantic pairs come from range searches, not from all pairs: each kept row asks the vector
indexes it is given (:class:`SemanticIndex`: a dataset version's LanceDB row index, another
dataset's, or vectors in memory) for every row within the cosine threshold; an index row maps
to an input row or an existing row, or takes no part (rows dropped by an earlier stage).
Where the search is exact the pairs, clusters and kept rows are those of comparing every pair.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa

from demoai.errors import InvalidArtifact
from demoai.prep.clean import text_column
from demoai.prep.minhash import (
    EMPTY_HASH, MinHashParams, Signatures, check_threshold, minhash_signatures, optimal_bands,
    shingle_hashes, text_hashes,
)
from demoai.prep.search import FlatIndex, embed_texts

__all__ = ["DedupResult", "dedup", "lsh_pairs", "band_keys", "connected_components",
           "estimated_jaccard", "DEFAULT_THRESHOLD", "SemanticIndex", "semantic_pairs"]

DEFAULT_THRESHOLD = 0.7          # text-dedup's default; datatrove's 14 x 8 bands sit near 0.72
_RECORD_SCHEMA = pa.schema([
    ("row", pa.int64()), ("method", pa.string()), ("duplicate_of", pa.int64()),
    ("duplicate_of_existing", pa.bool_()), ("matched", pa.int64()),
    ("matched_existing", pa.bool_()), ("similarity", pa.float64()),
])


@dataclass
class DedupResult:
    """What :func:`dedup` decided. ``keep`` is a mask over the input rows; ``records`` has one
    row per dropped input row: ``row``, ``method`` (exact/minhash/semantic), ``duplicate_of``
    (the kept row of its cluster) and ``matched`` (the row it was found similar to; both index
    the input rows, or the existing rows when the ``*_existing`` flag is set) and
    ``similarity`` (to ``matched``: 1.0, Jaccard or cosine). ``signatures`` are those of the
    kept rows, in order, to be stored with the new version."""

    keep: np.ndarray
    records: pa.Table
    signatures: Signatures | None
    table: pa.Table | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        """How many input rows were dropped."""
        return int((~self.keep).sum())

    def why(self, row: int) -> str | None:
        """A one-line reason why input ``row`` was dropped, or None if it was kept."""
        rows = self.records.column("row").to_numpy()
        hit = np.flatnonzero(rows == row)
        if not len(hit):
            return None
        r = self.records.slice(int(hit[0]), 1).to_pylist()[0]
        where = lambda i, ex: f"existing row {i}" if ex else f"row {i}"  # noqa: E731
        kept = where(r["duplicate_of"], r["duplicate_of_existing"])
        text = f"row {row}: {r['method']} duplicate of {kept}"
        if (r["matched"], r["matched_existing"]) != (r["duplicate_of"], r["duplicate_of_existing"]):
            text += f" (matched {where(r['matched'], r['matched_existing'])})"
        return text + f", similarity {r['similarity']:.3f}"


def band_keys(values: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """A (bands, n) uint64 key per band of every signature: equal bands give equal keys
    (a random linear hash modulo 2**64 of the band's values; unequal bands collide with
    negligible probability, and candidates are verified anyway)."""
    if bands * rows > values.shape[1]:
        raise InvalidArtifact(f"lsh: {bands} bands x {rows} rows exceed num_perm {values.shape[1]}")
    coef = (np.random.RandomState(0x5EED).randint(0, 1 << 62, size=bands * rows, dtype=np.uint64)
            * np.uint64(2) + np.uint64(1))
    n = len(values)
    keys = np.zeros((bands, n), dtype=np.uint64)
    cols = np.empty((rows, n), dtype=np.uint32)
    for k in range(bands):
        band = values[:, k * rows:(k + 1) * rows]
        # Transposed in row blocks (cache-sized) so the sum below runs over contiguous columns.
        for s in range(0, n, 4096):
            cols[:, s:s + 4096] = band[s:s + 4096].T
        for j in range(rows):
            keys[k] += cols[j].astype(np.uint64) * coef[k * rows + j]   # wraps modulo 2**64
    return keys


def _bucket_pairs(keys: np.ndarray, idx: np.ndarray, new_from: int, max_bucket: int) -> np.ndarray:
    kx = keys[idx]
    if new_from > 0:
        # Incremental: most existing rows share no bucket with any new row. A bitmap over
        # the low key bits of the new rows drops those before the sort.
        old = idx < new_from
        bits = np.zeros(1 << 22, dtype=bool)
        bits[(kx[~old] & np.uint64((1 << 22) - 1)).astype(np.int64)] = True
        near = ~old | bits[(kx & np.uint64((1 << 22) - 1)).astype(np.int64)]
        idx, kx = idx[near], kx[near]
    order = np.argsort(kx, kind="stable")
    sk, si = kx[order], idx[order]          # stable: rows ascend within a bucket
    if len(sk) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    start = np.concatenate([[True], sk[1:] != sk[:-1]])
    starts = np.flatnonzero(start)
    size = np.diff(np.append(starts, len(sk)))
    useful = (size >= 2) & (np.maximum.reduceat(si, starts) >= new_from)
    run = np.cumsum(start) - 1
    out = []
    small = useful & (size <= max_bucket)
    member = small[run]
    p, prun = si[member], run[member]
    for d in range(1, int(size[small].max()) if small.any() else 1):
        same = prun[:-d] == prun[d:]
        out.append(np.stack([p[:-d][same], p[d:][same]], axis=1))
    big = useful & (size > max_bucket)
    if big.any():                                  # a star to the first row bounds the cost
        member = big[run] & ~start
        out.append(np.stack([si[starts][run[member]], si[member]], axis=1))
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(out).astype(np.int64)
    return pairs[pairs[:, 1] >= new_from]


def _pairs_from_keys(keys: np.ndarray, n: int, eligible: np.ndarray | None, new_from: int,
                     max_bucket: int) -> np.ndarray:
    idx = np.arange(n) if eligible is None else np.flatnonzero(eligible)
    found = [_bucket_pairs(keys[k], idx, new_from, max_bucket) for k in range(len(keys))]
    pairs = np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)
    if not len(pairs):
        return pairs
    code = np.unique(pairs[:, 0] * n + pairs[:, 1])
    return np.stack([code // n, code % n], axis=1)


def lsh_pairs(values: np.ndarray, bands: int, rows: int, *, new_from: int = 0,
              max_bucket: int = 256, eligible: np.ndarray | None = None) -> np.ndarray:
    """Candidate pairs ``(i, j)``, ``i < j``, unique, of signatures sharing a band; only pairs
    with ``j >= new_from`` (at least one new row). Rows not ``eligible`` take no part. In a
    bucket of more than ``max_bucket`` rows each row is paired with the bucket's first only."""
    return _pairs_from_keys(band_keys(values, bands, rows), len(values), eligible, new_from,
                            max_bucket)


class _Stacked:
    """Rows of two arrays as one, without copying them together (existing, then new)."""

    def __init__(self, first: np.ndarray, second: np.ndarray) -> None:
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), self.second.shape[1]), dtype=self.second.dtype)
        lo = idx < len(self.first)
        out[lo] = self.first[idx[lo]]
        out[~lo] = self.second[idx[~lo] - len(self.first)]
        return out


def estimated_jaccard(values: np.ndarray, pairs: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """The MinHash estimate of the Jaccard similarity of each pair: the fraction of equal
    signature positions."""
    out = np.empty(len(pairs), dtype=np.float64)
    for s in range(0, len(pairs), chunk):
        p = pairs[s:s + chunk]
        out[s:s + chunk] = (values[p[:, 0]] == values[p[:, 1]]).mean(axis=1)
    return out


def connected_components(n: int, pairs: np.ndarray) -> np.ndarray:
    """For each of ``n`` nodes, the smallest node of its component under the edges ``pairs``
    (vectorized union-find: hook roots to the smaller root, then pointer jumping)."""
    labels = np.arange(n)
    if not len(pairs):
        return labels
    u, v = pairs[:, 0], pairs[:, 1]
    while True:
        lu, lv = labels[u], labels[v]
        diff = lu != lv
        if not diff.any():
            return labels
        m = np.minimum(lu[diff], lv[diff])
        np.minimum.at(labels, lu[diff], m)
        np.minimum.at(labels, lv[diff], m)
        while True:
            nxt = labels[labels]
            if np.array_equal(nxt, labels):
                break
            labels = nxt


def _first_partner(n: int, pairs: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every node, its smallest neighbour and the similarity of that edge (-1 if none)."""
    both = np.concatenate([pairs, pairs[:, ::-1]])
    s2 = np.concatenate([sim, sim])
    order = np.lexsort((both[:, 1], both[:, 0]))
    both, s2 = both[order], s2[order]
    first = np.concatenate([[True], both[1:, 0] != both[:-1, 0]])[:len(both)]
    partner, psim = np.full(n, -1, dtype=np.int64), np.zeros(n)
    partner[both[first, 0]] = both[first, 1]
    psim[both[first, 0]] = s2[first]
    return partner, psim


def _exact_jaccard(texts: pa.Array, local: np.ndarray, pairs: np.ndarray,
                   params: MinHashParams) -> np.ndarray:
    """Exact Jaccard of the shingle sets of pairs of ``texts`` rows (``local`` maps graph
    nodes to text rows)."""
    rows = np.unique(local[pairs.reshape(-1)])
    h, per_doc = shingle_hashes(texts.take(pa.array(rows)), params)
    ends = np.cumsum(per_doc)
    sets = {int(r): np.unique(h[e - c:e]) for r, c, e in zip(rows, per_doc, ends)}
    out = np.empty(len(pairs))
    for k, (i, j) in enumerate(local[pairs]):
        a, b = sets[int(i)], sets[int(j)]
        inter = len(np.intersect1d(a, b, assume_unique=True))
        union = len(a) + len(b) - inter
        out[k] = inter / union if union else 1.0
    return out


@dataclass
class SemanticIndex:
    """A vector index the semantic stage searches: ``index`` has ``neighbours(queries,
    min_similarity, progress=...) -> (query, row, cosine)`` (a
    :class:`~demoai.prep.search.RowIndex` or :class:`~demoai.prep.search.FlatIndex`); its row
    ``r`` is input row ``input_rows[r]`` or existing row ``existing_rows[r]`` (-1, or no
    array: neither)."""

    index: Any
    input_rows: np.ndarray | None = None
    existing_rows: np.ndarray | None = None


def semantic_pairs(queries: np.ndarray, query_inputs: np.ndarray, node_of_input: np.ndarray,
                   indexes: Sequence[SemanticIndex], threshold: float, n_existing: int = 0,
                   progress: Callable[[str, int, int], None] | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Graph edges ``(a, b)``, ``a < b``, unique, with their cosine (>= ``threshold``) between
    the query rows (``queries``: their vectors, ``query_inputs``: their input rows,
    ascending) and the rows the ``indexes`` find near them. Graph nodes: existing rows
    ``0..n_existing-1``, then input row ``i`` is ``node_of_input[i]`` (-1: takes no part)."""
    found, sims = [], []
    stats = {"queries": len(queries), "candidates": 0}
    nodes = node_of_input[query_inputs]
    for si in indexes:
        if not len(queries) or not si.index.rows:
            continue
        own = None                  # the index row each query is (a pair of two: searched once)
        if si.input_rows is not None:
            inp = np.asarray(si.input_rows, dtype=np.int64)
            where = np.full(len(node_of_input), -1, dtype=np.int64)
            has = np.flatnonzero(inp >= 0)
            where[inp[has]] = has
            own = where[query_inputs]
        qi, rows, sim = si.index.neighbours(queries, threshold, progress=progress,
                                            query_rows=own)
        stats["candidates"] += len(qi)
        other = np.full(len(rows), -1, dtype=np.int64)
        if si.input_rows is not None:
            inp = np.asarray(si.input_rows, dtype=np.int64)[rows]
            other = np.where(inp >= 0, node_of_input[np.maximum(inp, 0)], other)
        if si.existing_rows is not None:
            ex = np.asarray(si.existing_rows, dtype=np.int64)[rows]
            if len(ex) and ex.max() >= n_existing:
                raise InvalidArtifact(f"dedup: a semantic index names existing row {ex.max()} "
                                      f"of {n_existing}")
            other = np.where((other < 0) & (ex >= 0), ex, other)
        me = nodes[qi]
        ok = (other >= 0) & (other != me)
        a, b = np.minimum(me[ok], other[ok]), np.maximum(me[ok], other[ok])
        found.append(np.stack([a, b], axis=1))
        sims.append(sim[ok])
    if not found:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0), stats
    pairs, sim = np.concatenate(found).astype(np.int64), np.concatenate(sims)
    # Found from both ends (or by two indexes): one edge, one similarity.
    pairs, first = np.unique(pairs, axis=0, return_index=True)
    return pairs, sim[first].astype(np.float64), stats


def _drop_clusters(recs: list, method: str, n_ex: int, alive: np.ndarray, pairs: np.ndarray,
                   sim: np.ndarray) -> np.ndarray:
    """Cluster ``pairs`` over the graph (existing rows, then the ``alive`` input rows),
    record every alive row that is not its cluster's first and return that mask over
    ``alive``."""
    labels = connected_components(n_ex + len(alive), pairs)
    partner, psim = _first_partner(n_ex + len(alive), pairs, sim)
    node = np.arange(n_ex, n_ex + len(alive))
    gone = labels[node] != node
    root, mate = labels[node][gone], partner[node][gone]

    def _to_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ex = x < n_ex
        return np.where(ex, x, alive[np.maximum(x - n_ex, 0)]), ex
    dup_of, dup_ex = _to_rows(root)
    mat, mat_ex = _to_rows(mate)
    _record(recs, method, alive[gone], dup_of, dup_ex, mat, mat_ex, psim[node][gone])
    return gone


def _texts_of(data: pa.Table | pa.Array | Iterable[str], column: str | None) -> pa.Array:
    if isinstance(data, pa.Table):
        if column is None:
            raise InvalidArtifact("dedup: name the text column of the table")
        return text_column(data, column, "dedup")
    if isinstance(data, pa.ChunkedArray):
        data = data.combine_chunks()
    if isinstance(data, pa.Array):
        if not (pa.types.is_string(data.type) or pa.types.is_large_string(data.type)):
            raise InvalidArtifact(f"dedup: the texts are {data.type}, not strings")
        return data
    items = list(data)
    if any(x is not None and not isinstance(x, str) for x in items):
        raise InvalidArtifact("dedup: every text must be a string (or None)")
    return pa.array(items, type=pa.string())


def _record(rows: list, method: str, dropped: np.ndarray, dup_of: np.ndarray, dup_ex: np.ndarray,
            matched: np.ndarray, m_ex: np.ndarray, sim: np.ndarray) -> None:
    for k in range(len(dropped)):
        rows.append((int(dropped[k]), method, int(dup_of[k]), bool(dup_ex[k]), int(matched[k]),
                     bool(m_ex[k]), float(sim[k])))


def dedup(data: pa.Table | pa.Array | Iterable[str], column: str | None = None, *,
          exact: bool = True, near: bool = True, threshold: float = DEFAULT_THRESHOLD,
          params: MinHashParams = MinHashParams(), bands: tuple[int, int] | None = None,
          weights: tuple[float, float] = (0.5, 0.5), verify: str = "estimate",
          existing: Signatures | None = None, embed: Callable[[list[str]], Any] | None = None,
          semantic_threshold: float = 0.95, max_bucket: int = 256,
          vectors: np.ndarray | None = None, semantic_indexes: Sequence[SemanticIndex] = (),
          progress: Callable[[str, int, int], None] | None = None) -> DedupResult:
    """Deduplicate the texts of ``data`` (a table and its ``column``, an Arrow array or a list
    of strings). ``threshold`` is the Jaccard similarity (in (0, 1]) above which two rows are
    near-duplicates; ``bands`` overrides the (bands, rows) ``optimal_bands`` picks; ``verify``
    is ``"estimate"`` (signature agreement), ``"exact"`` (shingle sets; pairs with an existing
    row fall back to the estimate) or ``"none"`` (every LSH candidate counts). ``existing``:
    stored signatures of rows already in the dataset(s); ``embed(texts) -> (n, d) array``
    or ``vectors`` (one per input row) turn on the semantic stage: every kept row is
    searched for rows with cosine >= ``semantic_threshold`` in ``semantic_indexes`` (default:
    an exact in-memory index of the kept rows; give a dataset's row index, mapped to input
    and existing rows, to reuse its stored vectors and search). ``progress(stage, done,
    total)`` is called as work proceeds."""
    texts = _texts_of(data, column)
    threshold = check_threshold(threshold)
    semantic_threshold = check_threshold(semantic_threshold, "semantic threshold")
    if verify not in ("estimate", "exact", "none"):
        raise InvalidArtifact(f"dedup: verify must be estimate, exact or none, not {verify!r}")
    if existing is not None:
        existing.check_compatible(params)
    if bands is None:
        bands = optimal_bands(threshold, params.num_perm, weights)
    b, r = bands
    if not (isinstance(b, int) and isinstance(r, int) and b >= 1 and r >= 1
            and b * r <= params.num_perm):
        raise InvalidArtifact(f"dedup: bands {bands!r} must be two positive integers with "
                              f"bands x rows <= num_perm ({params.num_perm})")
    n = len(texts)
    n_ex = len(existing) if existing is not None else 0
    keep = np.ones(n, dtype=bool)
    recs: list = []
    stats: dict[str, Any] = {"rows": n, "existing_rows": n_ex, "bands": b, "rows_per_band": r,
                             "threshold": threshold, "params": params.to_dict()}

    th = text_hashes(texts)
    if exact:
        allh = th if existing is None else np.concatenate([existing.text_hash, th])
        _, first, inv = np.unique(allh, return_index=True, return_inverse=True)
        rep = first[inv.reshape(-1)][n_ex:]
        hit = np.flatnonzero(rep != np.arange(n_ex, n_ex + n))
        keep[hit] = False
        src = rep[hit]
        ex = src < n_ex
        other = np.where(ex, src, src - n_ex)
        _record(recs, "exact", hit, other, ex, other, ex, np.ones(len(hit)))
        stats["exact_dropped"] = len(hit)

    sig = None
    if near:
        alive = np.flatnonzero(keep)
        cb = (lambda d, t: progress("minhash", d, t)) if progress else None
        sig = minhash_signatures(texts.take(pa.array(alive)), params, progress=cb)
        keys = band_keys(sig, b, r)
        values: Any = sig
        # A text with shingles has no EMPTY_HASH in its signature but with odds of 2**-32.
        eligible = sig[:, 0] != EMPTY_HASH
        if existing is not None:
            keys = np.concatenate([band_keys(existing.values, b, r), keys], axis=1)
            values = _Stacked(existing.values, sig)
            eligible = np.concatenate([existing.values[:, 0] != EMPTY_HASH, eligible])
        pairs = _pairs_from_keys(keys, n_ex + len(sig), eligible, n_ex, max_bucket)
        stats["candidate_pairs"] = len(pairs)
        sim = estimated_jaccard(values, pairs)
        if verify == "exact" and len(pairs):
            local = np.concatenate([np.full(n_ex, -1), alive])
            inner = pairs[:, 0] >= n_ex
            if inner.any():
                sim[inner] = _exact_jaccard(texts, local, pairs[inner], params)
        if verify != "none":
            ok = sim >= threshold
            pairs, sim = pairs[ok], sim[ok]
        stats["verified_pairs"] = len(pairs)
        gone = _drop_clusters(recs, "minhash", n_ex, alive, pairs, sim)
        keep[alive[gone]] = False
        sig = sig[~gone]
        stats["minhash_dropped"] = int(gone.sum())

    if embed is not None or vectors is not None:
        alive = np.flatnonzero(keep)
        indexes = list(semantic_indexes)
        if vectors is not None:
            vec = np.asarray(vectors, dtype=np.float32)
            if vec.ndim != 2 or len(vec) != n:
                raise InvalidArtifact(f"dedup: vectors have shape {vec.shape}, expected ({n}, d)")
            norm = np.linalg.norm(vec, axis=1, keepdims=True)
            query = (vec / np.where(norm == 0, 1, norm))[alive]
            if not indexes:
                indexes = [SemanticIndex(FlatIndex(query), input_rows=alive)]
        else:
            query = embed_texts(embed, texts.take(pa.array(alive)).to_pylist())
            indexes.append(SemanticIndex(FlatIndex(query), input_rows=alive))
        node_of_input = np.full(n, -1, dtype=np.int64)
        node_of_input[alive] = np.arange(n_ex, n_ex + len(alive))
        pairs, sim, found = semantic_pairs(query, alive, node_of_input, indexes,
                                           semantic_threshold, n_ex, progress)
        stats["semantic_queries"] = found["queries"]
        stats["semantic_candidates"] = found["candidates"]
        stats["semantic_pairs"] = len(pairs)
        gone = _drop_clusters(recs, "semantic", n_ex, alive, pairs, sim)
        if sig is not None:
            sig = sig[~gone]
        keep[alive[gone]] = False
        stats["semantic_dropped"] = int(gone.sum())

    recs.sort(key=lambda t: t[0])
    records = pa.Table.from_pylist(
        [dict(zip(_RECORD_SCHEMA.names, t)) for t in recs], schema=_RECORD_SCHEMA)
    sigs = Signatures(params, sig, th[keep]) if sig is not None else None
    table = data.filter(pa.array(keep)) if isinstance(data, pa.Table) else None
    stats["kept"] = int(keep.sum())
    return DedupResult(keep=keep, records=records, signatures=sigs, table=table, stats=stats)
