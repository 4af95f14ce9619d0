"""The HTTP plumbing every DemoAI client shares: one httpx client per server, its base URL and
bearer token, timeouts, retries of calls that never reached the server, byte counts, and
every error answer raised again as the typed error the server raised
(:func:`demoai.http.errors.raise_for_status`). A server that cannot be reached is a
``RemoteError``.

:class:`~demoai.http.hub.HubClient` (the hub) and :class:`~demoai.http.serve.ServeClient`
(``demoai serve``) are this client with their own routes.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any, Iterator

import httpx

from demoai.errors import RemoteError
from demoai.http.errors import raise_for_status

__all__ = ["HttpClient"]


class HttpClient:
    """Calls to one server at ``base_url``; ``token`` is sent as ``Authorization: Bearer``.

    ``timeout`` bounds each read and write (``connect_timeout``, default the same, the
    connection); ``retries`` is how many times a call that failed to get an answer
    (connection refused or reset, timeout) is tried again, with backoff. Only ask for retries
    where the server's calls are safe to repeat. ``bytes_up`` and ``bytes_down`` count the
    bodies sent and received."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float | None = 120.0,
                 connect_timeout: float | None = None, retries: int = 0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.http = httpx.Client(base_url=self.base_url, headers=headers,
                                 timeout=httpx.Timeout(timeout, connect=connect_timeout or timeout))
        self.bytes_up = 0
        self.bytes_down = 0
        self._count = threading.Lock()     # calls may come from several threads

    @property
    def base(self) -> str:
        """The base URL (no trailing slash)."""
        return self.base_url

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> "HttpClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unreachable(self, e: httpx.TransportError) -> RemoteError:
        return RemoteError(f"cannot reach {self.base_url}: {e.__class__.__name__}: {e}",
                           url=self.base_url)

    def request(self, method: str, path: str, *, json_body: Any = None,
                content: bytes | None = None, params: dict | None = None) -> httpx.Response:
        """One call: ``json_body`` sent as JSON, or ``content`` as raw bytes. Retried as the
        client was told; an error answer raises its typed error."""
        if content is not None:
            body, headers = content, {"Content-Type": "application/octet-stream"}
        elif json_body is not None:
            body, headers = json.dumps(json_body).encode(), {"Content-Type": "application/json"}
        else:
            body, headers = None, None
        for attempt in range(self.retries + 1):
            try:
                resp = self.http.request(method, path, content=body, params=params, headers=headers)
                with self._count:
                    self.bytes_up += len(body or b"")
                break
            except httpx.TransportError as e:
                if attempt == self.retries:
                    raise self._unreachable(e) from None
                time.sleep(0.3 * 2 ** attempt)
        with self._count:
            self.bytes_down += len(resp.content)
        raise_for_status(resp.status_code, resp.content, f"{method} {path}")
        return resp

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """:meth:`request` with a JSON body (``body``), returning the parsed JSON answer."""
        return self.request(method, path, json_body=body, **kw).json()

    @contextlib.contextmanager
    def stream_lines(self, method: str, path: str, *, params: dict | None = None) -> Iterator[Iterator[str]]:
        """An answer read as it arrives, line by line, with no read timeout (server-sent
        events); an error answer raises its typed error, an unreachable server (also
        mid-stream) a ``RemoteError``."""
        try:
            with self.http.stream(method, path, params=params, timeout=None) as r:
                if not 200 <= r.status_code < 300:
                    raise_for_status(r.status_code, r.read(), f"{method} {path}")
                yield r.iter_lines()
        except httpx.TransportError as e:
            raise self._unreachable(e) from e
