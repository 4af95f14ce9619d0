"""``/api``: agents, sessions, runs, forks, replays, and a session's progress as SSE.

Every route calls porcelain (:mod:`demoai.porcelain.agent`). Reads of a session come from its
step commits (git only), so they are safe while a run appends to it. Work that calls a
model or runs tools for long is queued on the :class:`~demoai.server.runs.RunManager` and
answered with 202 at once; forks and the ``recorded``/``reexecute`` replays answer with
their result. Agent runs hold their model from the app's pool, the one ``/v1`` serves from.
"""
from __future__ import annotations

import json
from typing import Any, AsyncIterator, Iterator

import anyio
from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from demoai.errors import SessionNotFound
from demoai.porcelain import Repository, open_repository
from demoai.porcelain import agent as A
from demoai.server import guards
from demoai.server.runs import Run, RunManager
from demoai.server.schemas import ContinueRequest, ForkRequest, ReplayRequest, RunRequest

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["agents"])
POLL_S = 0.1                # how often a stream looks for new steps of a run of this server
POLL_FOREIGN_S = 0.5        # ... of a session another process writes


def get_repo(request: Request) -> Iterator[Repository]:
    """One Repository per request (a repository's open files are not shared across threads)."""
    repo = open_repository(request.app.state.root, search=False)
    try:
        yield repo
    finally:
        repo.close()


def get_runs(request: Request) -> RunManager:
    """The app's background work."""
    return request.app.state.runs


def get_pool(request: Request) -> A.ModelPool:
    """The app's model pool (shared with ``/v1``)."""
    return request.app.state.models


# --- agents and runs --------------------------------------------------------------------
@router.get("/agents")
def list_agents(rev: str = Query("HEAD", min_length=1, max_length=200),
                repo: Repository = Depends(get_repo)) -> list[dict[str, Any]]:
    """Every Agent artifact in the tree at ``rev``."""
    return [a.to_dict() for a in A.list_agents(repo, rev)]


@router.get("/runs")
def list_runs(runs: RunManager = Depends(get_runs)) -> list[dict[str, Any]]:
    """Background work of this server (runs, continues, live replays), newest first."""
    return [r.to_dict() for r in runs.list()]


@router.get("/runs/{name}")
def get_run(name: str, runs: RunManager = Depends(get_runs)) -> dict[str, Any]:
    """The state of this server's latest work on session ``name``."""
    run = runs.get(name)
    if run is None:
        raise SessionNotFound(f"this server has no run for session {name!r}", session=name)
    return run.to_dict()


def _accepted(run: Run, **extra: Any) -> JSONResponse:
    body = {**run.to_dict(), "stream": f"/api/sessions/{run.session}/stream", **extra}
    return JSONResponse(body, status_code=202)


@router.post("/runs", status_code=202)
def start_run(req: RunRequest, repo: Repository = Depends(get_repo),
              runs: RunManager = Depends(get_runs), pool: A.ModelPool = Depends(get_pool)) -> JSONResponse:
    """Start an agent run in the background; answers 202 with the session name at once.
    Follow it at ``GET /api/sessions/{name}/stream``."""
    params = req.params.given() if req.params else {}
    # 404/400/409 now, not in the background
    name = A.check_run(repo, req.agent, rev=req.rev, name=req.name, model=req.model, params=params)
    run = runs.submit(name, "run", lambda r: A.run_agent(
        r, req.agent, task=req.task or req.instruction or "", rev=req.rev, name=name,
        sandbox=req.sandbox, model=req.model, max_steps=req.max_steps, seed=req.seed,
        params=params, pool=pool).to_dict())
    return _accepted(run)


# --- sessions ---------------------------------------------------------------------------
@router.get("/sessions")
def sessions(repo: Repository = Depends(get_repo), runs: RunManager = Depends(get_runs)) -> list[dict]:
    """Every session, newest first, with its status, steps and fork parent."""
    out = []
    for s in A.list_sessions(repo):
        d = s.to_dict()
        if runs.active(s.name):
            d["status"] = "running"
        out.append(d)
    return out


@router.get("/sessions/{name}")
def session(name: str, repo: Repository = Depends(get_repo),
            runs: RunManager = Depends(get_runs)) -> dict[str, Any]:
    """The session's state and its timeline (one summary line per event)."""
    log = A.session_log(repo, name).to_dict()
    if runs.active(name):
        log["session"]["status"] = "running"
    run = runs.get(name)
    return {**log, "run": run.to_dict() if run else None}


@router.get("/sessions/{name}/events")
def session_events(name: str, from_step: int = Query(0, ge=0),
                   repo: Repository = Depends(get_repo)) -> list[dict[str, Any]]:
    """Every event (full bodies, ids chained by BLAKE3) from step ``from_step`` on."""
    return [e.to_dict() for e in A.session_events(repo, name, from_step)]


@router.get("/sessions/{name}/steps/{step}")
def session_step(name: str, step: int, repo: Repository = Depends(get_repo)) -> dict[str, Any]:
    """The events of one step, its commit and the workspace files (sizes) after it."""
    return A.session_step(repo, name, step).to_dict()


