"""Datasets at any size: time and peak RSS of ``demoai add`` + ``commit`` against rows.

For each size N (default 1M, 3M, 10M, 20M rows) a keyed dataset of 4 columns (``id``
int64, ``prompt``, ``response``, ``label``; ~110 bytes of zstd Parquet a row) is generated
chunk by chunk (bounded memory, seeded, cached in the work folder, not in the repository),
with a v2 that edits 1% of the rows, deletes 0.5% and appends 0.5%. Each size runs the CLI
in a fresh repository: ``add --key id`` + ``commit`` of v1, then of v2, timed from the
wrapper (interpreter start-up and imports included) with the children's peak RSS.

For sizes up to ``--merge-rows`` (default 1M) a second fresh repository times ``demoai
merge`` of two branches that each edit 0.5% of v1's rows (different rows: ``response`` on
one branch, ``prompt`` on the other), printed beside the v2 figures.

    python bench/bench_scale.py [--rows 1000000,3000000] [--workdir bench/.work]
                                [--pythonpath DIR] [--before DIR] [--peers] [--json OUT]
                                [--no-bytecode-cache]

Child interpreters cache bytecode under ``WORKDIR/pycache`` (as ``bench/run.py`` does): this
sandbox sets ``PYTHONDONTWRITEBYTECODE=1``, under which every CLI call recompiles its imports
(about half a second a call), which no pip-installed tool pays.

``--peers`` also runs git-lfs and DVC (``bench/peers.py``: ``git add``/``commit`` with LFS
tracking, ``dvc add`` + ``git commit``) on the same two files of each size, in the same run,
and prints their add+commit time and peak RSS on the rows below DemoAI's.

``--pythonpath`` runs another copy of DemoAI's sources; ``--before DIR`` runs DIR's
sources (e.g. ``git archive HEAD demoai | tar -x -C DIR``) beside them on every row, for
a before/after in one run. Targets (issue 17): peak RSS flat in the rows and under
the 1 GB bound; v2 of 1M rows <= 1.0 s and <= 300 MB.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peers import _env, dvc_peer, git_lfs_peer, run_measured  # noqa: E402

__all__ = ["generate", "generate_branches", "measure", "measure_merge", "main", "TARGETS"]

_CHUNK = 250_000
_LABELS = pa.array(["helpful", "harmless", "refusal", "off_topic", "needs_review"])


def _vocab(rng: np.random.Generator, n: int = 8000) -> pa.Array:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return pa.array(["".join(rng.choice(letters, k)) for k in rng.integers(2, 10, n)])


def _texts(rng: np.random.Generator, vocab: pa.Array, n: int, lo: int, hi: int) -> pa.Array:
    k = rng.integers(lo, hi, n)
    offsets = np.concatenate([[0], np.cumsum(k)]).astype(np.int32)
    words = vocab.take(pa.array(rng.integers(0, len(vocab), int(k.sum()))))
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), words), " ")


def _chunk(rng: np.random.Generator, vocab: pa.Array, ids: np.ndarray) -> pa.Table:
    n = len(ids)
    return pa.table({"id": pa.array(ids.astype(np.int64)),
                     "prompt": _texts(rng, vocab, n, 5, 25),
                     "response": _texts(rng, vocab, n, 8, 30),
                     "label": _LABELS.take(pa.array(rng.integers(0, 5, n)))})


class _Files:
    """Parquet files written a table at a time to temporary names, each writer opened with
    its first table; on success they take their final names (``os.replace``)."""

    def __init__(self, *paths: Path) -> None:
        self.paths = paths
        self.writers: dict[Path, pq.ParquetWriter] = {}

    def write(self, path: Path, t: pa.Table) -> None:
        """Append ``t`` to the file that will be ``path`` (128k-row row groups)."""
        if path not in self.writers:
            self.writers[path] = pq.ParquetWriter(path.with_suffix(".tmp"), t.schema,
                                                  compression="zstd")
        self.writers[path].write_table(t, row_group_size=128 * 1024)

    def __enter__(self) -> "_Files":
        return self

    def __exit__(self, exc_type, *_: object) -> None:
        for w in self.writers.values():
            w.close()
        if exc_type is None:
            for p in self.paths:
                os.replace(p.with_suffix(".tmp"), p)


def generate(rows: int, workdir: Path, seed: int = 17) -> tuple[Path, Path]:
    """``v1-scale-<rows>.parquet`` and its 1%-edited ``v2``, written chunk by chunk."""
    p1, p2 = workdir / f"v1-scale-{rows}.parquet", workdir / f"v2-scale-{rows}.parquet"
    if p1.exists() and p2.exists():
        return p1, p2
    workdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = _vocab(rng)
    with _Files(p1, p2) as files:
        for start in range(0, rows, _CHUNK):
            t = _chunk(rng, vocab, np.arange(start, min(rows, start + _CHUNK)))
            n = t.num_rows
            pick = rng.permutation(n)
            mod, dele = pick[:n // 100], pick[n // 100:n // 100 + n // 200]
            mask = np.zeros(n, bool)
            mask[mod] = True
            edited = pc.binary_join_element_wise(t["response"], pa.scalar(" [edited]"), "")
            e = t.set_column(2, "response", pc.if_else(pa.array(mask), edited, t["response"]))
            keep = np.ones(n, bool)
            keep[dele] = False
            e = e.filter(pa.array(keep))
            files.write(p1, t)
            files.write(p2, e)
        extra = np.arange(rows, rows + rows // 200)
        for s in range(0, len(extra), _CHUNK):
            files.write(p2, _chunk(rng, vocab, extra[s:s + _CHUNK]))
    return p1, p2


def generate_branches(v1: Path, workdir: Path, seed: int = 29) -> tuple[Path, Path]:
    """Two edits of ``v1`` (``mergeA-*`` and ``mergeB-*``), each changing 0.5% of the rows
    (disjoint: ``response`` in A, ``prompt`` in B), written batch by batch."""
    pa_, pb_ = (workdir / v1.name.replace("v1-scale", f"merge{x}-scale") for x in "AB")
    if pa_.exists() and pb_.exists():
        return pa_, pb_
    rng = np.random.default_rng(seed)
    with _Files(pa_, pb_) as files:
        for batch in pq.ParquetFile(v1).iter_batches(batch_size=_CHUNK):
            t = pa.Table.from_batches([batch])
            n = t.num_rows
            pick = rng.permutation(n)
            for col, rows, path in (("response", pick[:n // 200], pa_),
                                    ("prompt", pick[n // 200:n // 100], pb_)):
                mask = np.zeros(n, bool)
                mask[rows] = True
                i = t.schema.get_field_index(col)
                e = t.set_column(i, col, pc.if_else(pa.array(mask), pc.binary_join_element_wise(
                    t[col], pa.scalar(" [merged]"), ""), t[col]))
                files.write(path, e)
    return pa_, pb_


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


_CLI = [sys.executable, "-m", "demoai.cli"]


@contextlib.contextmanager
def _fresh_repo(prefix: str, pythonpath: str, tmp_root: Path) -> Iterator[tuple[Path, dict]]:
    """(an initialised repository, the environment that runs ``pythonpath``'s sources)."""
    with tempfile.TemporaryDirectory(prefix=prefix, dir=tmp_root) as d:
        repo, home = Path(d) / "repo", Path(d) / "home"
        repo.mkdir()
        home.mkdir()
        env = _env(home)
        env["PYTHONPATH"] = pythonpath
        run_measured([_CLI + ["init"]], repo, env)
        yield repo, env


def measure(v1: Path, v2: Path, pythonpath: str, tmp_root: Path) -> dict:
    """add+commit of v1 then v2 through the CLI in a fresh repository."""
    cli = _CLI
    with _fresh_repo("demoai-scale-", pythonpath, tmp_root) as (repo, env):
        out: dict = {}
        for tag, src in (("v1", v1), ("v2", v2)):
            shutil.copyfile(src, repo / "data.parquet")
            cpu0 = _children_cpu()
            a = run_measured([cli + ["add", "data.parquet", "--key", "id"]], repo, env)
            c = run_measured([cli + ["commit", "-m", tag]], repo, env)
            # CPU seconds (user + system) of add and commit: on a busy machine wall time
            # measures the neighbours too
            out[f"cpu_{tag}_s"] = _children_cpu() - cpu0
            out[f"add_{tag}_s"] = a["wall_s"]
            out[f"commit_{tag}_s"] = c["wall_s"]
            out[f"add_commit_{tag}_s"] = a["wall_s"] + c["wall_s"]
            out[f"peak_rss_{tag}_mb"] = max(a["peak_rss_mb"], c["peak_rss_mb"])
        return out


def measure_merge(v1: Path, ma: Path, mb: Path, pythonpath: str, tmp_root: Path) -> dict:
    """``demoai merge`` of branch ``other`` (``mb`` committed) into ``main`` (``ma``), both
    made from ``v1``, in a fresh repository: wall time and peak RSS of the merge command
    (working file included), and whether it merged cleanly."""
    cli = _CLI
    with _fresh_repo("demoai-merge-", pythonpath, tmp_root) as (repo, env):
        data = repo / "data.parquet"
        shutil.copyfile(v1, data)
        run_measured([cli + ["add", "data.parquet", "--key", "id"], cli + ["commit", "-m", "v1"],
                      cli + ["branch", "other"]], repo, env)
        data.unlink()
        shutil.copyfile(ma, data)
        run_measured([cli + ["add", "data.parquet"], cli + ["commit", "-m", "A"],
                      cli + ["checkout", "other"]], repo, env)
        data.unlink()
        shutil.copyfile(mb, data)
        run_measured([cli + ["add", "data.parquet"], cli + ["commit", "-m", "B"],
                      cli + ["checkout", "main"]], repo, env)
        cpu0 = _children_cpu()
        m = run_measured([cli + ["merge", "other", "-m", "merge B"]], repo, env)
        cpu = _children_cpu() - cpu0
        shown = run_measured([cli + ["diff", "main~1", "main", "--json"]], repo, env)
        return {"merge_s": m["wall_s"], "cpu_merge_s": cpu, "peak_rss_merge_mb": m["peak_rss_mb"],
                "merge_diff": shown.get("stdout", "")[:400]}


TARGETS = {"v2_s_1m": 1.0, "v2_mib_1m": 300, "peak_mib": 1024}


def _targets(r: dict) -> list[str]:
    """One line per figure of a result row, beside its issue-17 target."""
    out = []
    for tag in ("v1", "v2"):
        out.append(f"  {tag} peak RSS {r[f'peak_rss_{tag}_mb']:7.0f} MiB   target <= "
                   f"{TARGETS['peak_mib']} MiB at any size")
    if r["rows"] == 1_000_000:
        out.append(f"  v2 add+commit {r['add_commit_v2_s']:6.2f} s     target <= "
                   f"{TARGETS['v2_s_1m']:.1f} s  ({r['cpu_v2_s']:.2f} CPU s)")
        out.append(f"  v2 peak RSS {r['peak_rss_v2_mb']:8.0f} MiB   target <= "
                   f"{TARGETS['v2_mib_1m']} MiB")
    if "merge_s" in r:
        out.append(f"  merge of two 0.5%-edited branches {r['merge_s']:6.2f} s "
                   f"({r['cpu_merge_s']:.2f} CPU s), peak {r['peak_rss_merge_mb']:.0f} MiB")
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the scaling rows and print one table (and JSON with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1000000,3000000,10000000,20000000",
                    help="comma-separated row counts")
    ap.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / ".work")
    ap.add_argument("--pythonpath", default=str(Path(__file__).resolve().parents[1]),
                    help="the DemoAI sources to run (default: this tree)")
    ap.add_argument("--before", default=None,
                    help="other DemoAI sources (e.g. an export of an older commit) run "
                         "beside them on each row, for a before/after in one run")
    ap.add_argument("--merge-rows", type=int, default=1_000_000,
                    help="time merges of two 0.5%%-edited branches up to this many rows")
    ap.add_argument("--peers", action="store_true",
                    help="also time git-lfs and DVC on the same files (same run)")
    ap.add_argument("--json", type=Path, default=None, help="write results here")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="keep this sandbox's PYTHONDONTWRITEBYTECODE=1: every CLI call then "
                         "recompiles its imports (by default children cache .pyc under "
                         "WORKDIR/pycache, as a pip-installed tool has them)")
    args = ap.parse_args(argv)
    if not args.no_bytecode_cache:
        from bench.demoai_bench import use_bytecode_cache
        use_bytecode_cache(args.workdir / "pycache")
    results = []
    runs = [("after" if args.before else "", args.pythonpath)]
    if args.before:
        runs.insert(0, ("before", args.before))
    print(f"{'rows':>11} {'':>6} {'file MB':>8} {'v1 s':>7} {'v1 cpu':>7} {'v1 MiB':>7} "
          f"{'v2 s':>7} {'v2 cpu':>7} {'v2 MiB':>7} {'merge s':>7} {'m cpu':>7} {'m MiB':>7}"
          f"   (load {os.getloadavg()[0]:.1f})",
          flush=True)
    for rows in [int(r) for r in args.rows.split(",")]:
        v1, v2 = generate(rows, args.workdir)
        for label, path in runs:
            r = {"rows": rows, "sources": label or "this tree", "file_mb": v1.stat().st_size / 1e6,
                 **measure(v1, v2, path, args.workdir)}
            if rows <= args.merge_rows:
                r.update(measure_merge(v1, *generate_branches(v1, args.workdir), path,
                                       args.workdir))
            results.append(r)
            merge = (f"{r['merge_s']:>7.2f} {r['cpu_merge_s']:>7.2f} {r['peak_rss_merge_mb']:>7.0f}"
                     if "merge_s" in r else f"{'-':>7} {'-':>7} {'-':>7}")
            print(f"{rows:>11,} {label:>6} {r['file_mb']:>8.0f} {r['add_commit_v1_s']:>7.2f} "
                  f"{r['cpu_v1_s']:>7.2f} {r['peak_rss_v1_mb']:>7.0f} "
                  f"{r['add_commit_v2_s']:>7.2f} {r['cpu_v2_s']:>7.2f} "
                  f"{r['peak_rss_v2_mb']:>7.0f} {merge}   (load {os.getloadavg()[0]:.1f})",
                  flush=True)
        if args.peers:
            for name, fn in (("git-lfs", git_lfs_peer), ("dvc", dvc_peer)):
                p = fn(v1, v2, f"scale-{rows}", args.workdir)
                results.append({"rows": rows, "sources": name, **{k: p[k] for k in (
                    "add_commit_v1_s", "add_commit_v1_peak_rss_mb", "add_commit_v2_s",
                    "add_commit_v2_peak_rss_mb", "storage_growth_pct")}})
                print(f"{rows:>11,} {name:>6} {v1.stat().st_size / 1e6:>8.0f} "
                      f"{p['add_commit_v1_s']:>7.2f} {'-':>7} {p['add_commit_v1_peak_rss_mb']:>7.0f} "
                      f"{p['add_commit_v2_s']:>7.2f} {'-':>7} {p['add_commit_v2_peak_rss_mb']:>7.0f} "
                      f"{'-':>7} {'-':>7} {'-':>7}   (load {os.getloadavg()[0]:.1f})", flush=True)
    print("against the targets (issue 17):")
    for r in results:
        if r["sources"] in ("this tree", "after"):
            print(f" {r['rows']:,} rows")
            print("\n".join(_targets(r)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
