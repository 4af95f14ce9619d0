"""Measure DemoAI itself on the benchmark workloads, with the same protocol as the peers.

For each workload (the 1M-row Parquet dataset and the SmolLM2 GGUF), ``repeats`` times, in a
fresh temporary repository and through the real CLI (``python -m demoai.cli ...`` in
subprocesses, timed by :func:`bench.peers.run_measured`, which does not count the wrapper's
own start-up but does count the ``demoai`` process's, imports included):

1. ``demoai init`` (untimed); copy version 1 in; time ``demoai add`` + ``demoai commit``;
2. replace it with version 2; time ``add`` + ``commit`` again;
3. storage: bytes of ``.demoai`` after v1 and after v2, growth as % of after v1, not
   counting ``.demoai/cache`` (what can be rebuilt: the tables' fingerprint cache, 24 bytes a
   row of the newest versions; its size is reported beside, as ``cache_bytes_v2``);
4. time and peak RSS of ``demoai diff HEAD~1 HEAD --json``; its counts are checked.

Because CLI start-up (imports: Lance pulls in pandas) is a large share of the short steps,
the same operations are also timed *in-process* in a fresh child interpreter, after its
imports: ``demoai.porcelain.diff`` (first call, then a second, warm one), and ``add`` +
``commit`` of v1 into a cold store (for the GGUF that is the commit-throughput figure,
compared with single-core BLAKE3). Chunk + hash throughput (``compute_manifest``) is
measured too. Every figure is labelled CLI or in-process; neither hides the other.

A commit into a cold store must durably write the file's bytes, so the GGUF throughput is
also set beside this machine's durable write speed for the same bytes on the same filesystem
(:func:`bench.peers.disk_write_mb_s`: O_DIRECT 4 MiB writes + fsync, and buffered writes + one
fsync): ``ceiling_vs_blake3`` (best disk MB/s / BLAKE3 MB/s) is the most any store that makes
the bytes durable could reach against BLAKE3 here, and ``vs_disk`` is DemoAI's share of it.

``run.py`` (and ``main`` here, unless ``--no-bytecode-cache``) first calls
:func:`use_bytecode_cache` so that CLI start-up is not dominated by recompiling pandas and
pyarrow from source on every call, which this sandbox's ``PYTHONDONTWRITEBYTECODE=1`` causes.

Run ``python bench/demoai_bench.py`` for DemoAI alone; ``bench/run.py`` puts it beside the
peers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peers import (_env, _place, _run, blake3_single_core_mb_s, dir_bytes,  # noqa: E402
                         disk_write_mb_s, run_measured)
from bench.workloads import DEFAULT_WORKDIR, N_ROWS, all_workloads  # noqa: E402

__all__ = ["TARGETS", "EXPECTED_DATASET_DIFF", "cli_startup_s", "measure_workload", "run_all",
           "use_bytecode_cache"]

CLI = [sys.executable, "-m", "demoai.cli"]
REPO_ROOT = Path(__file__).resolve().parent.parent

TARGETS = {
    "dataset_growth_pct": 3.0,
    "gguf_growth_pct": 2.0,
    "diff_s": 0.5,
    "diff_peak_rss_mb": 300.0,
    "gguf_throughput_vs_blake3": 0.5,
}
# v2 edits 1% of rows, deletes 0.5%, appends 0.5% (see workloads.dataset_v2).
EXPECTED_DATASET_DIFF = {"modified": N_ROWS // 100, "removed": N_ROWS // 200,
                         "added": N_ROWS // 200}

_TIMED = ("add_v1_s", "commit_v1_s", "add_commit_v1_s", "add_commit_v1_peak_rss_mb",
          "add_v2_s", "commit_v2_s", "add_commit_v2_s", "add_commit_v2_peak_rss_mb",
          "diff_s", "diff_peak_rss_mb",
          "inproc_diff_s", "inproc_diff_warm_s", "inproc_diff_peak_rss_mb",
          "inproc_import_s", "inproc_import_rss_mb")


def _cli(*args: str) -> list[str]:
    return [*CLI, *args]


def _child_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` plus PYTHONPATH so children can import ``bench`` and ``demoai`` from the tree."""
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH"))
                                        if p)
    return env


def _child(args: list[str], cwd: Path, env: dict[str, str]) -> dict:
    """Run this file's ``--child`` mode in a fresh interpreter; return its JSON line."""
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *args],
                       cwd=cwd, env=_child_env(env), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"child {args!r} failed in {cwd}:\n{p.stdout}\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- protocol

