"""Push, clone and incremental push through a DemoAI hub, beside DVC, git and git-lfs remotes.

    python bench/bench_hub.py [--quick] [--skip-peers] [--workdir bench/.work] [--out FILE]

For each workload of :mod:`bench.workloads` (the 1M-row dataset, ~110 MB Parquet, and its
1%-edited v2; the SmolLM2 GGUF, ~98 MB, and its copy with 1 MiB overwritten), in fresh
temporary folders, every tool runs the same protocol, each step timed as the wall time of
the real command in a subprocess (CLI start-up included; child interpreters share a bytecode
cache, as in ``bench/run.py``):

1. commit v1 (untimed; ``bench/run.py`` measures that), **push** it to an empty remote;
2. **clone** the remote into a new folder (files checked out);
3. commit v2 (untimed), **push** it: bytes sent, and bytes the remote's storage grew, both
   as % of v1's (DemoAI's target: at most 3%);
4. **pull** v2 into the clone.

Tools and remotes, all on this machine:

- DemoAI: ``demoai hub serve`` on 127.0.0.1 (HTTP, SQLite + local disk); ``demoai push``,
  ``clone``, ``pull``. Sent = the client's request bytes (``push --json`` stats); storage =
  the hub's folder for the repository.
- DVC: ``dvc push`` / ``dvc pull`` to a local folder remote (``dvc remote add -d``), the
  clone being ``git clone`` + ``dvc pull``. Nothing crosses a wire: sent = bytes the remote
  folder grew by (files are copied whole).
- git: ``git push`` to a local bare repository (``file://``). Sent = the pack's size as
  ``git push --progress`` reports it ("Writing objects: ..., N MiB"; git may delta a
  binary against the previous version); storage = the bare repository's growth.
- git-lfs: the same with ``*.parquet``/``*.gguf`` tracked by LFS and its built-in
  standalone file transfer (a ``file://`` remote keeps LFS objects in ``remote.git/lfs``).
  Sent = LFS objects stored plus the git pack.

Throughput is the source file's size (10^6 B = 1 MB) over the command's wall time. The
figures print as one table per workload (tools side by side, targets in the last column)
and go to ``bench/results/hub.json`` (``hub-quick.json`` with ``--quick``).

**Hub backends** (``--backends`` runs only this, in under a minute): push and clone of a
small workload (50,000 generated rows, ~4 MB Parquet, and an 8 MiB model) through the
embedded hub (SQLite + local disk) and through a hub on PostgreSQL + S3 (a PostgreSQL
server started in a temp folder, ``moto`` in server mode standing in for S3), side by side;
the PostgreSQL + S3 clone is timed twice: through the hub process that took the push (its
cache is warm) and through a second hub process with an empty cache (every object comes
from the bucket).

``--quick`` runs smaller workloads cut from the same files (the dataset's rows with id below
100,000 in both versions; a 48 MiB window of each GGUF around its edited middle), for a run
of about a minute; its percentages are larger since the edits are a larger share.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.demoai_bench import _child_env, use_bytecode_cache  # noqa: E402
from bench.peers import _env, _place, _run, dir_bytes, tool_versions  # noqa: E402
from bench.workloads import DEFAULT_WORKDIR, dataset_v1, dataset_v2, gguf_v1, gguf_v2  # noqa: E402

__all__ = ["TARGET_PCT", "demoai_hub", "dvc_remote", "git_remote", "run_all", "quick_workloads",
           "hub_backends", "backends_report"]

RESULTS = Path(__file__).resolve().parent / "results"
CLI = [sys.executable, "-m", "demoai.cli"]
TARGET_PCT = 3.0          # v2 push: bytes sent and storage added, % of v1's
QUICK_ROWS = 100_000
QUICK_GGUF_BYTES = 48 << 20
STEP_TIMEOUT = 1800       # no single command may hang the benchmark
TOOLS = ("demoai", "dvc", "git", "git-lfs")


# ----------------------------------------------------------------------------- running

def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str, str]:
    """Wall time, stdout and stderr of ``cmd``; raises with its output if it fails."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd!r} exited {p.returncode} in {cwd}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return wall, p.stdout, p.stderr


def _cli(*args: str) -> list[str]:
    return [*CLI, *args]


