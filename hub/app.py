"""The hub's web application: ``create_app(data_dir)``.

One data directory holds everything (embedded default)::

    <data>/hub.sqlite3     users, tokens, repositories, search index (hub/meta.py)
    <data>/repos/O/N/      each repository's objects, chunks and tables (hub/storage.py)

Routes: the sync protocol under ``/api/v1/repos/{owner}/{name}/`` (hub/protocol.py), the
JSON read API and the server-rendered pages (hub/api.py, hub/pages.py). Every typed error
becomes its status code and ``{"error": {"code", "message", "fields"}}``.

Access: a bearer token (``Authorization: Bearer ...``, or the ``demoai_token`` cookie the
login page sets) names a user and a scope. Anyone may read a public repository; only its
owner reads a private one; only the owner, with a write-scoped token, writes. The answers
never tell a private repository of someone else from a missing one (:meth:`Hub.access`):

- an unknown or revoked token: 401, whatever the route and repository;
- an anonymous write (any write route): 401, whether or not the repository exists;
- a repository the caller may not read (someone else's private one, or none at all): 404,
  with the same body, for reads and writes alike;
- a readable repository the caller may not write (someone else's public one, or the
  owner's own with a read token): 403.

Backends (:class:`Backends`, ``create_app(backends=...)`` or the environment): by default the
embedded SQLite file and local disk above. ``DEMOAI_HUB_DATABASE_URL=postgresql://...`` puts
the metadata on PostgreSQL (hub/meta_pg.py); with it, ``DEMOAI_HUB_OBJECTS=s3://BUCKET/PREFIX``
puts every repository's objects in an S3-compatible bucket and its refs in PostgreSQL, the
data directory then holding only this process's cache (hub/storage_s3.py). The bucket's
server is ``DEMOAI_HUB_S3_ENDPOINT`` (else ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, else
AWS); credentials and region come from the usual ``AWS_*`` variables. A database or bucket
that cannot be reached answers 503 ``storage_unavailable`` (with ``Retry-After``).

Limits (:class:`Limits`, ``create_app(limits=...)`` or the ``DEMOAI_HUB_*`` environment
variables): request bodies (``max_body`` for the binary protocol routes, ``max_json`` for
everything else), and the bytes a user may keep staged in unfinished table-file uploads
(``max_staged``, over all of the user's repositories; staged parts untouched for
``staged_ttl`` seconds are dropped). Each is refused with 413 and nothing stored.
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from demoai import __version__
from demoai.errors import (AuthenticationRequired, DemoAIError, InvalidRefName, PermissionDenied,
                           RemoteNotFound, RequestTooLarge)
from demoai.http.errors import error_body, status_for

from demoai.hub.meta import MetaStore, RepoInfo, SqliteMetaStore, check_name
from demoai.errors import StorageUnavailable
from demoai.hub.storage import LocalRepoStorage, RepoStorage

__all__ = ["create_app", "Hub", "Principal", "Limits", "Backends", "MAX_BODY", "MAX_JSON",
           "MAX_STAGED", "STAGED_TTL"]

MAX_BODY = 24 << 20   # a protocol frame or file part (8 MiB) with room to spare
# Every other body is JSON (or a login form). The largest the protocol's models allow is a
# `needs` request (10k wants + 100k haves, ~44 bytes an id: ~4.8 MB), so that fits.
MAX_JSON = 8 << 20
MAX_STAGED = 2 << 30  # bytes of unfinished table-file uploads one user may keep on the hub
STAGED_TTL = 7 * 24 * 3600.0   # seconds an untouched unfinished upload is kept

_ENV = {"max_body": "DEMOAI_HUB_MAX_BODY", "max_json": "DEMOAI_HUB_MAX_JSON",
        "max_staged": "DEMOAI_HUB_MAX_STAGED", "staged_ttl": "DEMOAI_HUB_STAGED_TTL"}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def _size(text: str, var: str) -> int:
    m = _SIZE.match(text)
    if not m:
        raise InvalidRefName(f"{var}={text!r}: expected a byte count such as 2147483648 or 2G",
                             name=var)
    return int(m.group(1)) << (10 * " kmgt".index((m.group(2) or " ").lower()))


@dataclass(frozen=True)
class Limits:
    """What one request and one user may make the hub hold (see the module docstring)."""

    max_body: int = MAX_BODY
    max_json: int = MAX_JSON
    max_staged: int = MAX_STAGED
    staged_ttl: float = STAGED_TTL

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Limits":
        """The defaults, overridden by ``DEMOAI_HUB_MAX_BODY``, ``..._MAX_JSON``,
        ``..._MAX_STAGED`` (bytes; ``K``/``M``/``G`` suffixes) and ``..._STAGED_TTL`` (seconds)."""
        env = os.environ if env is None else env
        kw: dict[str, Any] = {}
        for key, var in _ENV.items():
            raw = env.get(var, "").strip()
            if not raw:
                continue
            if key == "staged_ttl":
                try:
                    kw[key] = float(raw)
                except ValueError:
                    raise InvalidRefName(f"{var}={raw!r}: expected seconds", name=var) from None
            else:
                kw[key] = _size(raw, var)
        return cls(**kw)


@dataclass(frozen=True)
class Backends:
    """Where the hub keeps its metadata and objects (see the module docstring): None is the
    embedded default for each."""

    database_url: str | None = None      # postgresql://...
    objects: str | None = None           # s3://BUCKET/PREFIX (needs database_url)
    s3_endpoint: str | None = None       # an S3-compatible server's URL

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Backends":
        """``DEMOAI_HUB_DATABASE_URL``, ``DEMOAI_HUB_OBJECTS`` and ``DEMOAI_HUB_S3_ENDPOINT``
        (else ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``); unset or empty: the default."""
        env = os.environ if env is None else env

        def get(*names: str) -> str | None:
            return next((env[n].strip() for n in names if env.get(n, "").strip()), None)
        return cls(get("DEMOAI_HUB_DATABASE_URL"), get("DEMOAI_HUB_OBJECTS"),
                   get("DEMOAI_HUB_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"))

    def describe(self) -> str:
        """A line for people (never the database URL, which may hold a password)."""
        meta = "PostgreSQL" if self.database_url else "SQLite"
        return f"{meta} + {self.objects if self.objects else 'local disk'}"

    def open(self, data: Path) -> tuple[MetaStore, RepoStorage]:
        """The metadata store and repository storage these settings name, over ``data``."""
        if self.objects and not self.database_url:
            raise InvalidRefName("DEMOAI_HUB_OBJECTS needs DEMOAI_HUB_DATABASE_URL: the refs of "
                                 "repositories whose objects are in a bucket live in PostgreSQL",
                                 name="DEMOAI_HUB_OBJECTS")
        if not self.database_url:
            return SqliteMetaStore(data / "hub.sqlite3"), LocalRepoStorage(data / "repos")
        from demoai.hub.meta_pg import PostgresMetaStore
        meta = PostgresMetaStore(self.database_url)
        if not self.objects:
            return meta, LocalRepoStorage(data / "repos")
        from demoai.hub.objects_s3 import ObjectBucket
        from demoai.hub.storage_s3 import S3RepoStorage
        bucket = ObjectBucket(self.objects, self.s3_endpoint)
        bucket.check()
        return meta, S3RepoStorage(data, bucket, meta)


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
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def open(cls, data: str | os.PathLike, limits: Limits | None = None,
             backends: Backends | None = None) -> "Hub":
        """The hub over ``data``: SQLite and the local disk there by default, or what
        ``backends`` (default :meth:`Backends.from_env`) names."""
        data = Path(data).resolve()
        data.mkdir(parents=True, exist_ok=True)
        meta, storage = (backends or Backends.from_env()).open(data)
        return cls(data, meta, storage, limits=limits or Limits())

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
        """Whether ``who`` may read ``info``: public, or the caller's own."""
        return not info.private or (who.user is not None and who.user == info.owner)

    def visible_repos(self, who: Principal) -> list[RepoInfo]:
        """The repositories ``who`` may read."""
        return [r for r in self.meta.repos() if self.can_read(r, who)]

    def access(self, owner: str, name: str, who: Principal, *, write: bool = False) -> RepoInfo:
        """The repository if ``who`` may read it (``write``: and write it); typed errors else.

        Each answer depends only on what the caller may already know, so none tells a
        private repository of someone else from a missing one: an anonymous write is
        ``AuthenticationRequired`` before the repository is looked up; an unreadable or
        missing repository is the same ``RemoteNotFound`` for reads and writes; only a
        readable one can be ``PermissionDenied``."""
        check_name(owner, "owner")
        check_name(name, "repository name")
        if write and who.user is None:
            raise AuthenticationRequired("a write-scoped token is needed")
        info = self.meta.get_repo(owner, name)
        if info is None or not self.can_read(info, who):
            raise RemoteNotFound(f"repository {owner}/{name} not found", repo=f"{owner}/{name}")
        if write:
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

    def expire_staged(self) -> int:
        """Drop every user's unfinished uploads untouched for ``limits.staged_ttl`` seconds
        (uploads do this for their own user as they go); returns how many were dropped."""
        return self.storage.expire_staged([u.name for u in self.meta.users()], self.limits.staged_ttl)

    def after_push(self, owner: str, name: str) -> None:
        """Record the push and run the push hooks (the search indexer)."""
        # The refs have moved: a database gone just now must not turn the push into a 503.
        with contextlib.suppress(StorageUnavailable):
            self.meta.touch_repo(owner, name)
        for hook in self.push_hooks:
            hook(self, owner, name)


