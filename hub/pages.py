"""The hub's web pages: server-rendered Jinja2 templates (``hub/templates``) and one
stylesheet (``hub/static``), no JavaScript build step.

    /                                       repositories the visitor may read
    /search?q=&mode=                        prompts, agents, dataset cards: by words or meaning
    /login, /logout                         the token cookie (httponly, samesite=strict)
    /{owner}/{name}?ref=                    branches, tags, sessions, artifacts, history
    /{owner}/{name}/commit/{sha}            a commit with its typed diffs
    /{owner}/{name}/blob/{ref}/{path}       an artifact: prompt, agent, dataset, model...
    /{owner}/{name}/sessions/{session}      an agent session's timeline

:func:`install` registers them after every API route, so they never shadow ``/api``,
``/docs`` or ``/openapi.json``; they stay out of the OpenAPI spec. Pages read through
:mod:`demoai.hub.views`, like the JSON API, with the same access rules: a private
repository is a 404 page for everyone but its owner. Templates autoescape everything.
"""
from __future__ import annotations

import datetime
import logging
import shlex
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from demoai.errors import AuthenticationRequired, DemoAIError
from demoai.http.errors import status_for

from demoai.hub import indexer, semantic, views
from demoai.hub.app import Hub, Principal

__all__ = ["install", "router", "COOKIE", "RESERVED"]

COOKIE = "demoai_token"
# First path segments that belong to the hub itself, never to an owner's pages.
RESERVED = frozenset({"api", "static", "docs", "redoc", "openapi.json", "login", "logout",
                      "search", "favicon.ico"})
_HERE = Path(__file__).resolve().parent
log = logging.getLogger("demoai.hub.pages")
router = APIRouter(include_in_schema=False)


