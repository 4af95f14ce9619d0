"""MinHash and deduplication (demoai.prep.minhash, demoai.prep.dedup), against datasketch."""
from __future__ import annotations

import importlib
import math
import re

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHash, MinHashLSH
from datasketch.lsh import _optimal_param

from demoai.errors import InvalidArtifact
from demoai.prep import (
    EMPTY_HASH, MinHashParams, Signatures, connected_components, dedup, lsh_pairs,
    minhash_signatures, optimal_bands,
)


def shingles(text: str, n: int = 5, unit: str = "word") -> set[str]:
    """The reference shingling: lower case, punctuation to spaces, word (or char) n-grams."""
    norm = re.sub(r"[^\w\s]", " ", text.lower())
    if unit == "char":
        norm = " ".join(norm.split())
        units, sep = norm, ""
    else:
        units, sep = norm.split(), " "
    if len(units) < n:
        return {sep.join(units)} if units else set()
    return {sep.join(units[i:i + n]) for i in range(len(units) - n + 1)}


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y) if x | y else 1.0


def corpus(n_base: int, n_dup: int, seed: int, max_edits: int = 30):
    """Random 100-word documents and near-copies of some of them (words replaced)."""
    rng = np.random.default_rng(seed)
    vocab = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), k))
             for k in rng.integers(2, 9, 5000)]
    base = [[vocab[i] for i in rng.integers(0, len(vocab), 100)] for _ in range(n_base)]
    docs = [" ".join(w) for w in base]
    planted = []
    for _ in range(n_dup):
        src = int(rng.integers(0, n_base))
        w = list(base[src])
        for p in rng.choice(100, int(rng.integers(1, max_edits)), replace=False):
            w[p] = vocab[int(rng.integers(0, len(vocab)))]
        planted.append((src, len(docs)))
        docs.append(" ".join(w))
    return docs, planted


# -- parameters ---------------------------------------------------------------------------

@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7, 0.75, 0.8, 0.9, 0.95])
@pytest.mark.parametrize("num_perm", [64, 128, 256])
def test_optimal_bands_equal_datasketch(threshold, num_perm):
    assert optimal_bands(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_optimal_bands_with_weights_and_lsh_attributes():
    assert optimal_bands(0.7, 128, (0.3, 0.7)) == _optimal_param(0.7, 128, 0.3, 0.7)
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    assert optimal_bands(0.8, 128) == (lsh.b, lsh.r)


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.01, 2, float("nan"), "x", None])
def test_thresholds_outside_0_1_are_refused(bad):
    with pytest.raises(InvalidArtifact):
        dedup(["a b c"], threshold=bad)
    with pytest.raises(InvalidArtifact):
        optimal_bands(bad)
    with pytest.raises(InvalidArtifact):
        dedup(["a b c"], semantic_threshold=bad)


def test_threshold_one_and_bad_parameters():
    assert dedup(["a b c d e f", "a b c d e f!"], exact=False, threshold=1.0).dropped == 1
    for kw in ({"verify": "maybe"}, {"bands": (20, 10)}, {"bands": (0, 5)}):
        with pytest.raises(InvalidArtifact):
            dedup(["a"], **kw)
    for kw in ({"num_perm": 1}, {"ngram": 0}, {"unit": "line"}, {"hash": "md5"}):
        with pytest.raises(InvalidArtifact):
            MinHashParams(**kw)


# -- signatures vs datasketch -------------------------------------------------------------

@pytest.mark.parametrize("unit, n", [("word", 5), ("word", 3), ("char", 5)])
def test_sha1_signatures_are_bit_identical_to_datasketch(unit, n):
    texts = ["The quick brown fox jumps over the lazy dog, again and again!",
             "Hello, world", "", "a b c d e f g h i j", "Ünïcödé wörds stay wörds here ok"]
    params = MinHashParams(hash="sha1", unit=unit, ngram=n, num_perm=64, seed=7)
    sig = minhash_signatures(texts, params)
    for text, row in zip(texts, sig):
        m = MinHash(num_perm=64, seed=7)
        m.update_batch([s.encode() for s in shingles(text, n, unit)])
        assert np.array_equal(m.hashvalues, row), text
    assert (sig[2] == EMPTY_HASH).all()