def _mb_s(nbytes: int, seconds: float) -> float:
    return nbytes / 1e6 / seconds if seconds > 0 else float("nan")


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else float("nan")


_GIT_WRITTEN = re.compile(r"Writing objects: 100% \(\d+/\d+\), ([\d.]+) (bytes|KiB|MiB|GiB)")
_UNITS = {"bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def _git_pack_bytes(stderr: str) -> int:
    """The pack size ``git push --progress`` reports (0 when it wrote no objects)."""
    found = _GIT_WRITTEN.findall(stderr.replace("\r", "\n"))
    if not found:
        return 0
    value, unit = found[-1]
    return int(float(value) * _UNITS[unit])


def _hardlinked(folder: Path) -> bool:
    """Whether every file under ``folder`` has other links (a local remote that linked the
    objects in rather than copying them: then a push time is no transfer time)."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return bool(files) and all(p.stat().st_nlink > 1 for p in files)


def _finish(r: dict, size_v1: int) -> dict:
    """Derived figures shared by every tool."""
    r["push_v1_mb_s"] = _mb_s(size_v1, r["push_v1_s"])
    r["clone_mb_s"] = _mb_s(size_v1, r["clone_s"])
    r["sent_v2_pct"] = _pct(r["sent_v2_bytes"], r["sent_v1_bytes"])
    r["remote_growth_v2_pct"] = _pct(r["remote_growth_v2_bytes"], r["remote_growth_v1_bytes"])
    return r


# ----------------------------------------------------------------------------- DemoAI hub

class Hub:
    """``demoai hub serve`` in a child process, with one user and a write token."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.data, self.env = root / "hubdata", env
        self.log = root / "hub.log"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, token: str | None = None) -> "Hub":
        """Serve (a new user ``bench`` and its token first, unless ``token`` is one already)."""
        import socket
        if token is None:
            _run(_cli("hub", "user", "add", "--data", str(self.data), "bench"), self.data.parent, self.env)
            out = _run(_cli("hub", "token", "create", "--data", str(self.data), "--user", "bench", "--json"),
                       self.data.parent, self.env)
            token = json.loads(out)["token"]
        self.token = token
        with socket.socket() as s:            # a free port (a tiny window for a race: fine here)
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(_cli("hub", "serve", "--data", str(self.data), "--port", str(self.port)),
                                         cwd=self.data.parent, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        import httpx
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/api/v1/user", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"hub did not answer: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/bench/{name}"

    def repo_dir(self, name: str) -> Path:
        return self.data / "repos" / "bench" / name

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)


def demoai_hub(hub: Hub, name: str, v1: Path, v2: Path, filename: str, add_args: list[str],
               root: Path, env: dict[str, str]) -> dict:
    """The protocol through ``demoai`` against the running hub."""
    env = {**env, "DEMOAI_TOKEN": hub.token}
    src, clone = root / "src", root / "clone"
    src.mkdir()
    _run(_cli("init"), src, env)
    _place(v1, src / filename)
    _run(_cli("add", filename, *add_args), src, env)
    _run(_cli("commit", "-m", "v1"), src, env)
    _run(_cli("remote", "add", "origin", hub.url(name)), src, env)

    r: dict = {"tool": "demoai", "remote": "demoai hub on 127.0.0.1 (HTTP)"}
    r["push_v1_s"], out, _ = _timed(_cli("push", "--json"), src, env)
    s1 = json.loads(out)["stats"]
    r["sent_v1_bytes"] = s1["bytes_sent"]
    r["remote_growth_v1_bytes"] = disk1 = dir_bytes(hub.repo_dir(name))

    r["clone_s"], out, _ = _timed(_cli("clone", hub.url(name), str(clone), "--json"), root, env)
    r["received_v1_bytes"] = json.loads(out)["fetch"]["stats"]["bytes_received"]

    _place(v2, src / filename)
    _run(_cli("add", filename, *add_args), src, env)
    _run(_cli("commit", "-m", "v2"), src, env)
    r["push_v2_s"], out, _ = _timed(_cli("push", "--json"), src, env)
    s2 = json.loads(out)["stats"]
    r["sent_v2_bytes"] = s2["bytes_sent"]
    r["push_v2_detail"] = {k: s2[k] for k in ("chunks_sent", "files_sent", "file_bytes_sent", "git_sent")}
    r["remote_growth_v2_bytes"] = dir_bytes(hub.repo_dir(name)) - disk1

    r["pull_v2_s"], out, _ = _timed(_cli("pull", "--json"), clone, env)
    r["received_v2_bytes"] = json.loads(out)["fetch"]["stats"]["bytes_received"]
    # The clone must now hold v2 exactly (a dataset as the same rows, a model byte for byte).
    heads = [_run(_cli("log", "-n", "1", "--json"), d, env) for d in (src, clone)]
    if json.loads(heads[0])[0]["id"] != json.loads(heads[1])[0]["id"]:
        raise RuntimeError("demoai: the clone did not reach v2 after pull")
    if filename.endswith(".gguf") and (clone / filename).read_bytes() != v2.read_bytes():
        raise RuntimeError("demoai: the pulled model differs from v2")
    return _finish(r, v1.stat().st_size)