# ---------------------------------------------------------------------------- rendering
def _when(ts: Any) -> str:
    try:
        return datetime.datetime.fromtimestamp(float(ts), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def _size(n: Any) -> str:
    n = float(n or 0)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def _cell(v: Any, width: int = 160) -> str:
    text = "" if v is None else v if isinstance(v, str) else str(v)
    return text if len(text) <= width else text[:width - 1] + "…"


def _diff_lines(text: str) -> list[tuple[str, str]]:
    """(css class, line) for a unified diff."""
    out = []
    for line in (text or "").splitlines():
        cls = ("hunk" if line.startswith("@@") else "meta" if line.startswith(("+++", "---"))
               else "add" if line.startswith("+") else "del" if line.startswith("-") else "ctx")
        out.append((cls, line))
    return out


def _columns(rows: list[dict]) -> list[str]:
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    return list(cols)


_env = jinja2.Environment(loader=jinja2.FileSystemLoader(_HERE / "templates"),
                          autoescape=True, trim_blocks=True, lstrip_blocks=True)
_env.filters.update(when=_when, size=_size, cell=_cell, difflines=_diff_lines,
                    columns=_columns, sh=lambda s: shlex.quote(str(s)),
                    url=lambda s: quote(str(s), safe="/"))


def _render(request: Request, template: str, who: Principal, code: int = 200, **ctx: Any) -> HTMLResponse:
    base = str(request.base_url).rstrip("/")
    html = _env.get_template(template).render(request=request, who=who, base=base, **ctx)
    return HTMLResponse(html, status_code=code)


def _error(request: Request, status: int, message: str, who: Principal | None = None) -> HTMLResponse:
    titles = {400: "Bad request", 401: "Sign in needed", 403: "Forbidden", 404: "Not found",
              405: "Method not allowed", 409: "Conflict", 422: "Unprocessable", 500: "Server error",
              503: "Unavailable"}
    return _render(request, "error.html", who or Principal(), status, status=status,
                   title=titles.get(status, "Error"), message=message)


async def _page(request: Request, template: str, build: Callable[[Hub, Principal], dict[str, Any]]) -> Response:
    """Render ``template`` with what ``build`` returns (run in a worker thread: store
    calls block); typed errors become the error page with their status."""
    hub: Hub = request.app.state.hub
    who = Principal()
    try:
        who = hub.principal(request)
        ctx = await run_in_threadpool(build, hub, who)
        return _render(request, template, who, **ctx)
    except AuthenticationRequired as e:
        return _error(request, 401, f"{e} — log out and sign in again.", who)
    except DemoAIError as e:
        return _error(request, status_for(e), str(e), who)
    except Exception:   # noqa: BLE001 - a bug shows as a 500 page, and its traceback in the log
        log.exception("page %s failed", request.url.path)
        return _error(request, 500, "The hub failed to render this page.", who)


def _guard(owner: str) -> None:
    # /api/x, /static/x...: the hub's own paths answer 404 the way unknown paths do (JSON
    # for API clients), never as somebody's repository page.
    if owner in RESERVED:
        raise StarletteHTTPException(404, "Not Found")


# ---------------------------------------------------------------------------- pages
@router.get("/", response_class=HTMLResponse)
async def index(request: Request) -> Response:
    """The repositories the visitor may read."""
    return await _page(request, "index.html", lambda hub, who: {"repos": hub.visible_repos(who)})


@router.get("/search", response_class=HTMLResponse)
async def search(request: Request, q: str = "", mode: str = "hybrid") -> Response:
    """Search over the prompts, agents and dataset cards the visitor may read: by words,
    by meaning or both (an unknown ``mode`` is the default, hybrid)."""
    q = q[:500]
    mode = mode if mode in semantic.MODES else "hybrid"
    return await _page(request, "search.html",
                       lambda hub, who: {"q": q, "modes": semantic.MODES,
                                         "result": views.search(hub, who, q, mode=mode)})


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    """The form that takes an access token."""
    return _render(request, "login.html", Principal(), next=_next(request.query_params.get("next")))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the token and keep it in the login cookie (httponly, samesite=strict)."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    secret = (form.get("token") or [""])[0].strip()
    target = _next((form.get("next") or [""])[0])
    hub: Hub = request.app.state.hub
    tok = await run_in_threadpool(hub.meta.token_for, secret) if secret else None
    if tok is None:
        return _render(request, "login.html", Principal(), 401, next=target,
                       message="That token is unknown or revoked.")
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(COOKIE, secret, httponly=True, samesite="strict", path="/",
                    secure=request.url.scheme == "https", max_age=30 * 24 * 3600)
    return resp


@router.api_route("/logout", methods=["GET", "POST"])
async def logout(request: Request) -> Response:
    """Drop the login cookie."""
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return resp


def _next(target: str | None) -> str:
    # Only a path on this hub: an absolute or scheme-relative URL would be an open redirect.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/{owner}/{name}", response_class=HTMLResponse)
async def repo_page(request: Request, owner: str, name: str, ref: str = "") -> Response:
    """Artifacts at ``ref``, branches, tags, sessions and history of a repository."""
    _guard(owner)
    def build(hub: Hub, who: Principal) -> dict[str, Any]:
        with views.open_repo(hub, owner, name, who) as (info, repo):
            detail = views.repo_detail(info, repo)
            if detail["head_commit"] is None and not ref:
                return {"repo": detail, "log": None, "tree": None, "ref": ""}
            return {"repo": detail, "ref": ref, "log": views.history(repo, ref or None, 50),
                    "tree": views.tree(repo, ref or None)}
    return await _page(request, "repo.html", build)


@router.get("/{owner}/{name}/commit/{sha}", response_class=HTMLResponse)
async def commit_page(request: Request, owner: str, name: str, sha: str) -> Response:
    """A commit with its lineage and typed diffs."""
    _guard(owner)
    def build(hub: Hub, who: Principal) -> dict[str, Any]:
        with views.open_repo(hub, owner, name, who) as (info, repo):
            return {"repo": info.to_dict(), "c": views.commit_detail(repo, sha)}
    return await _page(request, "commit.html", build)


@router.get("/{owner}/{name}/blob/{rest:path}", response_class=HTMLResponse)
async def blob_page(request: Request, owner: str, name: str, rest: str, rows: str = "") -> Response:
    """An artifact at ``REF/PATH``: prompt, agent, dataset preview, model files."""
    _guard(owner)
    def build(hub: Hub, who: Principal) -> dict[str, Any]:
        n = int(rows) if rows.isdigit() else views.PREVIEW_ROWS
        with views.open_repo(hub, owner, name, who) as (info, repo):
            ref, path = views.split_ref_path(repo, rest)
            art = views.artifact_detail(repo, ref, path, min(n, 500))
            return {"repo": info.to_dict(), "a": art, "more": urlencode({"rows": min(n * 5, 500)})}
    return await _page(request, "blob.html", build)


@router.get("/{owner}/{name}/sessions/{session:path}", response_class=HTMLResponse)
async def session_page(request: Request, owner: str, name: str, session: str) -> Response:
    """An agent session's timeline, with clone and replay snippets."""
    _guard(owner)
    def build(hub: Hub, who: Principal) -> dict[str, Any]:
        with views.open_repo(hub, owner, name, who) as (info, repo):
            return {"repo": info.to_dict(), "t": views.session_timeline(repo, session)}
    return await _page(request, "session.html", build)


# ---------------------------------------------------------------------------- install
async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Unknown pages render the HTML error page; API paths keep FastAPI's JSON answer."""
    path = request.url.path
    wants_html = "text/html" in request.headers.get("accept", "")
    if path.startswith("/api/") or path in ("/openapi.json", "/docs", "/redoc") or not wants_html:
        return await http_exception_handler(request, exc)
    try:
        who = request.app.state.hub.principal(request)
    except DemoAIError:
        who = Principal()
    return _error(request, exc.status_code, str(exc.detail), who)


def install(app: FastAPI, hub: Hub) -> None:
    """Mount the stylesheet and the pages (after every route already registered) and
    register the search indexer's push hook."""
    indexer.install(hub)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
    app.include_router(router)
    app.add_exception_handler(StarletteHTTPException, _http_error)
