"""A real hub process on 127.0.0.1 for the hub tests, which a test may SIGKILL and restart.

The listening socket is bound here (port 0: the kernel picks a free port, so two test runs
never race for one) and handed to the child (``pass_fds``); the child serves the real
``demoai.hub.app.create_app`` on it with uvicorn. The parent closes its copy once the child
is up, so that a killed hub refuses connections at once (a socket still open here would
queue them in its backlog, and a client would wait for its timeout instead). A restart
binds the same port again when it can (``SO_REUSEADDR``), so remote URLs stay valid.

Every wait is bounded: a hub that does not answer within ``START_TIMEOUT`` seconds fails
the test with its log, and a hub that does not exit is killed.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

__all__ = ["HubServer", "make_user", "running_hub", "dir_bytes", "START_TIMEOUT"]

START_TIMEOUT = 60.0

# What the child runs: the hub's app on the inherited socket (argv: data dir, socket fd).
_SERVE = """
import socket, sys
import uvicorn
from demoai.hub.app import create_app
sock = socket.socket(fileno=int(sys.argv[2]))
config = uvicorn.Config(create_app(sys.argv[1]), log_level="warning", timeout_keep_alive=30)
uvicorn.Server(config).run(sockets=[sock])
"""


class HubServer:
    """``demoai.hub`` serving ``data`` in a child process; ``url`` is its base URL."""

    def __init__(self, data: str | os.PathLike, log: str | os.PathLike | None = None, *,
                 cli: bool = False) -> None:
        self.cli = cli    # run the real `demoai hub serve --data D --port P` instead
        self.data = Path(data)
        self.data.mkdir(parents=True, exist_ok=True)
        self.log_path = Path(log) if log else self.data.parent / f"{self.data.name}.log"
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.tokens: dict[str, dict[str, str]] = {}   # user -> {"write", "read"}: for the tests' use

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def repo_url(self, owner: str, name: str) -> str:
        return f"{self.url}/{owner}/{name}"

    def repo_path(self, owner: str, name: str) -> Path:
        """Where the hub keeps ``owner/name`` (see hub/storage.py)."""
        return self.data / "repos" / owner / name

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self.port or 0))
        except OSError:     # the old port was taken meanwhile: any free one will do
            sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        return sock

    def start(self) -> "HubServer":
        """Start the hub and wait (bounded) until it answers."""
        assert self.proc is None or self.proc.poll() is not None, "hub already running"
        sock = self._bind()
        # The hub never needs the user's home: keep it (and any config) beside the data.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOME": str(self.data.parent),
               "XDG_CONFIG_HOME": str(self.data.parent / ".config")}
        if self.cli:
            # The CLI binds the port itself: free ours first (a small window another
            # process could take it in; the tests bind everything else to port 0).
            sock.close()
            cmd = [str(Path(sys.executable).parent / "demoai"), "hub", "serve", "--data", str(self.data),
                   "--host", "127.0.0.1", "--port", str(self.port)]
            fds: list[int] = []
        else:
            cmd = [sys.executable, "-c", _SERVE, str(self.data), str(sock.fileno())]
            fds = [sock.fileno()]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, pass_fds=fds, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        sock.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/api/v1/user", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"hub did not answer within {START_TIMEOUT} s:\n{self.log()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the hub (no shutdown handlers run: a crash) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop the hub politely (SIGTERM), killing it if it lingers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> "HubServer":
        self.kill()
        return self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_user(data: str | os.PathLike, name: str) -> dict[str, str]:
    """Create hub user ``name`` directly in the data directory (as ``demoai hub user add``
    does); returns a write token and a read token: ``{"write": ..., "read": ...}``."""
    from demoai.hub.app import Hub
    meta = Hub.open(data).meta
    meta.add_user(name)
    return {"write": meta.create_token(name, "write", "tests")[0],
            "read": meta.create_token(name, "read", "tests")[0]}


@contextmanager
def running_hub(data: str | os.PathLike, users: tuple[str, ...] = ("alice",)) -> Iterator["HubServer"]:
    """A real hub on 127.0.0.1 (a random port) with a user and tokens per name in ``users``
    (``server.tokens[name]``), stopped on exit."""
    server = HubServer(data)
    server.tokens = {u: make_user(server.data, u) for u in users}
    server.start()
    try:
        yield server
    finally:
        server.stop()


def dir_bytes(path: str | os.PathLike) -> int:
    """Apparent size of every file under ``path`` (hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
