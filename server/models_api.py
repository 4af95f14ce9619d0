"""``/v1``: the repository's models behind the OpenAI API (models, chat completions, legacy
completions with ``echo`` and ``logprobs``, so that scoring tools such as
lm-evaluation-harness's ``local-completions`` can read a served model's log-probabilities).

A model id is what the registry resolves (``smollm2``, ``models/x.gguf``), optionally
``MODEL+ADAPTER_PATH`` to apply a peft adapter (transformers backend). Opened backends are
kept in the app's one bounded pool (shared with agent runs), one lock each: inference is
not thread-safe, and loading is the slow part. A prompt longer than the context is refused
(ContextOverflow, 400), never cut; with ``stream: true`` the first token (or the error) is
awaited before the answer starts, so an error still gets its status code.
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

from demoai.errors import DemoAIError, PathNotFound, ProtocolError
from demoai.http.errors import error_body
from demoai.porcelain import open_repository
from demoai.porcelain import agent as A
from demoai.porcelain.agent import chat as C
from demoai.server.metrics import CallMetrics
from demoai.server.schemas import ChatRequest, CompletionRequest, EmbeddingRequest

__all__ = ["router", "DEFAULT_MAX_TOKENS", "DEFAULT_COMPLETION_TOKENS"]

router = APIRouter(prefix="/v1", tags=["openai"])
DEFAULT_MAX_TOKENS = 256
DEFAULT_COMPLETION_TOKENS = 16      # OpenAI's default for /v1/completions


class _Cancelled(Exception):
    """Raised from the token callback to stop a generation nobody reads any more."""


# --- models -------------------------------------------------------------------------------
def _models(root: Any) -> dict[str, Any]:
    with open_repository(root, search=False) as repo:
        catalog = A.list_models(repo)
    data: list[dict[str, Any]] = []
    for m in catalog.models:
        entry = {"id": m.id, "object": "model", "created": m.created, "owned_by": "demoai",
                 "digest": m.digest, "format": m.format}
        entry.update({"builtin": True} if m.builtin else {"size": m.size})
        data.append(entry)
    return {"object": "list", "data": data, "adapters": [a.to_dict() for a in catalog.adapters]}


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
def _open(root: Any, pool: A.ModelPool, model_id: str) -> A.ChatModel:
    with open_repository(root, search=False) as repo:
        return A.open_chat_model(repo, pool, model_id)


def _complete(model: A.ChatModel, messages: list[dict], params: dict, schema: dict | None,
              on_token: Any, logprobs: int | None = None,
              cm: CallMetrics | None = None) -> tuple[A.ChatResult, dict[str, float]]:
    """One call under the model's lock; returns the result and the server's timings."""
    done = A.complete_chat(model, messages, params=params, json_schema=schema, on_token=on_token,
                           logprobs=logprobs, on_start=cm.started if cm else None)
    if cm is not None:
        cm.observe(done.result.prompt_tokens, done.result.completion_tokens, done.result.timings)
    return done.result, {"queue_s": done.queue_s, "call_s": done.call_s}


def _chat_logprobs(tokens: list[A.TokenLogprob] | None) -> dict[str, Any] | None:
    """``choices[].logprobs`` of a chat completion, as OpenAI shapes it."""
    if tokens is None:
        return None
    return {"content": [{"token": t.token, "logprob": t.logprob, "bytes": t.bytes,
                         "top_logprobs": [{"token": a.token, "logprob": a.logprob,
                                           "bytes": a.bytes} for a in t.top]}
                        for t in tokens], "refusal": None}


def _timings(res: A.ChatResult, server: dict[str, float]) -> dict[str, float | None]:
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


def _usage(res: A.ChatResult) -> dict[str, int]:
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
    tools, choice = req.tool_specs()
    messages = C.tool_messages([m.as_dict() for m in req.messages], tools, choice)
    schema = C.tool_call_schema(tools, choice) if tools else req.json_schema()
    use_tools = bool(tools) and choice != "none"
    k = req.logprobs_k()
    cm = state.metrics.begin("/v1/chat/completions", req.model)
    try:
        model = await anyio.to_thread.run_sync(_open, state.root, state.models, req.model)
    except BaseException as e:
        cm.fail(e)
        cm.finish()
        raise
    head = {"id": "chatcmpl-" + uuid.uuid4().hex[:24], "created": int(time.time()), "model": req.model,
            "system_fingerprint": model.model_digest[:19] or None}
    if use_tools:
        return await _tool_answer(model, messages, params, schema, head, k, cm, req.stream,
                                  bool(req.stream_options and req.stream_options.include_usage))
    if not req.stream:
        try:
            res, server = await anyio.to_thread.run_sync(_complete, model, messages, params, schema,
                                                         None, k, cm)
        except BaseException as e:
            cm.fail(e)
            raise
        finally:
            cm.finish()
            model.release()
        return {**head, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": res.text},
                             "logprobs": _chat_logprobs(res.logprobs),
                             "finish_reason": res.finish_reason}],
                "usage": _usage(res), "timings": _timings(res, server), "record": res.record}
    return await _stream(model, messages, params, schema, head,
                         bool(req.stream_options and req.stream_options.include_usage), k, cm)


async def _tool_answer(model: A.ChatModel, messages: list[dict], params: dict, schema: dict | None,
                       head: dict[str, Any], k: int | None, cm: CallMetrics, stream: bool,
                       include_usage: bool) -> Any:
    """A reply constrained to the tool-call schema, read back as ``tool_calls`` (finish
    ``tool_calls``) or ``content``. Streamed, the reply is generated first (a call is only
    known once its JSON is complete), then sent as OpenAI's deltas: the role, the call's id
    and name, its arguments, and a last chunk with the finish reason."""
    try:
        res, server = await anyio.to_thread.run_sync(_complete, model, messages, params, schema,
                                                     None, k, cm)
    except BaseException as e:
        cm.fail(e)
        raise
    finally:
        cm.finish()
        model.release()
    reply = C.parse_tool_reply(res)
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    if not stream:
        return {**head, "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "logprobs": _chat_logprobs(res.logprobs),
                             "finish_reason": reply.finish_reason}],
                "usage": _usage(res), "timings": _timings(res, server), "record": res.record}

    def chunk(delta: dict, finish: str | None = None, **extra: Any) -> str:
        body = {**head, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                **extra}
        return f"data: {json.dumps(body)}\n\n"

    async def events() -> AsyncIterator[str]:
        yield chunk({"role": "assistant", "content": None if reply.tool_calls else ""})
        if reply.tool_calls:
            for i, call in enumerate(reply.tool_calls):
                yield chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                             "function": {"name": call["function"]["name"], "arguments": ""}}]})
                yield chunk({"tool_calls": [{"index": i, "function": {"arguments": call["function"]["arguments"]}}]})
        elif reply.content:
            yield chunk({"content": reply.content})
        yield chunk({}, reply.finish_reason, usage=_usage(res), timings=_timings(res, server))
        if include_usage:
            yield f"data: {json.dumps({**head, 'object': 'chat.completion.chunk', 'choices': [], 'usage': _usage(res)})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# --- embeddings -----------------------------------------------------------------------------
def _embed(state: Any, model_id: str, texts: list[str]) -> C.Embeddings:
    pool = getattr(state, "embedders", None)
    if pool is None:
        pool = state.embedders = C.EmbedderPool()
    with open_repository(state.root, search=False) as repo:
        return C.embed_texts(repo, pool, model_id, texts)


@router.post("/embeddings")
async def embeddings(req: EmbeddingRequest, request: Request) -> dict[str, Any]:
    """OpenAI embeddings: ``wordllama`` (the wheel's static 256-dim embeddings) or a chat
    model's mean-pooled last hidden states (``smollm2``, ``models/x.gguf``, ``MODEL+ADAPTER``).
    ``dimensions`` keeps the first N components; ``base64`` packs little-endian float32."""
    state = request.app.state
    with state.metrics.call("/v1/embeddings", req.model):
        done = await anyio.to_thread.run_sync(_embed, state, req.model, req.texts())
    data = []
    for i, v in enumerate(done.vectors):
        if req.dimensions:
            v = v[:req.dimensions]
        if req.encoding_format == "base64":
            import base64
            import struct
            v = base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
        data.append({"object": "embedding", "index": i, "embedding": v})
    return {"object": "list", "data": data, "model": req.model,
            "usage": {"prompt_tokens": done.prompt_tokens, "total_tokens": done.prompt_tokens}}


async def _stream(model: A.ChatModel, messages: list[dict], params: dict, schema: dict | None,
                  head: dict[str, Any], include_usage: bool, logprobs: int | None = None,
                  cm: CallMetrics | None = None) -> StreamingResponse:
    """The answer as chunks; ``model`` is released when the generation ends (or fails).
    With ``logprobs``, the last chunk (the one with ``finish_reason``) carries them all."""
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
            put(("done", _complete(model, messages, params, schema, on_token, logprobs, cm)))
        except BaseException as e:  # noqa: BLE001 (handed to the response, or dropped if cancelled)
            if cm is not None and not isinstance(e, _Cancelled):
                cm.fail(e)
            put(("error", e))
        finally:
            if cm is not None:
                cm.finish()
            model.release()

    try:
        threading.Thread(target=work, name="demoai-chat-stream", daemon=True).start()
    except BaseException:
        if cm is not None:
            cm.finish()
        model.release()
        raise
    first = await q.get()
    if first[0] == "error":
        raise first[1]                # before any byte is sent: a typed error with its status

    def chunk(delta: dict, finish: str | None = None, lps: dict | None = None, **extra: Any) -> str:
        body = {**head, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "logprobs": lps, "finish_reason": finish}],
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
                    yield chunk({}, res.finish_reason, _chat_logprobs(res.logprobs),
                                usage=_usage(res), timings=_timings(res, server))
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


# --- legacy completions -------------------------------------------------------------------
def _complete_texts(model: A.ChatModel, prompts: list[Any], params: dict, logprobs: int | None,
                    echo: bool, cm: CallMetrics) -> list[A.TextCompletion]:
    out = []
    for prompt in prompts:
        done = A.complete_text(model, prompt, params=params, logprobs=logprobs, echo=echo,
                               on_start=cm.started)
        cm.observe(done.result.prompt_tokens, done.result.completion_tokens, done.result.timings)
        out.append(done)
    return out


def _text_logprobs(res: A.Completion, echo: bool) -> dict[str, Any]:
    """``choices[].logprobs`` of a legacy completion: tokens, token_logprobs, top_logprobs
    (each position's alternatives and its own token; null where nothing predicts it) and
    text_offset (characters into the choice's text)."""
    toks = list(res.prompt or []) if echo else []
    toks += res.tokens
    start = 0 if echo else len(res.prompt_text)
    offs, at = [], start
    for i, t in enumerate(toks):
        if echo and i == len(res.prompt or []):
            at = len(res.prompt_text)        # the answer starts right after the prompt's text
        offs.append(at)
        at += len(t.token)
    tops: list[dict[str, float] | None] = []
    for t in toks:
        if t.logprob is None:
            tops.append(None)
            continue
        top = {a.token: a.logprob for a in t.top}
        top.setdefault(t.token, t.logprob)
        tops.append(top)
    return {"tokens": [t.token for t in toks], "token_logprobs": [t.logprob for t in toks],
            "top_logprobs": tops, "text_offset": offs}


@router.post("/completions")
async def completions(req: CompletionRequest, request: Request) -> Any:
    """OpenAI legacy completions (not streamed): a raw prompt, no chat template. ``echo``
    returns the prompt before the answer (``max_tokens`` may be 0); ``logprobs=k`` adds
    ``choices[].logprobs`` (``tokens``, ``token_logprobs``, ``top_logprobs``,
    ``text_offset``), the prompt's too with ``echo`` (its first token's are null)."""
    state = request.app.state
    cap = state.max_tokens_cap
    prompts = req.prompts()
    params = req.params(min(DEFAULT_COMPLETION_TOKENS, cap) if cap else DEFAULT_COMPLETION_TOKENS)
    if cap and params["max_tokens"] > cap:
        raise ProtocolError(f"max_tokens is at most {cap} on this server", max_tokens=params["max_tokens"])
    with state.metrics.call("/v1/completions", req.model) as cm:
        model = await anyio.to_thread.run_sync(_open, state.root, state.models, req.model)
        try:
            done = await anyio.to_thread.run_sync(_complete_texts, model, prompts, params,
                                                  req.logprobs, req.echo, cm)
        finally:
            model.release()
    choices = []
    for i, d in enumerate(done):
        r = d.result
        choices.append({"index": i, "text": (r.prompt_text if req.echo else "") + r.text,
                        "logprobs": _text_logprobs(r, req.echo) if req.logprobs is not None else None,
                        "finish_reason": r.finish_reason})
    pt = sum(d.result.prompt_tokens for d in done)
    ct = sum(d.result.completion_tokens for d in done)
    return {"id": "cmpl-" + uuid.uuid4().hex[:24], "object": "text_completion",
            "created": int(time.time()), "model": req.model,
            "system_fingerprint": model.model_digest[:19] or None, "choices": choices,
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct},
            "record": [d.result.record for d in done]}
