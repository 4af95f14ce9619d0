"""Measure peer tools (git + git-lfs, DVC) on the DemoAI benchmark workloads.

For each peer and each workload (the 1M-row Parquet dataset and the SmolLM2 GGUF) in a fresh
temporary repository:

1. copy version 1 in, time ``add + commit``;
2. replace it with version 2, time ``add + commit`` again;
3. storage growth: bytes of the peer's object store after v2 minus after v1, as % of after v1
   (``.git`` including ``.git/lfs/objects`` for git-lfs; ``.dvc/cache`` for DVC);
4. time and peak RSS of the peer's diff between the two commits.

Both peers store whole files, so a 1% edit costs ~100% more storage, and both diff at file
level (git-lfs diffs the pointer files, DVC reports "modified"); DemoAI's targets are ~1%
growth and a row-level diff. Hash speeds (BLAKE3 on one core, ``sha256sum``) are measured for
context. Timings are of single cold runs, with the input files already in the page cache.

Run ``python bench/peers.py`` (needs ``git-lfs`` and ``dvc`` on PATH); it prints rich tables
and writes the raw result dicts as JSON (``bench/results/peers.json`` by default).
"""

from __future__ import annotations

import argparse
import functools
import json
import mmap
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (`python bench/peers.py`): make `bench.workloads` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workloads import DEFAULT_WORKDIR, all_workloads

__all__ = [
    "blake3_single_core_mb_s",
    "dir_bytes",
    "disk_write_mb_s",
    "dvc_peer",
    "git_lfs_peer",
    "run_all",
    "run_measured",
    "sha256sum_mb_s",
    "tool_versions",
]

# Runs a sequence of commands in a child interpreter and reports their wall time and the peak
# RSS of the largest descendant. A fresh interpreter per measurement is needed because
# RUSAGE_CHILDREN's ru_maxrss is a lifetime maximum: measured from this process, a later, smaller
# command would report an earlier, bigger one's peak.
_WRAPPER = r"""
import json, resource, subprocess, sys, time
cmds = json.loads(sys.argv[1])
out = ""
t0 = time.perf_counter()
for cmd in cmds:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(f"{cmd!r} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
        sys.exit(1)
    out = p.stdout
wall = time.perf_counter() - t0
rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
print(json.dumps({"wall_s": wall, "peak_rss_mb": rss_kb / 1024, "stdout": out}))
"""


# The venv's bin directory goes first on PATH so `dvc` is found even when this script is run
# as `.venv/bin/python bench/peers.py` without activating the venv.
_PATH = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _env(home: Path) -> dict[str, str]:
    """Environment isolating peers from the user's config, and DVC from the network."""
    env = dict(os.environ)
    env.update({
        "PATH": _PATH,
        "HOME": str(home),  # no ~/.gitconfig, ~/.config/dvc or global lfs filters leak in
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
        "DVC_NO_ANALYTICS": "1",
        "GIT_TERMINAL_PROMPT": "0",
    })
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run an untimed setup command; raise with its output if it fails."""
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd!r} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p.stdout


def run_measured(cmds: list[list[str]], cwd: Path, env: dict[str, str] | None = None) -> dict:
    """Run ``cmds`` in sequence; return ``wall_s``, ``peak_rss_mb`` (MiB) and the last stdout.

    The timer runs inside the wrapper, so interpreter start-up is not counted.
    """
    p = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(cmds)], cwd=cwd, env=env,
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"measured run failed in {cwd}:\n{p.stderr}")
    return json.loads(p.stdout)


def dir_bytes(path: Path) -> int:
    """Apparent size of all files under ``path``, counting hard-linked inodes once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _place(src: Path, dst: Path) -> None:
    """Put ``src``'s bytes at ``dst`` as a new inode.

    Unlinking first matters: if a peer linked the previous version into its cache, writing
    through the old inode would silently corrupt the cached v1.
    """
    dst.unlink(missing_ok=True)
    shutil.copyfile(src, dst)