def _protocol_once(workload: str, v1: Path, v2: Path, filename: str, add_args: list[str],
                   tmp_root: Path | None) -> dict:
    """One fresh-repo run of the protocol through the CLI, plus the in-process diff."""
    with tempfile.TemporaryDirectory(prefix=f"demoai-{workload}-", dir=tmp_root) as d:
        d = os.path.abspath(d)  # children run elsewhere: no relative paths
        repo, home = Path(d) / "repo", Path(d) / "home"
        repo.mkdir()
        home.mkdir()
        env = _env(home)
        _run(_cli("init"), repo, env)
        control = repo / ".demoai"
        def stored() -> int:
            return dir_bytes(control) - dir_bytes(control / "cache")
        size0 = stored()
        target = repo / filename

        _place(v1, target)
        a1 = run_measured([_cli("add", filename, *add_args)], repo, env)
        c1 = run_measured([_cli("commit", "-m", "v1")], repo, env)
        size1 = stored()

        _place(v2, target)
        a2 = run_measured([_cli("add", filename, *add_args)], repo, env)
        c2 = run_measured([_cli("commit", "-m", "v2")], repo, env)
        size2 = stored()
        cache2 = dir_bytes(control / "cache")

        df = run_measured([_cli("diff", "HEAD~1", "HEAD", "--json")], repo, env)
        changes = json.loads(df["stdout"])
        ip = _child(["diff", str(repo)], repo, env)
        return {
            "tool": "demoai",
            "workload": workload,
            "file_bytes_v1": v1.stat().st_size,
            "file_bytes_v2": v2.stat().st_size,
            "add_v1_s": a1["wall_s"],
            "commit_v1_s": c1["wall_s"],
            "add_commit_v1_s": a1["wall_s"] + c1["wall_s"],
            "add_commit_v1_peak_rss_mb": max(a1["peak_rss_mb"], c1["peak_rss_mb"]),
            "add_v2_s": a2["wall_s"],
            "commit_v2_s": c2["wall_s"],
            "add_commit_v2_s": a2["wall_s"] + c2["wall_s"],
            "add_commit_v2_peak_rss_mb": max(a2["peak_rss_mb"], c2["peak_rss_mb"]),
            "store_path": ".demoai",
            "store_bytes_empty": size0,
            "store_bytes_v1": size1,
            "store_bytes_v2": size2,
            "cache_bytes_v2": cache2,
            "storage_growth_pct": 100.0 * (size2 - size1) / size1,
            "diff_cmd": "demoai diff HEAD~1 HEAD --json",
            "diff_s": df["wall_s"],
            "diff_peak_rss_mb": df["peak_rss_mb"],
            "diff_changes": [{k: v for k, v in c.items() if k != "samples"} for c in changes],
            "inproc_diff_s": ip["diff_s"],
            "inproc_diff_warm_s": ip["diff_warm_s"],
            "inproc_diff_peak_rss_mb": ip["peak_rss_mb"],
            "inproc_import_s": ip["import_s"],
            "inproc_import_rss_mb": ip["import_rss_mb"],
        }


def _inproc_add_commit(workload: str, src: Path, filename: str, key: str | None,
                       tmp_root: Path | None) -> dict:
    """``add`` + ``commit`` of ``src`` into a fresh (cold) repository, timed after imports."""
    with tempfile.TemporaryDirectory(prefix=f"demoai-inproc-{workload}-", dir=tmp_root) as d:
        d = os.path.abspath(d)
        home = Path(d) / "home"
        home.mkdir()
        args = ["add-commit", str(Path(src).resolve()), str(Path(d) / "repo"), filename]
        return _child(args + ([key] if key else []), Path(d), _env(home))


def _median_runs(runs: list[dict], keys: tuple[str, ...]) -> dict:
    result = dict(runs[0])
    for k in keys:
        result[k] = statistics.median(r[k] for r in runs)
    result["repeats"] = len(runs)
    result["samples"] = {k: [r[k] for r in runs] for k in keys}
    return result


