"""The app factory of ``demoai serve``: one repository over HTTP.

    app = create_app("path/to/repo", token="s3cret")
    uvicorn.run(app, host="127.0.0.1", port=8000)

Routes: ``/api/...`` (agents, sessions, runs, forks, replays, SSE progress; see
:mod:`demoai.server.agents_api`), ``/v1/...`` (OpenAI-compatible models and chat; see
:mod:`demoai.server.models_api`), ``/api/health``, and the OpenAPI spec at
``/openapi.json``. Every error answers with a status and ``{"error": {"code", "message",
"fields"}}`` (:mod:`demoai.http.errors`), which :class:`demoai.http.serve.ServeClient` turns back
into the same typed error; request validation answers 422 with code ``protocol_error``.
"""
from __future__ import annotations

import hmac
import json
import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from demoai import __version__
from demoai import errors as E
from demoai.http.errors import error_body, status_for
from demoai.porcelain import agent as A
from demoai.porcelain import open_repository
from demoai.server import agents_api, models_api
from demoai.server.metrics import install_metrics
from demoai.server.runs import RunManager

__all__ = ["create_app", "MAX_BODY"]

MAX_BODY = 16 << 20      # bytes; chat prompts are bounded by a model's context long before this
_BY_STATUS = {401: E.AuthenticationRequired, 403: E.PermissionDenied, 404: E.RemoteNotFound,
              413: E.RequestTooLarge}


def create_app(repo_path: str | os.PathLike, token: str | None = None, *, open_models: int = 3, max_tokens_cap: int | None = None,
               max_body: int = MAX_BODY) -> FastAPI:
    """A FastAPI app serving the repository at (or above) ``repo_path``.

    ``token``: every route then needs ``Authorization: Bearer TOKEN``. ``open_models``:
    models kept loaded, for ``/v1`` and agent runs alike (one pool). ``max_tokens_cap``: the
    most new tokens one chat request may ask for (None: the model's context). Agent runs go
    one at a time; a model call takes that model's lock, so runs and chat requests take
    turns on a model."""
    with open_repository(repo_path) as repo:         # NotARepository now, not per request
        root = repo.root
    runs = RunManager(root, workers=1)
    models = A.ModelPool(open_models)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        runs.shutdown()
        models.close()

    app = FastAPI(title="DemoAI", version=__version__, lifespan=lifespan,
                  description="Agents, sessions and models of one DemoAI repository.")
    app.state.root, app.state.runs, app.state.models = root, runs, models
    app.state.max_tokens_cap = max_tokens_cap
    app.include_router(agents_api.router)
    app.include_router(models_api.router)

    @app.get("/api/health", tags=["server"])
    def health() -> dict[str, Any]:
        """Liveness, the repository served and the version."""
        return {"ok": True, "repo": str(root), "version": __version__}

    install_metrics(app)
    _install_error_handlers(app)
    app.add_middleware(Guard, token=token or None, max_body=max_body)
    return app


def _json_error(exc: E.DemoAIError, status: int | None = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(exc), status_code=status or status_for(exc), headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(E.DemoAIError)
    async def demoai_error(request: Request, exc: E.DemoAIError) -> JSONResponse:
        return _json_error(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = [{k: e.get(k) for k in ("loc", "msg", "type")} for e in exc.errors()]
        first = errs[0] if errs else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(x) for x in first.get("loc") or [])
        err = E.ProtocolError(f"invalid request: {where}: {first.get('msg')}",
                              errors=jsonable_encoder(errs))
        return _json_error(err, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cls = _BY_STATUS.get(exc.status_code, E.ProtocolError)
        return _json_error(cls(str(exc.detail), status=exc.status_code), exc.status_code,
                           getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        body = {"error": {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}",
                          "fields": {}}}
        return JSONResponse(body, status_code=500)


class Guard:
    """ASGI middleware: the bearer token (when set) on every route, and the body size bound."""

    def __init__(self, app: Any, token: str | None, max_body: int) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body = max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":            # lifespan; there are no websocket routes
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.token is not None:
            auth = headers.get(b"authorization", b"")
            scheme, _, given = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                why = "no bearer token" if not auth else "the bearer token is not this server's"
                return await _send(send, E.AuthenticationRequired(
                    f"{why} (Authorization: Bearer TOKEN)"), {"www-authenticate": "Bearer"})
        try:
            length = int(headers.get(b"content-length", b"0"))
        except ValueError:
            length = 0
        if length > self.max_body:
            return await _send(send, self._too_large(length))
        if b"content-length" not in headers and b"chunked" in headers.get(b"transfer-encoding", b""):
            # No length announced: read the body here, within the bound, and hand it on whole.
            chunks, size, more = [], 0, True
            while more:
                msg = await receive()
                if msg["type"] != "http.request":
                    return
                chunks.append(msg.get("body", b""))
                size += len(chunks[-1])
                more = msg.get("more_body", False)
                if size > self.max_body:
                    return await _send(send, self._too_large(size))
            receive = _replay(b"".join(chunks), receive)
        return await self.app(scope, receive, send)

    def _too_large(self, size: int) -> E.RequestTooLarge:
        return E.RequestTooLarge(f"request body of {size} bytes is over {self.max_body}",
                                 limit=self.max_body)


def _replay(body: bytes, receive: Any) -> Any:
    """``receive`` that gives ``body`` once, then waits on the real one (disconnects)."""
    sent = False

    async def inner() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return inner


async def _send(send: Any, exc: E.DemoAIError, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(error_body(exc)).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    hdrs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status_for(exc), "headers": hdrs})
    await send({"type": "http.response.body", "body": body})
