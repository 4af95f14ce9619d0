"""Reliability: crashes (SIGKILL at random moments, and at injected points), concurrent
writers, add racing gc, on-disk corruption, and bad input, all through the real CLI.

The commands run in separate OS processes forked from ``tests/helpers/cli_server.py``, a
server that has already imported ``demoai.cli`` and what the commands import lazily (pandas,
Lance, DuckDB: seconds of CPU, while the commands under test take milliseconds, so a cold
``python -m demoai.cli`` would nearly always be killed while importing, never mid-write).
Each child runs the real click entry point in the repository folder; the test SIGKILLs it,
or the child SIGKILLs itself on reaching a named function (deterministic crash points).
The final add+commit after the random-kill loop is a cold ``python -m demoai.cli``.

Checks after every crash: ``fsck`` (porcelain) is ok, ``git fsck --full`` exits 0, every
version committed so far exports byte-identical (models, prompts) / row-identical
(datasets), and the next command is not blocked by anything the dead process left behind.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from demoai import porcelain as P
from demoai.objects import decode_manifest
from demoai.store.kinds import materialize
from demoai.store.git.repo import Repository
from tests.helpers.cli_server import model_bytes

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "helpers" / "cli_server.py"

PROMPT = """name: qa
template: |
  Question ({version}): {{{{question}}}}
  Answer:
parameters:
  temperature: 0.0
  max_tokens: 16
"""


# ------------------------------------------------------------------------------ harness

class Run:
    """How one forked CLI child ended, with what it printed."""

    def __init__(self, info: dict[str, Any], out: str) -> None:
        self.pid = info["pid"]
        self.exit: int | None = info["exit"]
        self.signal: int | None = info["signal"]
        self.hung: bool = info["hung"]
        self.seconds: float = info["seconds"]
        raw = Path(out + ".out").read_text(errors="replace") if Path(out + ".out").exists() else ""
        marks = re.findall(r"^@@step (\d+) exit (\d+)$", raw, re.M)
        self.steps = {int(i): int(c) for i, c in marks}
        self.step_codes = [int(c) for _, c in marks]
        self.rounds = [int(n) for n in re.findall(r"^@@rounds (\d+)$", raw, re.M)]
        self.stdout = "\n".join(l for l in raw.splitlines() if not l.startswith(("@@step ", "@@rounds ")))
        self.stderr = Path(out + ".err").read_text(errors="replace") if Path(out + ".err").exists() else ""

    @property
    def killed(self) -> bool:
        return self.signal == signal.SIGKILL

    def describe(self) -> str:
        return (f"pid {self.pid} exit={self.exit} signal={self.signal} hung={self.hung}\n"
                f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}")


class CliServer:
    """Client of the fork server (see tests/helpers/cli_server.py)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.logs, self.env = logs, env
        self.counter = itertools.count()
        (logs / "warm-up").mkdir()
        self.proc = subprocess.Popen([sys.executable, str(SERVER), "--warm-up", str(logs / "warm-up")],
                                     cwd=str(ROOT), env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(logs / "server.err", "wb"), text=True, bufsize=1)
        hello = self.proc.stdout.readline()
        assert hello.startswith('{"ready"'), f"fork server did not start: {hello!r} " \
                                             f"{(logs / 'server.err').read_text()[-2000:]}"

    def _call(self, req: dict[str, Any]) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"fork server died: {(self.logs / 'server.err').read_text()[-2000:]}"
        return json.loads(line)

    def _out(self) -> str:
        return str(self.logs / f"run{next(self.counter)}")

    def start(self, cwd: Path, steps: list[list], fast_exit: bool = False) -> tuple[int, str]:
        out = self._out()
        req = {"op": "run", "cwd": str(cwd), "steps": steps, "out": out, "fast_exit": fast_exit}
        return self._call(req)["pid"], out

    def batch(self, runs: list[tuple[Path, list[list]]], fast_exit: bool = False) -> list[tuple[int, str]]:
        """Start every run at the same instant (the children wait on one barrier)."""
        outs = [self._out() for _ in runs]
        pids = self._call({"op": "batch", "runs": [{"cwd": str(c), "steps": s, "out": o, "fast_exit": fast_exit}
                                                   for (c, s), o in zip(runs, outs)]})["pids"]
        return list(zip(pids, outs))

    def wait(self, started: tuple[int, str], timeout: float = 90.0) -> Run:
        pid, out = started
        return Run(self._call({"op": "wait", "pid": pid, "timeout": timeout}), out)

    def run(self, cwd: Path, steps: list[list], timeout: float = 90.0, fast_exit: bool = False) -> Run:
        """Run to the end. ``fast_exit`` skips the ~150 ms interpreter shutdown (only where
        what a shutdown could print does not matter)."""
        return self.wait(self.start(cwd, steps, fast_exit), timeout)

    def run_and_kill(self, cwd: Path, steps: list[list], delay: float) -> Run:
        started = self.start(cwd, steps, fast_exit=True)
        time.sleep(delay)
        os.kill(started[0], signal.SIGKILL)  # a zombie until the server reaps it: never reused
        return self.wait(started)

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DEMOAI_DEBUG"}
    env.update(PYTHONPATH=str(ROOT), HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_CACHE_HOME=str(home / ".cache"), DEMOAI_AUTHOR="Test User <test@example.com>",
               GIT_CONFIG_NOSYSTEM="1", COLUMNS="200")
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("server-home")
    logs = tmp_path_factory.mktemp("server-logs")
    env = _env(home)
    # byte-compile once (into a private cache), even where PYTHONDONTWRITEBYTECODE is set
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
    s = CliServer(env, logs)
    yield s
    s.close()


def assert_ok(r: Run, what: str = "") -> None:
    assert r.exit == 0 and not r.hung, f"{what}: expected success\n{r.describe()}"
    assert "Traceback" not in r.stderr, f"{what}: traceback\n{r.describe()}"