def measure_workload(workload: str, v1: Path, v2: Path, tmp_root: Path | None = None,
                     repeats: int = 3) -> dict:
    """The CLI protocol ``repeats`` times (medians), plus in-process add+commit of v1."""
    filename = "data.parquet" if workload == "dataset" else "model.gguf"
    key = "id" if workload == "dataset" else None
    add_args = ["--key", key] if key else []
    runs = [_protocol_once(workload, v1, v2, filename, add_args, tmp_root)
            for _ in range(max(1, repeats))]
    result = _median_runs(runs, _TIMED)
    ac = [_inproc_add_commit(workload, v1, filename, key, tmp_root)
          for _ in range(max(1, repeats))]
    keys = ("add_s", "commit_s", "total_s", "import_s")
    inproc = _median_runs(ac, keys)
    inproc["mb_s"] = v1.stat().st_size / 1e6 / inproc["total_s"]
    inproc["best_mb_s"] = v1.stat().st_size / 1e6 / min(r["total_s"] for r in ac)
    result["inproc_add_commit_v1"] = inproc
    if workload == "dataset":
        got = {k: result["diff_changes"][0][k] for k in EXPECTED_DATASET_DIFF} \
            if result["diff_changes"] else {}
        result["diff_counts"] = got
        result["diff_counts_ok"] = got == EXPECTED_DATASET_DIFF
    return result


def cli_startup_s(repeats: int = 3, *, bytecode: bool = True) -> float:
    """Median wall time of ``demoai --version``: the interpreter-plus-imports floor of a verb.

    ``bytecode=False`` measures it with ``PYTHONDONTWRITEBYTECODE=1`` and no cache prefix,
    i.e. compiling from source every time whatever ``.pyc`` files the venv lacks.
    """
    with tempfile.TemporaryDirectory(prefix="demoai-startup-") as d:
        env = _env(Path(d))
        if not bytecode:
            env.pop("PYTHONPYCACHEPREFIX", None)
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        return statistics.median(run_measured([_cli("--version")], Path(d), env)["wall_s"]
                                 for _ in range(repeats))


# Modules imported by the measured commands; compiled once up front by use_bytecode_cache.
_WARM_IMPORTS = ("demoai.cli", "demoai.porcelain", "demoai.store.tables.store",
                 "demoai.store.tables.io", "duckdb", "lance", "pyarrow.parquet",
                 "dvc.cli", "dvc.repo", "dvc.commands.add", "dvc.commands.diff")


def use_bytecode_cache(cache_dir: Path | str) -> dict:
    """Let every child interpreter (DemoAI and the Python peer, DVC) cache bytecode.

    This sandbox sets ``PYTHONDONTWRITEBYTECODE=1`` and its venv holds almost no ``.pyc``
    files, so without this every CLI call recompiles pandas, pyarrow and dvc from source
    (about a second per call), which no pip-installed tool pays. The cache lives under
    ``cache_dir`` (``PYTHONPYCACHEPREFIX``), not in the venv; it is warmed here so the
    first measured run does not pay the compile either. Changes ``os.environ``.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(Path(cache_dir).resolve())
    t0 = time.perf_counter()
    code = ("import importlib\nfor m in %r:\n    try: importlib.import_module(m)\n"
            "    except Exception: pass" % (_WARM_IMPORTS,))
    subprocess.run([sys.executable, "-c", code], capture_output=True,
                   env=_child_env(dict(os.environ)))
    subprocess.run(_cli("--version"), capture_output=True)
    return {"pycache_prefix": os.environ["PYTHONPYCACHEPREFIX"],
            "warm_s": time.perf_counter() - t0}


def hashing(gguf: Path, repeats: int = 3, workdir: Path | str = DEFAULT_WORKDIR) -> dict:
    """Single-core BLAKE3 and DemoAI chunk+hash (``compute_manifest``) on the GGUF, MB/s,
    and the disk's durable write speed for its bytes under ``workdir`` (the write ceiling).
    """
    with tempfile.TemporaryDirectory(prefix="demoai-hash-") as d:
        ch = _child(["chunk-hash", str(Path(gguf).resolve()), str(repeats)], Path(d), _env(Path(d)))
    b3 = blake3_single_core_mb_s(gguf, repeats)
    disk = disk_write_mb_s(gguf, workdir, repeats)
    return {
        "file": str(gguf),
        "file_bytes": gguf.stat().st_size,
        "blake3_single_core_mb_s": b3,
        "chunk_hash_mb_s": ch["mb_s"],
        "chunk_hash_cpu_per_wall": ch["cpu_per_wall"],
        "chunks": ch["chunks"],
        "disk_write": disk,
        "disk_o_direct_mb_s": disk["o_direct_mb_s"],
        "disk_buffered_fsync_mb_s": disk["buffered_fsync_mb_s"],
        "disk_best_mb_s": disk["best_mb_s"],
        # the highest add+commit / BLAKE3 ratio a store that durably writes the bytes can reach
        "ceiling_vs_blake3": disk["best_mb_s"] / b3,
    }


def run_all(workdir: Path | str = DEFAULT_WORKDIR, repeats: int = 3) -> dict:
    """Build the workloads and measure DemoAI on each ``repeats`` times."""
    import demoai

    workdir = Path(workdir).resolve()
    t0 = time.perf_counter()
    workloads = all_workloads(workdir)
    generate_s = time.perf_counter() - t0
    tmp_root = workdir / "demoai"
    tmp_root.mkdir(parents=True, exist_ok=True)
    results = {name: measure_workload(name, v1, v2, tmp_root, repeats)
               for name, (v1, v2) in workloads.items()}
    h = hashing(workloads["gguf"][0], workdir=workdir)
    gg = results["gguf"]["inproc_add_commit_v1"]
    gg["vs_blake3"] = gg["mb_s"] / h["blake3_single_core_mb_s"]
    gg["ceiling_vs_blake3"] = h["ceiling_vs_blake3"]
    gg["vs_disk"] = gg["mb_s"] / h["disk_best_mb_s"]
    return {
        "demoai_version": demoai.__version__,
        "workload_generation_s": generate_s,
        "bytecode_cache": os.environ.get("PYTHONPYCACHEPREFIX"),
        "cli_startup_s": cli_startup_s(),
        "cli_startup_no_bytecode_s": cli_startup_s(bytecode=False),
        "workloads": results,
        "hashing": h,
        "targets": TARGETS,
        "total_s": time.perf_counter() - t0,
    }


# ----------------------------------------------------------------------------- children

def _peak_rss_mb() -> float:
    """VmHWM of this process (its own peak, unlike ru_maxrss which fork carries over)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child_diff(repo_dir: str) -> dict:
    t0 = time.perf_counter()
    from demoai import porcelain as P
    from demoai.store import Repository
    import_s = time.perf_counter() - t0
    import_rss = _peak_rss_mb()
    t0 = time.perf_counter()
    changes = P.diff(Repository.open(repo_dir), "HEAD~1", "HEAD")
    cold = time.perf_counter() - t0
    rss = _peak_rss_mb()
    t0 = time.perf_counter()
    P.diff(Repository.open(repo_dir), "HEAD~1", "HEAD")
    warm = time.perf_counter() - t0
    return {"diff_s": cold, "diff_warm_s": warm, "peak_rss_mb": rss, "import_s": import_s,
            "import_rss_mb": import_rss,
            "counts": [{k: c[k] for k in ("added", "removed", "modified")} for c in changes]}