# ----------------------------------------------------------------------------- hub backends

BACKEND_ROWS = 50_000
BACKEND_MODEL_BYTES = 8 << 20


def _backend_files(root: Path) -> dict[str, Path]:
    """The small workload: generated keyed rows (Parquet) and incompressible model bytes."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = np.random.default_rng(17)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    words = np.array(["".join(rng.choice(letters, 2 + i % 7)) for i in range(4000)])

    def text(k: int) -> list[str]:
        return [" ".join(words[rng.integers(0, len(words), k)]) for _ in range(BACKEND_ROWS)]
    table = pa.table({"id": np.arange(BACKEND_ROWS, dtype=np.int64), "prompt": text(8),
                      "response": text(16)})
    files = {"dataset": root / "rows.parquet", "gguf": root / "model.gguf"}
    pq.write_table(table, files["dataset"], compression="zstd")
    files["gguf"].write_bytes(b"GGUF" + rng.bytes(BACKEND_MODEL_BYTES))
    return files


def _push_clone(hub: Hub, clone_hubs: list[Hub], name: str, src_file: Path, filename: str,
                add_args: list[str], root: Path, env: dict[str, str]) -> dict:
    """Push ``src_file`` to ``hub``, then clone it through each of ``clone_hubs``."""
    env = {**env, "DEMOAI_TOKEN": hub.token}
    src = root / f"src-{name}"
    src.mkdir()
    _run(_cli("init"), src, env)
    _place(src_file, src / filename)
    _run(_cli("add", filename, *add_args), src, env)
    _run(_cli("commit", "-m", "v1"), src, env)
    _run(_cli("remote", "add", "origin", hub.url(name)), src, env)
    r: dict = {}
    r["push_s"], _, _ = _timed(_cli("push", "--json"), src, env)
    r["clone_s"] = []
    for i, h in enumerate(clone_hubs):
        wall, _, _ = _timed(_cli("clone", h.url(name), str(root / f"clone-{name}-{i}"), "--json"), root, env)
        r["clone_s"].append(wall)
    size = src_file.stat().st_size
    r["push_mb_s"] = _mb_s(size, r["push_s"])
    r["clone_mb_s"] = [_mb_s(size, t) for t in r["clone_s"]]
    return r


def hub_backends(workdir: Path) -> dict:
    """Push and clone through the embedded hub and through a hub on PostgreSQL + S3 (two
    processes behind one database and one bucket); see the module docstring."""
    from tests.helpers.pg import PostgresServer
    from tests.helpers.s3 import S3Server
    out: dict = {"rows": BACKEND_ROWS, "model_bytes": BACKEND_MODEL_BYTES, "workloads": {}}
    with tempfile.TemporaryDirectory(prefix="bench-hub-backends-", dir=workdir) as tmp:
        tmp = Path(tmp)
        (tmp / "home").mkdir()
        env = _child_env(_env(tmp / "home"))
        files = _backend_files(tmp)
        pg, s3 = PostgresServer(), S3Server()
        scaled_env = {**env, **s3.env, "DEMOAI_HUB_DATABASE_URL": pg.url,
                      "DEMOAI_HUB_OBJECTS": s3.url("bench")}
        (tmp / "e").mkdir()
        (tmp / "s1").mkdir()
        (tmp / "s2").mkdir()
        hubs: list[Hub] = []
        try:
            embedded = Hub(tmp / "e", env).start()
            hubs.append(embedded)
            one = Hub(tmp / "s1", scaled_env).start()
            hubs.append(one)
            two = Hub(tmp / "s2", scaled_env).start(token=one.token)
            hubs.append(two)
            for wl, path in files.items():
                filename = "data.parquet" if wl == "dataset" else "model.gguf"
                add_args = ["--key", "id"] if wl == "dataset" else []
                print(f"  backends {wl:8s} ...", end="", flush=True, file=sys.stderr)
                t0 = time.perf_counter()
                e = _push_clone(embedded, [embedded], wl, path, filename, add_args, tmp / "e", env)
                sc = _push_clone(one, [one, two], wl, path, filename, add_args, tmp / "s1", env)
                print(f" {time.perf_counter() - t0:6.1f} s", file=sys.stderr)
                out["workloads"][wl] = {"file_bytes": path.stat().st_size, "embedded": e, "postgresql+s3": sc}
        finally:
            for h in hubs:
                h.stop()
            s3.close()
            pg.close()
    return out


def backends_report(res: dict) -> str:
    """One table: each figure for the embedded hub and the PostgreSQL + S3 hub side by side."""
    lines = [f"\nhub backends: {res['rows']:,} rows (Parquet) and a {res['model_bytes'] >> 20} MiB model; "
             f"push, then clone (PostgreSQL + S3: through the same hub process, warm cache, and "
             f"through a second process, empty cache)"]
    head = f"{'':34s}{'embedded':>14s}{'postgresql+s3':>16s}"
    lines += [head, "-" * len(head)]
    for wl, row in res["workloads"].items():
        e, s = row["embedded"], row["postgresql+s3"]
        mb = row["file_bytes"] / 1e6
        lines.append(f"{wl} ({mb:.1f} MB)")
        lines.append(f"{'  push (s)':34s}{e['push_s']:>14.2f}{s['push_s']:>16.2f}")
        lines.append(f"{'  push (MB/s)':34s}{e['push_mb_s']:>14.1f}{s['push_mb_s']:>16.1f}")
        lines.append(f"{'  clone (s)':34s}{e['clone_s'][0]:>14.2f}{s['clone_s'][0]:>16.2f}")
        lines.append(f"{'  clone (MB/s)':34s}{e['clone_mb_s'][0]:>14.1f}{s['clone_mb_s'][0]:>16.1f}")
        lines.append(f"{'  clone, other process (s)':34s}{'—':>14s}{s['clone_s'][1]:>16.2f}")
        lines.append(f"{'  clone, other process (MB/s)':34s}{'—':>14s}{s['clone_mb_s'][1]:>16.1f}")
    lines.append("S3 is moto in server mode (Python, in the benchmark's process): a stand-in for S3 "
                 "or MinIO, slower than either.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- peers

def dvc_remote(v1: Path, v2: Path, filename: str, root: Path, env: dict[str, str]) -> dict:
    """``dvc push`` / ``dvc pull`` to a local folder remote."""
    src, clone, remote = root / "src", root / "clone", root / "remote"
    for d in (src, remote):
        d.mkdir()

    def setup(repo: Path) -> None:
        _run(["dvc", "config", "--local", "core.site_cache_dir", str(root / "site")], repo, env)

    _run(["git", "init", "-q", "-b", "main"], src, env)
    _run(["dvc", "init", "-q"], src, env)
    _run(["dvc", "config", "core.analytics", "false"], src, env)
    _run(["dvc", "remote", "add", "-d", "store", str(remote)], src, env)
    setup(src)
    _place(v1, src / filename)
    _run(["dvc", "add", "-q", filename], src, env)
    _run(["git", "add", "-A"], src, env)
    _run(["git", "commit", "-q", "-m", "v1"], src, env)

    r: dict = {"tool": "dvc", "remote": "local folder (dvc remote add -d)"}
    r["push_v1_s"], _, _ = _timed(["dvc", "push", "-q"], src, env)
    r["sent_v1_bytes"] = r["remote_growth_v1_bytes"] = disk1 = dir_bytes(remote)
    r["objects_hardlinked"] = _hardlinked(remote)

    t0 = time.perf_counter()
    _run(["git", "clone", "-q", str(src), str(clone)], root, env)
    setup(clone)
    _timed(["dvc", "pull", "-q"], clone, env)
    r["clone_s"] = time.perf_counter() - t0

    _place(v2, src / filename)
    _run(["dvc", "add", "-q", filename], src, env)
    _run(["git", "add", "-A"], src, env)
    _run(["git", "commit", "-q", "-m", "v2"], src, env)
    r["push_v2_s"], _, _ = _timed(["dvc", "push", "-q"], src, env)
    r["sent_v2_bytes"] = r["remote_growth_v2_bytes"] = dir_bytes(remote) - disk1

    t0 = time.perf_counter()
    _run(["git", "pull", "-q", "--ff-only"], clone, env)
    _timed(["dvc", "pull", "-q"], clone, env)
    r["pull_v2_s"] = time.perf_counter() - t0
    if (clone / filename).read_bytes() != v2.read_bytes():
        raise RuntimeError("dvc: the pulled file differs from v2")
    return _finish(r, v1.stat().st_size)


def git_remote(v1: Path, v2: Path, filename: str, root: Path, env: dict[str, str], lfs: bool) -> dict:
    """``git push`` to a local bare repository; with ``lfs``, the file tracked by git-lfs."""
    src, clone, bare = root / "src", root / "clone", root / "remote.git"
    src.mkdir()
    _run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], root, env)
    _run(["git", "init", "-q", "-b", "main"], src, env)
    if lfs:
        _run(["git", "lfs", "install", "--local"], src, env)
        _run(["git", "lfs", "track", "*.parquet", "*.gguf"], src, env)
        _run(["git", "add", ".gitattributes"], src, env)
    _run(["git", "remote", "add", "origin", f"file://{bare}"], src, env)
    _place(v1, src / filename)
    _run(["git", "add", filename], src, env)
    _run(["git", "commit", "-q", "-m", "v1"], src, env)

    def lfs_bytes() -> int:
        return dir_bytes(bare / "lfs") if (bare / "lfs").exists() else 0

    r: dict = {"tool": "git-lfs" if lfs else "git",
               "remote": "bare repo, file:// (LFS standalone file transfer)" if lfs else "bare repo, file://"}
    base = dir_bytes(bare)
    r["push_v1_s"], _, err = _timed(["git", "push", "--progress", "origin", "main"], src, env)
    r["sent_v1_bytes"] = _git_pack_bytes(err) + lfs_bytes()
    lfs1 = lfs_bytes()
    if lfs:
        # On one filesystem git-lfs's file transfer may hard-link objects instead of copying
        # them: then its push time is no transfer time, and the report says so.
        r["objects_hardlinked"] = _hardlinked(bare / "lfs" / "objects")
    r["remote_growth_v1_bytes"] = disk1 = dir_bytes(bare) - base

    t0 = time.perf_counter()
    if lfs:   # no global smudge filter here: clone the pointers, then fetch the objects
        _run(["git", "clone", "-q", f"file://{bare}", str(clone)], root, env)
        _run(["git", "lfs", "install", "--local"], clone, env)
        _timed(["git", "lfs", "pull"], clone, env)
    else:
        _timed(["git", "clone", "-q", f"file://{bare}", str(clone)], root, env)
    r["clone_s"] = time.perf_counter() - t0

    _place(v2, src / filename)
    _run(["git", "add", filename], src, env)
    _run(["git", "commit", "-q", "-m", "v2"], src, env)
    r["push_v2_s"], _, err = _timed(["git", "push", "--progress", "origin", "main"], src, env)
    r["sent_v2_bytes"] = _git_pack_bytes(err) + lfs_bytes() - lfs1
    r["remote_growth_v2_bytes"] = dir_bytes(bare) - base - disk1

    t0 = time.perf_counter()
    _run(["git", "pull", "-q", "--ff-only"], clone, env)
    if lfs:
        _run(["git", "lfs", "pull"], clone, env)
    r["pull_v2_s"] = time.perf_counter() - t0
    if (clone / filename).read_bytes() != v2.read_bytes():
        raise RuntimeError(f"{r['tool']}: the pulled file differs from v2")
    return _finish(r, v1.stat().st_size)


# ----------------------------------------------------------------------------- workloads

def quick_workloads(workdir: Path) -> dict[str, tuple[Path, Path]]:
    """Smaller versions of the same workloads, cut from the full files (cached)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    out = workdir / "hub-quick"
    out.mkdir(parents=True, exist_ok=True)
    files = {"dataset": (out / "v1.parquet", out / "v2.parquet"),
             "gguf": (out / "model_v1.gguf", out / "model_v2.gguf")}
    if not all(p.exists() for pair in files.values() for p in pair):
        for src, dst in ((dataset_v1(workdir), files["dataset"][0]), (dataset_v2(workdir), files["dataset"][1])):
            t = pq.read_table(src)
            pq.write_table(t.filter(pc.less(t["id"], QUICK_ROWS)), dst, compression="zstd")
        size = gguf_v1().stat().st_size
        start = size // 2 - QUICK_GGUF_BYTES // 2       # the 1 MiB edit sits in the middle
        for src, dst in ((gguf_v1(), files["gguf"][0]), (gguf_v2(workdir), files["gguf"][1])):
            with open(src, "rb") as f:
                f.seek(start)
                dst.write_bytes(b"GGUF" + f.read(QUICK_GGUF_BYTES))
    return files


