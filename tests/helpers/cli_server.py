"""A fork server of pre-imported ``demoai`` CLI processes, for the reliability tests.

Importing ``demoai.cli`` and what its commands import on first use (pyarrow, Lance, DuckDB,
pandas) costs seconds of CPU, while the commands under test take milliseconds. To kill a
command *while it writes*, or to start several at the same instant, this server imports all
that once and forks one child process per command. A child is a real, separate OS process running the real click entry point
(``demoai.cli.main``, standalone mode) in its own cwd, with its stdout/stderr going to files;
the test kills it with SIGKILL, and the server reaps it and reports how it ended.

``cli_server.py --warm-up DIR`` also pre-imports what the commands import lazily (see
:func:`_warm_up`), so that a child spends its time on the command, not on imports.

Protocol: one JSON object per line on stdin, one JSON reply per line on stdout.

    {"op": "run", "cwd": DIR, "steps": [...], "out": PREFIX, "fast_exit": B}   -> {"pid": N}
    {"op": "batch", "runs": [{"cwd", "steps", "out", "fast_exit"}, ...]}        -> {"pids": [...]}
        (every child blocks on one pipe until all are forked, then all start together)
    {"op": "wait", "pid": N, "timeout": S}   -> {"pid", "exit", "signal", "hung", "seconds"}
        (``hung``: still running after S seconds; it is then killed)
    {"op": "quit"}

Steps, run in order by the child:

    ["cli", ARG, ...]                the real ``demoai ARG ...``; after it ``@@step I exit C``
                                     is printed to stdout; the child stops at a failing step
    ["write", PATH, SEED, N, EDIT]   write :func:`model_bytes` (SEED, N, EDIT)
    ["text", PATH, TEXT]             write TEXT
    ["sleep", SECONDS]
    ["repeat_until", PATH, MAX, STEP, ...]
                                     run the STEPs over and over until PATH exists (at most
                                     MAX rounds); ``@@rounds N`` is printed at the end
    ["crash", "MODULE:ATTR", REGEX, NTH, INSIDE]
        fault injection: wrap the function ATTR of MODULE (``Class.method`` allowed) so that
        its NTH call (1-based) whose arguments (their repr, and their ``__dict__``) match
        REGEX (null: any call) SIGKILLs the child *before* the real function runs; with
        INSIDE ("MODULE:ATTR", optional) only calls made while INSIDE runs are counted

For each ``cli`` step ``sys.argv`` is what ``python -m demoai.cli ARG ...`` would have. The
child's exit status is the first failing step's code (0 if all succeeded); an exception the
CLI lets escape prints its traceback to stderr and exits 1. The child then leaves through
normal interpreter shutdown (finalizers, atexit: ~150 ms), exactly as ``python -m demoai.cli``
would, or with ``fast_exit`` through ``os._exit`` after flushing stdout and stderr.

Lance warns on every fork that it is not fork-safe: its Rust runtime does not survive a fork.
The server never opens a Lance dataset (it only imports modules; the warm-up workload runs
in a throwaway child), so no runtime exists when it forks and each child starts its own. The
warning is silenced for that reason.
"""
from __future__ import annotations

import importlib
import json
import os
import random
import re
import signal
import sys
import time
import traceback
from pathlib import Path

MODEL_EDIT = 65536
CLI_PATH = str(Path(__file__).resolve().parents[2] / "demoai" / "cli.py")


def model_bytes(seed: int, n: int, edit: int | None = None) -> bytes:
    """b"GGUF" + ``n`` pseudo-random bytes from ``seed``; with ``edit``, a 64 KiB region at a
    position chosen by ``edit`` is replaced by other random bytes (a small model change)."""
    data = bytearray(b"GGUF" + random.Random(seed).randbytes(n))
    if edit is not None:
        r = random.Random(edit * 7919 + 17)
        off = r.randrange(4, len(data) - MODEL_EDIT)
        data[off:off + MODEL_EDIT] = r.randbytes(MODEL_EDIT)
    return bytes(data)


