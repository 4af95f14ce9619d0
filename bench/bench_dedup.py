"""Benchmark of MinHash LSH near-deduplication: DemoAI's vectorized engine vs datasketch.

Workload (deterministic, numpy seed): N documents of ~100 words drawn from an 8,000-word
vocabulary; a fraction of them (default 10%) are planted near-copies of other documents with
1-12 words replaced (5-gram Jaccard ~0.4-0.95), shuffled in. Both engines use word 5-grams,
128 permutations, seed 1, Jaccard threshold 0.7 and the same (bands, rows) = datasketch's
optimum for it; both verify LSH candidates by the estimated Jaccard. datasketch runs as it is
used for dedup: MinHash per document (shared permutations), then ``MinHashLSH.query`` and
``insert`` row by row.

Ground truth: the exact Jaccard of each planted pair (Python sets of 5-grams); a pair is a
true duplicate when it is >= the threshold. Recall: true pairs whose later row was dropped.
Precision: dropped rows whose matched row is a true duplicate (exact Jaccard >= threshold).

Then 1% new rows (half of them near-copies of kept rows) are appended and deduplicated
against the stored signatures of the first run (read back from Parquet), timed against the
first run, and checked against a full run over kept + new rows.

Semantic dedup (wordllama embeddings, cosine >= 0.9): 20,000 short texts (12 pseudo-words,
2 of them from a small synonym list), 10% of them with a planted paraphrase (synonyms
swapped, up to one word replaced). DemoAI embeds the rows into the dataset version's LanceDB
row index and finds each row's neighbours by a range search of it (exact below the index's
ANN size); the baseline is numpy's all-pairs cosine (blocks of 1024 rows against the rest)
on the same embeddings, as DemoAI did before. Then 1% rows (half of them paraphrases) are
appended: DemoAI embeds only them (the rest come from the first version's index) and
searches only them against kept + new rows; the baseline embeds and compares everything.

    python bench/bench_dedup.py [--docs N] [--threshold T] [--no-datasketch] [--json PATH]
                                [--semantic-docs N] [--semantic-only | --no-semantic]

Each measurement runs in a fresh subprocess so its peak RSS (``VmHWM``) is its own; wall
times exclude imports and data generation.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

TARGETS = {"speedup": 2.0, "rss_mb": 1024.0, "append_pct": 5.0}
NUM_PERM, NGRAM, SEED = 128, 5, 1


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: the new image's own, not the parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(docs: int, seed: int, dup_frac: float = 0.1, append_frac: float = 0.01):
    """(texts, planted pairs (earlier row, later row), appended texts, appended pairs with
    the first value an index into ``texts``)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = np.array(["".join(rng.choice(letters, k)) for k in rng.integers(2, 10, 8000)])
    n_dup = int(docs * dup_frac)
    n_base = docs - n_dup
    words = rng.integers(0, len(vocab), size=(n_base, 100))

    def near_copies(src_rows: np.ndarray, pool: np.ndarray) -> np.ndarray:
        out = pool[src_rows].copy()
        for i, k in enumerate(rng.integers(1, 13, len(src_rows))):
            out[i, rng.choice(100, int(k), replace=False)] = rng.integers(0, len(vocab), int(k))
        return out
    src = rng.integers(0, n_base, n_dup)
    allw = np.concatenate([words, near_copies(src, words)])
    order = rng.permutation(docs)                  # row order -> generated index
    pos = np.empty(docs, dtype=np.int64)
    pos[order] = np.arange(docs)
    texts = [" ".join(vocab[allw[g]]) for g in order]
    pairs = [(min(pos[s], pos[n_base + i]), max(pos[s], pos[n_base + i]))
             for i, s in enumerate(src)]
    n_app = max(int(docs * append_frac), 2)
    app_src = rng.integers(0, docs, n_app // 2)   # near-copies of existing rows
    app_words = np.concatenate([
        near_copies(order[app_src], allw),
        rng.integers(0, len(vocab), size=(n_app - n_app // 2, 100))])
    appended = [" ".join(vocab[w]) for w in app_words]
    app_pairs = [(int(s), i) for i, s in enumerate(app_src)]
    return texts, pairs, appended, app_pairs


def _shingles(text: str) -> set:
    w = text.split()
    return {tuple(w[i:i + NGRAM]) for i in range(len(w) - NGRAM + 1)}


def jaccard(a: str, b: str) -> float:
    x, y = _shingles(a), _shingles(b)
    return len(x & y) / len(x | y) if x | y else 1.0


# -- children: one measurement each -------------------------------------------------------

def _child_ours(args, work: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from demoai.prep import dedup, optimal_bands
    pa.set_cpu_count(1)
    texts, *_ = generate(args.docs, args.seed)
    arr = pa.array(texts)
    del texts
    bands = optimal_bands(args.threshold, NUM_PERM)
    t0 = time.perf_counter()
    res = dedup(arr, exact=False, threshold=args.threshold, bands=bands)
    wall = time.perf_counter() - t0
    pq.write_table(res.signatures.to_arrow(), work / "signatures.parquet")
    np.save(work / "keep.npy", res.keep)
    rec = res.records
    return {"wall_s": wall, "rss_mb": peak_rss_mb(), "bands": list(bands),
            "dropped": list(zip(rec.column("row").to_pylist(), rec.column("matched").to_pylist())),
            "candidates": res.stats["candidate_pairs"]}


def _child_datasketch(args, work: Path) -> dict:
    from datasketch import MinHash, MinHashLSH

    from demoai.prep import optimal_bands
    texts, *_ = generate(args.docs, args.seed)
    b, r = optimal_bands(args.threshold, NUM_PERM)
    perm = MinHash(num_perm=NUM_PERM, seed=SEED).permutations
    t0 = time.perf_counter()
    lsh = MinHashLSH(num_perm=NUM_PERM, params=(b, r))
    kept: dict[int, MinHash] = {}
    dropped = []
    for i, text in enumerate(texts):
        w = text.lower().split()
        m = MinHash(num_perm=NUM_PERM, seed=SEED, permutations=perm, scheme="affine32")
        m.update_batch([" ".join(w[k:k + NGRAM]).encode() for k in range(len(w) - NGRAM + 1)])
        hits = [k for k in lsh.query(m) if m.jaccard(kept[k]) >= args.threshold]
        if hits:
            dropped.append((i, min(hits)))
        else:
            lsh.insert(i, m)
            kept[i] = m
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "rss_mb": peak_rss_mb(), "bands": [b, r], "dropped": dropped}


def _child_append(args, work: Path, full: bool) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from demoai.prep import Signatures, dedup, optimal_bands
    pa.set_cpu_count(1)
    texts, _, appended, _ = generate(args.docs, args.seed)
    keep = np.load(work / "keep.npy")
    bands = optimal_bands(args.threshold, NUM_PERM)
    if full:                                        # the reference: kept + new, from scratch
        kept = [t for t, k in zip(texts, keep) if k]
        allrows = pa.array(kept + appended)
        t0 = time.perf_counter()
        res = dedup(allrows, exact=False, threshold=args.threshold, bands=bands)
        wall = time.perf_counter() - t0
        off = len(kept)
        new_keep = res.keep[off:].tolist()
        recs = [(r["row"] - off, r["duplicate_of"] if r["duplicate_of"] < off else -1)
                for r in res.records.to_pylist() if r["row"] >= off]
    else:
        new = pa.array(appended)
        runs = []
        for _ in range(3):                      # first: cold; the figure is the median
            t0 = time.perf_counter()
            stored = Signatures.from_arrow(pq.read_table(work / "signatures.parquet"))
            t1 = time.perf_counter()
            res = dedup(new, exact=False, threshold=args.threshold, bands=bands,
                        existing=stored)
            runs.append((time.perf_counter() - t0, t1 - t0))
        wall, load = sorted(runs)[1]
        new_keep = res.keep.tolist()
        recs = [(r["row"], r["duplicate_of"] if r["duplicate_of_existing"] else -1)
                for r in res.records.to_pylist()]
    return {"wall_s": wall, "rss_mb": peak_rss_mb(), "keep": new_keep, "records": recs,
            "load_s": load if not full else 0.0, "runs_s": [r[0] for r in runs] if not full else []}


# -- semantic dedup ------------------------------------------------------------------------

SYN = {"big": "large", "quick": "fast", "small": "little", "happy": "glad", "begin": "start",
       "buy": "purchase", "help": "assist", "show": "display", "end": "finish", "smart": "clever"}
_SYL = ("ka lo mi ten ra su vo bel den fi gor hu jan ke lim mor nes pa qui ros sal tu ver wen "
        "xi yor zu").split()


def generate_short(docs: int, seed: int, para_frac: float = 0.1, append_frac: float = 0.01):
    """(texts: ``docs`` short texts, ``para_frac`` of them paraphrases of others, shuffled;
    appended: ``append_frac`` more, half of them paraphrases of ``texts`` rows)."""
    rng = np.random.default_rng(seed)
    vocab = np.array(["".join(rng.choice(_SYL, k)) for k in rng.integers(2, 4, 4000)])
    n_para = int(docs * para_frac)

    def fresh(k: int) -> list[list[str]]:
        out = []
        for _ in range(k):
            w = list(rng.choice(vocab, 10)) + list(rng.choice(list(SYN), 2))
            rng.shuffle(w)
            out.append(w)
        return out

    def paraphrase(w: list[str]) -> str:
        w = [SYN.get(x, x) for x in w]
        for _ in range(int(rng.integers(0, 2))):
            w[int(rng.integers(len(w)))] = str(rng.choice(vocab))
        return " ".join(w)
    base = fresh(docs - n_para)
    texts = [" ".join(w) for w in base] + [paraphrase(base[int(i)]) for i in
                                           rng.choice(len(base), n_para, replace=False)]
    texts = [texts[i] for i in rng.permutation(len(texts))]
    n_app = max(int(docs * append_frac), 2)
    words = [t.split() for t in texts]
    appended = [paraphrase(words[int(i)]) for i in rng.integers(0, docs, n_app // 2)]
    appended += [" ".join(w) for w in fresh(n_app - n_app // 2)]
    return texts, appended


def _all_pairs(vec: np.ndarray, threshold: float, block: int = 1024) -> np.ndarray:
    """Every pair's cosine, a block of rows against the rows after it (the baseline)."""
    found = []
    for s in range(0, len(vec), block):
        i, j = np.nonzero(np.triu(vec[s:s + block] @ vec[s:].T >= threshold, k=1))
        found.append(np.stack([i + s, j + s], axis=1))
    return np.concatenate(found).astype(np.int64) if found else np.zeros((0, 2), np.int64)


def _sem_decisions(labels: np.ndarray) -> list:
    """(row, the first row of its cluster) for every row not first in its cluster."""
    gone = np.flatnonzero(labels != np.arange(len(labels)))
    return [[int(r), int(labels[r])] for r in gone]


def _child_sem(args, work: Path, which: str) -> dict:
    import pyarrow as pa

    from demoai.prep import MinHashParams, Signatures, connected_components, dedup
    from demoai.prep.dedup import SemanticIndex
    from demoai.prep.search import default_embedder, embed_texts, open_index
    import lancedb  # noqa: F401  (imported before the clock starts, like everything else)
    pa.set_cpu_count(1)
    texts, appended = generate_short(args.semantic_docs, args.seed)
    embed = default_embedder()
    embed_texts(embed, ["warm up"])
    t = args.semantic_threshold
    out: dict = {}
    if which == "first":                    # DemoAI: build the version's index, search it
        t0 = time.perf_counter()
        index = open_index(work / "cache", "bench.jsonl", "v1", ["text"],
                           [str(i) for i in range(len(texts))], texts, embed)
        t1 = time.perf_counter()
        vec = index.vectors()
        res = dedup(pa.array(texts), exact=False, near=False, vectors=vec,
                    semantic_threshold=t,
                    semantic_indexes=[SemanticIndex(index, np.arange(len(texts)))])
        out = {"embed_index_s": t1 - t0, "search_s": time.perf_counter() - t1,
               "embedded": index.embedded, "search": "ann" if index.ann else "exact",
               "candidates": res.stats["semantic_candidates"]}
        np.save(work / "sem_vec.npy", vec)
        np.save(work / "sem_keep.npy", res.keep)
        out["decisions"] = sorted([r["row"], r["duplicate_of"]] for r in res.records.to_pylist())
    elif which == "append":                 # DemoAI: new version, embed and search new rows
        keep = np.load(work / "sem_keep.npy")
        kept = [x for x, k in zip(texts, keep) if k]
        version = kept + appended
        n_old = len(kept)
        t0 = time.perf_counter()
        index = open_index(work / "cache", "bench.jsonl", "v2", ["text"],
                           [str(i) for i in range(len(version))], version, embed)
        t1 = time.perf_counter()
        as_input = np.concatenate([np.full(n_old, -1), np.arange(len(appended))])
        as_existing = np.concatenate([np.arange(n_old), np.full(len(appended), -1)])
        dummy = Signatures(MinHashParams(), np.zeros((n_old, 128), np.uint32),
                           np.zeros(n_old, np.uint64))
        res = dedup(pa.array(appended), exact=False, near=False, existing=dummy,
                    vectors=index.vectors()[n_old:], semantic_threshold=t,
                    semantic_indexes=[SemanticIndex(index, as_input, as_existing)])
        out = {"embed_index_s": t1 - t0, "search_s": time.perf_counter() - t1,
               "embedded": index.embedded, "search": "ann" if index.ann else "exact",
               "candidates": res.stats["semantic_candidates"], "rows": len(appended)}
        out["decisions"] = sorted(      # as rows of kept + appended
            [r["row"] + n_old, r["duplicate_of"] + (0 if r["duplicate_of_existing"] else n_old)]
            for r in res.records.to_pylist())
    else:                                   # numpy all pairs: embed every row, compare all
        rows = texts
        if which == "brute-append":
            keep = np.load(work / "sem_keep.npy")
            rows = [x for x, k in zip(texts, keep) if k] + appended
        t0 = time.perf_counter()
        fresh = embed_texts(embed, rows)
        t1 = time.perf_counter()
        vec = np.load(work / "sem_vec.npy") if which == "brute" else fresh  # same embeddings
        labels = connected_components(len(vec), _all_pairs(vec, t))
        out = {"embed_index_s": t1 - t0, "search_s": time.perf_counter() - t1,
               "embedded": len(rows)}
        dec = _sem_decisions(labels)
        if which == "brute-append":
            n_old = len(rows) - len(appended)
            dec = [d for d in dec if d[0] >= n_old]
        out["decisions"] = sorted(dec)
    out["wall_s"] = out["embed_index_s"] + out["search_s"]
    out["rss_mb"] = peak_rss_mb()
    return out


def semantic_main(args, work: Path) -> dict:
    """The semantic rows: DemoAI's index (first run, +1%) beside numpy all pairs."""
    first = _run_child("sem-first", args, work)
    brute = _run_child("sem-brute", args, work)
    app = _run_child("sem-append", args, work)
    brute_app = _run_child("sem-brute-append", args, work)
    return {"docs": args.semantic_docs, "threshold": args.semantic_threshold,
            "first": first, "brute": brute, "append": app, "brute_append": brute_app,
            "same_first": first["decisions"] == brute["decisions"],
            "same_append": app["decisions"] == brute_app["decisions"]}


def _print_semantic(r: dict) -> None:
    f, b, a, ba = r["first"], r["brute"], r["append"], r["brute_append"]
    print(f"\nSemantic dedup: {r['docs']:,} short texts with planted paraphrases, wordllama "
          f"256-d, cosine >= {r['threshold']}; then +{a['rows']} rows (1%)")
    print(f"{'':26}{'row index':>12}{'all pairs':>12}{'index +1%':>12}{'all pairs +1%':>15}")
    rows = [("rows embedded", "embedded", "d"), ("embed + index (s)", "embed_index_s", ".2f"),
            ("search / compare (s)", "search_s", ".2f"), ("wall time (s)", "wall_s", ".2f"),
            ("peak RSS (MB)", "rss_mb", ".0f")]
    for name, key, fmt in rows:
        print(f"{name:26}{format(f[key], fmt):>12}{format(b[key], fmt):>12}"
              f"{format(a[key], fmt):>12}{format(ba[key], fmt):>15}")
    print(f"{'rows dropped':26}{len(f['decisions']):>12}{len(b['decisions']):>12}"
          f"{len(a['decisions']):>12}{len(ba['decisions']):>15}")
    print(f"search: {f['search']}, {f['candidates']:,} candidate neighbours (first run), "
          f"{a['candidates']:,} (+1%); same drops and duplicate_of as all pairs: first "
          f"{'yes' if r['same_first'] else 'NO'}, +1% {'yes' if r['same_append'] else 'NO'}")


def _run_child(mode: str, args, work: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--work", str(work), "--docs",
           str(args.docs), "--seed", str(args.seed), "--threshold", str(args.threshold),
           "--semantic-docs", str(args.semantic_docs),
           "--semantic-threshold", str(args.semantic_threshold)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{mode} failed:\n{out.stderr}")
    return json.loads((work / f"{mode}.json").read_text())


def _quality(texts, pairs, dropped, t) -> tuple[float, float]:
    truth = [(a, b) for a, b in pairs if jaccard(texts[a], texts[b]) >= t]
    gone = {row for row, _ in dropped}
    recall = sum(b in gone for _, b in truth) / max(len(truth), 1)
    precision = sum(jaccard(texts[r], texts[m]) >= t for r, m in dropped) / max(len(dropped), 1)
    return precision, recall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--no-datasketch", action="store_true", help="measure DemoAI only")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--semantic-docs", type=int, default=20_000,
                    help="short texts for the semantic-dedup rows")
    ap.add_argument("--semantic-threshold", type=float, default=0.9)
    ap.add_argument("--semantic-only", action="store_true", help="only the semantic rows")
    ap.add_argument("--no-semantic", action="store_true", help="skip the semantic rows")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        work = Path(args.work)
        fn = {"ours": _child_ours, "datasketch": _child_datasketch,
              "append": lambda a, w: _child_append(a, w, False),
              "append-full": lambda a, w: _child_append(a, w, True),
              "sem-first": lambda a, w: _child_sem(a, w, "first"),
              "sem-append": lambda a, w: _child_sem(a, w, "append"),
              "sem-brute": lambda a, w: _child_sem(a, w, "brute"),
              "sem-brute-append": lambda a, w: _child_sem(a, w, "brute-append")}[args.child]
        (work / f"{args.child}.json").write_text(json.dumps(fn(args, work)))
        return
    if args.semantic_only:
        with tempfile.TemporaryDirectory() as tmp:
            sem = semantic_main(args, Path(tmp))
        _print_semantic(sem)
        if args.json:
            Path(args.json).write_text(json.dumps({"semantic": sem}, indent=2))
        return

    texts, pairs, appended, _ = generate(args.docs, args.seed)
    res: dict = {"docs": args.docs, "planted_pairs": len(pairs), "threshold": args.threshold}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ours = _run_child("ours", args, work)
        res["bands"] = ours["bands"]
        res["ours"] = {k: ours[k] for k in ("wall_s", "rss_mb", "candidates")}
        res["ours"]["precision"], res["ours"]["recall"] = _quality(
            texts, pairs, ours["dropped"], args.threshold)
        if not args.no_datasketch:
            ds = _run_child("datasketch", args, work)
            res["datasketch"] = {k: ds[k] for k in ("wall_s", "rss_mb")}
            res["datasketch"]["precision"], res["datasketch"]["recall"] = _quality(
                texts, pairs, ds["dropped"], args.threshold)
        app = _run_child("append", args, work)
        ref = _run_child("append-full", args, work)
        res["append"] = {"rows": len(appended), "wall_s": app["wall_s"], "rss_mb": app["rss_mb"],
                         "load_s": app["load_s"], "runs_s": app["runs_s"],
                         "dropped": len(app["records"]),
                         "pct_of_first": 100 * app["wall_s"] / ours["wall_s"],
                         "full_rerun_s": ref["wall_s"],
                         "same_as_full": app["keep"] == ref["keep"]
                         and app["records"] == ref["records"]}
        if not args.no_semantic:
            res["semantic"] = semantic_main(args, work)
    _print(res)
    if "semantic" in res:
        _print_semantic(res["semantic"])
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


def _print(res: dict) -> None:
    o, d, a = res["ours"], res.get("datasketch"), res["append"]
    print(f"MinHash LSH dedup: {res['docs']:,} docs of ~100 words, {res['planted_pairs']:,} "
          f"planted near-copies; word 5-grams, {NUM_PERM} perms, threshold "
          f"{res['threshold']}, bands x rows = {res['bands'][0]} x {res['bands'][1]}")
    print(f"{'':28}{'DemoAI':>12}{'datasketch':>14}{'target':>14}")

    def line(name, key, fmt, target=""):
        ds = format(d[key], fmt) if d else "-"
        print(f"{name:28}{format(o[key], fmt):>12}{ds:>14}{target:>14}")
    line("wall time (s)", "wall_s", ".2f", ">= 2x faster")
    line("precision", "precision", ".4f")
    line("recall", "recall", ".4f", ">= datasketch")
    line("peak RSS (MB)", "rss_mb", ".0f", "<= 1024")
    if d:
        sp = d["wall_s"] / o["wall_s"]
        ok = sp >= TARGETS["speedup"] and o["recall"] >= d["recall"] - 1e-9
        print(f"speed-up {sp:.1f}x at recall {o['recall']:.4f} vs {d['recall']:.4f}: "
              f"{'ok' if ok else 'MISSED'}")
    print(f"append {a['rows']:,} rows against stored signatures: {a['wall_s']:.3f} s "
          f"(median of {', '.join(f'{x:.3f}' for x in a['runs_s'])}; loading them "
          f"{a['load_s']:.3f} s) = "
          f"{a['pct_of_first']:.1f}% of the first run (target <= {TARGETS['append_pct']:.0f}%: "
          f"{'ok' if a['pct_of_first'] <= TARGETS['append_pct'] else 'MISSED'}); "
          f"{a['dropped']} dropped; same decisions as a full re-run "
          f"({a['full_rerun_s']:.2f} s): {'yes' if a['same_as_full'] else 'NO'}; "
          f"peak RSS {a['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