def run_all(workdir: Path, quick: bool, skip_peers: bool, tools: tuple[str, ...] = TOOLS) -> dict:
    """Every tool on both workloads; returns the result dict (also what goes to JSON)."""
    if quick:
        files = quick_workloads(workdir)
    else:
        files = {"dataset": (dataset_v1(workdir), dataset_v2(workdir)), "gguf": (gguf_v1(), gguf_v2(workdir))}
    tools = tuple(t for t in tools if t == "demoai" or not skip_peers)
    results: dict = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "quick": quick, "target_pct": TARGET_PCT, "workloads": {}}
    with tempfile.TemporaryDirectory(prefix="bench-hub-", dir=workdir) as tmp:
        tmp = Path(tmp)
        home = tmp / "home"
        home.mkdir()
        env = _child_env(_env(home))
        hub = Hub(tmp, env).start()
        try:
            for wl, (v1, v2) in files.items():
                filename = "data.parquet" if wl == "dataset" else "model.gguf"
                add_args = ["--key", "id"] if wl == "dataset" else []
                row: dict = {"file_bytes_v1": v1.stat().st_size, "file_bytes_v2": v2.stat().st_size,
                             "files": [str(v1), str(v2)], "tools": {}}
                for tool in tools:
                    root = tmp / f"{wl}-{tool}"
                    root.mkdir()
                    t0 = time.perf_counter()
                    print(f"  {wl:8s} {tool:8s} ...", end="", flush=True, file=sys.stderr)
                    if tool == "demoai":
                        res = demoai_hub(hub, wl, v1, v2, filename, add_args, root, env)
                    elif tool == "dvc":
                        res = dvc_remote(v1, v2, filename, root, env)
                    else:
                        res = git_remote(v1, v2, filename, root, env, lfs=tool == "git-lfs")
                    print(f" {time.perf_counter() - t0:6.1f} s", file=sys.stderr)
                    row["tools"][tool] = res
                    shutil.rmtree(root, ignore_errors=True)
                results["workloads"][wl] = row
        finally:
            hub.stop()
    results["versions"] = tool_versions()
    return results


