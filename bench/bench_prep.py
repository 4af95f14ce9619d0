"""Data preparation benches, on data generated here (random words from a Zipf-like
vocabulary, with planted overlaps).

- Contamination (default): a test set against a training set, n-gram overlap and,
  optionally, MinHash near-duplicates. Prints wall times, rows/s and whether every planted
  row was found.
- ``--self-instruct``: the self-instruct filter (:class:`demoai.prep.selfinstruct.
  InstructionFilter`: prefix-filtered index, exact ROUGE-L on candidates) over ``--candidates``
  new instructions against a ``--pool`` of existing ones, timed; then the same filter by
  brute force over every pair (bit-parallel LCS in numpy, tokens from ``rouge-score``'s own
  tokenizer) must keep the same set, every best-match score is checked against
  ``rouge-score``'s ``RougeScorer`` to the bit, and a scaled-down run
  (``--rouge-score-candidates`` x ``--rouge-score-pool``) is compared with a brute force
  that calls ``RougeScorer.score`` on every pair.

    .venv/bin/python bench/bench_prep.py --train-rows 1000000 --test-rows 10000 [--near]
    .venv/bin/python bench/bench_prep.py --self-instruct --pool 50000 --candidates 10000
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from demoai.prep.contamination import find_contamination

__all__ = ["make_texts", "main", "make_instructions", "brute_force_kept", "self_instruct_bench"]


def make_texts(rng: np.random.Generator, n: int, words: int, vocab: pa.Array) -> pa.Array:
    """``n`` texts of ``words`` words each, drawn Zipf-like from ``vocab``."""
    idx = (rng.zipf(1.3, size=n * words) - 1) % len(vocab)
    flat = vocab.take(pa.array(idx))
    lists = pa.ListArray.from_arrays(pa.array(np.arange(0, n * words + 1, words, dtype=np.int32)),
                                     flat)
    return pc.binary_join(lists, " ")


def make_instructions(rng: np.random.Generator, pool: int, cands: int
                      ) -> tuple[list[str], list[str]]:
    """A pool and candidates of 5-20 word instructions; a third of the candidates are
    edits (1-4 words replaced, dropped or added) of a pool text or an earlier candidate."""
    vocab = [f"w{i}" for i in range(20_000)]
    verbs = ["explain", "list", "describe", "write", "summarize", "compare", "name", "give"]

    def fresh() -> str:
        n = int(rng.integers(5, 21))
        idx = (rng.zipf(1.2, size=n - 1) - 1) % len(vocab)
        return " ".join([verbs[int(rng.integers(len(verbs)))]] + [vocab[i] for i in idx])

    def edit(text: str) -> str:
        w = text.split()
        for _ in range(int(rng.integers(1, 5))):
            k = int(rng.integers(3))
            i = int(rng.integers(len(w)))
            if k == 0:
                w[i] = vocab[int(rng.integers(len(vocab)))]
            elif k == 1 and len(w) > 3:
                del w[i]
            else:
                w.insert(i, vocab[int(rng.integers(len(vocab)))])
        return " ".join(w)
    p = [fresh() for _ in range(pool)]
    c: list[str] = []
    for _ in range(cands):
        r = rng.random()
        if r < 0.67 or not c:
            c.append(fresh())
        elif r < 0.85:
            c.append(edit(p[int(rng.integers(len(p)))]))
        else:
            c.append(edit(c[int(rng.integers(len(c)))]))
    return p, c


def brute_force_kept(pool: list[str], cands: list[str], threshold: float = 0.7
                     ) -> tuple[list[int], list[tuple[float, int]]]:
    """Indices of the kept candidates, comparing each with every pool text and every kept
    candidate before it (ROUGE-L F as rouge-score computes it, tokens from rouge-score's
    tokenizer, LCS bit-parallel in numpy); and each candidate's (best score, best index)."""
    from rouge_score.tokenizers import DefaultTokenizer
    tok = DefaultTokenizer(use_stemmer=False).tokenize
    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(w, len(vocab)) for w in tok(t)] for t in pool + cands]
    width = max(1, max(len(x) for x in ids))
    pad = len(vocab)
    mat = np.full((len(ids), width), pad, dtype=np.int64)
    lens = np.zeros(len(ids), dtype=np.int64)
    for i, x in enumerate(ids):
        mat[i, :len(x)] = x
        lens[i] = len(x)
    rows = list(range(len(pool)))          # positions of the pool and the kept candidates
    kept, best = [], []
    masks = np.zeros(pad + 1, dtype=np.uint64)
    for c in range(len(pool), len(ids)):
        a = ids[c]
        m = len(a)
        if m == 0 or m > 63:
            raise ValueError("bench texts have 1 to 63 tokens")
        sel = np.asarray(rows)
        sub, y = mat[sel], lens[sel]
        for i, t in enumerate(a):
            masks[t] |= np.uint64(1 << i)
        full = np.uint64((1 << m) - 1)
        v = np.full(len(sel), full, dtype=np.uint64)
        for j in range(width):
            u = v & masks[sub[:, j]]
            v = ((v + u) | (v - u)) & full
        for t in a:
            masks[t] = 0
        lcs = m - np.bitwise_count(v).astype(np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            p, r = lcs / y, lcs / m
            f = np.where(lcs > 0, 2 * p * r / (p + r), 0.0)
        k = int(np.argmax(f)) if len(f) else -1
        best.append((float(f[k]) if k >= 0 else 0.0, int(sel[k]) if k >= 0 else -1))
        if best[-1][0] < threshold:
            kept.append(c - len(pool))
            rows.append(c)
    return kept, best


def self_instruct_bench(a: argparse.Namespace) -> None:
    """The self-instruct filter bench (see the module docstring)."""
    from rouge_score import rouge_scorer

    from demoai.eval.metrics import rouge_tokenize
    from demoai.prep.selfinstruct import FilterConfig, InstructionFilter
    rng = np.random.default_rng(0)
    pool, cands = make_instructions(rng, a.pool, a.candidates)
    cfg = FilterConfig(blocklist=())
    t0 = time.perf_counter()
    filt = InstructionFilter(rouge_tokenize, pool, cfg, corpus=cands)
    t1 = time.perf_counter()
    verdicts = [filt.check(c) for c in cands]
    t2 = time.perf_counter()
    kept = [i for i, v in enumerate(verdicts) if v.kept]
    print(f"self-instruct filter: {a.candidates} candidates vs a {a.pool} pool: "
          f"{t2 - t0:.1f} s (index {t1 - t0:.1f} s, filter {t2 - t1:.1f} s); kept "
          f"{len(kept)}, rejected {len(cands) - len(kept)}; exact ROUGE-L on "
          f"{filt.index.compared:,} pairs of {a.candidates * a.pool:,}+")
    if a.skip_brute_force:
        return
    t0 = time.perf_counter()
    bf, best = brute_force_kept(pool, cands, cfg.threshold)
    print(f"brute force (numpy bit-parallel LCS, every pair): {time.perf_counter() - t0:.1f} s;"
          f" same kept set: {bf == kept}")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    texts = pool + cands
    agree = sum(scorer.score(c, texts[j])["rougeL"].fmeasure == s
                for c, (s, j) in zip(cands, best) if j >= 0)
    print(f"rouge-score agrees with every best-match score: {agree} of "
          f"{sum(j >= 0 for _, j in best)}")
    sp, sc = make_instructions(np.random.default_rng(1), a.rouge_score_pool,
                               a.rouge_score_candidates)
    t0 = time.perf_counter()
    ref, pool_now = [], list(sp)
    for i, c in enumerate(sc):
        if max(scorer.score(c, p)["rougeL"].fmeasure for p in pool_now) < cfg.threshold:
            ref.append(i)
            pool_now.append(c)
    t1 = time.perf_counter()
    small = InstructionFilter(rouge_tokenize, sp, cfg, corpus=sc)
    mine = [i for i, c in enumerate(sc) if small.check(c).kept]
    print(f"rouge-score brute force, {len(sc)} candidates vs {len(sp)} pool: {t1 - t0:.1f} s "
          f"(index: {time.perf_counter() - t1:.2f} s); kept {len(ref)}; same kept set: "
          f"{mine == ref}")


def main() -> None:
    """Run the bench."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-rows", type=int, default=1_000_000)
    ap.add_argument("--test-rows", type=int, default=10_000)
    ap.add_argument("--words", type=int, default=40)
    ap.add_argument("--near", action="store_true")
    ap.add_argument("--self-instruct", action="store_true",
                    help="Run the self-instruct filter bench instead.")
    ap.add_argument("--pool", type=int, default=50_000)
    ap.add_argument("--candidates", type=int, default=10_000)
    ap.add_argument("--rouge-score-pool", type=int, default=2_000)
    ap.add_argument("--rouge-score-candidates", type=int, default=300)
    ap.add_argument("--skip-brute-force", action="store_true")
    a = ap.parse_args()
    if a.self_instruct:
        self_instruct_bench(a)
        return
    rng = np.random.default_rng(0)
    vocab = pa.array([f"w{i}" for i in range(50_000)])
    t0 = time.perf_counter()
    train = make_texts(rng, a.train_rows, a.words, vocab)
    test = make_texts(rng, a.test_rows, a.words, vocab).to_pylist()
    planted = rng.choice(a.test_rows, 20, replace=False)
    src = rng.choice(a.train_rows, 20, replace=False)
    for i, j in zip(planted, src):
        w = train[int(j)].as_py().split()
        test[int(i)] = "prefix " + " ".join(w[3:3 + 15]) + " suffix"
    print(f"generated {a.train_rows} train / {a.test_rows} test rows in "
          f"{time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    res = find_contamination(pa.array(test), [("train", train)], near=a.near)
    dt = time.perf_counter() - t0
    found = set(np.flatnonzero(res.contaminated).tolist())
    print(f"contamination ({'13-gram + minhash' if a.near else '13-gram'}): {dt:.1f} s, "
          f"{a.train_rows / dt:,.0f} train rows/s; contaminated {len(found)}, planted "
          f"{len(planted)} all found: {set(planted.tolist()) <= found}")


if __name__ == "__main__":
    main()
