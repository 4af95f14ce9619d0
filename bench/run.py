"""DemoAI beside git-lfs and DVC on the same workloads, against DemoAI's targets.

    python bench/run.py [--workdir bench/.work] [--repeats N] [--skip-peers] [--no-bytecode-cache]
                        [--scale 1000000,20000000]

Builds (or reuses) the workloads, measures DemoAI (``bench/demoai_bench.py``: the real CLI in
subprocesses, plus in-process figures where CLI start-up would hide the work) and the peers
(``bench/peers.py``), prints one table per workload (rows = steps; columns = DemoAI, git-lfs,
DVC, target, met?) and writes everything to ``bench/results/run.json``. ``--scale ROWS`` then
runs ``bench/bench_scale.py --peers`` at those sizes (the 20M-row row of issue 17: time and
peak RSS of DemoAI, git-lfs and DVC, with the v2 targets), into ``bench/results/scale.json``.

The GGUF commit-throughput target (a share of 1-core BLAKE3) is shown beside the disk's
durable write speed for the same bytes (``bench.peers.disk_write_mb_s``), always measured: a
cold-store commit must write them, so that speed / BLAKE3 is the ceiling any store can reach.

Timings are medians of ``--repeats`` fresh-repo runs. ``--skip-peers`` reuses the last
``bench/results/run.json`` or ``bench/results/peers.json`` peer figures when there are any
(the tables say so), else leaves the peer columns empty.

Child interpreters (DemoAI's CLI, DVC) get a bytecode cache under ``WORKDIR/pycache`` by
default, as any pip-installed tool has; this sandbox otherwise recompiles every import on
every call (``PYTHONDONTWRITEBYTECODE=1``). ``--no-bytecode-cache`` measures it that way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import demoai_bench, peers  # noqa: E402
from bench.workloads import (DEFAULT_WORKDIR, dataset_v1, dataset_v2, gguf_v1,  # noqa: E402
                             gguf_v2)

RESULTS = Path(__file__).resolve().parent / "results"
MIB_PER_MB = 1e6 / (1 << 20)   # a 300 MB (10^6 B) limit is 286.1 MiB


def _cached_peers() -> tuple[dict | None, str]:
    """The newest peer results on disk, and a note saying where they came from."""
    for path, key in ((RESULTS / "run.json", "peers"), (RESULTS / "peers.json", None)):
        if not path.exists():
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        data = data.get(key) if key else data
        if data and data.get("peers"):
            when = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
            return data, f"peer figures reused from {path.name} ({when}), not re-measured"
    return None, "peers skipped and no earlier peer results found"


def _load() -> list[float]:
    try:
        return list(os.getloadavg())
    except OSError:
        return []


# ----------------------------------------------------------------------------- verdicts

def _fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def _met(ok: bool | None, text: str | None = None) -> str:
    if ok is None:
        return text or ""
    return f"[green]{text or 'yes'}[/green]" if ok else f"[red]{text or 'NO'}[/red]"


def evaluate(demo: dict, peer_data: dict | None) -> list[dict]:
    """Every target as ``{workload, target, value, limit, met}`` (met: True/False/None)."""
    t = demoai_bench.TARGETS
    out: list[dict] = []
    by = _peers_by(peer_data)
    for wl, growth_key in (("dataset", "dataset_growth_pct"), ("gguf", "gguf_growth_pct")):
        r = demo["workloads"][wl]
        fastest = min((p["add_commit_v1_s"] for (w, _), p in by.items() if w == wl),
                      default=None)
        out.append({"workload": wl, "target": "add+commit v1 (CLI) <= fastest peer",
                    "value": r["add_commit_v1_s"], "limit": fastest,
                    "met": None if fastest is None else r["add_commit_v1_s"] <= fastest})
        out.append({"workload": wl, "target": f"storage growth <= {t[growth_key]:g} %",
                    "value": r["storage_growth_pct"], "limit": t[growth_key],
                    "met": r["storage_growth_pct"] <= t[growth_key]})
    r = demo["workloads"]["dataset"]
    out.append({"workload": "dataset", "target": "diff (CLI) <= 0.5 s",
                "value": r["diff_s"], "limit": t["diff_s"], "met": r["diff_s"] <= t["diff_s"]})
    out.append({"workload": "dataset", "target": "diff (in-process porcelain, cold) <= 0.5 s",
                "value": r["inproc_diff_s"], "limit": t["diff_s"],
                "met": r["inproc_diff_s"] <= t["diff_s"]})
    for label, key in (("diff (CLI) peak RSS <= 300 MB", "diff_peak_rss_mb"),
                       ("diff (in-process) peak RSS <= 300 MB", "inproc_diff_peak_rss_mb")):
        mib = r[key]
        out.append({"workload": "dataset", "target": label, "value": mib,
                    "limit": t["diff_peak_rss_mb"] * MIB_PER_MB,
                    "met": mib <= t["diff_peak_rss_mb"] * MIB_PER_MB,
                    "met_if_mb_means_mib": mib <= t["diff_peak_rss_mb"], "unit": "MiB"})
    out.append({"workload": "dataset", "target": "diff counts 10000 modified / 5000 removed / "
                "5000 added", "value": r["diff_counts"],
                "limit": demoai_bench.EXPECTED_DATASET_DIFF,
                "met": r["diff_counts_ok"]})
    g = demo["workloads"]["gguf"]["inproc_add_commit_v1"]
    row = {"workload": "gguf", "target": "add+commit v1 throughput (in-process, cold "
           "store) >= 50 % of 1-core BLAKE3", "value": g["vs_blake3"],
           "limit": t["gguf_throughput_vs_blake3"],
           "met": g["vs_blake3"] >= t["gguf_throughput_vs_blake3"]}
    row.update(_disk_ceiling(demo["hashing"], g, t["gguf_throughput_vs_blake3"]))
    out.append(row)
    return out


def _disk_ceiling(h: dict, g: dict, limit: float) -> dict:
    """``ceiling`` (best durable disk write / 1-core BLAKE3) and a ``note`` for the GGUF row.

    A cold-store commit must durably write the file's bytes, so no store can beat the disk's
    durable write speed; where that is below ``limit`` x BLAKE3 the target is out of reach on
    this machine whatever the software does. Empty for results measured before the disk was.
    """
    disk = h.get("disk_best_mb_s")
    if not disk:
        return {}
    b3 = h["blake3_single_core_mb_s"]
    ceiling = disk / b3
    how = "O_DIRECT" if disk == h.get("disk_o_direct_mb_s") else "buffered + fsync"
    note = (f"durable disk write of the same bytes on the bench filesystem: {disk:.0f} MB/s "
            f"({how}) = {ceiling:.0%} of 1-core BLAKE3 ({b3:.0f} MB/s); the target needs "
            f"{limit * b3:.0f} MB/s, ")
    note += ("above what this disk takes, so no store that durably writes the bytes can meet "
             "it here" if ceiling < limit else "within what this disk takes")
    note += f"; DemoAI reaches {g['mb_s'] / disk:.0%} of the disk's speed"
    return {"ceiling": ceiling, "ceiling_mb_s": disk, "reachable": ceiling >= limit,
            "vs_disk": g["mb_s"] / disk, "note": note}


def _peers_by(peer_data: dict | None) -> dict[tuple[str, str], dict]:
    return {(p["workload"], p["tool"]): p for p in (peer_data or {}).get("peers", [])}


# ----------------------------------------------------------------------------- tables

def print_tables(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    demo, peer_data = results["demoai"], results.get("peers")
    by = _peers_by(peer_data)
    verdicts = {(v["workload"], v["target"]): v for v in results["targets"]}
    reps = demo["workloads"]["dataset"]["repeats"]
    h = demo["hashing"]
    b3 = h["blake3_single_core_mb_s"]
    gguf_target = "add+commit v1 throughput (in-process, cold store) >= 50 % of 1-core BLAKE3"

    def verdict(wl: str, target: str) -> str:
        v = verdicts[(wl, target)]
        if v["met"] is None:
            return "n/a"
        if not v["met"] and v.get("met_if_mb_means_mib"):
            return _met(None, "[yellow]only if MB = MiB[/yellow]")
        return _met(v["met"])

    for wl, title in (("dataset", "1M-row dataset (Parquet zstd, "
                       f"{demo['workloads']['dataset']['file_bytes_v1'] / 1e6:.0f} MB), "
                       "v2 = 1% edited, 0.5% deleted, 0.5% appended"),
                      ("gguf", "SmolLM2-135M GGUF "
                       f"({demo['workloads']['gguf']['file_bytes_v1'] / 1e6:.0f} MB), "
                       "v2 = 1 MiB overwritten")):
        r = demo["workloads"][wl]
        lfs, dvc = by.get((wl, "git-lfs")), by.get((wl, "dvc"))
        table = Table(title=f"{title}; medians of {reps} fresh-repo runs")
        table.add_column("step")
        for col in ("DemoAI", "git-lfs", "DVC"):
            table.add_column(col, justify="right")
        table.add_column("target")
        table.add_column("met?")

        def peer(p: dict | None, key: str, spec: str, scale: float = 1.0) -> str:
            return "—" if p is None else format(p[key] * scale, spec)

        fastest = verdicts[(wl, "add+commit v1 (CLI) <= fastest peer")]["limit"]
        table.add_row("add+commit v1 s (CLI)", f"{r['add_commit_v1_s']:.2f}",
                      peer(lfs, "add_commit_v1_s", ".2f"), peer(dvc, "add_commit_v1_s", ".2f"),
                      f"<= fastest peer ({_fmt(fastest, '.2f')})",
                      verdict(wl, "add+commit v1 (CLI) <= fastest peer"))
        table.add_row("  of which add / commit s", f"{r['add_v1_s']:.2f} / {r['commit_v1_s']:.2f}",
                      "", "", "", "")
        ip = r["inproc_add_commit_v1"]
        table.add_row("add+commit v1 s (in-process, after imports)", f"{ip['total_s']:.2f}",
                      "", "", "context", "")
        table.add_row("add+commit v2 s (CLI)", f"{r['add_commit_v2_s']:.2f}",
                      peer(lfs, "add_commit_v2_s", ".2f"), peer(dvc, "add_commit_v2_s", ".2f"),
                      "", "")
        table.add_row("add+commit peak RSS MiB (CLI, v1 / v2)",
                      f"{r['add_commit_v1_peak_rss_mb']:.0f} / "
                      f"{r['add_commit_v2_peak_rss_mb']:.0f}",
                      "—" if lfs is None else f"{lfs['add_commit_v1_peak_rss_mb']:.0f} / "
                                              f"{lfs['add_commit_v2_peak_rss_mb']:.0f}",
                      "—" if dvc is None else f"{dvc['add_commit_v1_peak_rss_mb']:.0f} / "
                                              f"{dvc['add_commit_v2_peak_rss_mb']:.0f}", "", "")
        table.add_row("storage v1 MB", f"{r['store_bytes_v1'] / 1e6:.1f}",
                      peer(lfs, "store_bytes_v1", ".1f", 1e-6),
                      peer(dvc, "store_bytes_v1", ".1f", 1e-6), "", "")
        gk = "dataset_growth_pct" if wl == "dataset" else "gguf_growth_pct"
        glimit = demoai_bench.TARGETS[gk]
        table.add_row("storage growth v1 -> v2 %", f"{r['storage_growth_pct']:.2f}",
                      peer(lfs, "storage_growth_pct", ".1f"),
                      peer(dvc, "storage_growth_pct", ".1f"), f"<= {glimit:g} %",
                      verdict(wl, f"storage growth <= {glimit:g} %"))
        if wl == "dataset":
            table.add_row("diff s (CLI `demoai diff HEAD~1 HEAD --json`)", f"{r['diff_s']:.3f}",
                          peer(lfs, "diff_s", ".3f"), peer(dvc, "diff_s", ".3f"), "<= 0.5 s",
                          verdict(wl, "diff (CLI) <= 0.5 s"))
            table.add_row("diff s (in-process porcelain.diff, cold / warm)",
                          f"{r['inproc_diff_s']:.3f} / {r['inproc_diff_warm_s']:.3f}", "", "",
                          "<= 0.5 s", verdict(wl, "diff (in-process porcelain, cold) <= 0.5 s"))
            table.add_row("diff peak RSS MiB (CLI)", f"{r['diff_peak_rss_mb']:.0f}",
                          peer(lfs, "diff_peak_rss_mb", ".0f"),
                          peer(dvc, "diff_peak_rss_mb", ".0f"),
                          "<= 300 MB (286 MiB)", verdict(wl, "diff (CLI) peak RSS <= 300 MB"))
            table.add_row("diff peak RSS MiB (in-process; imports alone)",
                          f"{r['inproc_diff_peak_rss_mb']:.0f} ({r['inproc_import_rss_mb']:.0f})",
                          "", "", "<= 300 MB (286 MiB)",
                          verdict(wl, "diff (in-process) peak RSS <= 300 MB"))
            c = r["diff_counts"]
            table.add_row("diff rows ~modified / -removed / +added",
                          f"{c.get('modified')} / {c.get('removed')} / {c.get('added')}",
                          "file only", "file only", "10000 / 5000 / 5000",
                          verdict(wl, "diff counts 10000 modified / 5000 removed / 5000 added"))
        else:
            table.add_row("diff s (CLI)", f"{r['diff_s']:.3f}", peer(lfs, "diff_s", ".3f"),
                          peer(dvc, "diff_s", ".3f"), "", "")
            table.add_row("diff s (in-process porcelain.diff, cold)", f"{r['inproc_diff_s']:.3f}",
                          "", "", "", "")
            table.add_row("diff peak RSS MiB (CLI)", f"{r['diff_peak_rss_mb']:.0f}",
                          peer(lfs, "diff_peak_rss_mb", ".0f"),
                          peer(dvc, "diff_peak_rss_mb", ".0f"),
                          "", "")
            ch = (r.get("diff_changes") or [{}])[0]
            if "changed_share" in ch:
                table.add_row("diff: bytes in new chunks (share of file)",
                              f"{ch['added']:,} ({ch['changed_share']:.2%})",
                              "file only", "file only", "~1 MiB patched", "")
            size_mb = r["file_bytes_v1"] / 1e6
            table.add_row("GGUF add+commit v1 MB/s (CLI, end to end)",
                          f"{size_mb / r['add_commit_v1_s']:.0f}",
                          "—" if lfs is None else f"{size_mb / lfs['add_commit_v1_s']:.0f}",
                          "—" if dvc is None else f"{size_mb / dvc['add_commit_v1_s']:.0f}",
                          "", "")
            table.add_row("GGUF add+commit v1 MB/s (in-process, cold store)",
                          f"{ip['mb_s']:.0f} ({ip['vs_blake3']:.0%})", "", "",
                          f">= 50% of BLAKE3 ({0.5 * b3:.0f})",
                          verdict(wl, gguf_target))
            gv = verdicts[(wl, gguf_target)]
            if "ceiling" in gv:
                od, bf = h.get("disk_o_direct_mb_s"), h["disk_buffered_fsync_mb_s"]
                table.add_row("  disk durable write MB/s (O_DIRECT 4 MiB + fsync)",
                              "[yellow]refused[/yellow]" if od is None else f"{od:.0f}",
                              "", "", "ceiling", "")
                table.add_row("  disk durable write MB/s (buffered + fsync)", f"{bf:.0f}",
                              "", "", "ceiling", "")
                table.add_row("  ceiling vs BLAKE3 (best disk write / BLAKE3)",
                              f"{gv['ceiling']:.0%}", "", "",
                              f"target needs {gv['limit']:.0%}",
                              "" if gv["reachable"] else
                              "[yellow]target above disk[/yellow]")
                table.add_row("  add+commit vs best disk write", f"{gv['vs_disk']:.0%}",
                              "", "", "context", "")
            table.add_row("chunk + hash MB/s (compute_manifest)",
                          f"{h['chunk_hash_mb_s']:.0f} ({h['chunk_hash_mb_s'] / b3:.0%})",
                          "", "", "context", "")
            table.add_row("BLAKE3 1 thread MB/s", f"{b3:.0f}", "", "", "yardstick", "")
        console.print(table)

    if results.get("peers_note"):
        console.print(f"[yellow]{results['peers_note']}[/yellow]")
    bc = results.get("bytecode_cache")
    nobc = (f"{demo['cli_startup_no_bytecode_s']:.2f} s compiling from source, as this "
            "sandbox's PYTHONDONTWRITEBYTECODE=1 venv does")
    console.print("DemoAI CLI start-up (`demoai --version`, median): "
                  + (f"{demo['cli_startup_s']:.2f} s with a bytecode cache ({nobc})" if bc
                     else nobc)
                  + " — included in every CLI figure above; in-process figures exclude it.",
                  highlight=False)
    console.print("CLI figures for DemoAI and DVC (both Python) use "
                  + (f"a bytecode cache under {bc['pycache_prefix']}" if bc else
                     "the environment's bytecode settings (--no-bytecode-cache)") + ".",
                  highlight=False)
    missed = [v for v in results["targets"] if v["met"] is False]
    if missed:
        console.print("[red bold]Missed targets:[/red bold]")
        for v in missed:
            val = v["value"]
            if isinstance(val, float):
                val = f"{val:.3f}"
            lim = v["limit"]
            if isinstance(lim, float):
                lim = f"{lim:.3f}"
            console.print(f"  [red]{v['workload']}: {v['target']}[/red] — got {val}, limit {lim}"
                          + (" (met if MB means MiB)" if v.get("met_if_mb_means_mib") else "")
                          + (f" (ceiling {v['ceiling']:.3f}: {v['note']})" if v.get("note")
                             else ""),
                          highlight=False)
    else:
        console.print("[green]All targets met.[/green]")
    load = results.get("loadavg", {})
    console.print(f"load average before/after: {load.get('before')} / {load.get('after')} "
                  f"({os.cpu_count()} CPUs); total {results['total_s']:.0f} s; "
                  f"JSON: {results.get('json')}", highlight=False)


# ----------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help="where workloads are cached and temporary repos are made")
    parser.add_argument("--repeats", type=int, default=3,
                        help="fresh-repo runs per tool and workload (medians are reported)")
    parser.add_argument("--skip-peers", action="store_true",
                        help="do not measure git-lfs and DVC (reuse earlier figures if any)")
    parser.add_argument("--json", type=Path, default=RESULTS / "run.json")
    parser.add_argument("--scale", default=None, metavar="ROWS",
                        help="also run bench/bench_scale.py --peers for these row counts "
                             "(e.g. 1000000,20000000): add+commit time and peak RSS of DemoAI, "
                             "git-lfs and DVC against the rows, printed after the tables")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="keep the environment's bytecode settings (this sandbox sets "
                             "PYTHONDONTWRITEBYTECODE=1: every CLI call then recompiles its "
                             "imports); by default children cache .pyc under WORKDIR/pycache")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    load_before = _load()
    bytecode = None
    if not args.no_bytecode_cache:
        bytecode = demoai_bench.use_bytecode_cache(args.workdir / "pycache")
    print("building workloads ...", file=sys.stderr, flush=True)
    dataset_v1(args.workdir), dataset_v2(args.workdir), gguf_v1(), gguf_v2(args.workdir)
    gen_s = time.perf_counter() - t0

    print(f"measuring DemoAI ({args.repeats} runs per workload) ...", file=sys.stderr, flush=True)
    demo = demoai_bench.run_all(args.workdir, args.repeats)
    if args.skip_peers:
        peer_data, note = _cached_peers()
    else:
        print(f"measuring git-lfs and DVC ({args.repeats} runs per workload) ...",
              file=sys.stderr, flush=True)
        peer_data, note = peers.run_all(args.workdir, args.repeats), ""
    results = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "repeats": args.repeats,
        "workload_generation_s": gen_s,
        "demoai": demo,
        "peers": peer_data,
        "peers_note": note,
        "bytecode_cache": bytecode,
        "versions": peers.tool_versions(),
        "loadavg": {"before": load_before, "after": _load()},
        "json": str(args.json),
    }
    results["targets"] = evaluate(demo, peer_data)
    results["total_s"] = time.perf_counter() - t0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_tables(results)
    if args.scale:
        from bench import bench_scale
        print(f"\nscaling ({args.scale} rows; bench/bench_scale.py --peers):", flush=True)
        return bench_scale.main(["--rows", args.scale, "--peers", "--workdir", str(args.workdir),
                                 "--json", str(args.json.with_name("scale.json"))])
    return 0


if __name__ == "__main__":
    sys.exit(main())
