"""Contamination check bench: a test set against a training set, both generated here
(random words from a Zipf-like vocabulary, with planted overlaps), n-gram overlap and,
optionally, MinHash near-duplicates. Prints wall times, rows/s and whether every planted
row was found.

    .venv/bin/python bench/bench_prep.py --train-rows 1000000 --test-rows 10000 [--near]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from demoai.prep.contamination import find_contamination

__all__ = ["make_texts", "main"]


def make_texts(rng: np.random.Generator, n: int, words: int, vocab: pa.Array) -> pa.Array:
    """``n`` texts of ``words`` words each, drawn Zipf-like from ``vocab``."""
    idx = (rng.zipf(1.3, size=n * words) - 1) % len(vocab)
    flat = vocab.take(pa.array(idx))
    lists = pa.ListArray.from_arrays(pa.array(np.arange(0, n * words + 1, words, dtype=np.int32)),
                                     flat)
    return pc.binary_join(lists, " ")


def main() -> None:
    """Run the bench."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-rows", type=int, default=1_000_000)
    ap.add_argument("--test-rows", type=int, default=10_000)
    ap.add_argument("--words", type=int, default=40)
    ap.add_argument("--near", action="store_true")
    a = ap.parse_args()
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