class _BodyLimit:
    """Refuse request bodies over their limit with 413, before the route reads them.

    Paths matching ``binary`` (the protocol's frame and part uploads) may carry up to
    ``max_body`` bytes and stream through; every other body (JSON, forms) is read here in
    full, up to ``max_json`` bytes, and handed on whole. Reading it here, rather than
    counting as the route reads, matters: FastAPI turns any error raised while it parses a
    JSON body into a 400, which would hide the 413."""

    def __init__(self, app: Any, max_body: int, max_json: int, binary: re.Pattern[str]) -> None:
        self.app, self.max_body, self.max_json, self.binary = app, max_body, max_json, binary

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        streamed = bool(self.binary.match(scope.get("path", "")))
        limit = self.max_body if streamed else self.max_json
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    too_big = int(v) > limit
                except ValueError:
                    too_big = True
                if too_big:
                    return await _too_large(limit, send)
        if not streamed:
            return await self._buffered(scope, receive, send, limit)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(limit, send)

    async def _buffered(self, scope: dict, receive: Callable, send: Callable, limit: int) -> None:
        parts: list[bytes] = []
        seen = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":     # the client went away
                return
            body = msg.get("body", b"")
            seen += len(body)
            if seen > limit:
                return await _too_large(limit, send)
            parts.append(body)
            if not msg.get("more_body", False):
                break
        pending = [{"type": "http.request", "body": b"".join(parts), "more_body": False}]

        async def replay() -> dict:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)