# ----------------------------------------------------------------------------- report

def _fmt(v: float | None, spec: str) -> str:
    return "—" if v is None or v != v else format(v, spec)


ROWS = [  # label, key, format, target text, target check
    ("push v1 (MB/s)", "push_v1_mb_s", ".1f", "", None),
    ("push v1 (s)", "push_v1_s", ".2f", "", None),
    ("clone (MB/s)", "clone_mb_s", ".1f", "", None),
    ("clone (s)", "clone_s", ".2f", "", None),
    ("v1 sent (MB)", "sent_v1_bytes", "mb", "", None),
    ("v1 remote storage (MB)", "remote_growth_v1_bytes", "mb", "", None),
    ("push v2 (s)", "push_v2_s", ".2f", "", None),
    ("v2 sent (MB)", "sent_v2_bytes", "mb", "", None),
    ("v2 sent (% of v1)", "sent_v2_pct", ".2f", f"<= {TARGET_PCT:g}%", TARGET_PCT),
    ("v2 remote growth (MB)", "remote_growth_v2_bytes", "mb", "", None),
    ("v2 remote growth (% of v1)", "remote_growth_v2_pct", ".2f", f"<= {TARGET_PCT:g}%", TARGET_PCT),
    ("pull v2 into clone (s)", "pull_v2_s", ".2f", "", None),
]