def test_fast_signatures_estimate_jaccard_like_datasketch():
    docs, planted = corpus(60, 60, seed=3, max_edits=60)
    fast = minhash_signatures(docs)
    sha = minhash_signatures(docs, MinHashParams(hash="sha1"))
    err_fast, err_ds = [], []
    for a, b in planted:
        j = jaccard(docs[a], docs[b])
        ma, mb = MinHash(seed=1), MinHash(seed=1)
        ma.update_batch([s.encode() for s in shingles(docs[a])])
        mb.update_batch([s.encode() for s in shingles(docs[b])])
        est = float((fast[a] == fast[b]).mean())
        assert ma.jaccard(mb) == float((sha[a] == sha[b]).mean())
        sd = math.sqrt(max(j * (1 - j), 0.01) / 128)
        assert abs(est - j) <= 4.5 * sd, (j, est)
        err_fast.append(est - j)
        err_ds.append(ma.jaccard(mb) - j)
    # both are unbiased with the same spread (up to sampling noise)
    assert abs(np.mean(err_fast)) < 0.02 and abs(np.mean(err_ds)) < 0.02
    assert 0.5 < np.std(err_fast) / np.std(err_ds) < 2.0


def test_signatures_are_deterministic_and_batch_independent():
    docs, _ = corpus(50, 10, seed=4)
    s1 = minhash_signatures(docs)
    s2 = np.concatenate([minhash_signatures(docs[:17]), minhash_signatures(docs[17:])])
    assert np.array_equal(s1, s2)
    assert np.array_equal(s1, minhash_signatures(pa.chunked_array([docs[:30], docs[30:]])))
    assert not np.array_equal(s1, minhash_signatures(docs, MinHashParams(seed=2)))


def test_signatures_round_trip_through_arrow_and_refuse_other_params():
    docs, _ = corpus(20, 0, seed=5)
    res = dedup(docs)
    back = Signatures.from_arrow(res.signatures.to_arrow())
    assert back.params == res.signatures.params
    assert np.array_equal(back.values, res.signatures.values)
    assert np.array_equal(back.text_hash, res.signatures.text_hash)
    with pytest.raises(InvalidArtifact):
        dedup(docs, params=MinHashParams(ngram=3), existing=back)
    with pytest.raises(InvalidArtifact):
        Signatures.from_arrow(pa.table({"x": [1]}))


# -- LSH, clusters ------------------------------------------------------------------------

def test_lsh_pairs_equal_brute_force_band_matches():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 4, size=(300, 12), dtype=np.uint32)   # many collisions
    b, r = 4, 3
    want = set()
    for i in range(300):
        for j in range(i + 1, 300):
            if any((values[i, k * r:(k + 1) * r] == values[j, k * r:(k + 1) * r]).all()
                   for k in range(b)):
                want.add((i, j))
    got = lsh_pairs(values, b, r)
    assert {tuple(p) for p in got.tolist()} == want and len(got) == len(want)
    new = lsh_pairs(values, b, r, new_from=250)
    assert {tuple(p) for p in new.tolist()} == {p for p in want if p[1] >= 250}


def test_connected_components_match_a_plain_union_find():
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = 200
        pairs = rng.integers(0, n, size=(150, 2))
        parent = list(range(n))

        def find(x):
            while parent[x] != x:
                x = parent[x]
            return x
        for u, v in pairs:
            ru, rv = find(int(u)), find(int(v))
            parent[max(ru, rv)] = min(ru, rv)
        want = [min(i for i in range(n) if find(i) == find(x)) for x in range(n)]
        assert connected_components(n, pairs).tolist() == want


# -- deduplication --------------------------------------------------------------------------

def _ground_truth(docs, planted, t):
    return [(a, b) for a, b in planted if jaccard(docs[a], docs[b]) >= t]


