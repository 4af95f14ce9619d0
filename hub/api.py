"""The hub's JSON read API: ``router``, everything the web pages show, under ``/api/v1``.

Reads follow the hub's access rules (a private repository is 404 for everyone but its
owner). Each answer has a response model, so ``/openapi.json`` documents its shape; the
data comes from :mod:`demoai.hub.views` (the porcelain's browse verbs behind the hub's
access rules), the same functions the pages render.

    GET /api/v1/repos                                   repositories the caller may read
    GET /api/v1/repos/{owner}/{name}                    info, branches, tags, sessions, HEAD
    GET /api/v1/repos/{owner}/{name}/commits?ref=&limit=
    GET /api/v1/repos/{owner}/{name}/commits/{sha}      commit, lineage, typed diff
    GET /api/v1/repos/{owner}/{name}/tree?ref=          artifacts at a revision
    GET /api/v1/repos/{owner}/{name}/artifacts/{path}?ref=&rows=
    GET /api/v1/repos/{owner}/{name}/sessions[/{session}]
    GET /api/v1/search?q=&mode=hybrid|semantic|text     prompts, agents, dataset cards
"""
from __future__ import annotations

from typing import Any, Callable, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from demoai.hub import views
from demoai.hub.app import Hub, Principal

__all__ = ["router"]


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: dict[str, Any] = {}


class ErrorBody(BaseModel):
    """Every typed error: the client raises the same error class again from ``code``."""

    error: ErrorDetail


router = APIRouter(prefix="/api/v1", tags=["read"], responses={
    401: {"model": ErrorBody, "description": "Unknown or revoked token"},
    404: {"model": ErrorBody, "description": "No such repository (or a private one), revision, "
                                             "path or session"}})


def _hub(request: Request) -> Hub:
    return request.app.state.hub


def _who(request: Request) -> Principal:
    return _hub(request).principal(request)


async def _read(request: Request, owner: str, name: str, who: Principal,
                fn: Callable[[Any], Any]) -> Any:
    """Run ``fn(repo)`` on the readable repository in a worker thread (store calls block)."""
    def work() -> Any:
        with views.open_repo(_hub(request), owner, name, who) as (_, repo):
            return fn(repo)
    return await run_in_threadpool(work)


# ---------------------------------------------------------------------------- shapes
class _Open(BaseModel):
    # Typed diffs and artifact details carry kind-specific keys: documented, not dropped.
    model_config = ConfigDict(extra="allow")


class Repo(BaseModel):
    owner: str
    name: str
    full_name: str
    private: bool
    description: str
    created: float
    updated: float


class Branch(BaseModel):
    name: str
    ref: str
    commit: str
    default: bool = False


class Tag(BaseModel):
    name: str
    ref: str
    commit: str


class SessionInfo(BaseModel):
    name: str
    commit: str | None
    steps: int
    status: str
    agent: str
    head: str
    parent: dict[str, Any] | None = None
    meta: dict[str, Any] = {}
    updated: int


class RepoDetail(Repo):
    head: str | None
    default_branch: str | None
    head_commit: str | None
    branches: list[Branch]
    tags: list[Tag]
    sessions: list[SessionInfo]


class CommitSummary(BaseModel):
    id: str
    short_id: str
    parents: list[str]
    author: str
    time: int
    tz: int
    message: str
    summary: str
    refs: list[str] = []


class CommitList(BaseModel):
    ref: str
    commit: str
    commits: list[CommitSummary]
    truncated: bool


class Change(_Open):
    """One path's typed diff. Datasets add ``samples`` ({added, removed, modified} rows),
    ``column_changes``, ``schema_changes`` and ``key``; prompts and agents ``text`` (a
    unified diff; counts are lines); models and adapters ``size`` [old, new],
    ``changed_share`` and ``files_changed`` (``added`` counts new bytes)."""

    path: str
    kind: str
    status: str
    added: int
    removed: int
    modified: int


class CommitDetail(BaseModel):
    commit: CommitSummary
    parent: str | None
    lineage: dict[str, Any]
    changes: list[Change]


class TreeEntry(BaseModel):
    path: str
    kind: str
    summary: str
    digest: str | None
    size: int


class Tree(BaseModel):
    ref: str
    commit: str
    entries: list[TreeEntry]


class LastChange(BaseModel):
    commit: CommitSummary
    lineage: dict[str, Any]


class ArtifactDetail(_Open):
    """An artifact at a revision. By kind, one more key: ``prompt`` (template, system,
    variables, model, parameters, rendered_example, example_source, text), ``agent``
    (fields: the parsed YAML, text, tools, model), ``dataset`` (rows, columns, key,
    format, preview: the first rows), ``files`` + ``format`` (+ ``config`` for adapters),
    ``eval`` or ``session``. Prompts and agents also list related ``sessions``."""

    path: str
    ref: str
    commit: str
    kind: str
    digest: str
    summary: str
    size: int
    last_change: LastChange | None


class Event(BaseModel):
    id: str
    type: str
    t: float | None = None
    summary: str


class Step(BaseModel):
    step: int
    commit: str
    events: list[Event]


class WorkspaceFile(BaseModel):
    path: str
    size: int


class Timeline(BaseModel):
    session: SessionInfo
    events: int
    truncated: bool
    steps: list[Step]
    workspace: list[WorkspaceFile]
    forks: list[str]
    agent_source: dict[str, str] | None = None


