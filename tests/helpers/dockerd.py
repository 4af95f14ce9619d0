"""Start a private Docker engine for tests and benches, and tear it down without a trace.

``with Dockerd() as d: d.url`` runs ``dockerd`` (with its own managed containerd) on a unix
socket in a short temp dir, with no bridge network and no iptables changes, so it never
touches a Docker engine the machine may already run. Needs root and the ``docker.io`` package.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["Dockerd", "DockerdError", "ping"]


class DockerdError(RuntimeError):
    """The engine could not be started; the message says why."""


def ping(sock_path: str, timeout: float = 1.0) -> bool:
    """True when a Docker API answers ``/_ping`` on the unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(sock_path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return _ok(s)
    except OSError:
        return False


def _ok(s: socket.socket) -> bool:
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(256)
        if not chunk:
            break
        data += chunk
    return data.startswith(b"HTTP/1.") and b" 200" in data.split(b"\r\n", 1)[0]


class Dockerd:
    """A private ``dockerd``; ``url`` is its ``unix://`` address once :meth:`start` returns."""

    def __init__(self, binary: str | None = None, storage_driver: str | None = None,
                 start_timeout: float = 60.0) -> None:
        self.binary = binary or shutil.which("dockerd") or "/usr/sbin/dockerd"
        self.storage_driver = storage_driver or os.environ.get("DEMOAI_DOCKERD_STORAGE")
        self.start_timeout = start_timeout
        self.root: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def sock_path(self) -> str:
        assert self.root is not None
        return str(self.root / "d.sock")

    def start(self) -> str:
        if os.geteuid() != 0:
            raise DockerdError("dockerd needs root (run the tests as root, or set DOCKER_HOST)")
        if not os.access(self.binary, os.X_OK):
            raise DockerdError(f"dockerd not found at {self.binary} (apt-get install docker.io)")
        self.root = Path(tempfile.mkdtemp(prefix="dk", dir="/tmp"))  # short: socket path limit
        r = self.root
        (r / "daemon.json").write_text(json.dumps({}))
        args = [self.binary, "--config-file", str(r / "daemon.json"),
                "--data-root", str(r / "data"), "--exec-root", str(r / "x"),
                "--pidfile", str(r / "pid"), "--host", f"unix://{self.sock_path}",
                "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
                "--userland-proxy=false", "--log-level=warn"]
        if self.storage_driver:
            args.append(f"--storage-driver={self.storage_driver}")
        log = open(r / "dockerd.log", "wb")
        try:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise DockerdError(f"dockerd exited with {self.proc.returncode}: {tail}")
            if ping(self.sock_path):
                self.url = f"unix://{self.sock_path}"
                return self.url
            time.sleep(0.1)
        tail = self.log_tail()
        self.stop()
        raise DockerdError(f"dockerd did not answer within {self.start_timeout:.0f}s: {tail}")

    def log_tail(self, n: int = 600) -> str:
        try:
            assert self.root is not None
            text = (self.root / "dockerd.log").read_text(errors="replace")
        except (OSError, AssertionError):
            return ""
        return " | ".join(text[-n:].strip().splitlines()[-4:])

    def stop(self) -> None:
        """SIGTERM the engine (it stops its containers and containerd), SIGKILL if it hangs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.root is not None:
            self._kill_containerd()
            self._unmount_all()
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        self.url = ""

    def _kill_containerd(self) -> None:
        """The managed containerd normally exits with dockerd; if not, end it by its pid file."""
        assert self.root is not None
        pidfile = self.root / "x" / "containerd" / "containerd.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)

    def _unmount_all(self) -> None:
        assert self.root is not None
        prefix = str(self.root) + "/"
        try:
            with open("/proc/self/mountinfo") as f:
                points = [line.split()[4] for line in f]
        except OSError:
            return
        for mp in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)

    def __enter__(self) -> "Dockerd":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