def _datasketch_dedup(docs, t):
    """datasketch's MinHash + MinHashLSH with the same parameters: query, verify, insert."""
    lsh = MinHashLSH(threshold=t, num_perm=128)
    kept, dropped = {}, {}
    for i, d in enumerate(docs):
        m = MinHash(num_perm=128, seed=1)
        m.update_batch([s.encode() for s in shingles(d)])
        hits = [k for k in lsh.query(m) if m.jaccard(kept[k]) >= t]
        if hits:
            dropped[i] = min(hits)
        else:
            lsh.insert(i, m)
            kept[i] = m
    return dropped


def test_near_dedup_precision_and_recall_vs_exact_jaccard_and_datasketch():
    docs, planted = corpus(1500, 300, seed=11, max_edits=10)
    t = 0.7
    truth = _ground_truth(docs, planted, t)
    res = dedup(docs, threshold=t, exact=False)
    assert (res.stats["bands"], res.stats["rows_per_band"]) == _optimal_param(t, 128, 0.5, 0.5)
    rec = res.records.to_pylist()
    dropped = {r["row"]: r for r in rec}
    recall = np.mean([b in dropped for a, b in truth])
    precision = np.mean([jaccard(docs[r["row"]], docs[r["matched"]]) >= t - 0.05 for r in rec])
    ds = _datasketch_dedup(docs, t)
    ds_recall = np.mean([b in ds for a, b in truth])
    clear = [(a, b) for a, b in truth if jaccard(docs[a], docs[b]) >= t + 0.1]
    assert len(truth) > 100 and len(clear) > 50
    assert recall >= 0.8 and recall >= ds_recall - 0.03, (recall, ds_recall)
    assert precision >= 0.95
    # LSH finds a pair of similarity s with probability 1 - (1 - s**r)**b: (14, 9) misses
    # some pairs well above 0.7; leaning the optimum towards recall finds nearly all of them
    b, r = res.stats["bands"], res.stats["rows_per_band"]
    p_hit = np.mean([1 - (1 - jaccard(docs[a], docs[b_]) ** r) ** b for a, b_ in clear])
    clear_recall = np.mean([b_ in dropped for a, b_ in clear])
    assert clear_recall >= p_hit - 0.06
    lean = dedup(docs, threshold=t, exact=False, weights=(0.2, 0.8))
    lean_dropped = set(lean.records.column("row").to_pylist())
    assert np.mean([b_ in lean_dropped for a, b_ in clear]) >= max(0.97, clear_recall)
    # the kept row of a planted copy's cluster is its original
    assert all(dropped[b]["duplicate_of"] == a for a, b in truth if b in dropped)
    assert res.keep.sum() == len(docs) - len(dropped)
    assert len(res.signatures) == res.keep.sum()


def test_exact_dedup_by_normalized_text():
    docs = ["Hello  World", "hello world", "HELLO\u00a0WORLD\n", "hello worlds", None, ""]
    res = dedup(docs, near=False)
    assert res.keep.tolist() == [True, False, False, True, True, False]
    assert [(r["row"], r["method"], r["duplicate_of"]) for r in res.records.to_pylist()] == [
        (1, "exact", 0), (2, "exact", 0), (5, "exact", 4)]
    assert res.why(2) == "row 2: exact duplicate of row 0, similarity 1.000"
    assert res.why(0) is None


def test_empty_texts_are_never_near_duplicates():
    res = dedup(["", "", "!!", "a b c d e f g"], exact=False)
    assert res.keep.all()


def test_verify_exact_gives_exact_jaccard_and_none_keeps_all_candidates():
    docs, planted = corpus(200, 60, seed=8)
    res = dedup(docs, exact=False, verify="exact")
    for r in res.records.to_pylist():
        assert r["similarity"] == pytest.approx(jaccard(docs[r["row"]], docs[r["matched"]]))
        assert r["similarity"] >= 0.7
    loose = dedup(docs, exact=False, verify="none")
    assert loose.stats["verified_pairs"] == loose.stats["candidate_pairs"]
    assert loose.dropped >= res.dropped


