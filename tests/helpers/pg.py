"""A real PostgreSQL server for the tests, in a temporary folder, run as a non-root user.

Debian's PostgreSQL binaries (``/usr/lib/postgresql/<version>/bin``: ``initdb``, ``pg_ctl``)
refuse to run as root, so when the tests run as root the cluster is created and served by
the ``postgres`` system user (else ``nobody``) through ``runuser``. The server listens on
127.0.0.1 at a free port (and on a Unix socket inside its folder), trusts local
connections, and can be stopped and started again mid-test (:meth:`PostgresServer.stop`,
:meth:`PostgresServer.start`) to simulate a database that drops away.

:func:`find_initdb` says where ``initdb`` is (None when PostgreSQL is not installed: the
tests then skip, unless ``DEMOAI_REQUIRE_ALL=1``, as in CI, makes that a failure).
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PostgresServer", "find_initdb", "free_port"]


def find_initdb() -> Path | None:
    """The newest installed ``initdb`` (Debian's layout first, then ``PATH``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1])
    on_path = shutil.which("initdb")
    return Path(on_path) if on_path else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _service_user() -> str | None:
    """Who runs the server: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


class PostgresServer:
    """A throwaway cluster: ``url`` is its libpq URL (database ``hub``, user ``demoai``)."""

    def __init__(self, initdb: Path | None = None) -> None:
        initdb = initdb or find_initdb()
        if initdb is None:
            raise RuntimeError("PostgreSQL is not installed (no initdb)")
        self.bin = initdb.parent
        self.user = _service_user()
        # Not under pytest's tmp_path: that is private to root (0700) and the server's user
        # must reach its folder.
        self.root = Path(tempfile.mkdtemp(prefix="demoai-pg-"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._as_user([str(self.bin / "initdb"), "-D", str(self.data), "-U", "demoai",
                       "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], timeout=120)
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                    "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
                    "shared_buffers = 32MB\n")
        self.start()
        self._as_user([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                       "-U", "demoai", "hub"], timeout=60)

    @property
    def url(self) -> str:
        return f"postgresql://demoai@127.0.0.1:{self.port}/hub"

    def new_database(self, name: str) -> str:
        """Create an empty database ``name`` (letters, digits, underscores); its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"bad database name {name!r}")
        self._as_user([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                       "-U", "demoai", name], timeout=60)
        return f"postgresql://demoai@127.0.0.1:{self.port}/{name}"

    def _as_user(self, cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if p.returncode:
            raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}\n"
                               f"{self.log.read_text()[-3000:] if self.log.exists() else ''}")
        return p

    def start(self) -> "PostgresServer":
        """Start the server and wait until it accepts connections."""
        self._as_user([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                       "-w", "-t", "60", "start"], timeout=90)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not listen:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: sessions are cut off, as when a database goes away)."""
        self._as_user([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60",
                       "stop"], timeout=90)

    def running(self) -> bool:
        """Whether the server is up."""
        p = subprocess.run((["runuser", "-u", self.user, "--"] if self.user else [])
                           + [str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
                           capture_output=True, timeout=30)
        return p.returncode == 0

    def close(self) -> None:
        """Stop the server (if up) and delete its folder."""
        try:
            if self.data.exists() and self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