def _child_add_commit(src: str, repo_dir: str, filename: str, key: str | None = None) -> dict:
    t0 = time.perf_counter()
    from demoai import porcelain as P
    import_s = time.perf_counter() - t0
    repo = P.init(repo_dir)
    target = Path(repo_dir) / filename
    shutil.copyfile(src, target)
    os.chdir(repo_dir)
    t0 = time.perf_counter()
    P.add(repo, [target], key=key)
    t1 = time.perf_counter()
    P.commit(repo, "v1")
    t2 = time.perf_counter()
    return {"add_s": t1 - t0, "commit_s": t2 - t1, "total_s": t2 - t0, "import_s": import_s,
            "peak_rss_mb": _peak_rss_mb()}


def _child_chunk_hash(path: str, repeats: str) -> dict:
    from demoai.store.blobs.chunks import compute_manifest
    Path(path).read_bytes()  # page cache warm
    best = None
    for _ in range(int(repeats)):
        c0, t0 = time.process_time(), time.perf_counter()
        m = compute_manifest(Path(path))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if best is None or wall < best[0]:
            best = (wall, cpu, m)
    wall, cpu, m = best
    chunks = len(getattr(m, "chunks", ()) or ())
    return {"mb_s": Path(path).stat().st_size / 1e6 / wall, "cpu_per_wall": cpu / wall,
            "chunks": chunks}


_CHILDREN = {"diff": _child_diff, "add-commit": _child_add_commit,
             "chunk-hash": _child_chunk_hash}


# ----------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(_CHILDREN[argv[1]](*argv[2:])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "demoai.json")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="measure with the environment's bytecode settings as they are")
    args = parser.parse_args(argv)
    if not args.no_bytecode_cache:
        use_bytecode_cache(args.workdir / "pycache")
    results = run_all(args.workdir, args.repeats)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "workloads"}, indent=2))
    for name, r in results["workloads"].items():
        print(name, json.dumps({k: v for k, v in r.items() if k != "samples"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
