"""The client side of the hub protocol: :class:`HttpEndpoint`, and saved tokens.

A remote URL is ``http(s)://HOST[:PORT][/PREFIX]/OWNER/NAME``. Tokens come from
``DEMOAI_TOKEN``, else from what ``demoai login`` saved in
``$XDG_CONFIG_HOME/demoai/credentials.json`` (mode 0600) for the URL's origin.
Every error answer becomes the typed error the hub raised (:mod:`demoai.http.errors`);
connection failures are retried a few times, then raised as ``RemoteError`` (the plumbing
is :class:`~demoai.http.client.HttpClient`'s).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from demoai.errors import ProtocolError
from demoai.http.client import HttpClient
from demoai.store import atomic_write, parse_remote_url
from demoai.store.transfer import Endpoint, Needs

__all__ = ["HttpEndpoint", "parse_remote_url", "save_token", "load_token", "HubClient",
           "credentials_path"]

_RETRIES = 3    # every hub call is safe to repeat: content-addressed puts, offsets, CAS refs


def _origin(url: str) -> str:
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


def credentials_path() -> Path:
    """Where ``demoai login`` keeps tokens (``$XDG_CONFIG_HOME/demoai/credentials.json``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "demoai" / "credentials.json"


def _read_credentials() -> dict[str, str]:
    try:
        data = json.loads(credentials_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_token(url: str, token: str) -> Path:
    """Remember ``token`` for the origin of ``url`` (file mode 0600)."""
    creds = _read_credentials()
    creds[_origin(url)] = token
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(creds, indent=1, sort_keys=True).encode())
    os.chmod(path, 0o600)
    return path


def load_token(url: str) -> str | None:
    """``DEMOAI_TOKEN``, else the token saved for the origin of ``url``."""
    return os.environ.get("DEMOAI_TOKEN") or _read_credentials().get(_origin(url))


class HubClient(HttpClient):
    """The client of one hub: auth header, retries, typed errors, byte counts."""

    def __init__(self, base: str, token: str | None = None, timeout: float = 120.0) -> None:
        super().__init__(base, token, timeout=timeout, retries=_RETRIES)


def _frames(data: bytes) -> Iterator[bytes]:
    i = 0
    while i < len(data):
        if i + 8 > len(data):
            raise ProtocolError("frame stream: truncated length")
        n = int.from_bytes(data[i:i + 8], "big")
        i += 8
        if i + n > len(data):
            raise ProtocolError("frame stream: truncated frame")
        yield data[i:i + n]
        i += n


class HttpEndpoint(Endpoint):
    """A repository on a hub, as one side of :func:`demoai.store.transfer.transfer`."""

    GET_BATCH = 2000   # ids per download request
    remote = True

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        base, self.owner, self.name = parse_remote_url(url)
        self.client = HubClient(base, token if token is not None else load_token(url))
        self.prefix = f"/api/v1/repos/{self.owner}/{self.name}"

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def _json(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return self.client.json(method, self.prefix + path, body, **kw)

    def create(self, private: bool = True, description: str = "") -> dict:
        """Create this repository on the hub (owned by the token's user, who must be the
        URL's owner: the hub refuses otherwise, rather than create it under another name)."""
        return self.client.json("POST", "/api/v1/repos", {"owner": self.owner, "name": self.name,
                                                          "private": private, "description": description})

    def whoami(self) -> dict:
        """Who the token belongs to (``{"user", "scope"}``)."""
        return self.client.json("GET", "/api/v1/user")

    def refs(self) -> dict[str, Any]:
        return self._json("GET", "/refs")

    def needs(self, wants: list[str], haves: list[str]) -> Needs:
        return Needs.from_dict(self._json("POST", "/needs", {"wants": wants, "haves": haves}))

    def missing_git(self, ids: list[str]) -> list[str]:
        return self._json("POST", "/git/missing", {"ids": ids})["missing"]

    def missing_chunks(self, ids: list[str]) -> list[str]:
        return self._json("POST", "/chunks/missing", {"ids": ids})["missing"]

    def missing_files(self, files: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        out = self._json("POST", "/files/missing", {"files": [list(f) for f in files]})["missing"]
        return [tuple(f) for f in out]

    def _download(self, path: str, ids: list[str]) -> Iterator[bytes]:
        for i in range(0, len(ids), self.GET_BATCH):
            resp = self.client.request("POST", self.prefix + path, json_body={"ids": ids[i:i + self.GET_BATCH]})
            yield from _frames(resp.content)

    def git_frames(self, ids: list[str]) -> Iterator[bytes]:
        return self._download("/git/get", ids)

    def chunk_frames(self, ids: list[str]) -> Iterator[bytes]:
        # Chunks average ~64 KiB stored; smaller batches keep an answer near 8 MiB.
        for i in range(0, len(ids), 128):
            resp = self.client.request("POST", self.prefix + "/chunks/get", json_body={"ids": ids[i:i + 128]})
            yield from _frames(resp.content)

    def put_git(self, frame: bytes) -> int:
        return self.client.request("POST", self.prefix + "/git/put", content=frame).json()["added"]

    def put_chunks(self, frame: bytes) -> int:
        return self.client.request("POST", self.prefix + "/chunks/put", content=frame).json()["added"]

    def read_file(self, table_id: str, rel: str, digest: str, offset: int, length: int) -> tuple[bytes, int]:
        resp = self.client.request("POST", self.prefix + "/files/read", json_body={
            "table_id": table_id, "rel": rel, "digest": digest, "offset": offset, "length": length})
        try:
            size = int(resp.headers["X-File-Size"])
        except (KeyError, ValueError):
            raise ProtocolError("file read answer without X-File-Size") from None
        return resp.content, size

    def upload_offset(self, digest: str) -> int:
        return int(self._json("GET", f"/uploads/{digest}")["offset"])

    def upload_part(self, digest: str, offset: int, data: bytes, size: int | None = None) -> int:
        params = {"offset": offset} if size is None else {"offset": offset, "size": size}
        resp = self.client.request("PUT", self.prefix + f"/uploads/{digest}", content=data,
                                   params=params)
        return int(resp.json()["offset"])

    def finish_upload(self, table_id: str, rel: str, digest: str) -> None:
        self._json("POST", f"/uploads/{digest}/finish", {"table_id": table_id, "rel": rel})

    def update_refs(self, updates: list[dict[str, Any]], force: bool = False) -> list[dict[str, Any]]:
        return self._json("POST", "/refs", {"updates": updates, "force": force})["updated"]
