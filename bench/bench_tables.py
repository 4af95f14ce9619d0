"""Benchmark of versioned tables: delta storage and metadata diff on 1M rows.

Workload (deterministic, numpy seed): columns id int64, prompt, response, label (strings);
~110 MB as Parquet zstd. v2 modifies 1% of rows (response), deletes 0.5%, appends 0.5%.

    python bench/bench_tables.py [CACHE_DIR] [--rows N]

The generated Parquet files are cached in CACHE_DIR (default bench/.work); the store is
rebuilt on every run. ``diff`` runs in a fresh subprocess so that its peak RSS
(``VmHWM``) is its own; the figure includes ~200 MB of imports (the Lance library).
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

TARGETS = {"growth_pct": 3.0, "diff_s": 0.5, "diff_rss_mb": 300.0}


def _vocab(rng: np.random.Generator, n: int = 8000) -> pa.Array:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return pa.array(["".join(rng.choice(letters, k)) for k in rng.integers(2, 10, n)])


def _texts(rng, vocab: pa.Array, n: int, lo: int, hi: int) -> pa.Array:
    k = rng.integers(lo, hi, n)
    offsets = np.concatenate([[0], np.cumsum(k)]).astype(np.int32)
    words = vocab.take(pa.array(rng.integers(0, len(vocab), int(k.sum()))))
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), words), " ")


def generate(rows: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """v1 and v2 (1% modified, 0.5% deleted, 0.5% appended) of the workload."""
    rng = np.random.default_rng(seed)
    vocab = _vocab(rng)
    labels = pa.array(["positive", "negative", "neutral", "mixed", "refusal"])

    def make(ids: np.ndarray) -> pa.Table:
        n = len(ids)
        return pa.table({"id": pa.array(ids.astype(np.int64)),
                         "prompt": _texts(rng, vocab, n, 5, 25),
                         "response": _texts(rng, vocab, n, 8, 30),
                         "label": labels.take(pa.array(rng.integers(0, 5, n)))})
    v1 = make(np.arange(rows))
    perm = rng.permutation(rows)
    n_mod, n_del = rows // 100, rows // 200
    mod, dele = np.sort(perm[:n_mod]), perm[n_mod:n_mod + n_del]
    resp = v1["response"].combine_chunks()
    edited = pc.binary_join_element_wise(resp.take(pa.array(mod)), pa.scalar(" [edited]"), "")
    mask = np.zeros(rows, dtype=bool)
    mask[mod] = True
    idx = np.cumsum(mask) - 1
    new_resp = pc.if_else(pa.array(mask), edited.take(pa.array(np.clip(idx, 0, None))), resp)
    v2 = v1.set_column(2, "response", new_resp)
    keep = np.ones(rows, dtype=bool)
    keep[dele] = False
    v2 = pa.concat_tables([v2.filter(pa.array(keep)), make(np.arange(rows, rows + rows // 200))])
    return v1, v2


def _cached(cache: Path, rows: int) -> tuple[pa.Table, pa.Table]:
    p1, p2 = cache / f"v1-{rows}.parquet", cache / f"v2-{rows}.parquet"
    if not (p1.exists() and p2.exists()):
        cache.mkdir(parents=True, exist_ok=True)
        v1, v2 = generate(rows)
        pq.write_table(v1, p1, compression="zstd")
        pq.write_table(v2, p2, compression="zstd")
    return pq.read_table(p1), pq.read_table(p2)


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    from the (large) parent across fork+exec, VmHWM belongs to the new image only."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child_diff(store_dir: str, a_json: str, b_json: str) -> None:
    from demoai.store.tables.store import TableRef, TableStore
    base_rss = peak_rss_mb()
    st = TableStore(store_dir)
    a = TableRef.from_dict(json.loads(Path(a_json).read_text()))
    b = TableRef.from_dict(json.loads(Path(b_json).read_text()))
    t0 = time.perf_counter()
    d = st.diff(a, b)
    cold = time.perf_counter() - t0
    rss = peak_rss_mb()
    t0 = time.perf_counter()
    st.diff(a, b)
    warm = time.perf_counter() - t0
    print(json.dumps({"diff_s": cold, "diff_warm_s": warm, "diff_rss_mb": rss,
                      "import_rss_mb": base_rss, "added": d.added, "removed": d.removed,
                      "modified": d.modified, "method": d.method}))


def _delta_run(cache: Path, name: str, v1: pa.Table, v2: pa.Table, key: str | None) -> dict:
    """Write v1, then v2 as a delta; diff them in a fresh subprocess."""
    from demoai.store.tables.store import TableStore

    store_dir = cache / name
    shutil.rmtree(store_dir, ignore_errors=True)
    st = TableStore(store_dir)
    r: dict = {}
    t0 = time.perf_counter()
    ref1 = st.write(v1, key=key)
    r["write_v1_s"] = time.perf_counter() - t0
    r["storage_v1_mb"] = st.stored_bytes(ref1.table_id) / 1e6
    t0 = time.perf_counter()
    ref2 = st.write(v2, key=key, base=ref1)
    r["write_v2_s"] = time.perf_counter() - t0
    r["growth_pct"] = (st.stored_bytes(ref1.table_id) / 1e6 - r["storage_v1_mb"]) \
        / r["storage_v1_mb"] * 100
    a_json, b_json = cache / f"{name}-ref1.json", cache / f"{name}-ref2.json"
    a_json.write_text(json.dumps(ref1.to_dict()))
    b_json.write_text(json.dumps(ref2.to_dict()))
    out = subprocess.run([sys.executable, __file__, "--child-diff", str(store_dir),
                          str(a_json), str(b_json)], capture_output=True, text=True, check=True)
    r.update(json.loads(out.stdout.strip().splitlines()[-1]))
    r["store"], r["refs"] = st, (ref1, ref2)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", nargs="?", default=str(Path(__file__).parent / ".work"))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--child-diff", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_diff:
        return _child_diff(*args.child_diff)

    from rich.console import Console
    from rich.table import Table

    from demoai.store.tables.store import TableStore

    cache = Path(args.cache)
    t0 = time.perf_counter()
    v1, v2 = _cached(cache, args.rows)
    gen_s = time.perf_counter() - t0
    parquet_mb = (cache / f"v1-{args.rows}.parquet").stat().st_size / 1e6

    r = _delta_run(cache, "store", v1, v2, "id")          # the target workload: keyed
    st, (_, ref2) = r.pop("store"), r.pop("refs")
    t0 = time.perf_counter()
    st.read(ref2)
    r["read_v2_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    problems = st.verify(ref2)
    r["verify_v2_s"] = time.perf_counter() - t0
    u = _delta_run(cache, "store-unkeyed", v1, v2, None)  # rows as a multiset
    u.pop("store"), u.pop("refs")
    shutil.rmtree(cache / "store-unkeyed", ignore_errors=True)
    # The fallback: the same two versions stored as unrelated lineages (no shared files).
    other = TableStore(cache / "store-full")
    o1, o2 = other.write(v1, key="id"), other.write(v2, key="id")
    t0 = time.perf_counter()
    full = other.diff(o1, o2)
    r["diff_full_s"] = time.perf_counter() - t0
    r["full_counts"] = [full.added, full.removed, full.modified]
    shutil.rmtree(cache / "store-full", ignore_errors=True)

    n_mod, n_del = args.rows // 100, args.rows // 200
    want = (n_del, n_del, n_mod)
    tbl = Table(title=f"DemoAI tables: {args.rows:,} rows (Parquet zstd {parquet_mb:.0f} MB, "
                      f"data ready in {gen_s:.1f}s); v2: 1% modified, 0.5% deleted, 0.5% added")
    for col in ("metric", "keyed (id)", "unkeyed", "target", "ok"):
        tbl.add_column(col)

    def row(name, fmt, field, target="", ok=None, unkeyed=True):
        uk = fmt.format(u[field]) if unkeyed and field in u else ""
        tbl.add_row(name, fmt.format(r[field]), uk, target,
                    "" if ok is None else ("[green]yes" if ok else "[red]NO"))
    ok = lambda f, lim: r[f] <= lim and u[f] <= lim  # noqa: E731
    row("write v1", "{:.2f} s", "write_v1_s")
    row("write v2 (delta)", "{:.2f} s", "write_v2_s")
    row("storage v1", "{:.1f} MB", "storage_v1_mb")
    row("storage growth v2", "{:.2f} %", "growth_pct", "<= 3 %", ok("growth_pct", 3.0))
    row("diff v1..v2 (cold, subprocess)", "{:.3f} s", "diff_s", "<= 0.5 s", ok("diff_s", 0.5))
    row("diff v1..v2 (warm hash cache)", "{:.3f} s", "diff_warm_s")
    row("diff peak RSS (VmHWM)", "{:.0f} MB", "diff_rss_mb", "<= 300 MB",
        ok("diff_rss_mb", 300))
    row("  of which imports", "{:.0f} MB", "import_rss_mb")
    r["counts"] = f"{r['added']}/{r['removed']}/{r['modified']} ({r['method']})"
    u["counts"] = f"{u['added']}/{u['removed']}/{u['modified']} ({u['method']})"
    row("diff added/removed/modified", "{}", "counts",
        f"{'/'.join(map(str, want))}; unkeyed {n_del + n_mod}/{n_del + n_mod}/0",
        (r["added"], r["removed"], r["modified"]) == want
        and (u["added"], u["removed"], u["modified"]) == (n_del + n_mod, n_del + n_mod, 0))
    row("diff, full-hash fallback (2 lineages)", "{:.2f} s", "diff_full_s", "info",
        tuple(r["full_counts"]) == want)
    row("read v2 (verified)", "{:.2f} s", "read_v2_s")
    row("verify v2 (fsck, deep)", "{:.2f} s", "verify_v2_s", "no problems", not problems)
    Console(width=max(Console().width, 120)).print(tbl)
    (cache / "results.json").write_text(json.dumps({"keyed": r, "unkeyed": u}, indent=2,
                                                   default=str))


if __name__ == "__main__":
    main()