@router.get("/sessions/{name}/diff")
def session_diff(name: str, other: str = Query(min_length=1, max_length=200),
                 repo: Repository = Depends(get_repo), runs: RunManager = Depends(get_runs)) -> dict:
    """Where sessions ``name`` and ``other`` part (shared prefix, first divergence)."""
    guards.idle(repo, runs, name, other)
    return A.diff_sessions(repo, name, other).to_dict()


@router.post("/sessions/{name}/fork", status_code=201)
def fork(name: str, req: ForkRequest = Body(default_factory=ForkRequest),
         repo: Repository = Depends(get_repo), runs: RunManager = Depends(get_runs)) -> dict:
    """Fork ``name`` at ``step`` (default: its last) into a new session with overrides, as
    ``demoai fork NAME@STEP`` does; continue it with ``POST /api/sessions/{new}/continue``."""
    guards.idle(repo, runs, name)
    return A.fork_session(repo, name, req.name, step=req.step, sets=req.set,
                          instruction=req.instruction, model=req.model, prompt=req.prompt).to_dict()


@router.post("/sessions/{name}/replay")
def replay(name: str, req: ReplayRequest = Body(default_factory=ReplayRequest),
           repo: Repository = Depends(get_repo), runs: RunManager = Depends(get_runs),
           pool: A.ModelPool = Depends(get_pool)) -> Any:
    """``recorded`` (verify the chain) and ``reexecute`` (tools again, fresh sandbox) answer
    with their report; ``live`` forks at ``from_step`` and calls the model again in the
    background (202, the new session's name)."""
    guards.idle(repo, runs, name)
    if req.mode in ("recorded", "reexecute"):
        return A.replay(repo, name, req.mode, req.from_step, sandbox=req.sandbox).to_dict()
    forked = A.start_live_replay(repo, name, req.from_step, req.name)
    new = forked.session
    run = runs.submit(new, "live", lambda r: A.continue_session(
        r, new, max_steps=req.max_steps, sandbox=req.sandbox, pool=pool).to_dict())
    return _accepted(run, mode="live", from_step=forked.parent["step"])


@router.post("/sessions/{name}/continue", status_code=202)
def continue_(name: str, req: ContinueRequest = Body(default_factory=ContinueRequest),
              repo: Repository = Depends(get_repo), runs: RunManager = Depends(get_runs),
              pool: A.ModelPool = Depends(get_pool)) -> JSONResponse:
    """Continue a (forked) session from its last step in the background (202)."""
    guards.idle(repo, runs, name)
    if not A.session_exists(repo, name):
        raise SessionNotFound(f"no session named {name!r}", session=name)
    run = runs.submit(name, "continue", lambda r: A.continue_session(
        r, name, max_steps=req.max_steps, sandbox=req.sandbox, pool=pool).to_dict())
    return _accepted(run)


# --- progress as server-sent events --------------------------------------------------------
@router.get("/sessions/{name}/stream", response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def stream(name: str, request: Request, from_step: int = Query(0, ge=0),
                 last_event_id: int | None = Header(None, ge=-1),
                 runs: RunManager = Depends(get_runs)) -> EventSourceResponse:
    """The session's events as SSE: those recorded so far, then each step as the run commits
    it, then one ``end`` event (the run's status and result, or its error). ``event: event``
    carries an event (its ``id`` is the ordinal, for ``Last-Event-ID``)."""
    repo = open_repository(request.app.state.root, search=False)
    try:
        exists = await anyio.to_thread.run_sync(A.session_exists, repo, name)
        if not exists and runs.get(name) is None:
            raise SessionNotFound(f"no session named {name!r}", session=name)
    except BaseException:
        repo.close()
        raise
    skip = -1 if last_event_id is None else last_event_id
    return EventSourceResponse(_follow(repo, runs, name, from_step, skip), ping=15)


async def _follow(repo: Repository, runs: RunManager, name: str, from_step: int,
                  skip: int) -> AsyncIterator[dict[str, Any]]:
    f = A.follow_session(repo, name)
    try:
        while True:
            run = runs.get(name)
            ended = run is not None and not run.active      # read before polling: no lost steps
            exists = await anyio.to_thread.run_sync(A.session_exists, repo, name)
            if not exists and run is None:                 # deleted while followed
                yield {"event": "end", "data": json.dumps({"session": name, "status": "missing"})}
                return
            if exists:
                first = f.count
                for i, e in enumerate(await anyio.to_thread.run_sync(f.poll), first):
                    if i > skip and e.step >= from_step:
                        yield {"event": "event", "id": str(i), "data": json.dumps(e.to_dict())}
            if run is not None and ended:
                yield {"event": "end", "data": json.dumps(run.to_dict())}
                return
            if run is None and f.manifest is not None:
                status = await anyio.to_thread.run_sync(guards.status, repo, runs, name, f.manifest.status)
                if status != "running":
                    yield {"event": "end", "data": json.dumps(
                        {"session": name, "status": status, "steps": f.manifest.steps})}
                    return
            await anyio.sleep(POLL_S if run is not None else POLL_FOREIGN_S)
    finally:
        repo.close()
