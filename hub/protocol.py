"""The push/pull protocol over HTTP: the hub's side of a transfer.

Every route wraps one call of the sync endpoint (:func:`demoai.porcelain.hosting.sync_endpoint`)
over the hub's copy of ``owner/name``; the client side is :class:`demoai.http.hub.HttpEndpoint`.
Reads need read access, writes the owner's write-scoped token. Binary bodies (frames, file parts)
are ``application/octet-stream`` and bounded by the app's body limit (the routes matching
:data:`BINARY_PATHS`); every other body is JSON, bounded by the app's smaller JSON limit.

Table-file parts are staged until finished; what one user keeps staged is capped
(``Limits.max_staged``: 413 ``RequestTooLarge``, nothing written) and parts untouched for
``Limits.staged_ttl`` seconds are dropped. A part may declare the file's whole ``size``
(query parameter): bytes past it are refused the same way. A ref update must name a commit
(a tag may name an annotated tag of a commit); a tree or a blob is a ``ProtocolError``.
"""
from __future__ import annotations

import contextlib
import re
import time
from typing import Any, Iterator

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from demoai.errors import ProtocolError, RequestTooLarge
from demoai.porcelain.hosting import (FRAME_BYTES, ID_BATCH, PART_BYTES, SyncEndpoint,
                                      check_ref_targets)

from demoai.hub.app import Hub, Principal

__all__ = ["router", "repos_router", "BINARY_PATHS", "check_ref_targets"]

BINARY_PATHS = re.compile(r"^/api/v1/repos/[^/]+/[^/]+/(?:git/put|chunks/put|uploads/[^/]+)$")
"""The request paths whose bodies are binary frames or parts (``Limits.max_body``)."""

router = APIRouter(prefix="/api/v1/repos/{owner}/{name}", tags=["protocol"])
repos_router = APIRouter(prefix="/api/v1", tags=["repositories"])
_OCTETS = "application/octet-stream"
_SHA = r"^[0-9a-f]{40}$"
_HEX64 = r"^[0-9a-f]{64}$"


def _hub(request: Request) -> Hub:
    return request.app.state.hub


def _who(request: Request) -> Principal:
    return _hub(request).principal(request)


@contextlib.contextmanager
def _endpoint(request: Request, owner: str, name: str, who: Principal, write: bool) -> Iterator[SyncEndpoint]:
    hub = _hub(request)
    hub.access(owner, name, who, write=write)
    repo = hub.storage.open(owner, name)
    try:
        yield hub.storage.endpoint(owner, name, repo)
    finally:
        repo.close()


def _call(request: Request, owner: str, name: str, who: Principal, write: bool, fn: Any) -> Any:
    with _endpoint(request, owner, name, who, write) as ep:
        return fn(ep)


class Ids(BaseModel):
    ids: list[str] = Field(max_length=ID_BATCH)


class Files(BaseModel):
    files: list[list[str]] = Field(max_length=ID_BATCH)


class NeedsRequest(BaseModel):
    wants: list[str] = Field(max_length=10_000)
    haves: list[str] = Field(default_factory=list, max_length=100_000)


class RefUpdate(BaseModel):
    ref: str = Field(max_length=400)
    old: str | None = Field(default=None, pattern=_SHA)
    new: str | None = Field(default=None, pattern=_SHA)


class RefUpdates(BaseModel):
    updates: list[RefUpdate] = Field(max_length=10_000)
    force: bool = False


class FileRead(BaseModel):
    table_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    rel: str = Field(max_length=400)
    digest: str = Field(pattern=_HEX64)
    offset: int = Field(default=0, ge=0)
    length: int = Field(default=PART_BYTES, ge=0, le=PART_BYTES)


class FinishUpload(BaseModel):
    table_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    rel: str = Field(max_length=400)


@router.get("/refs", summary="Branches, tags and sessions, and HEAD")
async def get_refs(request: Request, owner: str, name: str, who: Principal = Depends(_who)) -> dict:
    return await run_in_threadpool(_call, request, owner, name, who, False, lambda ep: ep.refs())


