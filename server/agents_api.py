"""``/api``: agents, sessions, runs, forks, replays, and a session's progress as SSE.

Reads of a session go through :class:`~demoai.server.follow.Follower` (git only), so they
are safe while a run appends to it. Work that calls a model or runs tools for long is queued
on the :class:`~demoai.server.runs.RunManager` and answered with 202 at once; forks and the
``recorded``/``reexecute`` replays answer with their result.
"""
from __future__ import annotations

import json
import secrets
import time
from typing import Any, AsyncIterator, Iterator

import anyio
from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from demoai.errors import InvalidArtifact, RefConflict, SessionNotFound
from demoai.objects import Agent, Model
from demoai.registry.resolve import BUILTIN_MODELS, load_agent
from demoai.store.sessions.log import list_sessions, read_workspace, session_exists
from demoai.server import launch
from demoai.server.follow import Follower, manifest_at, summarize, timeline_from_git, tip_of
from demoai.server.runs import Run, RunManager
from demoai.server.schemas import ContinueRequest, ForkRequest, ReplayRequest, RunRequest
from demoai.store.git.repo import Repository, check_ref_name, normalize_path

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["agents"])
POLL_S = 0.1                # how often a stream looks for new steps of a run of this server
POLL_FOREIGN_S = 0.5        # ... of a session another process writes


def get_repo(request: Request) -> Iterator[Repository]:
    """One Repository per request (dulwich objects are not shared across threads)."""
    repo = Repository(request.app.state.root)
    try:
        yield repo
    finally:
        repo.close()


def get_runs(request: Request) -> RunManager:
    return request.app.state.runs


# --- agents and runs --------------------------------------------------------------------
@router.get("/agents")
def list_agents(rev: str = Query("HEAD", min_length=1, max_length=200),
                repo: Repository = Depends(get_repo)) -> list[dict[str, Any]]:
    """Every Agent artifact in the tree at ``rev``."""
    commit = repo.head_commit() if rev == "HEAD" else repo.resolve(rev)
    if commit is None:
        return []
    return [{"path": p, "digest": a.digest, **{k: a.meta.get(k) for k in (
        "name", "model", "adapter", "prompt", "tools", "sandbox", "parameters", "seed", "max_steps")}}
        for p, a in sorted(repo.artifacts(commit).items()) if isinstance(a, Agent)]


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


def _check_model(repo: Repository, model: str | None, rev: str) -> None:
    """Refuse a model override that names nothing (cheap: no weights are copied here)."""
    if model is None or model in BUILTIN_MODELS or model.startswith("openai:"):
        return
    art = repo.artifact_at(rev, normalize_path(model))
    if not isinstance(art, Model):
        raise InvalidArtifact(f"{model} is a {art.kind}, not a model", path=model)


@router.post("/runs", status_code=202)
def start_run(req: RunRequest, repo: Repository = Depends(get_repo),
              runs: RunManager = Depends(get_runs)) -> JSONResponse:
    """Start an agent run in the background; answers 202 with the session name at once.
    Follow it at ``GET /api/sessions/{name}/stream``."""
    load_agent(repo, req.agent, req.rev)              # 404/400 now, not in the background
    _check_model(repo, req.model, req.rev)
    stem = req.agent.rsplit("/", 1)[-1].split(".")[0] or "agent"
    name = req.name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    check_ref_name(name, "session")
    if session_exists(repo, name):
        raise RefConflict(f"a session named {name!r} already exists", session=name)
    params = req.params.given() if req.params else {}
    run = runs.submit(name, "run", lambda r: launch.run(
        r, req.agent, task=req.task or req.instruction or "", rev=req.rev, name=name,
        sandbox=req.sandbox, model=req.model, max_steps=req.max_steps, seed=req.seed,
        params=params))
    return _accepted(run)


# --- sessions ---------------------------------------------------------------------------
@router.get("/sessions")
def sessions(repo: Repository = Depends(get_repo), runs: RunManager = Depends(get_runs)) -> list[dict]:
    """Every session, newest first, with its status, steps and fork parent."""
    out = []
    for s in list_sessions(repo):
        d = s.to_dict()
        if runs.active(s.name):
            d["status"] = "running"
        out.append(d)
    return out


@router.get("/sessions/{name}")
def session(name: str, repo: Repository = Depends(get_repo),
            runs: RunManager = Depends(get_runs)) -> dict[str, Any]:
    """The session's state and its timeline (one summary line per event)."""
    info, events = timeline_from_git(repo, name, "")
    info["status"] = launch.status(repo, runs, name, manifest_at(repo, info["commit"]).status)
    run = runs.get(name)
    return {"session": info, "events": summarize(events), "run": run.to_dict() if run else None}


@router.get("/sessions/{name}/events")
def session_events(name: str, from_step: int = Query(0, ge=0),
                   repo: Repository = Depends(get_repo)) -> list[dict[str, Any]]:
    """Every event (full bodies, ids chained by BLAKE3) from step ``from_step`` on."""
    return [e.to_dict() for e in Follower(repo, name).poll() if e.step >= from_step]