def test_incremental_equals_full_and_hashes_only_new_rows(monkeypatch):
    docs, planted = corpus(400, 80, seed=21)
    first = dedup(docs[:400])                # a deduplicated base, its signatures stored
    base = [d for d, k in zip(docs[:400], first.keep) if k]
    new = docs[400:] + [base[3].upper(), base[10]]
    full = dedup(base + new)
    hashed = []
    mod = importlib.import_module("demoai.prep.dedup")
    real = mod.minhash_signatures

    def spy(texts, *a, **k):
        hashed.append(len(texts))
        return real(texts, *a, **k)
    monkeypatch.setattr(mod, "minhash_signatures", spy)
    stored = Signatures.from_arrow(first.signatures.to_arrow())
    inc = dedup(new, existing=stored)
    assert hashed == [len(new) - 2]          # the two exact copies are not even hashed
    nb = len(base)
    assert full.keep[:nb].all()
    assert inc.keep.tolist() == full.keep[nb:].tolist()
    as_full = [(r["row"] + nb, r["method"],
                r["duplicate_of"] if r["duplicate_of_existing"] else r["duplicate_of"] + nb)
               for r in inc.records.to_pylist()]
    assert as_full == [(r["row"], r["method"], r["duplicate_of"])
                       for r in full.records.to_pylist()]
    assert inc.why(len(new) - 1) == "row 81: exact duplicate of existing row 10, similarity 1.000"
    both = Signatures.concat([stored, inc.signatures])
    assert np.array_equal(both.values, full.signatures.values)
    assert np.array_equal(both.text_hash, full.signatures.text_hash)
    assert any(r["duplicate_of_existing"] and r["method"] == "minhash"
               for r in inc.records.to_pylist())


def test_dedup_across_datasets_and_tables():
    docs, planted = corpus(100, 0, seed=31)
    a = dedup(pa.table({"text": docs[:50]}), "text")
    b = dedup(pa.table({"text": docs[50:]}), "text")
    both = Signatures.concat([a.signatures, b.signatures])
    batch = pa.table({"id": [1, 2, 3], "text": [docs[7], docs[70] + " extra", "brand new text"]})
    res = dedup(batch, "text", existing=both)
    assert res.table.column("id").to_pylist() == [3]
    assert [(r["duplicate_of"], r["duplicate_of_existing"]) for r in res.records.to_pylist()] \
        == [(7, True), (70, True)]
    with pytest.raises(InvalidArtifact) as e:
        dedup(batch, "txt")
    assert e.value.column == "txt"
    with pytest.raises(InvalidArtifact):
        dedup(batch, "id")
    with pytest.raises(InvalidArtifact):
        dedup([1, 2])


def test_semantic_stage_with_an_embed_callable():
    vocab = {"cat": 0, "kitten": 0, "dog": 1, "puppy": 1, "car": 2, "stock": 3}

    def embed(texts):
        out = np.zeros((len(texts), 4))
        for i, t in enumerate(texts):
            for w in t.split():
                if w in vocab:
                    out[i, vocab[w]] += 1
        return out
    docs = ["cat dog", "kitten puppy", "car", "stock car", "stock"]
    res = dedup(docs, embed=embed, semantic_threshold=0.99)
    assert res.keep.tolist() == [True, False, True, True, True]
    r = res.records.to_pylist()[0]
    assert (r["method"], r["duplicate_of"], r["similarity"]) == ("semantic", 0, pytest.approx(1.0))
    with pytest.raises(InvalidArtifact):
        dedup(docs, embed=lambda t: np.zeros(3))


# -- semantic stage: range searches over a row index vs all pairs --------------------------

_WORDS = ("river market garden teacher window engine morning village doctor letter forest "
          "kitchen bridge storm travel music winter castle harbor student paper summer "
          "mountain coffee island season planet library soldier ocean farmer signal dinner "
          "painter silver thunder valley wizard rocket pocket candle meadow shadow tunnel").split()
