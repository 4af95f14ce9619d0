"""The agent sandbox: one escape-test suite run against both backends.

The docker backend runs against a private ``dockerd`` this session starts (or the engine at
``DEMOAI_TEST_DOCKER_HOST``). Where the engine or bubblewrap cannot start, those tests skip,
or fail with the reason when ``DEMOAI_REQUIRE_DOCKER=1`` / ``DEMOAI_REQUIRE_BWRAP=1`` (CI).
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from demoai.errors import SandboxError, SandboxUnavailable
from demoai.engines.sandbox import ExecResult, Sandbox, SandboxLimits, open_sandbox
from demoai.engines.sandbox import namespace as ns_backend

LIMITS = SandboxLimits(cpu_seconds=2, memory_mb=256, pids=32, timeout_s=15)


from tests.helpers.skips import unavailable as _unavailable  # noqa: E402


@pytest.fixture(params=["namespace", "docker"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "namespace":
        reason = ns_backend.bwrap_available()
        if reason:
            _unavailable(reason, "DEMOAI_REQUIRE_BWRAP")
    return request.param


def _open(backend: str, request: pytest.FixtureRequest, limits: SandboxLimits = LIMITS,
          **kw: object) -> Sandbox:
    if backend == "docker":
        kw["docker_host"] = request.getfixturevalue("docker_url")
    return open_sandbox(backend, limits, **kw)  # type: ignore[arg-type]


@pytest.fixture
def sb(backend: str, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    box = _open(backend, request)
    try:
        yield box
    finally:
        box.close()


def sh(box: Sandbox, cmd: str, **kw: object) -> ExecResult:
    return box.run(["sh", "-c", cmd], **kw)  # type: ignore[arg-type]


def py(box: Sandbox, code: str, **kw: object) -> ExecResult:
    return box.run(["python3", "-c", code], **kw)  # type: ignore[arg-type]


def assert_usable(box: Sandbox) -> None:
    res = box.run(["echo", "still-ok"])
    assert (res.exit_code, res.stdout) == (0, "still-ok\n"), res


# -- behaviour ------------------------------------------------------------------------------
def test_echo_exit_code_and_streams(sb: Sandbox) -> None:
    res = sh(sb, "echo out; echo err >&2; exit 7")
    assert (res.exit_code, res.stdout, res.stderr) == (7, "out\n", "err\n")
    assert not res.timed_out and res.limit is None and res.duration_s > 0
    assert res.to_dict()["exit_code"] == 7


def test_python3_cwd_and_env(sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "host-secret-7f3a")
    res = py(sb, "import os,sys,json; print(json.dumps([os.getcwd(), dict(os.environ), "
                 "sys.version_info[0]]))")
    assert res.exit_code == 0, res
    import json
    cwd, env, major = json.loads(res.stdout)
    assert (cwd, major) == ("/workspace", 3)
    assert env["HOME"] == "/workspace" and env["LANG"] == "C.UTF-8" and "PATH" in env
    assert "SECRET_TOKEN" not in env and "host-secret-7f3a" not in res.stdout
    assert set(env) <= {"PATH", "HOME", "LANG", "PWD", "PYTHONDONTWRITEBYTECODE", "HOSTNAME",
                        "SHLVL", "_"}, env


def test_stdin_and_truncation(backend: str, request: pytest.FixtureRequest) -> None:
    with _open(backend, request, SandboxLimits(output_bytes=1000)) as box:
        assert box.run(["cat"], stdin=b"fed on stdin").stdout == "fed on stdin"
        res = sh(box, "yes | head -c 200000")
        assert res.exit_code == 0 and res.truncated and len(res.stdout) == 1000


def test_files_round_trip(sb: Sandbox) -> None:
    blob = bytes(range(256)) * 40
    sb.put_files({"a.txt": b"alpha", "dir/sub/b.bin": blob, "./c.txt": b""})
    res = sh(sb, "cat a.txt; wc -c < dir/sub/b.bin; echo made > new.txt; mkdir -p o/p; "
                 "echo deep > o/p/q; ln -s a.txt link; ln -s /etc/passwd outlink")
    assert res.exit_code == 0 and res.stdout == f"alpha{len(blob)}\n", res
    files = sb.export_files()
    assert files == {"a.txt": b"alpha", "dir/sub/b.bin": blob, "c.txt": b"",
                     "new.txt": b"made\n", "o/p/q": b"deep\n"}  # symlinks are skipped
    with pytest.raises(SandboxError):
        sb.export_files(max_bytes=100)
    sb.reset()
    assert sb.export_files() == {}
    assert sh(sb, "ls -A | wc -l").stdout.strip() == "0"
    assert_usable(sb)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "a/../../x", "", "a/\0b"])
def test_put_files_rejects_escaping_paths(sb: Sandbox, bad: str) -> None:
    with pytest.raises(SandboxError):
        sb.put_files({bad: b"x"})


def test_put_files_through_planted_symlink(sb: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "host-dir"
    target.mkdir()
    assert sh(sb, f"ln -s {target} d && ln -s {target}/f.txt f.txt").exit_code == 0
    for files in ({"d/x.txt": b"pwn"}, {"f.txt": b"pwn"}):
        try:
            sb.put_files(files)
        except SandboxError:
            pass
    assert list(target.iterdir()) == []


def test_close_is_idempotent(backend: str, request: pytest.FixtureRequest) -> None:
    box = _open(backend, request)
    with box:
        assert_usable(box)
    box.close()
    with pytest.raises(SandboxError):
        box.run(["true"])


# -- escapes --------------------------------------------------------------------------------
def test_runs_as_non_root(sb: Sandbox) -> None:
    res = py(sb, "import os\nprint(os.getuid(), os.geteuid(), os.getgid())\n"
                 "try:\n os.setuid(0); print('became root')\nexcept OSError: print('denied')")
    assert res.stdout.split("\n")[:2] == ["65534 65534 65534", "denied"], res


_CONNECT = """
import socket, sys
s = socket.socket(); s.settimeout(3)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("CONNECTED")
except OSError as e:
    print("BLOCKED", e)