class _TooLarge(Exception):
    pass


async def _too_large(limit: int, send: Callable) -> None:
    resp = JSONResponse(error_body(RequestTooLarge(f"request body over {limit} bytes", limit=limit)),
                        status_code=413)
    await resp({"type": "http"}, None, send)


def create_app(data: str | os.PathLike, *, max_body: int | None = None,
               limits: Limits | None = None, backends: Backends | None = None) -> FastAPI:
    """The hub over the data directory ``data`` (created if missing).

    ``limits`` defaults to :meth:`Limits.from_env`; ``max_body`` overrides its body limit.
    ``backends`` defaults to :meth:`Backends.from_env`."""
    limits = limits or Limits.from_env()
    if max_body is not None:
        limits = replace(limits, max_body=max_body)
    hub = Hub.open(data, limits, backends)
    app = FastAPI(title="DemoAI hub", version=__version__,
                  description="Share DemoAI repositories: datasets, prompts, models, agents and "
                              "sessions. Push/pull protocol, JSON API and web pages.")
    app.state.hub = hub

    @app.exception_handler(DemoAIError)
    async def _typed(request: Request, exc: DemoAIError) -> JSONResponse:
        if isinstance(exc, StorageUnavailable):     # the database or bucket: try again soon
            return JSONResponse(error_body(exc), status_code=503, headers={"Retry-After": "5"})
        return JSONResponse(error_body(exc), status_code=status_for(exc))

    from demoai.hub.protocol import BINARY_PATHS, repos_router, router as protocol_router
    app.include_router(repos_router)
    app.include_router(protocol_router)
    from demoai.hub.api import router as api_router
    from demoai.hub.pages import install as install_pages
    app.include_router(api_router)
    install_pages(app, hub)
    app.add_middleware(_BodyLimit, max_body=limits.max_body, max_json=limits.max_json,
                       binary=BINARY_PATHS)
    return app