@router.post("/needs", summary="What a side holding `haves` needs to complete `wants`")
async def needs(request: Request, owner: str, name: str, body: NeedsRequest,
                who: Principal = Depends(_who)) -> dict:
    return await run_in_threadpool(_call, request, owner, name, who, False,
                                   lambda ep: ep.needs(body.wants, body.haves).to_dict())


@router.post("/git/missing", summary="Which of these git objects the hub lacks")
async def git_missing(request: Request, owner: str, name: str, body: Ids,
                      who: Principal = Depends(_who)) -> dict:
    return {"missing": await run_in_threadpool(_call, request, owner, name, who, False,
                                               lambda ep: ep.missing_git(body.ids))}


@router.post("/chunks/missing", summary="Which of these chunks the hub lacks")
async def chunks_missing(request: Request, owner: str, name: str, body: Ids,
                         who: Principal = Depends(_who)) -> dict:
    return {"missing": await run_in_threadpool(_call, request, owner, name, who, False,
                                               lambda ep: ep.missing_chunks(body.ids))}


@router.post("/files/missing", summary="Which of these table files the hub lacks")
async def files_missing(request: Request, owner: str, name: str, body: Files,
                        who: Principal = Depends(_who)) -> dict:
    for f in body.files:
        if len(f) != 3:
            raise ProtocolError("a table file is [table_id, rel, blake3]")
    out = await run_in_threadpool(_call, request, owner, name, who, False,
                                  lambda ep: ep.missing_files([tuple(f) for f in body.files]))
    return {"missing": [list(f) for f in out]}


def _frame_stream(frames: list[bytes]) -> Response:
    # A request may name more than one frame holds: frames go back to back, each
    # prefixed with its length (read by demoai.http.hub).
    return Response(b"".join(len(f).to_bytes(8, "big") + f for f in frames), media_type=_OCTETS)


@router.post("/git/get", summary="Git objects as a verified frame",
             response_class=Response, responses={200: {"content": {_OCTETS: {}}}})
async def git_get(request: Request, owner: str, name: str, body: Ids,
                  who: Principal = Depends(_who)) -> Response:
    return _frame_stream(await run_in_threadpool(_call, request, owner, name, who, False,
                                                 lambda ep: list(ep.git_frames(body.ids))))


@router.post("/chunks/get", summary="Chunks in stored form as frames",
             response_class=Response, responses={200: {"content": {_OCTETS: {}}}})
async def chunks_get(request: Request, owner: str, name: str, body: Ids,
                     who: Principal = Depends(_who)) -> Response:
    return _frame_stream(await run_in_threadpool(_call, request, owner, name, who, False,
                                                 lambda ep: list(ep.chunk_frames(body.ids))))


@router.post("/files/read", summary="A byte range of a table file",
             response_class=Response, responses={200: {"content": {_OCTETS: {}}}})
async def files_read(request: Request, owner: str, name: str, body: FileRead,
                     who: Principal = Depends(_who)) -> Response:
    data, size = await run_in_threadpool(
        _call, request, owner, name, who, False,
        lambda ep: ep.read_file(body.table_id, body.rel, body.digest, body.offset, body.length))
    return Response(data, media_type=_OCTETS, headers={"X-File-Size": str(size)})


_BINARY_BODY = {"requestBody": {"required": True, "content": {_OCTETS: {"schema": {
    "type": "string", "format": "binary"}}}}}


@router.post("/git/put", summary="Store a frame of git objects (each verified)",
             openapi_extra=_BINARY_BODY)
async def git_put(request: Request, owner: str, name: str, who: Principal = Depends(_who)) -> dict:
    _hub(request).access(owner, name, who, write=True)
    frame = await request.body()
    n = await run_in_threadpool(_call, request, owner, name, who, True, lambda ep: ep.put_git(frame))
    return {"added": n}


@router.post("/chunks/put", summary="Store a frame of chunks (each decoded and hashed)",
             openapi_extra=_BINARY_BODY)
async def chunks_put(request: Request, owner: str, name: str, who: Principal = Depends(_who)) -> dict:
    _hub(request).access(owner, name, who, write=True)
    frame = await request.body()
    if len(frame) > FRAME_BYTES + (1 << 20):
        raise ProtocolError(f"chunk frame over {FRAME_BYTES} bytes")
    n = await run_in_threadpool(_call, request, owner, name, who, True, lambda ep: ep.put_chunks(frame))
    return {"added": n}