def report(results: dict) -> str:
    """Tables, one per workload: a row per figure, a column per tool, then the target."""
    lines = []
    for wl, row in results["workloads"].items():
        tools = list(row["tools"])
        size = row["file_bytes_v1"] / 1e6
        what = "1%-edited rows" if wl == "dataset" else "1 MiB overwritten"
        lines.append(f"\n{wl}: v1 {size:.1f} MB, v2 = {what}{' (quick)' if results['quick'] else ''}")
        head = f"{'':28s}" + "".join(f"{t:>12s}" for t in tools) + f"{'target':>10s}{'met':>6s}"
        lines.append(head)
        lines.append("-" * len(head))
        for label, key, spec, target, limit in ROWS:
            cells = []
            for t in tools:
                v = row["tools"][t].get(key)
                cells.append(_fmt(None if v is None else v / 1e6, ".2f") if spec == "mb" else _fmt(v, spec))
            met = ""
            if limit is not None and "demoai" in row["tools"]:
                v = row["tools"]["demoai"].get(key)
                met = "yes" if v is not None and v <= limit else "NO"
            lines.append(f"{label:28s}" + "".join(f"{c:>12s}" for c in cells) + f"{target:>10s}{met:>6s}")
    remotes = {t: r["remote"] for row in results["workloads"].values() for t, r in row["tools"].items()}
    linked = sorted({t for row in results["workloads"].values() for t, r in row["tools"].items()
                     if r.get("objects_hardlinked")})
    if linked:
        lines.append(f"\n{', '.join(linked)}: the local remote hard-linked the objects in (same "
                     f"filesystem) instead of copying them: those push times are not transfer times.")
    lines.append("\nremotes: " + "; ".join(f"{t}: {r}" for t, r in remotes.items()))
    lines.append("MB = 10^6 bytes; throughput = source file size / wall time of the command "
                 "(CLI start-up included). DVC copies to a local folder: its 'sent' is what the "
                 "remote grew by.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    ap.add_argument("--quick", action="store_true", help="Smaller workloads (about a minute).")
    ap.add_argument("--skip-peers", action="store_true", help="DemoAI only.")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"Comma-separated subset of {','.join(TOOLS)}.")
    ap.add_argument("--out", type=Path, help="JSON results (default bench/results/hub[-quick].json).")
    ap.add_argument("--no-bytecode-cache", action="store_true")
    ap.add_argument("--backends", action="store_true",
                    help="Only the hub backends table: embedded vs PostgreSQL + S3 (under a minute).")
    ap.add_argument("--skip-backends", action="store_true", help="No hub backends table.")
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.backends:
        if not args.no_bytecode_cache:
            use_bytecode_cache(args.workdir / "pycache")
        t0 = time.perf_counter()
        res = hub_backends(args.workdir.resolve())
        res["total_s"] = time.perf_counter() - t0
        print(backends_report(res))
        out = args.out or RESULTS / "hub-backends.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
        print(f"\nresults: {out}  ({res['total_s']:.0f} s)")
        return 0
    tools = tuple(t for t in args.tools.split(",") if t)
    unknown = set(tools) - set(TOOLS)
    if unknown:
        ap.error(f"unknown tools: {', '.join(sorted(unknown))}")
    if not args.no_bytecode_cache:
        use_bytecode_cache(args.workdir / "pycache")
    t0 = time.perf_counter()
    results = run_all(args.workdir.resolve(), args.quick, args.skip_peers, tools)
    if not args.skip_backends:
        results["backends"] = hub_backends(args.workdir.resolve())
    results["total_s"] = time.perf_counter() - t0
    results["loadavg"] = list(os.getloadavg())
    print(report(results))
    if "backends" in results:
        print(backends_report(results["backends"]))
    out = args.out or RESULTS / ("hub-quick.json" if args.quick else "hub.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"\nresults: {out}  ({results['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