def assert_clean_error(r: Run, what: str = "", expect: str | None = None) -> None:
    """Exit 1, stderr exactly one line starting with 'error:', no traceback anywhere."""
    assert not r.hung and r.signal is None, f"{what}: hung or died\n{r.describe()}"
    assert "Traceback" not in r.stderr + r.stdout, f"{what}: printed a traceback\n{r.describe()}"
    assert r.exit == 1, f"{what}: expected exit 1\n{r.describe()}"
    lines = r.stderr.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), \
        f"{what}: stderr is not one 'error:' line\n{r.describe()}"
    if expect is not None:
        assert re.search(expect, lines[0], re.I), f"{what}: error does not match {expect!r}\n{r.describe()}"


def git_fsck(root: Path) -> None:
    r = subprocess.run(["git", "--git-dir", str(root / ".demoai" / "git"), "fsck", "--full"],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"git fsck --full failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"


def porcelain_fsck(root: Path) -> dict[str, Any]:
    with Repository(root) as repo:
        res = P.fsck(repo)
    assert res["ok"], "demoai fsck found problems:\n  " + "\n  ".join(res["problems"])
    return res


def branch_head(root: Path, branch: str = "main") -> str | None:
    with Repository(root) as repo:
        return repo.ref_value(f"refs/heads/{branch}")


def subjects(root: Path, rev: str = "main") -> dict[str, str]:
    """commit id -> subject line, from the real git binary."""
    r = subprocess.run(["git", "--git-dir", str(root / ".demoai" / "git"), "log", "--format=%H %s", rev],
                       capture_output=True, text=True, check=True)
    return dict(line.split(" ", 1) for line in r.stdout.splitlines())


def rev_list(root: Path, rev: str = "main") -> list[tuple[str, list[str]]]:
    """(commit, parents) newest first, from the real git binary."""
    r = subprocess.run(["git", "--git-dir", str(root / ".demoai" / "git"), "rev-list", "--parents", rev],
                       capture_output=True, text=True, check=True)
    return [(p[0], p[1:]) for p in (line.split() for line in r.stdout.splitlines())]


def snapshot_control(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under .demoai, except locks/."""
    ctl = root / ".demoai"
    out: dict[str, bytes | None] = {}
    for p in sorted(ctl.rglob("*")):
        rel = p.relative_to(ctl)
        if rel.parts[0] == "locks":
            continue
        out[rel.as_posix()] = p.read_bytes() if p.is_file() else None
    return out


def snapshot_diff(a: dict[str, bytes | None], b: dict[str, bytes | None]) -> list[str]:
    return ([f"removed {k}" for k in sorted(set(a) - set(b))] + [f"added {k}" for k in sorted(set(b) - set(a))]
            + [f"changed {k}" for k in sorted(set(a) & set(b)) if a[k] != b[k]])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rows_digest(rows: list[dict[str, Any]]) -> str:
    return sha(json.dumps(sorted(rows, key=lambda r: r["id"]), sort_keys=True).encode())


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# ------------------------------------------------------------------------------ versions

class Ledger:
    """Commit id -> expected content of each artifact; verifies them all by exporting."""

    def __init__(self, root: Path, scratch: Path) -> None:
        self.root, self.scratch = root, scratch
        scratch.mkdir(parents=True, exist_ok=True)
        self.expected: dict[str, dict[str, str]] = {}

    def record(self, commit: str, expected: dict[str, str]) -> None:
        assert commit not in self.expected
        self.expected[commit] = dict(expected)

    def actual(self, repo: Repository, spec: str, path: str, art: Any = None) -> str:
        """sha256 of the exported bytes (models, prompts) or of the exported rows (datasets)."""
        is_dataset = path.endswith((".jsonl", ".csv", ".parquet"))
        out = self.scratch / ("x.parquet" if is_dataset else "x.bin")
        out.unlink(missing_ok=True)
        if art is None:
            P.export(repo, spec, out)
        else:
            materialize(repo, art, out)
        if is_dataset:
            import pyarrow.parquet as pq
            return rows_digest(pq.read_table(out).to_pylist())
        return sha(out.read_bytes())

    def verify(self, where: str) -> int:
        """Export every artifact of every recorded commit (each distinct manifest once)."""
        seen: dict[bytes, str] = {}
        bad = []
        with Repository(self.root) as repo:
            for commit, exp in self.expected.items():
                entries = repo.tree_entries(commit)
                if set(entries) != set(exp):
                    bad.append(f"{commit[:12]}: paths {sorted(entries)} != {sorted(exp)}")
                for path, want in exp.items():
                    if path not in entries:
                        continue
                    mkey = path.encode() + b"\0" + entries[path]
                    if mkey not in seen:
                        try:
                            seen[mkey] = self.actual(repo, f"{path}@{commit}", path)
                        except Exception as e:  # noqa: BLE001 (reported below)
                            seen[mkey] = f"export failed: {e.__class__.__name__}: {e}"
                    if seen[mkey] != want:
                        bad.append(f"{path}@{commit[:12]}: {seen[mkey][:80]} != expected {want[:16]}")
        assert not bad, f"{where}: committed versions changed:\n  " + "\n  ".join(bad)
        return len(seen)


class Workload:
    """A dataset (keyed rows), a model and a prompt in a working folder, edited a bit at a time."""

    PATHS = ("data.jsonl", "m.gguf", "p.prompt.yaml")

    def __init__(self, root: Path, rng: random.Random, n_rows: int = 2000, model_size: int = 2 << 20) -> None:
        self.root, self.rng = root, rng
        self.rows = {i: {"id": i, "text": f"row {i} v0 " + "x" * (i % 40), "score": i * 3} for i in range(n_rows)}
        self.next_id = n_rows
        self.model = bytearray(model_bytes(1, model_size))
        self.version = 0
        self.prompt = PROMPT.format(version=0)

    def write_all(self) -> None:
        (self.root / "data.jsonl").write_text(jsonl([self.rows[k] for k in sorted(self.rows)]))
        (self.root / "m.gguf").write_bytes(bytes(self.model))
        (self.root / "p.prompt.yaml").write_text(self.prompt)

    def mutate(self, which: list[str] | None = None) -> list[str]:
        """Change ``which`` artifacts (default: a random non-empty subset); returns them."""
        r = self.rng
        self.version += 1
        if which is None:
            which = [p for p in self.PATHS if r.random() < 0.6] or [r.choice(self.PATHS)]
        if "data.jsonl" in which:
            ids = sorted(self.rows)
            for k in r.sample(ids, r.randint(1, 30)):
                self.rows[k]["text"] = f"row {k} v{self.version} edited"
            for k in r.sample(ids, r.randint(0, 10)):
                self.rows.pop(k, None)
            for _ in range(r.randint(0, 15)):
                self.rows[self.next_id] = {"id": self.next_id, "text": f"new {self.next_id}", "score": -1}
                self.next_id += 1
            (self.root / "data.jsonl").write_text(jsonl([self.rows[k] for k in sorted(self.rows)]))
        if "m.gguf" in which:
            off = r.randrange(4, len(self.model) - 65536)
            self.model[off:off + 65536] = r.randbytes(65536)
            (self.root / "m.gguf").write_bytes(bytes(self.model))
        if "p.prompt.yaml" in which:
            self.prompt = PROMPT.format(version=self.version)
            (self.root / "p.prompt.yaml").write_text(self.prompt)
        return which

    def expected(self) -> dict[str, str]:
        return {"data.jsonl": rows_digest(list(self.rows.values())), "m.gguf": sha(bytes(self.model)),
                "p.prompt.yaml": sha(self.prompt.encode())}


ADD_ALL = ["cli", "add", *Workload.PATHS]


def _first_commit(server: CliServer, root: Path, work: Workload) -> tuple[str, float]:
    """init, add (dataset keyed by id), commit; returns (commit, seconds of the add+commit)."""
    assert_ok(server.run(root, [["cli", "init"]], fast_exit=True), "init")
    work.write_all()
    r = server.run(root, [["cli", "add", "data.jsonl", "--key", "id"], ["cli", "add", "m.gguf", "p.prompt.yaml"],
                          ["cli", "commit", "-m", "v0"]], fast_exit=True)
    assert_ok(r, "first commit")
    head = branch_head(root)
    assert head and subjects(root)[head] == "v0"
    return head, r.seconds


# ------------------------------------------------------------------------------ 1. crashes

@pytest.mark.timeout(110)
def test_sigkill_at_random_points_never_damages_history(server: CliServer, tmp_path: Path) -> None:
    """30 commands (add+commit, commit alone, gc) each SIGKILLed after a random delay spread
    over the command's measured run time; after every kill the repository checks clean, every
    committed version exports identical, and the next add+commit works."""
    root, rng = tmp_path / "repo", random.Random(20240611)
    root.mkdir()
    work = Workload(root, rng, n_rows=1200, model_size=3 << 19)
    ledger = Ledger(root, tmp_path / "exports")
    head, _ = _first_commit(server, root, work)
    ledger.record(head, work.expected())
    # calibrate (median of 3): how long an add+commit of a typical change, a commit alone and
    # a gc take, so that the kill delays spread over the whole of each command
    t_ac, t_c = [], []
    for k in range(3):
        work.mutate()
        ra = server.run(root, [ADD_ALL], fast_exit=True)
        rc = server.run(root, [["cli", "commit", "-m", f"calibration {k}"]], fast_exit=True)
        assert_ok(ra, "calibration add")
        assert_ok(rc, "calibration commit")
        head = branch_head(root)
        ledger.record(head, work.expected())
        t_ac.append(ra.seconds + rc.seconds)
        t_c.append(rc.seconds)
    r = server.run(root, [["cli", "gc"]], fast_exit=True)
    assert_ok(r, "calibration gc")
    spans = {"add+commit": 1.15 * sorted(t_ac)[1], "commit": 1.3 * sorted(t_c)[1], "gc": 1.3 * r.seconds}

    outcomes: dict[str, int] = {}
    for i in range(30):
        changed = work.mutate()
        mode = rng.choices(["add+commit", "commit", "gc"], weights=[6, 3, 1])[0]
        if mode == "add+commit":
            steps = [ADD_ALL, ["cli", "commit", "-m", f"iter {i}"]]
        elif mode == "commit":
            assert_ok(server.run(root, [ADD_ALL], fast_exit=True), f"iter {i}: add before the killed commit")
            steps = [["cli", "commit", "-m", f"iter {i}"]]
        else:
            steps = [["cli", "gc"]]
        delay = rng.uniform(0.0, spans[mode])
        r = server.run_and_kill(root, steps, delay)
        where = f"iter {i} ({mode}, changed {changed}, kill after {delay * 1000:.0f} ms)"
        phase = ("finished" if not r.killed else
                 "killed in commit" if mode == "add+commit" and r.steps.get(0) == 0 else "killed")
        outcomes[f"{mode}: {phase}"] = outcomes.get(f"{mode}: {phase}", 0) + 1
        if not r.killed:
            assert_ok(r, where + " finished before the kill")
        new_head = branch_head(root)
        if new_head != head:  # the killed process got its commit in: it must be whole
            assert mode != "gc", where
            assert rev_list(root, new_head)[0][1] == [head], f"{where}: new commit is not a child of {head}"
            ledger.record(new_head, work.expected())
            head = new_head
        elif mode != "gc":
            assert r.killed, f"{where}: exited 0 without moving the branch\n{r.describe()}"
        porcelain_fsck(root)
        git_fsck(root)
        ledger.verify(where)
        # the next command must not be blocked by anything the dead process left behind
        if rng.random() < 0.7 or i == 29:
            r2 = server.run(root, [ADD_ALL, ["cli", "commit", "-m", f"after kill {i}"]], fast_exit=True)
            if r2.steps.get(1) == 1 and "nothing to commit" in r2.stderr:
                assert r2.steps.get(0) == 0, f"{where}: add after the kill\n{r2.describe()}"
            else:
                assert_ok(r2, f"{where}: add+commit after the kill")
                new_head = branch_head(root)
                assert subjects(root)[new_head] == f"after kill {i}" and rev_list(root, new_head)[0][1] == [head]
                head = new_head
                ledger.record(head, work.expected())
    print(f"\nkill outcomes: {dict(sorted(outcomes.items()))}; spans (ms): "
          f"{ {k: round(v * 1000) for k, v in spans.items()} }")
    # the loop must really have interrupted commands
    killed = sum(v for k, v in outcomes.items() if "killed" in k)
    assert killed >= 15, outcomes

    # finally a cold `python -m demoai.cli` add + commit works and everything still verifies
    work.mutate()
    for args in (ADD_ALL[1:], ["commit", "-m", "final"]):
        p = subprocess.run([sys.executable, "-m", "demoai.cli", *args], cwd=root, env=server.env,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"demoai {' '.join(args)}: {p.returncode}\n{p.stdout}\n{p.stderr}"
    new_head = branch_head(root)
    assert rev_list(root, new_head)[0][1] == [head]
    ledger.record(new_head, work.expected())
    chain = rev_list(root)
    assert all(len(parents) <= 1 for _, parents in chain), "history is not linear"
    assert set(ledger.expected) <= {c for c, _ in chain}
    porcelain_fsck(root)
    git_fsck(root)
    ledger.verify("final")
    assert_ok(server.run(root, [["cli", "gc"]]), "final gc")
    porcelain_fsck(root)
    ledger.verify("after the final gc")


# Deterministic crash points: the child SIGKILLs itself when it reaches the named call.
# name: (verb, "module:function", regex on the call's arguments, nth matching call[, only
# counting calls made inside this "module:function"])
CRASH_POINTS = {
    # dies holding dulwich's refs/heads/main.lock (a git-style O_EXCL lock file, not a flock)
    "ref-lockfile": ("commit", "dulwich.file:_GitFile.close", r"refs/heads/main", 1),
    # dies after the commit object and tree are written, before the branch moves
    "before-set-ref": ("commit", "demoai.store.git.repo:Repository.set_ref", None, 1),
    # dies while dulwich writes the first loose object of the commit (objects/xx/yyy.lock
    # exists); the retry writes the very same content-addressed object
    "loose-object-lockfile": ("commit", "dulwich.file:_GitFile.close", r"/objects/[0-9a-f]{2}/", 1),
    # the same for the commit object itself (the retry, in the same second, makes the same one)
    "commit-object-lockfile": ("commit", "dulwich.file:_GitFile.close", r"/objects/[0-9a-f]{2}/", 1,
                               "demoai.store.git.repo:Repository.make_commit"),
    # dies between publishing a chunk pack and writing its idx
    "chunk-pack-without-idx": ("add", "demoai.store.blobs.packs:atomic_write", r"\.idx", 1),
    # dies after Lance committed a new table version, before demoai recorded it
    "table-version-unrecorded": ("add", "demoai.store.tables.store:TableStore._make_ref", None, 1),
    # dies with the new index.json written to its temp file, not yet renamed
    "index-replace": ("add", "os:replace", r"index\.json", 1),
    # gc dies after writing the compacted pack, before deleting the old ones
    "gc-mid-delete": ("gc", "os:unlink", r"pack-[0-9a-f]+\.idx", 1),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_crash_at_injected_point_then_retry(server: CliServer, tmp_path: Path, point: str) -> None:
    """Kill the command exactly at a known-dangerous step; then the same command, retried at
    once (as a script would), must succeed, and the repository must check clean and keep
    every committed version."""
    verb, target, pattern, nth, *inside = CRASH_POINTS[point]
    root = tmp_path / "repo"
    root.mkdir()
    work = Workload(root, random.Random(7), n_rows=300, model_size=512 << 10)
    ledger = Ledger(root, tmp_path / "exports")
    head, _ = _first_commit(server, root, work)
    ledger.record(head, work.expected())
    work.mutate(which=list(Workload.PATHS))
    crash_step = ["crash", target, pattern, nth, *inside]
    if verb == "add":
        before, steps = [], [ADD_ALL]
    elif verb == "commit":
        before, steps = [ADD_ALL], [["cli", "commit", "-m", "crashing"]]
    else:  # gc: stage a version, then replace it, so that gc has a pack to rewrite
        assert_ok(server.run(root, [ADD_ALL], fast_exit=True))
        work.mutate(which=["m.gguf"])
        before, steps = [ADD_ALL], [["cli", "gc"]]
    if before:
        assert_ok(server.run(root, before, fast_exit=True), f"{point}: preparing")
    # crash and retry inside one wall-clock second, so a retried commit is the same object
    while time.time() % 1.0 > 0.3:
        time.sleep(0.01)
    crash = server.run(root, [crash_step, *steps], fast_exit=True)
    assert crash.killed, f"{point}: the crash point was not reached\n{crash.describe()}"
    stale = sorted(p.relative_to(root).as_posix() for p in (root / ".demoai" / "git").rglob("*.lock"))
    if "lockfile" in point:
        assert stale, f"{point}: the crash left no git lock file; the scenario was not reproduced"
    retry = server.run(root, steps, fast_exit=True)
    assert_ok(retry, f"{point}: the same command retried at once after the crash (stale: {stale})")
    if verb == "add":
        assert_ok(server.run(root, [["cli", "commit", "-m", "crashing"]], fast_exit=True),
                  f"{point}: commit after the add")
    if verb != "gc":
        new_head = branch_head(root)
        assert new_head != head and rev_list(root, new_head)[0][1] == [head]
        ledger.record(new_head, work.expected())
    assert_ok(server.run(root, [["cli", "status"]], fast_exit=True), f"{point}: status after the crash")
    porcelain_fsck(root)
    git_fsck(root)
    ledger.verify(point)
    # the repository keeps working: one more change, committed, then gc
    work.mutate(which=list(Workload.PATHS))
    assert_ok(server.run(root, [ADD_ALL, ["cli", "commit", "-m", "one more"], ["cli", "gc"]], fast_exit=True),
              f"{point}: next add+commit+gc")
    ledger.record(branch_head(root), work.expected())
    porcelain_fsck(root)
    git_fsck(root)
    ledger.verify(point + " (next commit)")


WORKTREE_CRASHES = {
    # checkout moves HEAD, then rewrites the index and the files: dies in between
    "checkout": ("demoai.store.git.worktree:apply_sync", ["checkout", "exp"]),
    # a fast-forward merge moves the branch, then rewrites the index and files
    "merge-fast-forward": ("demoai.store.git.worktree:apply_sync", ["merge", "exp"]),
    # a three-way merge commits and moves the branch, then rewrites the index and files
    "merge-three-way": ("demoai.store.git.worktree:apply_sync", ["merge", "exp", "-m", "merge exp"]),
    # the same three, killed just before HEAD / the branch moves
    "checkout-before-head-moves": ("demoai.store.git.repo:Repository.set_head", ["checkout", "exp"]),
    "merge-fast-forward-before-ref-moves": ("demoai.store.git.repo:Repository.set_ref", ["merge", "exp"]),
    "merge-three-way-before-ref-moves": ("demoai.store.git.repo:Repository.set_ref",
                                         ["merge", "exp", "-m", "merge exp"]),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", list(WORKTREE_CRASHES))
def test_crash_between_ref_update_and_worktree_update(server: CliServer, tmp_path: Path, case: str) -> None:
    """Killed around the moment the branch/HEAD moves (before, or after it but before the index
    and working files follow): retrying the same command must converge (exit 0, nothing
    staged or changed, files equal to the new HEAD), never leave an index that a commit would
    silently record over HEAD."""
    target, command = WORKTREE_CRASHES[case]
    root = tmp_path / "repo"
    root.mkdir()
    work = Workload(root, random.Random(11), n_rows=200, model_size=256 << 10)
    _first_commit(server, root, work)
    assert_ok(server.run(root, [["cli", "checkout", "-b", "exp"]], fast_exit=True), "checkout -b exp")
    work.mutate(which=["data.jsonl", "p.prompt.yaml"])
    assert_ok(server.run(root, [ADD_ALL, ["cli", "commit", "-m", "exp"], ["cli", "checkout", "main"]],
                         fast_exit=True), "commit on exp")
    if case == "merge-three-way":
        (root / "side.prompt.yaml").write_text(PROMPT.format(version="main side"))
        assert_ok(server.run(root, [["cli", "add", "side.prompt.yaml"], ["cli", "commit", "-m", "main side"]],
                             fast_exit=True), "main side")
    crash = server.run(root, [["crash", target, None, 1], ["cli", *command]], fast_exit=True)
    assert crash.killed, f"{case}: the crash point was not reached\n{crash.describe()}"
    retry = server.run(root, [["cli", *command]], fast_exit=True)
    r = server.run(root, [["cli", "status", "--json"]], fast_exit=True)
    assert_ok(r, "status")
    st = json.loads(r.stdout)
    assert retry.exit == 0 and not st["staged"] and not st["unstaged"] and not st["merging"], (
        f"{case}: after the crash, the retried `demoai {' '.join(command)}` exited {retry.exit} "
        f"({retry.stderr.strip()!r}) and the index does not match HEAD "
        f"({st['branch']} at {str(st['head'])[:12]}): `demoai commit` would now record these staged "
        f"changes on it: {st['staged']} (unstaged: {st['unstaged']})")
    with Repository(root) as repo:
        led = Ledger(root, tmp_path / "exports")
        head = repo.head_commit()
        for path in repo.tree_entries(head):
            want = led.actual(repo, f"{path}@{head}", path)
            disk = root / path
            got = (rows_digest([json.loads(x) for x in disk.read_text().splitlines()]) if path.endswith(".jsonl")
                   else sha(disk.read_bytes()))
            assert got == want, f"{case}: {path} on disk differs from HEAD"
    porcelain_fsck(root)
    git_fsck(root)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("point", ["before-merge-state-saved", "while-writing-conflict-text"])
def test_crash_in_conflicting_merge_then_retry(server: CliServer, tmp_path: Path, point: str) -> None:
    """A merge that stops on a conflict, killed before it recorded the merge state: the retry
    must stop on the same conflict (one error line plus the conflict list) with the merge in
    progress, and `merge --abort` must bring back a clean HEAD; never a half-merged index that
    a plain commit would record without the second parent."""
    target = {"before-merge-state-saved": ("demoai.store.git.repo:Repository.set_merge_state", None),
              "while-writing-conflict-text": ("demoai.porcelain.merge:atomic_write", None)}[point]
    root = tmp_path / "repo"
    root.mkdir()
    work = Workload(root, random.Random(12), n_rows=100, model_size=128 << 10)
    base, _ = _first_commit(server, root, work)
    assert_ok(server.run(root, [["cli", "checkout", "-b", "exp"]], fast_exit=True))
    work.mutate(which=["data.jsonl", "p.prompt.yaml"])
    assert_ok(server.run(root, [ADD_ALL, ["cli", "commit", "-m", "exp"], ["cli", "checkout", "main"]],
                         fast_exit=True))
    (root / "p.prompt.yaml").write_text(PROMPT.format(version="main's own"))
    assert_ok(server.run(root, [["cli", "add", "p.prompt.yaml"], ["cli", "commit", "-m", "main"]], fast_exit=True))
    head = branch_head(root)
    crash = server.run(root, [["crash", *target, 1], ["cli", "merge", "exp"]], fast_exit=True)
    assert crash.killed, f"{point}: the crash point was not reached\n{crash.describe()}"
    retry = server.run(root, [["cli", "merge", "exp"]], fast_exit=True)
    st = json.loads(server.run(root, [["cli", "status", "--json"]], fast_exit=True).stdout)
    assert retry.exit == 1 and retry.stderr.startswith("error: merge of exp stopped") and st["merging"], (
        f"{point}: after the crash the retried merge does not stop on the conflict with the merge in "
        f"progress (merging={st['merging']}, staged={st['staged']}; a plain `demoai commit` would "
        f"record the half-merged index without exp as a parent)\n{retry.describe()}")
    assert_ok(server.run(root, [["cli", "merge", "--abort"]], fast_exit=True), "merge --abort")
    st = json.loads(server.run(root, [["cli", "status", "--json"]], fast_exit=True).stdout)
    assert not st["staged"] and not st["unstaged"] and not st["merging"] and branch_head(root) == head, st
    porcelain_fsck(root)
    git_fsck(root)


# ------------------------------------------------------------------------------ 2. concurrency

def _check_racers(root: Path, runs: list[Run], messages: list[str], base: str) -> list[str]:
    """Common assertions for processes that raced to commit (racer i commits with
    ``messages[i]``); returns the new commits, newest first."""
    winners = set()
    for i, r in enumerate(runs):
        assert not r.hung and r.signal is None, f"racer {i} hung or died\n{r.describe()}"
        assert "Traceback" not in r.stderr + r.stdout, f"racer {i} printed a traceback\n{r.describe()}"
        if r.exit == 0:
            winners.add(messages[i])
        else:
            assert_clean_error(r, f"racer {i}", expect=r"nothing to commit|lock|moved while|conflict|try again")
    chain = rev_list(root)
    ids = [c for c, _ in chain]
    assert all(len(p) <= 1 for _, p in chain), "history is not linear"
    assert base in ids, "the old head is no longer in the branch history"
    new = ids[:ids.index(base)]
    subj = subjects(root)
    got = [subj[c] for c in new]
    assert len(set(got)) == len(got) and set(got) == winners, \
        f"commits on the branch {got} != the racers that reported success {sorted(winners)}"
    return new


@pytest.mark.timeout(60)
def test_concurrent_add_and_commit_to_one_branch(server: CliServer, tmp_path: Path) -> None:
    """Rounds of 5 processes, released together by a barrier, each adding its own file (prompt,
    dataset or model) and committing to main: no traceback, no lost commit, no lost file,
    linear history, clean fsck."""
    root = tmp_path / "repo"
    root.mkdir()
    work = Workload(root, random.Random(3), n_rows=100, model_size=256 << 10)
    head, _ = _first_commit(server, root, work)
    expected_files: dict[str, str] = {}
    for rnd in range(3):
        racers = []
        for i in range(5):
            kind = (i + rnd) % 3
            if kind == 0:
                name, steps = f"p{rnd}_{i}.prompt.yaml", [["text", f"p{rnd}_{i}.prompt.yaml",
                                                           PROMPT.format(version=f"{rnd}.{i}")]]
                expected_files[name] = sha(PROMPT.format(version=f"{rnd}.{i}").encode())
            elif kind == 1:
                rows = [{"id": j, "text": f"r{rnd} p{i} row {j}"} for j in range(50 + i)]
                name, steps = f"d{rnd}_{i}.jsonl", [["text", f"d{rnd}_{i}.jsonl", jsonl(rows)]]
                expected_files[name] = rows_digest(rows)
            else:
                name, steps = f"m{rnd}_{i}.gguf", [["write", f"m{rnd}_{i}.gguf", 100 * rnd + i, 200_000]]
                expected_files[name] = sha(model_bytes(100 * rnd + i, 200_000))
            racers.append((root, steps + [["cli", "add", name], ["cli", "commit", "-m", f"round {rnd} racer {i}"]]))
        runs = [server.wait(s) for s in server.batch(racers, fast_exit=rnd > 0)]
        for i, r in enumerate(runs):
            assert r.steps.get(1) == 0, f"round {rnd} racer {i}: add failed\n{r.describe()}"
        new = _check_racers(root, runs, [f"round {rnd} racer {i}" for i in range(5)], head)
        assert new, f"round {rnd}: nobody committed"
        head = new[0]
        # every file each racer added is in the branch, with its content
        with Repository(root) as repo:
            entries = repo.tree_entries(head)
            missing = sorted(set(expected_files) - set(entries))
            assert not missing, f"round {rnd}: staged files lost: {missing}"
            ledger = Ledger(root, tmp_path / "exports")
            for name, want in expected_files.items():
                assert ledger.actual(repo, f"{name}@{head}", name) == want, name
        porcelain_fsck(root)
        git_fsck(root)


@pytest.mark.timeout(60)
def test_concurrent_commits_of_one_staged_index(server: CliServer, tmp_path: Path) -> None:
    """6 processes commit the same staged index at once: exactly one commit is made, the
    others say 'nothing to commit' in one line."""
    root = tmp_path / "repo"
    root.mkdir()
    work = Workload(root, random.Random(4), n_rows=100, model_size=256 << 10)
    head, _ = _first_commit(server, root, work)
    for rnd in range(3):
        work.mutate()
        assert_ok(server.run(root, [ADD_ALL], fast_exit=True))
        messages = [f"same {rnd}.{i}" for i in range(6)]
        runs = [server.wait(s) for s in server.batch([(root, [["cli", "commit", "-m", m]]) for m in messages],
                                                     fast_exit=rnd > 0)]
        new = _check_racers(root, runs, messages, head)
        assert len(new) == 1, f"round {rnd}: {len(new)} commits for one staged change"
        losers = [r for r in runs if r.exit != 0]
        assert len(losers) == 5 and all("nothing to commit" in r.stderr for r in losers), \
            "\n".join(r.describe() for r in losers)
        head = new[0]
        ledger = Ledger(root, tmp_path / "exports")
        ledger.record(head, work.expected())
        ledger.verify(f"round {rnd}")
    porcelain_fsck(root)
    git_fsck(root)


# ------------------------------------------------------------------------------ 3. add vs gc

@pytest.mark.timeout(90)
def test_add_racing_gc_keeps_every_staged_and_committed_version(server: CliServer, tmp_path: Path) -> None:
    """One process stages 24 versions of a model (small edits and full rewrites, committing
    every third) while another runs gc over and over until it is done: both succeed; every committed version and
    the staged one export identical; fsck is clean, also after one more gc."""
    root = tmp_path / "repo"
    root.mkdir()
    assert_ok(server.run(root, [["cli", "init"]], fast_exit=True))
    size = 1 << 20

    def version(k: int) -> tuple[int, int, int | None]:
        return (k if k % 4 == 0 else 1000, size, None if k % 4 == 0 else k)

    adder, expected = [], {}
    for k in range(1, 25):
        seed, n, edit = version(k)
        adder += [["write", "m.gguf", seed, n, edit], ["cli", "add", "m.gguf"]]
        if k % 3 == 0:
            adder.append(["cli", "commit", "-m", f"v{k}"])
            expected[f"v{k}"] = sha(model_bytes(seed, n, edit))
    adder.append(["text", "adder.done", "done"])
    # gc over and over, for as long as the adder runs
    gcer = [["repeat_until", "adder.done", 300, ["cli", "gc"], ["sleep", 0.005]]]
    r_add, r_gc = [server.wait(s, timeout=80) for s in server.batch([(root, adder), (root, gcer)])]
    (root / "adder.done").unlink()
    assert_ok(r_add, "adder")
    assert_ok(r_gc, "gc runner")
    assert r_add.step_codes.count(0) == 24 + 8
    gcs = r_gc.step_codes.count(0)
    removed = sum(int(n) for n in re.findall(r"chunks removed:\s+(\d+)", r_gc.stdout))
    print(f"\nadd racing gc: {gcs} gc runs during {r_add.seconds:.2f} s of adding, {removed} chunks removed")
    assert gcs >= 5 and r_gc.rounds == [gcs], f"gc ran only {gcs} times alongside the adder"
    assert removed > 0, f"no gc removed anything: the race did not exercise deletion\n{r_gc.stdout[:2000]}"

    def verify(where: str) -> None:
        with Repository(root) as repo:
            led = Ledger(root, tmp_path / "exports")
            got = {}
            for ci in repo.walk(repo.head_commit()):
                got[ci.summary] = led.actual(repo, f"m.gguf@{ci.id}", "m.gguf")
            assert got == expected, f"{where}: committed versions differ"
            art = decode_manifest(repo.index.read().entries["m.gguf"], "m.gguf")
            seed, n, edit = version(24)
            assert led.actual(repo, "", "m.gguf", art=art) == sha(model_bytes(seed, n, edit)), \
                f"{where}: the staged version does not export"
        porcelain_fsck(root)
        git_fsck(root)

    verify("after the race")
    assert_ok(server.run(root, [["cli", "gc"]]))
    verify("after one more gc")


# ------------------------------------------------------------------------------ 4. corruption

def _corruption_repo(server: CliServer, root: Path) -> None:
    root.mkdir()
    assert_ok(server.run(root, [["cli", "init"]], fast_exit=True))
    rows = [{"id": i, "text": f"row {i}", "score": i} for i in range(500)]
    (root / "d.jsonl").write_text(jsonl(rows))
    (root / "m.gguf").write_bytes(model_bytes(5, 1 << 20))
    assert_ok(server.run(root, [["cli", "add", "d.jsonl", "--key", "id"], ["cli", "add", "m.gguf"],
                                ["cli", "commit", "-m", "c"]], fast_exit=True))


def _flip_targets(root: Path, rng: random.Random) -> list[tuple[str, Path, int, str]]:
    """(label, file, offset, what fsck must name) for a byte flip in each kind of stored file."""
    ctl = root / ".demoai"
    out = []
    pack = next((ctl / "chunks").rglob("pack-*.pack"))
    out.append(("chunk pack", pack, rng.randrange(8, pack.stat().st_size), pack.name))
    idx = pack.with_suffix(".idx")
    out.append(("chunk pack idx", idx, rng.randrange(8, idx.stat().st_size), idx.name))
    data = max((ctl / "tables").rglob("data/*.lance"), key=lambda p: p.stat().st_size)
    out.append(("lance data file", data, rng.randrange(0, data.stat().st_size), data.name))
    man = next((ctl / "tables").rglob("_versions/*.manifest"))
    out.append(("lance manifest", man, rng.randrange(0, man.stat().st_size), man.name))
    return out


@pytest.mark.timeout(60)
def test_flipped_byte_detected_on_read_and_by_fsck(server: CliServer, tmp_path: Path) -> None:
    """A single flipped bit in a chunk pack, its idx, a Lance data file or a Lance manifest:
    `demoai export` of the artifact exits 1 with one integrity error line (and writes no
    output), `demoai fsck` exits 1 naming the damaged file or chunk; restoring the byte heals."""
    root = tmp_path / "repo"
    _corruption_repo(server, root)
    rng = random.Random(99)
    for round_ in range(2):
        for label, path, off, name in _flip_targets(root, rng):
            original = path.read_bytes()
            raw = bytearray(original)
            raw[off] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(raw))
            spec, out = (("d.jsonl@HEAD", "out.jsonl") if "lance" in label else ("m.gguf@HEAD", "out.gguf"))
            where = f"{label} {path.name} byte {off}"
            try:
                r = server.run(root, [["cli", "export", spec, str(tmp_path / out)]])
                assert_clean_error(r, f"export with a flipped bit in {where}",
                                   expect=r"integrity|hash|mismatch|corrupt|missing|fsck|decompress")
                assert not (tmp_path / out).exists(), f"{where}: export left a file behind"
                r = server.run(root, [["cli", "fsck"]], fast_exit=True)
                assert r.exit == 1 and "Traceback" not in r.stderr, f"fsck with {where}\n{r.describe()}"
                names = [name, *_chunk_ids_in(path, off)]
                assert any(n in r.stdout for n in names), \
                    f"fsck does not name the damaged object ({names})\n{r.describe()}"
            finally:
                path.write_bytes(original)
        assert_ok(server.run(root, [["cli", "fsck"]]), f"fsck after restoring (round {round_})")
        assert_ok(server.run(root, [["cli", "export", "m.gguf@HEAD", str(tmp_path / "ok.gguf"), "--force"],
                                    ["cli", "export", "d.jsonl@HEAD", str(tmp_path / "ok.jsonl"), "--force"]]))


def _chunk_ids_in(path: Path, off: int) -> list[str]:
    """The chunk ids whose payload covers ``off`` in a pack (from its idx)."""
    if path.suffix != ".pack":
        return []
    from demoai.store.blobs.packs import read_idx as _load_idx
    try:
        entries = _load_idx(path.with_suffix(".idx"))
    except Exception:  # noqa: BLE001
        return []
    return [cid for cid, o, n, *_ in entries if o <= off < o + n]


# ------------------------------------------------------------------------------ 5. bad input

def _bad_input_repo(server: CliServer, root: Path) -> None:
    root.mkdir()
    assert_ok(server.run(root, [["cli", "init"]], fast_exit=True))
    (root / "d.jsonl").write_text(jsonl([{"id": i, "text": f"row {i}"} for i in range(20)]))
    (root / "m.gguf").write_bytes(model_bytes(6, 200_000))
    (root / "p.prompt.yaml").write_text(PROMPT.format(version=1))
    assert_ok(server.run(root, [["cli", "add", "d.jsonl", "--key", "id"], ["cli", "add", "m.gguf", "p.prompt.yaml"],
                                ["cli", "commit", "-m", "good"]], fast_exit=True))


def _truncated_parquet() -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(100)), "t": [f"x{i}" for i in range(100)]}), buf)
    data = buf.getvalue()
    return data[: len(data) // 2] + data[-8:]  # footer magic intact, body cut


BAD_FILES: dict[str, tuple[str, bytes, list[str]]] = {
    # name: (file, content, extra add args)
    "jsonl-unterminated-object": ("bad.jsonl", b'{"id": 1}\n{"id": 2\n', []),
    "jsonl-not-json": ("bad.jsonl", b"hello world\n", []),
    "jsonl-binary": ("bad.jsonl", bytes(range(256)) * 4, []),
    "jsonl-duplicate-key": ("dup.jsonl", b'{"id": 1}\n{"id": 1}\n', ["--key", "id"]),
    "jsonl-missing-key": ("nokey.jsonl", b'{"id": 1}\n{"id": 2}\n', ["--key", "nope"]),
    "csv-ragged": ("bad.csv", b"a,b\n1,2\n3,4,5\n", []),
    "csv-unterminated-quote": ("bad.csv", b'a,b\n"1,2\n3,4\n', []),
    "parquet-garbage": ("bad.parquet", b"PAR1 not really a parquet file PAR1", []),
    "parquet-truncated": ("bad.parquet", b"", []),  # filled in below
    "yaml-unclosed": ("bad.prompt.yaml", b"template: [unclosed\n", []),
    "yaml-tab-indent": ("bad.prompt.yaml", b"template: hi\n\tparameters: {}\n", []),
    "yaml-not-a-mapping": ("bad.prompt.yaml", b"- just\n- a list\n", []),
    "yaml-not-utf8": ("bad.prompt.yaml", b"template: \xff\xfe\n", []),
    "yaml-bad-parameter": ("bad.prompt.yaml", b"template: hi\nparameters: {temperature: 9}\n", []),
    "gguf-bad-magic": ("bad.gguf", b"NOPE" + bytes(1000), []),
}

BAD_REFS: dict[str, list[str]] = {
    "show-nope": ["show", "nope"],
    "show-nope-path": ["show", "nope:d.jsonl"],
    "show-missing-path": ["show", "HEAD:nope.jsonl"],
    "diff-nope": ["diff", "nope"],
    "diff-head-nope": ["diff", "HEAD", "nope"],
    "diff-too-deep": ["diff", "HEAD~5"],
    "export-x-at-nope": ["export", "x@nope", "OUT"],
    "export-path-at-nope": ["export", "d.jsonl@nope", "OUT"],
    "log-nope": ["log", "nope"],
    "checkout-nope": ["checkout", "nope"],
    "merge-nope": ["merge", "nope"],
    "branch-from-nope": ["branch", "b1", "nope"],
    "tag-nope": ["tag", "t1", "nope"],
    "query-table-at-nope": ["query", "SELECT count(*) FROM table('d.jsonl', 'nope')"],
}


@pytest.fixture(scope="module")
def bad_input_repo(server: CliServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-input") / "repo"
    _bad_input_repo(server, root)
    return root


def _one_bad_command(server: CliServer, root: Path, steps: list[list], what: str, out: Path | None = None) -> None:
    before = snapshot_control(root)
    r = server.run(root, steps)
    assert_clean_error(r, what)
    changed = snapshot_diff(before, snapshot_control(root))
    assert not changed, f"{what}: .demoai changed: {changed[:10]}"
    if out is not None:
        assert not out.exists(), f"{what}: left {out}"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_via_cli_is_one_error_line_and_changes_nothing(server: CliServer, bad_input_repo: Path,
                                                               case: str) -> None:
    name, content, extra = BAD_FILES[case]
    if case == "parquet-truncated":
        content = _truncated_parquet()
    path = bad_input_repo / "incoming" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    try:
        _one_bad_command(server, bad_input_repo, [["cli", "add", f"incoming/{name}", *extra]], f"add {case}")
    finally:
        path.unlink()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", list(BAD_REFS))
def test_unknown_ref_via_cli_is_one_error_line_and_changes_nothing(server: CliServer, bad_input_repo: Path,
                                                                  tmp_path: Path, case: str) -> None:
    out = tmp_path / "exported.jsonl"
    args = [str(out) if a == "OUT" else a for a in BAD_REFS[case]]
    _one_bad_command(server, bad_input_repo, [["cli", *args]], f"demoai {' '.join(args)}", out)


# ------------------------------------------------------------------------------ CLI output

@pytest.mark.timeout(30)
def test_commit_prints_branch_and_id(server: CliServer, tmp_path: Path) -> None:
    """`demoai commit` reports ``[main <12-hex id>] message`` (scripts and humans need the id)."""
    root = tmp_path / "repo"
    root.mkdir()
    assert_ok(server.run(root, [["cli", "init"], ["text", "p.prompt.yaml", PROMPT.format(version=1)],
                                ["cli", "add", "p.prompt.yaml"]], fast_exit=True))
    r = server.run(root, [["cli", "commit", "-m", "plain message"]])
    assert_ok(r)
    head = branch_head(root)
    assert f"[main {head[:12]}] plain message" in r.stdout, f"commit id not printed\n{r.describe()}"


@pytest.mark.timeout(30)
def test_commit_message_with_brackets(server: CliServer, tmp_path: Path) -> None:
    """A message with square brackets (``[/wip]``, ``[bold]``) is data, not markup: commit
    exits 0 and prints it, and log/show keep working on a history that contains it."""
    root = tmp_path / "repo"
    root.mkdir()
    msg = "fix [/wip] the [bold]loader[/bold] [x]"
    assert_ok(server.run(root, [["cli", "init"], ["text", "p.prompt.yaml", PROMPT.format(version=1)],
                                ["cli", "add", "p.prompt.yaml"]]))
    r = server.run(root, [["cli", "commit", "-m", msg]])
    head = branch_head(root)
    assert head and subjects(root)[head] == msg, "the commit was not made"
    problems = []
    if r.exit != 0 or "Traceback" in r.stderr or msg not in r.stdout:
        problems.append(f"demoai commit -m {msg!r} (the commit WAS made):\n{r.describe()}")
    for args in (["log", "--oneline"], ["log"], ["log", "--graph"], ["show", "HEAD"]):
        r = server.run(root, [["cli", *args]])
        if r.exit != 0 or "Traceback" in r.stderr or msg not in r.stdout:
            problems.append(f"demoai {' '.join(args)}:\n{r.describe()}")
    assert not problems, "\n\n".join(problems)