def _version(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PATH": _PATH})
        return p.stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "not installed"


def tool_versions() -> dict[str, str]:
    """Versions of everything whose speed is measured, plus the platform."""
    return dict(_tool_versions())


@functools.lru_cache(maxsize=1)
def _tool_versions() -> dict[str, str]:
    # Cached: `dvc --version` alone takes about half a second and is asked for once per peer run.
    import blake3

    return {
        "git": _version(["git", "--version"]),
        "git-lfs": _version(["git", "lfs", "version"]),
        "dvc": _version(["dvc", "--version"]),
        "sha256sum": _version(["sha256sum", "--version"]),
        "blake3 (python)": blake3.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
    }


_TIMED = ("add_commit_v1_s", "add_commit_v1_peak_rss_mb", "add_commit_v2_s",
          "add_commit_v2_peak_rss_mb", "diff_s", "diff_peak_rss_mb")


def _two_versions(
    tool: str, workload: str, v1: Path, v2: Path, filename: str, tmp_root: Path | None,
    init: Callable[[Path, dict[str, str]], None], add_commit: Callable[[str], list[list[str]]],
    store: str, diff: list[str], repeats: int,
) -> dict:
    """Run the protocol ``repeats`` times, each in a fresh repo; report per-metric medians.

    Medians rather than single runs because a 2-core CI box is noisy; the raw runs are kept
    under ``samples``. Sizes and diff output are deterministic, so the first run's are used.
    """
    runs = [_two_versions_once(tool, workload, v1, v2, filename, tmp_root, init, add_commit,
                               store, diff) for _ in range(max(1, repeats))]
    result = dict(runs[0])
    for key in _TIMED:
        result[key] = statistics.median(r[key] for r in runs)
    result["repeats"] = len(runs)
    result["samples"] = {key: [r[key] for r in runs] for key in _TIMED}
    return result


def _two_versions_once(
    tool: str, workload: str, v1: Path, v2: Path, filename: str, tmp_root: Path | None,
    init: Callable[[Path, dict[str, str]], None], add_commit: Callable[[str], list[list[str]]],
    store: str, diff: list[str],
) -> dict:
    """One run of the protocol: init, add+commit v1, add+commit v2, diff; measure each step."""
    with tempfile.TemporaryDirectory(prefix=f"{tool}-{workload}-", dir=tmp_root) as d:
        repo, home = Path(d) / "repo", Path(d) / "home"
        repo.mkdir()
        home.mkdir()
        env = _env(home)
        init(repo, env)
        target = repo / filename

        _place(v1, target)
        c1 = run_measured(add_commit("v1"), repo, env)
        size1 = dir_bytes(repo / store)

        _place(v2, target)
        c2 = run_measured(add_commit("v2"), repo, env)
        size2 = dir_bytes(repo / store)

        df = run_measured([diff], repo, env)
        return {
            "tool": tool,
            "workload": workload,
            "file_bytes_v1": v1.stat().st_size,
            "file_bytes_v2": v2.stat().st_size,
            "add_commit_v1_s": c1["wall_s"],
            "add_commit_v1_peak_rss_mb": c1["peak_rss_mb"],
            "add_commit_v2_s": c2["wall_s"],
            "add_commit_v2_peak_rss_mb": c2["peak_rss_mb"],
            "store_path": store,
            "store_bytes_v1": size1,
            "store_bytes_v2": size2,
            "storage_growth_pct": 100.0 * (size2 - size1) / size1,
            "diff_cmd": " ".join(diff),
            "diff_s": df["wall_s"],
            "diff_peak_rss_mb": df["peak_rss_mb"],
            "diff_output": df["stdout"].strip(),
        }


def git_lfs_peer(v1: Path, v2: Path, workload: str, tmp_root: Path | None = None,
                 repeats: int = 1) -> dict:
    """Measure git + git-lfs tracking ``*.parquet`` / ``*.gguf``; store measured is all of ``.git``.

    ``git diff HEAD~1 --stat`` only sees the LFS pointer files (oid and size lines), so it is
    fast but says nothing about what changed inside the file. It compares against the working
    tree, so when the index entry is "racily clean" (file written in the same second as the
    index) git re-runs the LFS clean filter over the whole file: ~0.4 s instead of ~2 ms for
    the GGUF in one sample seen; the median over repeats hides that outlier.
    """
    filename = "data" + v1.suffix

    def init(repo: Path, env: dict[str, str]) -> None:
        _run(["git", "init", "-q", "-b", "main"], repo, env)
        _run(["git", "lfs", "install", "--local"], repo, env)
        _run(["git", "lfs", "track", "*.parquet", "*.gguf"], repo, env)
        _run(["git", "add", ".gitattributes"], repo, env)
        _run(["git", "commit", "-q", "-m", "track large files with lfs"], repo, env)

    result = _two_versions(
        "git-lfs", workload, v1, v2, filename, tmp_root, init,
        lambda msg: [["git", "add", filename], ["git", "commit", "-q", "-m", msg]],
        ".git", ["git", "diff", "HEAD~1", "--stat"], repeats,
    )
    result["versions"] = {k: v for k, v in tool_versions().items() if k in ("git", "git-lfs")}
    return result


def dvc_peer(v1: Path, v2: Path, workload: str, tmp_root: Path | None = None,
             repeats: int = 1) -> dict:
    """Measure DVC on git: ``dvc add`` + ``git add`` + ``git commit``; store is ``.dvc/cache``.

    ``dvc diff HEAD~1`` reports the file as modified (file-level hashes), nothing finer.
    """
    filename = "data" + v1.suffix

    def init(repo: Path, env: dict[str, str]) -> None:
        _run(["git", "init", "-q", "-b", "main"], repo, env)
        _run(["dvc", "init", "-q"], repo, env)
        _run(["dvc", "config", "core.analytics", "false"], repo, env)
        # Keep DVC's per-repo index out of /var/tmp: every run starts cold and leaves no trace.
        _run(["dvc", "config", "--local", "core.site_cache_dir", str(repo.parent / "site")],
             repo, env)
        _run(["git", "add", "-A"], repo, env)
        _run(["git", "commit", "-q", "-m", "dvc init"], repo, env)

    result = _two_versions(
        "dvc", workload, v1, v2, filename, tmp_root, init,
        lambda msg: [["dvc", "add", "-q", filename],
                     ["git", "add", f"{filename}.dvc", ".gitignore"],
                     ["git", "commit", "-q", "-m", msg]],
        ".dvc/cache", ["dvc", "diff", "HEAD~1"], repeats,
    )
    result["versions"] = {k: v for k, v in tool_versions().items() if k in ("git", "dvc")}
    return result


def blake3_single_core_mb_s(path: Path, repeats: int = 3) -> float:
    """BLAKE3 throughput of one thread on ``path``'s bytes, in MB/s (10^6 B), best of ``repeats``.

    The file is read into memory first so disk speed does not count.
    """
    import blake3

    data = Path(path).read_bytes()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        blake3.blake3(data, max_threads=1).digest()
        best = min(best, time.perf_counter() - t0)
    return len(data) / 1e6 / best


_DIRECT_BLOCK = 4 << 20     # O_DIRECT write size, as `dd bs=4M oflag=direct`
_DIRECT_ALIGN = 4096        # buffer, offset and length alignment O_DIRECT asks for


def _write_direct(dst: Path, buf: mmap.mmap, size: int) -> None:
    """Write ``buf[:size]`` to a new ``dst`` with O_DIRECT in 4 MiB blocks, then fsync.

    ``buf`` is an anonymous (page-aligned) mapping at least ``size`` rounded up to 4 KiB long,
    zero past ``size``: the last block is written padded to 4 KiB and the file then truncated
    back to ``size``. Raises OSError where the filesystem refuses O_DIRECT (EINVAL).
    """
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o644)
    try:
        padded = -(-size // _DIRECT_ALIGN) * _DIRECT_ALIGN
        off = 0
        with memoryview(buf) as view:
            while off < padded:
                n = os.write(fd, view[off:min(off + _DIRECT_BLOCK, padded)])
                if n <= 0 or n % _DIRECT_ALIGN:
                    raise OSError(f"short O_DIRECT write ({n} bytes at {off})")
                off += n
        if padded != size:
            os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_buffered(dst: Path, data: bytes) -> None:
    """Write ``data`` to a new ``dst`` through the page cache (4 MiB writes), then one fsync."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        off = 0
        with memoryview(data) as view:
            while off < len(data):
                off += os.write(fd, view[off:off + _DIRECT_BLOCK])
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_write_mb_s(path: Path, workdir: Path | str = DEFAULT_WORKDIR, repeats: int = 3) -> dict:
    """How fast this machine durably writes ``path``'s bytes into a fresh file under ``workdir``.

    The ceiling for any store that must make a committed file's bytes durable: the same bytes,
    already in memory (so reading them is not timed), written into a new file on the
    filesystem of ``workdir`` (where the benchmark's repositories live) two ways:

    * ``o_direct_mb_s``: O_DIRECT writes of 4 MiB from a page-aligned mapping, then fsync
      (``dd bs=4M oflag=direct conv=fsync``); ``None`` with ``o_direct_error`` saying why where
      the platform or filesystem refuses O_DIRECT;
    * ``buffered_fsync_mb_s``: plain writes through the page cache, then one fsync.

    Each is the median of ``repeats`` runs after one uncounted warm-up run (the first buffered
    write into fresh page-cache pages is often half speed); the clock covers create, writes
    and fsync (not the directory's fsync), so the figures are an upper bound. ``best_mb_s``
    is the faster of the two. MB = 10^6 bytes. The temporary files are removed.
    """
    data = Path(path).read_bytes()
    size = len(data)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    repeats = max(1, repeats)
    direct: list[float] = []
    buffered: list[float] = []
    direct_error = None if hasattr(os, "O_DIRECT") else "os.O_DIRECT not available here"
    with tempfile.TemporaryDirectory(prefix="disk-write-", dir=workdir) as d:
        dst = Path(d) / "out.bin"

        def timed(write: Callable[[], None]) -> float:
            dst.unlink(missing_ok=True)
            t0 = time.perf_counter()
            write()
            elapsed = time.perf_counter() - t0
            dst.unlink()
            return size / 1e6 / elapsed

        if direct_error is None:
            length = max(_DIRECT_ALIGN, -(-size // _DIRECT_BLOCK) * _DIRECT_BLOCK)
            buf = mmap.mmap(-1, length)
            try:
                buf[:size] = data
                for _ in range(repeats + 1):   # the first, warm-up run is not counted
                    direct.append(timed(lambda: _write_direct(dst, buf, size)))
                del direct[0]
            except OSError as e:          # EINVAL: tmpfs, some FUSE and network filesystems
                direct_error = f"O_DIRECT refused: {e}"
                direct = []
                dst.unlink(missing_ok=True)
            finally:
                buf.close()
        for _ in range(repeats + 1):
            buffered.append(timed(lambda: _write_buffered(dst, data)))
        del buffered[0]
    o_direct = statistics.median(direct) if direct else None
    buffered_mb_s = statistics.median(buffered)
    return {
        "file": str(path),
        "file_bytes": size,
        "dir": str(workdir.resolve()),
        "repeats": repeats,
        "o_direct_mb_s": o_direct,
        "o_direct_error": direct_error,
        "buffered_fsync_mb_s": buffered_mb_s,
        "best_mb_s": max(buffered_mb_s, o_direct or 0.0),
        "samples": {"o_direct_mb_s": direct, "buffered_fsync_mb_s": buffered},
    }


def sha256sum_mb_s(path: Path, repeats: int = 3) -> float:
    """Throughput of the coreutils ``sha256sum`` binary on ``path`` (page cache warm), MB/s."""
    size = Path(path).stat().st_size
    subprocess.run(["sha256sum", str(path)], check=True, capture_output=True)  # warm the cache
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(["sha256sum", str(path)], check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return size / 1e6 / best


def run_all(workdir: Path | str = DEFAULT_WORKDIR, repeats: int = 3) -> dict:
    """Build the workloads, run every peer on each ``repeats`` times, and measure hash speeds."""
    workdir = Path(workdir)
    t0 = time.perf_counter()
    workloads = all_workloads(workdir)
    generate_s = time.perf_counter() - t0
    tmp_root = workdir / "peers"
    tmp_root.mkdir(parents=True, exist_ok=True)
    peers = [
        peer(v1, v2, name, tmp_root, repeats)
        for name, (v1, v2) in workloads.items()
        for peer in (git_lfs_peer, dvc_peer)
    ]
    v1_dataset = workloads["dataset"][0]
    hashing = {
        "file": str(v1_dataset),
        "file_bytes": v1_dataset.stat().st_size,
        "blake3_single_core_mb_s": blake3_single_core_mb_s(v1_dataset),
        "sha256sum_mb_s": sha256sum_mb_s(v1_dataset),
    }
    return {
        "versions": tool_versions(),
        "workload_generation_s": generate_s,
        "peers": peers,
        "hashing": hashing,
        "total_s": time.perf_counter() - t0,
    }


def _print_tables(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # piped into a log: do not squeeze the table to 80 columns
    table = Table(title="Peers: two versions of each workload (v2 = 1% edit of v1); "
                        f"timings are medians of {results['peers'][0]['repeats']} runs")
    for col in ("tool", "workload", "add+commit v1 s", "add+commit v2 s", "store v1 MB",
                "store v2 MB", "growth %", "add peak RSS MiB", "diff s", "diff peak RSS MiB"):
        table.add_column(col, justify="left" if col in ("tool", "workload") else "right")
    for r in results["peers"]:
        table.add_row(
            r["tool"], r["workload"], f"{r['add_commit_v1_s']:.2f}", f"{r['add_commit_v2_s']:.2f}",
            f"{r['store_bytes_v1'] / 1e6:.1f}", f"{r['store_bytes_v2'] / 1e6:.1f}",
            f"{r['storage_growth_pct']:.1f}",
            f"{max(r['add_commit_v1_peak_rss_mb'], r['add_commit_v2_peak_rss_mb']):.0f}",
            f"{r['diff_s']:.3f}", f"{r['diff_peak_rss_mb']:.0f}",
        )
    console.print(table)

    h = results["hashing"]
    name, mb = Path(h["file"]).name, h["file_bytes"] / 1e6
    hashes = Table(title=f"Hash throughput on {name} ({mb:.0f} MB)")
    hashes.add_column("hash")
    hashes.add_column("MB/s", justify="right")
    hashes.add_row("BLAKE3, 1 thread (python blake3)", f"{h['blake3_single_core_mb_s']:.0f}")
    hashes.add_row("SHA-256 (sha256sum)", f"{h['sha256sum_mb_s']:.0f}")
    console.print(hashes)

    for r in results["peers"]:
        console.print(f"[bold]{r['tool']} / {r['workload']}[/bold] `{r['diff_cmd']}`:",
                      r["diff_output"] or "(empty)", highlight=False)
    console.print("versions:", ", ".join(f"{k} = {v}" for k, v in results["versions"].items()),
                  highlight=False)
    console.print(f"workload generation {results['workload_generation_s']:.1f} s, "
                  f"total {results['total_s']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: run everything, print tables, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="where workloads are cached and temporary repos are made")
    parser.add_argument("--json", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "peers.json",
                        help="where to write the raw results")
    parser.add_argument("--repeats", type=int, default=3,
                        help="fresh-repo runs per peer and workload (medians are reported)")
    args = parser.parse_args(argv)
    results = run_all(args.workdir, args.repeats)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    _print_tables(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
