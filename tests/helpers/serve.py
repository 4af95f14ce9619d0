"""``demoai serve`` as a real process on 127.0.0.1 for the HTTP tests: started, waited for
(``/api/health``), and stopped."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.helpers.tiny import free_port

__all__ = ["serving"]


@contextlib.contextmanager
def serving(root: Path, home: Path, token: str, **env: str) -> Iterator[str]:
    """Serve the repository at ``root`` (``HOME`` at ``home``, bearer ``token``, one LLM
    thread, offline); yields the base URL. ``env`` adds environment variables. The server's
    log is ``root.parent / "serve.log"``, shown when it fails to start."""
    full = {**os.environ, "DEMOAI_SERVE_TOKEN": token, "DEMOAI_LLM_THREADS": "1", "HOME": str(home),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **env}
    port = free_port()
    log_path = root.parent / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "demoai.cli", "serve", str(root), "--port", str(port),
                                 "--log-level", "warning"], env=full, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/api/health", headers={"Authorization": f"Bearer {token}"}).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"demoai serve did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        try:
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