_SYN = {"big": "large", "quick": "fast", "small": "little", "happy": "glad", "begin": "start",
        "buy": "purchase", "help": "assist", "show": "display", "end": "finish",
        "smart": "clever"}


def paraphrases(n: int, seed: int, frac: float = 0.2) -> list[str]:
    """``n`` short random texts and, for a ``frac`` of them, a paraphrase (synonyms swapped,
    up to two words replaced), shuffled together."""
    rng = np.random.default_rng(seed)
    base = []
    for _ in range(n):
        w = list(rng.choice(_WORDS, 8)) + list(rng.choice(list(_SYN), 3))
        rng.shuffle(w)
        base.append(w)
    texts = [" ".join(w) for w in base]
    for s in rng.choice(n, int(n * frac), replace=False):
        w = [_SYN.get(x, x) for x in base[s]]
        for _ in range(int(rng.integers(0, 3))):
            w[int(rng.integers(len(w)))] = str(rng.choice(_WORDS))
        texts.append(" ".join(w))
    return [texts[i] for i in rng.permutation(len(texts))]


def all_pairs_reference(vectors: np.ndarray, threshold: float) -> dict[int, tuple[int, int]]:
    """Brute force: every pair's cosine (numpy), clusters by a plain union-find; each dropped
    row -> (its cluster's first row, its smallest neighbour)."""
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sim = v @ v.T
    n = len(v)
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x
    nbr: dict[int, list[int]] = {}
    for i in range(n):
        for j in range(i + 1, n):
            if sim[i, j] >= threshold:
                a, b = find(i), find(j)
                parent[max(a, b)] = min(a, b)
                nbr.setdefault(i, []).append(j)
                nbr.setdefault(j, []).append(i)
    return {i: (find(i), min(nbr[i])) for i in range(n) if find(i) != i}


@pytest.fixture(scope="module")
def wordllama():
    from demoai.prep.search import default_embedder
    return default_embedder()


def _decisions(res) -> dict[int, tuple[int, int]]:
    return {r["row"]: (r["duplicate_of"], r["matched"]) for r in res.records.to_pylist()
            if r["method"] == "semantic"}


def test_semantic_dedup_equals_all_pairs_cosine_on_wordllama(tmp_path, wordllama):
    from demoai.prep.search import embed_texts, open_index
    from demoai.prep.dedup import SemanticIndex
    texts = paraphrases(300, seed=3)
    vec = embed_texts(wordllama, texts)
    ref = all_pairs_reference(vec, 0.9)
    assert len(ref) >= 15                         # planted paraphrases above the threshold
    # in memory (embed callable) and through the dataset's LanceDB row index: the same
    got = dedup(texts, exact=False, near=False, embed=wordllama, semantic_threshold=0.9)
    assert _decisions(got) == ref
    index = open_index(tmp_path, "t.jsonl", "d1", ["text"], [str(i) for i in range(len(texts))],
                       texts, wordllama)
    assert index.built and index.embedded == len(set(texts)) and not index.ann
    res = dedup(texts, exact=False, near=False, vectors=index.vectors(), semantic_threshold=0.9,
                semantic_indexes=[SemanticIndex(index, np.arange(len(texts)))])
    assert _decisions(res) == ref
    assert res.keep.sum() == len(texts) - len(ref)
    sims = {r["row"]: r["similarity"] for r in res.records.to_pylist()}
    v = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    assert all(s == pytest.approx(float(v[r] @ v[ref[r][1]]), abs=1e-5) and s >= 0.9
               for r, s in sims.items())
    # searched, not compared pairwise: candidates are the neighbours, far below n^2 / 2
    assert res.stats["semantic_queries"] == len(texts)
    assert res.stats["semantic_candidates"] < 3 * len(texts)
    # after exact dedup: the semantic stage sees only the rows exact dedup kept
    doubled = texts + texts[:20]
    res = dedup(doubled, near=False, embed=wordllama, semantic_threshold=0.9)
    assert res.stats["exact_dropped"] == 20 and _decisions(res) == ref