def _resolve(target: str) -> tuple[object, str]:
    mod_name, attr = target.split(":", 1)
    owner = importlib.import_module(mod_name)
    *path, name = attr.split(".")
    for p in path:
        owner = getattr(owner, p)
    return owner, name


def _install_crash(target: str, pattern: str | None, nth: int, inside: str | None = None) -> None:
    owner, name = _resolve(target)
    real = getattr(owner, name)
    seen = [0]
    depth = [0 if inside else 1]

    def wrapper(*a, **kw):
        text = repr(a) + repr(kw) + repr([getattr(x, "__dict__", None) for x in a])
        if depth[0] and (pattern is None or re.search(pattern, text)):
            seen[0] += 1
            if seen[0] == nth:
                sys.stdout.flush()
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **kw)

    setattr(owner, name, wrapper)
    if inside:
        i_owner, i_name = _resolve(inside)
        i_real = getattr(i_owner, i_name)

        def armed(*a, **kw):
            depth[0] += 1
            try:
                return i_real(*a, **kw)
            finally:
                depth[0] -= 1

        setattr(i_owner, i_name, armed)


def run_steps(steps: list[list], base: int = 0) -> int:
    from demoai.cli import main as cli_main

    for i, step in enumerate(steps, base):
        op, args = step[0], step[1:]
        if op == "repeat_until":
            rounds = 0
            while rounds < int(args[1]) and not Path(args[0]).exists():
                rounds += 1
                code = run_steps(args[2:], base=1000 * (i + 1))
                if code:
                    print(f"@@rounds {rounds}", flush=True)
                    return code
            print(f"@@rounds {rounds}", flush=True)
        elif op == "write":
            p = Path(args[0])
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(model_bytes(int(args[1]), int(args[2]), args[3] if len(args) > 3 else None))
        elif op == "text":
            p = Path(args[0])
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(args[1])
        elif op == "sleep":
            time.sleep(float(args[0]))
        elif op == "crash":
            _install_crash(args[0], args[1], int(args[2]), args[3] if len(args) > 3 else None)
        elif op == "cli":
            sys.argv = [CLI_PATH, *args]
            try:
                cli_main(list(args), prog_name="demoai", standalone_mode=True)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            sys.stdout.flush()
            sys.stderr.flush()
            print(f"@@step {i} exit {code}", flush=True)
            if code:
                return code
        else:
            raise ValueError(f"cli_server: unknown step {op!r}")
    return 0