@router.get("/uploads/{digest}", summary="How many bytes of a table file arrived")
async def upload_offset(request: Request, owner: str, name: str, digest: str,
                        who: Principal = Depends(_who)) -> dict:
    off = await run_in_threadpool(_call, request, owner, name, who, True,
                                  lambda ep: ep.upload_offset(digest))
    return {"offset": off}


def _stage_part(hub: Hub, ep: SyncEndpoint, owner: str, digest: str, offset: int, data: bytes,
                size: int | None) -> int:
    """Append a part, unless it passes the declared ``size`` or the owner's staging cap."""
    if size is not None and offset + len(data) > size:
        raise RequestTooLarge(f"upload {digest[:16]}: part ends at byte {offset + len(data)}, past "
                              f"the declared size of {size} bytes", limit=size)
    cap = hub.limits.max_staged
    with hub.storage.staging_lock(owner):
        staged = hub.storage.staged_bytes(owner, expire_before=time.time() - hub.limits.staged_ttl)
        # A part at the wrong offset adds nothing: upload_part answers it with RefConflict.
        if ep.upload_offset(digest) == offset and staged + len(data) > cap:
            raise RequestTooLarge(f"{owner} keeps {staged} bytes in unfinished uploads; this part "
                                  f"would pass the limit of {cap} (finish those uploads, or wait "
                                  f"for them to expire)", limit=cap, staged=staged)
        return ep.upload_part(digest, offset, data)


@router.put("/uploads/{digest}", summary="Append a part of a table file at `offset`",
            openapi_extra=_BINARY_BODY)
async def upload_part(request: Request, owner: str, name: str, digest: str,
                      offset: int = Query(ge=0), size: int | None = Query(default=None, ge=0),
                      who: Principal = Depends(_who)) -> dict:
    hub = _hub(request)
    hub.access(owner, name, who, write=True)
    data = await request.body()
    if len(data) > PART_BYTES:
        raise ProtocolError(f"a part holds at most {PART_BYTES} bytes")
    off = await run_in_threadpool(_call, request, owner, name, who, True,
                                  lambda ep: _stage_part(hub, ep, owner, digest, offset, data, size))
    return {"offset": off}


@router.post("/uploads/{digest}/finish", summary="Verify a whole table file and install it")
async def upload_finish(request: Request, owner: str, name: str, digest: str, body: FinishUpload,
                        who: Principal = Depends(_who)) -> dict:
    await run_in_threadpool(_call, request, owner, name, who, True,
                            lambda ep: ep.finish_upload(body.table_id, body.rel, digest))
    return {"installed": True}


def _move_refs(ep: SyncEndpoint, ups: list[dict[str, Any]], force: bool) -> list[dict[str, Any]]:
    check_ref_targets(ep.repo, ups)
    return ep.update_refs(ups, force=force)


@router.post("/refs", summary="Move refs with compare-and-swap, all or none")
async def update_refs(request: Request, owner: str, name: str, body: RefUpdates,
                      who: Principal = Depends(_who)) -> dict:
    ups = [u.model_dump() for u in body.updates]
    done = await run_in_threadpool(_call, request, owner, name, who, True,
                                   lambda ep: _move_refs(ep, ups, body.force))
    await run_in_threadpool(_hub(request).after_push, owner, name)
    return {"updated": done}


class NewRepo(BaseModel):
    owner: str | None = Field(default=None, max_length=64)   # None: the caller
    name: str = Field(max_length=64)
    private: bool = True
    description: str = Field(default="", max_length=2000)


@repos_router.post("/repos", status_code=201, summary="Create a repository owned by the caller")
async def create_repo(request: Request, body: NewRepo, who: Principal = Depends(_who)) -> dict:
    hub = _hub(request)
    # An owner other than the caller is refused (403) by create_repo, never silently replaced.
    owner = body.owner or who.user or ""
    info = await run_in_threadpool(hub.create_repo, who, owner, body.name, body.private, body.description)
    return info.to_dict()


@repos_router.get("/user", summary="Who the token belongs to")
async def whoami(who: Principal = Depends(_who)) -> dict:
    return {"user": who.user, "scope": who.scope}