def test_semantic_dedup_against_existing_rows_equals_a_full_run(wordllama):
    from demoai.prep.search import FlatIndex, embed_texts
    from demoai.prep.dedup import SemanticIndex
    texts = paraphrases(200, seed=5)
    base, new = texts[:180], texts[180:]
    first = dedup(base, exact=False, near=False, embed=wordllama, semantic_threshold=0.9)
    kept = [t for t, k in zip(base, first.keep) if k]
    full = dedup(kept + new, exact=False, near=False, embed=wordllama, semantic_threshold=0.9)
    # the kept base rows as existing rows in their own index; only the new rows are queried
    old = FlatIndex(embed_texts(wordllama, kept))
    sigs = Signatures(MinHashParams(), np.zeros((len(kept), 128), np.uint32),
                      np.arange(len(kept), dtype=np.uint64))
    inc = dedup(new, exact=False, near=False, existing=sigs, embed=wordllama,
                semantic_threshold=0.9,
                semantic_indexes=[SemanticIndex(old, existing_rows=np.arange(len(kept)))])
    off = len(kept)
    assert inc.keep.tolist() == full.keep[off:].tolist()
    want = {r["row"] - off: (r["duplicate_of"], r["duplicate_of"] < off)
            for r in full.records.to_pylist()}
    got = {r["row"]: (r["duplicate_of"] + (0 if r["duplicate_of_existing"] else off),
                      r["duplicate_of_existing"]) for r in inc.records.to_pylist()}
    assert got == want and any(ex for _, ex in got.values())
    assert inc.stats["semantic_queries"] == len(new)
    with pytest.raises(InvalidArtifact):          # an existing row that is not there
        dedup(new, exact=False, near=False, embed=wordllama, semantic_threshold=0.9,
              semantic_indexes=[SemanticIndex(old, existing_rows=np.arange(len(kept)))])
    with pytest.raises(InvalidArtifact):
        dedup(new, exact=False, near=False, vectors=np.zeros((3, 4)))


def test_ann_row_index_finds_the_exact_neighbours(tmp_path, wordllama):
    from demoai.prep.search import flat_neighbours, open_index
    texts = paraphrases(400, seed=7)
    index = open_index(tmp_path, "t.jsonl", "d1", ["text"], [str(i) for i in range(len(texts))],
                       texts, wordllama, ann_min_rows=300)
    assert index.ann
    v = index.vectors()
    qi, rows, sims = index.neighbours(v, 0.9, k=2)          # k doubles past the clusters
    fq, fr, fs = flat_neighbours(v, v, 0.9)
    got, want = set(zip(qi.tolist(), rows.tolist())), set(zip(fq.tolist(), fr.tolist()))
    assert got <= want and len(got) >= 0.95 * len(want) and len(want) > len(texts)
    assert np.all(sims >= 0.9)
    again = open_index(tmp_path, "t.jsonl", "d1", ["text"], [], [], None)   # cached: no embed
    assert not again.built and again.ann and np.array_equal(again.vectors(), v)


def test_flat_range_search_reports_each_pair_of_two_queries_once():
    from demoai.prep.search import flat_neighbours
    rng = np.random.default_rng(0)
    v = rng.standard_normal((500, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    sim = v @ v.T
    qrows = np.sort(rng.choice(500, 200, replace=False))      # the other 300: no query
    qi, rows, s = flat_neighbours(v[qrows], v, 0.8, query_rows=qrows)
    got = {(int(qrows[a]), int(b)) for a, b in zip(qi, rows)}
    assert len(got) == len(qi)
    want = set()
    for a in qrows:
        for b in np.flatnonzero(sim[a] >= 0.8):
            if b not in set(qrows.tolist()) or b > a:
                want.add((int(a), int(b)))
    assert got == want and len(want) > 100
    assert np.allclose(s, sim[qrows[qi], rows], atol=1e-5)
    full = flat_neighbours(v[qrows], v, 0.8)                   # without: both ends, and self
    assert len(full[0]) > len(qi)