class SearchHit(BaseModel):
    """A prompt, agent or dataset card. ``sources``: the searches that found it (``text``,
    ``semantic``); ``rank``: its full-text BM25 rank (lower is better; None when only the
    vectors found it); ``similarity``: its cosine similarity to the query (None when only
    the words found it); ``score``: the reciprocal-rank fusion score the hits are sorted by."""

    owner: str
    name: str
    path: str
    kind: str
    title: str
    snippet: str
    rank: float | None
    similarity: float | None = None
    score: float
    sources: list[Literal["text", "semantic"]]


class SearchResults(BaseModel):
    """``mode``: the search that ran (``text`` where no embedding model is installed, even
    when ``requested`` was another; ``notice`` then says why)."""

    query: str
    mode: Literal["hybrid", "semantic", "text"]
    requested: Literal["hybrid", "semantic", "text"]
    notice: str | None = None
    min_similarity: float | None = None
    hits: list[SearchHit]


# ---------------------------------------------------------------------------- routes
_REPO = "/repos/{owner}/{name}"
_REF_EXAMPLES = {"branch": {"value": "main"}, "ancestor": {"value": "main~1"}, "tag": {"value": "v1"}}
_REF = Query(None, max_length=256, openapi_examples=_REF_EXAMPLES,
             description="a branch, tag or commit; default: the default branch")


@router.get("/repos", response_model=list[Repo], summary="Repositories the caller may read")
async def list_repos(request: Request, who: Principal = Depends(_who)) -> Any:
    """Public repositories, and the caller's private ones (most recently updated first)."""
    return [r.to_dict() for r in await run_in_threadpool(_hub(request).visible_repos, who)]


@router.get(_REPO, response_model=RepoDetail, summary="A repository: branches, tags, sessions, HEAD")
async def get_repo(request: Request, owner: str, name: str, who: Principal = Depends(_who)) -> Any:
    """Repository info, branches (with the default one), tags, agent sessions and HEAD."""
    def work() -> Any:
        with views.open_repo(_hub(request), owner, name, who) as (info, repo):
            return views.repo_detail(info, repo)
    return await run_in_threadpool(work)


@router.get(_REPO + "/commits", response_model=CommitList, summary="History, newest first")
async def list_commits(request: Request, owner: str, name: str,
                       ref: str | None = _REF,
                       limit: int = Query(50, ge=1, le=1000),
                       who: Principal = Depends(_who)) -> Any:
    """Commits reachable from ``ref``, newest first: parents, author, time, message, refs."""
    return await _read(request, owner, name, who, lambda repo: views.history(repo, ref, limit))


@router.get(_REPO + "/commits/{sha}", response_model=CommitDetail,
            summary="A commit, its lineage and its typed diff against its first parent")
async def get_commit(request: Request, owner: str, name: str,
                     sha: str = Path(max_length=256, description="a commit id, prefix or revision"),
                     who: Principal = Depends(_who)) -> Any:
    """The commit, its lineage record, and the typed diff of every artifact it changed against its first parent."""
    return await _read(request, owner, name, who, lambda repo: views.commit_detail(repo, sha))


@router.get(_REPO + "/tree", response_model=Tree, summary="Artifacts at a revision")
async def get_tree(request: Request, owner: str, name: str,
                   ref: str | None = _REF, who: Principal = Depends(_who)) -> Any:
    """Every artifact at ``ref``: path, kind, one-line summary, digest, size."""
    return await _read(request, owner, name, who, lambda repo: views.tree(repo, ref))


@router.get(_REPO + "/artifacts/{path:path}", response_model=ArtifactDetail,
            summary="One artifact, typed: prompt, agent, dataset preview, model files")
async def get_artifact(request: Request, owner: str, name: str, path: str,
                       ref: str | None = _REF,
                       rows: int = Query(views.PREVIEW_ROWS, ge=0, le=500, description="dataset rows to preview"),
                       who: Principal = Depends(_who)) -> Any:
    """One artifact, typed by kind, with the commit that last changed it and that commit's lineage."""
    return await _read(request, owner, name, who, lambda repo: views.artifact_detail(repo, ref, path, rows))


@router.get(_REPO + "/sessions", response_model=list[SessionInfo], summary="Agent sessions")
async def list_sessions(request: Request, owner: str, name: str, who: Principal = Depends(_who)) -> Any:
    """Every agent session: status, steps, agent digest, where it was forked from."""
    return await _read(request, owner, name, who, views.sessions)


@router.get(_REPO + "/sessions/{session:path}", response_model=Timeline,
            summary="A session's timeline: steps, events, workspace, forks")
async def get_session(request: Request, owner: str, name: str, session: str,
                      limit: int = Query(views.MAX_EVENTS, ge=1, le=views.MAX_EVENTS),
                      who: Principal = Depends(_who)) -> Any:
    """A session's steps with one line per event, the workspace after the last step, and its forks."""
    return await _read(request, owner, name, who, lambda repo: views.session_timeline(repo, session, limit))


@router.get("/search", response_model=SearchResults,
            summary="Search the prompts, agents and dataset cards the caller may read")
async def search(request: Request, q: str = Query("", max_length=500), limit: int = Query(50, ge=1, le=200),
                 mode: Literal["hybrid", "semantic", "text"] = Query(
                     "hybrid", description="text: by words (FTS5); semantic: by meaning (wordllama "
                                           "vectors in LanceDB); hybrid: both, by reciprocal-rank fusion"),
                 min_similarity: float | None = Query(
                     None, ge=-1.0, le=1.0, description="the least cosine similarity of a semantic "
                                                        "hit (default 0.2)"),
                 who: Principal = Depends(_who)) -> Any:
    """Prompts, agents and dataset cards (at each repository's default branch) matching every
    word of ``q`` (text), nearest to it in meaning (semantic), or both merged (hybrid)."""
    return await run_in_threadpool(views.search, _hub(request), who, q, limit, mode, min_similarity)