@router.get("/sessions/{name}/steps/{step}")
def session_step(name: str, step: int, repo: Repository = Depends(get_repo)) -> dict[str, Any]:
    """The events of one step, its commit and the workspace files (sizes) after it."""
    f = Follower(repo, name)
    events = [e for e in f.poll() if e.step == step]
    commit = launch.step_commit(repo, f.commit or "", step)
    if commit is None:
        raise SessionNotFound(f"session {name!r} has no step {step}", session=name, step=step)
    files = read_workspace(repo, commit)
    return {"session": name, "step": step, "commit": commit, "events": [e.to_dict() for e in events],
            "workspace": {p: len(b) for p, b in sorted(files.items())}}


@router.get("/sessions/{name}/diff")
def session_diff(name: str, other: str = Query(min_length=1, max_length=200),
                 repo: Repository = Depends(get_repo), runs: RunManager = Depends(get_runs)) -> dict:
    """Where sessions ``name`` and ``other`` part (shared prefix, first divergence)."""
    from demoai.runtime.replay import diff_sessions
    launch.idle(repo, runs, name, other)
    return diff_sessions(repo, name, other)


@router.post("/sessions/{name}/fork", status_code=201)
def fork(name: str, req: ForkRequest = Body(default_factory=ForkRequest),
         repo: Repository = Depends(get_repo), runs: RunManager = Depends(get_runs)) -> dict:
    """Fork ``name`` at ``step`` (default: its last) into a new session with overrides, as
    ``demoai fork NAME@STEP`` does; continue it with ``POST /api/sessions/{new}/continue``."""
    launch.idle(repo, runs, name)
    overrides = launch.fork_overrides(req.set, req.instruction, req.model, req.prompt)
    _check_model(repo, req.model, "HEAD")
    return launch.fork(repo, name, req.step, req.name, overrides)


@router.post("/sessions/{name}/replay")
def replay(name: str, req: ReplayRequest = Body(default_factory=ReplayRequest),
           repo: Repository = Depends(get_repo), runs: RunManager = Depends(get_runs)) -> Any:
    """``recorded`` (verify the chain) and ``reexecute`` (tools again, fresh sandbox) answer
    with their report; ``live`` forks at ``from_step`` and calls the model again in the
    background (202, the new session's name)."""
    from demoai.runtime.replay import replay as do_replay
    launch.idle(repo, runs, name)
    if req.mode == "recorded":
        return do_replay(repo, name, "recorded", req.from_step)
    if req.mode == "reexecute":
        return do_replay(repo, name, "reexecute", req.from_step,
                         **({"sandbox": req.sandbox} if req.sandbox else {}))
    step = req.from_step or 0
    new = launch.fork(repo, name, step, req.name or launch.free_name(repo, f"{name}-live"),
                      {"replay": "live"})["session"]
    run = runs.submit(new, "live", lambda r: launch.resume(r, new, req.max_steps, req.sandbox))
    return _accepted(run, mode="live", from_step=step)


@router.post("/sessions/{name}/continue", status_code=202)
def continue_(name: str, req: ContinueRequest = Body(default_factory=ContinueRequest),
              repo: Repository = Depends(get_repo), runs: RunManager = Depends(get_runs)) -> JSONResponse:
    """Continue a (forked) session from its last step in the background (202)."""
    launch.idle(repo, runs, name)
    if tip_of(repo, name) is None:
        raise SessionNotFound(f"no session named {name!r}", session=name)
    run = runs.submit(name, "continue", lambda r: launch.resume(r, name, req.max_steps, req.sandbox))
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
    repo = Repository(request.app.state.root)
    try:
        exists = await anyio.to_thread.run_sync(tip_of, repo, name) is not None
        if not exists and runs.get(name) is None:
            raise SessionNotFound(f"no session named {name!r}", session=name)
    except BaseException:
        repo.close()
        raise
    skip = -1 if last_event_id is None else last_event_id
    return EventSourceResponse(_follow(repo, runs, name, from_step, skip), ping=15)


async def _follow(repo: Repository, runs: RunManager, name: str, from_step: int,
                  skip: int) -> AsyncIterator[dict[str, Any]]:
    f = Follower(repo, name)
    try:
        while True:
            run = runs.get(name)
            ended = run is not None and not run.active      # read before polling: no lost steps
            exists = await anyio.to_thread.run_sync(tip_of, repo, name) is not None
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
                status = await anyio.to_thread.run_sync(launch.status, repo, runs, name, f.manifest.status)
                if status != "running":
                    yield {"event": "end", "data": json.dumps(
                        {"session": name, "status": status, "steps": f.manifest.steps})}
                    return
            await anyio.sleep(POLL_S if run is not None else POLL_FOREIGN_S)
    finally:
        repo.close()