def _child(cwd: str, steps: list[list], out: str, gate: int | None, fast_exit: bool) -> None:
    """Runs in the forked child; never returns (raises SystemExit through the server loop,
    so the child shuts down like any Python process: finalizers, atexit, flush)."""
    code = 1
    try:
        o = os.open(out + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        e = os.open(out + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        n = os.open(os.devnull, os.O_RDONLY)
        os.dup2(n, 0)
        os.dup2(o, 1)
        os.dup2(e, 2)
        for fd in (o, e, n):
            os.close(fd)
        if gate is not None:
            os.read(gate, 1)  # the barrier: released when every child of the batch exists
            os.close(gate)
        os.chdir(cwd)
        code = run_steps(steps)
    except BaseException:  # what the interpreter would print for an uncaught exception
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    if fast_exit:
        os._exit(code)
    raise _ChildExit(code)


class _ChildExit(BaseException):
    def __init__(self, code: int) -> None:
        self.code = code


def _fork(cwd: str, steps: list[list], out: str, fast_exit: bool = False, gate: int | None = None,
          close: list[int] = ()) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        for fd in close:
            os.close(fd)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _child(cwd, steps, out, gate, fast_exit)
    return pid


def _wait(pid: int, timeout: float) -> dict:
    t0 = time.monotonic()
    hung = False
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            break
        if time.monotonic() - t0 > timeout:
            hung = True
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.002)
    return {"pid": pid, "hung": hung, "seconds": time.monotonic() - t0,
            "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}


WARMUP_STEPS = [
    ["cli", "init"],
    ["text", "d.jsonl", "".join(json.dumps({"id": i, "t": f"row {i}"}) + "\n" for i in range(50))],
    ["text", "e.csv", "id,t\n" + "".join(f"{i},row {i}\n" for i in range(50))],
    ["text", "p.prompt.yaml", "name: p\ntemplate: 'Q: {{q}}'\n"],
    ["write", "m.gguf", 1, 300_000],
    ["cli", "add", "d.jsonl", "--key", "id"], ["cli", "add", "e.csv", "m.gguf", "p.prompt.yaml"],
    ["cli", "commit", "-m", "one"], ["cli", "checkout", "-b", "x"],
    ["text", "d.jsonl", "".join(json.dumps({"id": i, "t": f"row {i}!"}) + "\n" for i in range(60))],
    ["write", "m.gguf", 1, 300_000, 5], ["cli", "add", "d.jsonl", "m.gguf"], ["cli", "commit", "-m", "two"],
    ["cli", "diff", "main", "x"], ["cli", "show", "HEAD"], ["cli", "show", "HEAD:d.jsonl"],
    ["cli", "export", "d.jsonl@main", "o.parquet"], ["cli", "export", "e.csv", "o.jsonl"],
    ["cli", "export", "m.gguf", "o.gguf"], ["cli", "query", "SELECT count(*) FROM table('d.jsonl')"],
    ["cli", "query", "SELECT id FROM commits"], ["cli", "log", "--graph"], ["cli", "status"],
    ["cli", "checkout", "main"], ["cli", "merge", "x"], ["cli", "fsck"], ["cli", "gc"],
]


def _warm_up(folder: str) -> None:
    """Import, in the server, every module a child would import lazily (pandas, for one,
    on the first dataset operation). They are found by running a small workload in a forked
    child, which is then discarded; the server itself never runs a command."""
    listing = os.path.join(folder, "modules.json")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            n = os.open(os.path.join(folder, "warmup.log"), os.O_WRONLY | os.O_CREAT, 0o644)
            os.dup2(n, 1)
            os.dup2(n, 2)
            os.chdir(folder)
            code = run_steps(WARMUP_STEPS)
            with open(listing, "w") as f:
                json.dump(sorted(sys.modules), f)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.waitpid(pid, 0)
    try:
        names = json.load(open(listing))
    except (OSError, ValueError):
        return
    for name in names:
        if name not in sys.modules and not name.startswith(("__main__", "_cython_")):
            try:
                importlib.import_module(name)
            except BaseException:  # noqa: BLE001 (an optional extra import, nothing more)
                pass


def serve() -> None:
    import warnings
    warnings.filterwarnings("ignore", message="lance is not fork-safe")
    import demoai.cli  # noqa: F401  (the slow import, done once)

    if len(sys.argv) > 2 and sys.argv[1] == "--warm-up":
        _warm_up(sys.argv[2])
    reply = sys.stdout
    print(json.dumps({"ready": os.getpid()}), file=reply, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "run":
            res = {"pid": _fork(req["cwd"], req["steps"], req["out"], bool(req.get("fast_exit")))}
        elif op == "batch":
            r, w = os.pipe()
            pids = [_fork(x["cwd"], x["steps"], x["out"], bool(x.get("fast_exit")), gate=r, close=[w])
                    for x in req["runs"]]
            os.close(r)
            time.sleep(0.05)   # let every child reach the barrier
            os.write(w, b"g" * len(pids))
            os.close(w)
            res = {"pids": pids}
        elif op == "wait":
            res = _wait(int(req["pid"]), float(req.get("timeout", 120)))
        elif op == "quit":
            break
        else:
            res = {"error": f"unknown op {op!r}"}
        print(json.dumps(res), file=reply, flush=True)


if __name__ == "__main__":
    try:
        serve()
    except _ChildExit as e:  # in a forked child: leave through normal shutdown
        sys.exit(e.code)
