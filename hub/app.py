"""The hub's web application: ``create_app(data_dir)``.

One data directory holds everything (embedded default)::

    <data>/hub.sqlite3     users, tokens, repositories, search index (hub/meta.py)
    <data>/repos/O/N/      each repository's objects, chunks and tables (hub/storage.py)

Routes: the sync protocol under ``/api/v1/repos/{owner}/{name}/`` (hub/protocol.py), the
JSON read API and the server-rendered pages (hub/api.py, hub/pages.py). Every typed error
becomes its status code and ``{"error": {"code", "message", "fields"}}``.

Access: a bearer token (``Authorization: Bearer ...``, or the ``demoai_token`` cookie the
login page sets) names a user and a scope. Anyone may read a public repository; only its
owner reads a private one (others get 404, so private names do not leak); only the owner,
with a write-scoped token, writes. A bad token is 401, a read token writing 403.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from demoai import __version__
from demoai.errors import (AuthenticationRequired, DemoAIError, PermissionDenied, RemoteNotFound,
                           RequestTooLarge)
from demoai.http_errors import error_body, status_for

from demoai.hub.meta import MetaStore, RepoInfo, SqliteMetaStore, check_name
from demoai.hub.storage import LocalRepoStorage, RepoStorage

__all__ = ["create_app", "Hub", "Principal", "MAX_BODY"]

MAX_BODY = 24 << 20   # a protocol frame or file part (8 MiB) with room to spare
MAX_JSON = 4 << 20


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user and the token's scope, or anonymous (``user`` None)."""

    user: str | None = None
    scope: str | None = None

    @property
    def can_write(self) -> bool:
        return self.scope == "write"


@dataclass
class Hub:
    """The hub's state: metadata, repository storage, and what runs after a push."""

    data: Path
    meta: MetaStore
    storage: RepoStorage
    push_hooks: list[Callable[["Hub", str, str], None]] = field(default_factory=list)

    @classmethod
    def open(cls, data: str | os.PathLike) -> "Hub":
        """The embedded default: SQLite and the local disk under ``data``."""
        data = Path(data).resolve()
        data.mkdir(parents=True, exist_ok=True)
        return cls(data, SqliteMetaStore(data / "hub.sqlite3"), LocalRepoStorage(data / "repos"))

    def principal(self, request: Request) -> Principal:
        """The caller, from the bearer token or the login cookie; 401 for an unknown token."""
        auth = request.headers.get("authorization", "")
        secret = None
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthenticationRequired("malformed Authorization header (use: Bearer TOKEN)")
            secret = value.strip()
        elif request.cookies.get("demoai_token"):
            secret = request.cookies["demoai_token"]
        if secret is None:
            return Principal()
        tok = self.meta.token_for(secret)
        if tok is None:
            raise AuthenticationRequired("unknown or revoked token")
        return Principal(tok.user, tok.scope)

    def can_read(self, info: RepoInfo, who: Principal) -> bool:
        return not info.private or (who.user is not None and who.user == info.owner)

    def visible_repos(self, who: Principal) -> list[RepoInfo]:
        return [r for r in self.meta.repos() if self.can_read(r, who)]

    def access(self, owner: str, name: str, who: Principal, *, write: bool = False) -> RepoInfo:
        """The repository if ``who`` may read it (``write``: and write it); typed errors else."""
        check_name(owner, "owner")
        check_name(name, "repository name")
        info = self.meta.get_repo(owner, name)
        if info is None or not self.can_read(info, who):
            if write and info is None and who.user is None:
                raise AuthenticationRequired("a write-scoped token is needed")
            raise RemoteNotFound(f"repository {owner}/{name} not found", repo=f"{owner}/{name}")
        if write:
            if who.user is None:
                raise AuthenticationRequired("a write-scoped token is needed")
            if who.user != info.owner:
                raise PermissionDenied(f"{who.user} may not write {owner}/{name}")
            if not who.can_write:
                raise PermissionDenied("this token is read-only")
        return info

    def create_repo(self, who: Principal, owner: str, name: str, private: bool,
                    description: str = "") -> RepoInfo:
        """A new, empty repository owned by the caller."""
        if who.user is None:
            raise AuthenticationRequired("a write-scoped token is needed to create a repository")
        if not who.can_write:
            raise PermissionDenied("this token is read-only")
        if owner != who.user:
            raise PermissionDenied(f"{who.user} may not create repositories for {owner}")
        info = self.meta.create_repo(owner, name, private, description)
        self.storage.create(owner, name)
        return info

    def after_push(self, owner: str, name: str) -> None:
        self.meta.touch_repo(owner, name)
        for hook in self.push_hooks:
            hook(self, owner, name)


class _BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before the route reads them."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    too_big = int(v) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    return await _too_large(self.limit, send)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(self.limit, send)


class _TooLarge(Exception):
    pass


async def _too_large(limit: int, send: Callable) -> None:
    resp = JSONResponse(error_body(RequestTooLarge(f"request body over {limit} bytes", limit=limit)),
                        status_code=413)
    await resp({"type": "http"}, None, send)


def create_app(data: str | os.PathLike, *, max_body: int = MAX_BODY) -> FastAPI:
    """The hub over the data directory ``data`` (created if missing)."""
    hub = Hub.open(data)
    app = FastAPI(title="DemoAI hub", version=__version__,
                  description="Share DemoAI repositories: datasets, prompts, models, agents and "
                              "sessions. Push/pull protocol, JSON API and web pages.")
    app.state.hub = hub

    @app.exception_handler(DemoAIError)
    async def _typed(request: Request, exc: DemoAIError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=status_for(exc))

    from demoai.hub.protocol import repos_router, router as protocol_router
    app.include_router(repos_router)
    app.include_router(protocol_router)
    from demoai.hub.api import router as api_router
    from demoai.hub.pages import install as install_pages
    app.include_router(api_router)
    install_pages(app, hub)
    app.add_middleware(_BodyLimit, limit=max_body)
    return app