"""


def test_no_network(sb: Sandbox) -> None:
    res = sb.run(["python3", "-c", _CONNECT, "1.1.1.1", "53"])
    assert res.stdout.startswith("BLOCKED"), res
    res = py(sb, "import socket\ntry:\n print(socket.getaddrinfo('pypi.org', 443)[0])\n"
                 "except OSError as e: print('NORESOLVE', e)")
    assert "NORESOLVE" in res.stdout, res


def test_no_access_to_host_loopback(sb: Sandbox) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    try:
        port = server.getsockname()[1]
        res = sb.run(["python3", "-c", _CONNECT, "127.0.0.1", str(port)])
        assert res.stdout.startswith("BLOCKED"), res
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


def test_cannot_write_outside_workspace(sb: Sandbox) -> None:
    tag = uuid.uuid4().hex
    for d in ("/", "/usr", "/usr/bin", "/etc", "/bin"):
        res = sh(sb, f"echo x > {d.rstrip('/')}/demoai-escape-{tag}")
        assert res.exit_code != 0, (d, res)
        assert not os.path.exists(f"{d.rstrip('/')}/demoai-escape-{tag}")
    res = sh(sb, f"echo x > /tmp/demoai-escape-{tag} && cat /tmp/demoai-escape-{tag}")
    assert not os.path.exists(f"/tmp/demoai-escape-{tag}")  # a private /tmp, if any
    assert_usable(sb)


def test_cannot_read_host_secrets(sb: Sandbox, tmp_path: Path) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    places = [Path(os.environ["HOME"]) / ".secret", tmp_path / "secret.txt"]
    if os.access("/root", os.W_OK):
        places.append(Path("/root") / f".demoai-test-{uuid.uuid4().hex}")
    for p in places:
        p.write_text(secret)
    try:
        paths = " ".join(str(p) for p in places)
        res = sh(sb, f"for f in {paths} /etc/shadow; do cat $f /proc/1/root$f; done 2>&1; "
                     "cat /proc/1/environ /proc/self/environ 2>&1; ls -a /root /home 2>&1")
        assert secret not in res.stdout + res.stderr, res
    finally:
        for p in places:
            p.unlink()


def test_no_docker_socket_inside(sb: Sandbox, request: pytest.FixtureRequest) -> None:
    socks = ["/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock"]
    if sb.backend == "docker":
        socks.append(request.getfixturevalue("docker_url").removeprefix("unix://"))
    res = sh(sb, " ; ".join(f"test -e {s} && echo FOUND {s}" for s in socks) + "; true")
    assert "FOUND" not in res.stdout, res


def test_fork_bomb_is_contained(sb: Sandbox) -> None:
    res = py(sb, "import os, time\nn = 0\nwhile True:\n"
                 "    if os.fork() == 0:\n        time.sleep(30); os._exit(0)\n    n += 1\n"
                 "    print(n, flush=True)", timeout_s=10)
    assert res.exit_code != 0 and not res.timed_out, res
    assert res.limit == "pids", res
    assert int(res.stdout.split()[-1]) <= LIMITS.pids
    res = sh(sb, "f(){ f|f& }; f; sleep 2", timeout_s=10)
    assert res.limit in ("pids", "timeout"), res
    assert_usable(sb)


def test_memory_bomb_is_contained(sb: Sandbox) -> None:
    res = py(sb, "x = bytearray(2 << 30)")
    assert res.exit_code != 0 and res.limit == "memory", res
    res = py(sb, "x = []\nwhile True: x.append(b'x' * (1 << 24))", timeout_s=20)
    assert res.exit_code != 0 and res.limit == "memory", res
    assert_usable(sb)


def test_cpu_limit_stops_a_busy_loop(sb: Sandbox) -> None:
    t = time.monotonic()
    res = py(sb, "while True: pass", timeout_s=20)
    assert res.exit_code != 0 and res.limit == "cpu" and not res.timed_out, res
    assert time.monotonic() - t < 10
    assert_usable(sb)


def test_wall_clock_timeout_kills_everything(sb: Sandbox) -> None:
    t = time.monotonic()
    res = sh(sb, "sleep 60 & sleep 60", timeout_s=1.5)
    assert res.timed_out and res.limit == "timeout" and res.exit_code != 0, res
    assert time.monotonic() - t < 8
    t = time.monotonic()
    res = sh(sb, "(sleep 60 &) ; echo started")  # a detached child must not outlive the run
    assert res.stdout == "started\n" and time.monotonic() - t < 5, res
    assert_usable(sb)


# -- backends -------------------------------------------------------------------------------
def test_namespace_unavailable_without_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ns_backend, "BWRAP", "/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        open_sandbox("namespace")


def test_docker_unavailable_without_engine(tmp_path: Path) -> None:
    pytest.importorskip("docker")
    with pytest.raises(SandboxUnavailable, match="no Docker engine"):
        open_sandbox("docker", docker_host=f"unix://{tmp_path}/none.sock")


def test_unknown_backend() -> None:
    with pytest.raises(SandboxError, match="unknown sandbox backend"):
        open_sandbox("vm")


def test_limits_from_dict() -> None:
    lim = SandboxLimits.from_dict({"backend": "docker", "cpu_seconds": "3", "memory_mb": 128,
                                   "timeout_s": 5})
    assert lim == SandboxLimits(cpu_seconds=3.0, memory_mb=128, timeout_s=5.0)
    with pytest.raises(SandboxError, match="did you mean"):     # never silently ignored
        SandboxLimits.from_dict({"memroy_mb": 16})
    assert SandboxLimits.from_dict(None) == SandboxLimits()
    with pytest.raises(SandboxError):
        SandboxLimits.from_dict({"pids": "many"})


def test_namespace_host_workspace(tmp_path: Path) -> None:
    reason = ns_backend.bwrap_available()
    if reason:
        _unavailable(reason, "DEMOAI_REQUIRE_BWRAP")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "given.txt").write_text("from host")
    with open_sandbox("namespace", LIMITS, workspace=ws) as box:
        res = sh(box, "cat given.txt; echo made > made.txt; mkdir d; echo q > d/q; chmod 000 d/q")
        assert res.stdout == "from host", res
    assert (ws / "made.txt").read_text() == "made\n"
    assert (ws / "given.txt").stat().st_uid == os.geteuid()  # handed back on close
    assert (ws / "d" / "q").stat().st_uid == os.geteuid()


def test_docker_container_removed_on_close(request: pytest.FixtureRequest) -> None:
    import docker

    box = _open("docker", request)
    cid = box.container.id  # type: ignore[attr-defined]
    attrs = box.container.attrs["HostConfig"]  # type: ignore[attr-defined]
    assert attrs["NetworkMode"] == "none" and attrs["ReadonlyRootfs"] and attrs["CapDrop"]
    assert not any("docker.sock" in b for b in attrs.get("Binds") or [])
    box.close()
    client = docker.DockerClient(base_url=request.getfixturevalue("docker_url"))
    try:
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(cid)
    finally:
        client.close()
