"""Chat with a repository's model (``POST /v1/chat/completions``), through the same
bounded :class:`ModelPool` agent runs use.

A model id is what the registry resolves at HEAD (``smollm2``, ``models/x.gguf``),
optionally ``MODEL+ADAPTER_PATH``. :func:`open_chat_model` holds the model (loading it if
needed; call it off the event loop) until its ``release()``; :func:`complete_chat` makes one
call under the model's lock. A prompt longer than the context is refused (ContextOverflow),
never cut; output that breaks a requested JSON schema (cut off at ``max_tokens``) is an
answer, as OpenAI gives it, not an error. :func:`complete_text` is the raw completion
(``POST /v1/completions``: no chat template, optional echo and prompt logprobs).

Tool calling (OpenAI ``tools``/``tool_choice``): :func:`tool_call_schema` is the JSON schema
the reply is constrained to. A call is ``{"name": NAME, "arguments": {...}}`` (``arguments``
under the function's ``parameters`` schema); with ``tool_choice: auto`` the schema is
``anyOf`` those calls and a plain answer ``{"content": "..."}``; ``required`` admits the calls
only, a named function that call only; ``none`` has no schema. :func:`tool_messages` tells
the model the functions and this shape in a system message, and turns earlier
``assistant.tool_calls`` and ``tool`` results into text every chat template takes.
:func:`parse_tool_reply` reads the reply back as ``tool_calls`` or ``content``.
:func:`embed_texts` embeds texts with wordllama or a chat model's pooled hidden states.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from demoai.engines.embed import WORDLLAMA_IDS, EmbedderPool
from demoai.engines.llm import ChatResult, Completion, ModelPool, PooledModel, TokenLogprob
from demoai.errors import ModelError, ProtocolError
from demoai.registry.resolve import resolve_model_id
from demoai.store.git.repo import Repository

__all__ = ["open_chat_model", "complete_chat", "complete_text", "ChatCompletion", "ChatResult",
           "ChatModel", "TextCompletion", "Completion", "TokenLogprob", "tool_call_schema",
           "tool_messages", "parse_tool_reply", "ToolReply", "EmbedderPool", "embed_texts",
           "Embeddings", "WORDLLAMA_IDS"]

ChatModel = PooledModel
"""A model held from the pool: ``model_digest``, ``n_ctx`` ...; ``release()`` when done."""


@dataclass
class ChatCompletion:
    """One chat call: the backend's result and the server-side timings (seconds waited for
    the model, seconds of the call)."""

    result: ChatResult
    queue_s: float
    call_s: float


def open_chat_model(repo: Repository, pool: ModelPool, model_id: str) -> ChatModel:
    """Hold the model ``model_id`` names at HEAD from ``pool`` (blocking while it loads).
    InvalidArtifact for a malformed id or a remote one, PathNotFound for none."""
    return pool.use(resolve_model_id(repo, model_id))


@dataclass
class TextCompletion:
    """One raw completion: the backend's result and the server-side timings."""

    result: Completion
    queue_s: float
    call_s: float


def complete_chat(model: ChatModel, messages: list[dict[str, str]], *, params: dict[str, Any],
                  json_schema: dict[str, Any] | None = None,
                  on_token: Callable[[str], None] | None = None, logprobs: int | None = None,
                  on_start: Callable[[], None] | None = None) -> ChatCompletion:
    """One chat call under the model's lock (``params`` must set ``max_tokens``);
    ``logprobs=k`` asks for per-token logprobs with ``k`` alternatives; ``on_start`` is
    called once the lock is held (the call leaves the queue)."""
    kw: dict[str, Any] = {"logprobs": logprobs} if logprobs is not None else {}
    with model.call() as backend:
        if on_start is not None:
            on_start()
        t1 = time.perf_counter()
        try:
            res = backend.chat(messages, params=params, json_schema=json_schema, on_token=on_token,
                               **kw)
        except ModelError as e:
            res = _as_result(backend, messages, params, e)
        call = time.perf_counter() - t1
    return ChatCompletion(res, model.waited, call)


def complete_text(model: ChatModel, prompt: str | list[int], *, params: dict[str, Any],
                  logprobs: int | None = None, echo: bool = False,
                  on_start: Callable[[], None] | None = None) -> TextCompletion:
    """One raw completion of ``prompt`` (text or token ids) under the model's lock: no chat
    template; ``echo`` returns the prompt's tokens (``max_tokens`` may then be 0), with their
    logprobs when ``logprobs`` is set. Bad input is a ProtocolError; a backend that cannot
    complete raw text raises BackendUnavailable."""
    with model.call() as backend:
        if on_start is not None:
            on_start()
        t1 = time.perf_counter()
        try:
            res = backend.complete(prompt, params=params, logprobs=logprobs, echo=echo)
        except ModelError as e:
            if type(e) is ModelError:       # the request's own fault (ids, params, empty)
                raise ProtocolError(e.message, where="prompt", **e.fields) from e
            raise
        call = time.perf_counter() - t1
    return TextCompletion(res, model.waited, call)


def _as_result(backend: Any, messages: list[dict], params: dict, e: ModelError) -> ChatResult:
    """Bad input the backend reports as a ModelError becomes a ProtocolError; output that
    breaks the requested JSON schema (cut at max_tokens) is an answer."""
    if getattr(e, "text", None) is not None:
        finish = getattr(e, "finish_reason", None) or "stop"
        f = e.fields
        if isinstance(f.get("completion_tokens"), int) and isinstance(f.get("prompt_tokens"), int):
            return ChatResult(text=e.text, finish_reason=finish, prompt_tokens=f["prompt_tokens"],
                              completion_tokens=f["completion_tokens"], timings=f.get("timings") or {},
                              record=f.get("record") or {})
        n = backend.count_tokens(messages)
        if finish == "length":
            used = min(params["max_tokens"], backend.n_ctx - n)
        else:                         # the backend's count is lost with the result: re-count
            with_text = backend.count_tokens([*messages, {"role": "assistant", "content": e.text}])
            empty = backend.count_tokens([*messages, {"role": "assistant", "content": ""}])
            used = max(0, with_text - empty)
        return ChatResult(text=e.text, finish_reason=finish, prompt_tokens=n, completion_tokens=used)
    if "schema" in e.fields:
        raise ProtocolError(f"response_format: {e.message}", where="response_format") from e
    if e.message.startswith("the chat template rejected"):
        raise ProtocolError(e.message, where="messages") from e
    raise e


# --- tool calling ----------------------------------------------------------------------------
def _call_schema(fn: dict[str, Any]) -> dict[str, Any]:
    params = fn.get("parameters") or {"type": "object"}
    return {"type": "object", "properties": {"name": {"const": fn["name"]}, "arguments": params},
            "required": ["name", "arguments"], "additionalProperties": False}


ANSWER_SCHEMA: dict[str, Any] = {"type": "object", "properties": {"content": {"type": "string"}},
                                 "required": ["content"], "additionalProperties": False}


def tool_call_schema(tools: list[dict[str, Any]], choice: str | dict[str, Any] | None
                     ) -> dict[str, Any] | None:
    """The reply schema for OpenAI ``tools`` (``[{"type": "function", "function": {name,
    description, parameters}}]``) and ``tool_choice`` (``auto`` (default), ``none``,
    ``required`` or ``{"type": "function", "function": {"name": ...}}``); None for ``none``.
    ProtocolError for a choice naming no declared function."""
    fns = [t["function"] for t in tools]
    if choice in (None, "auto"):
        return {"anyOf": [*(_call_schema(f) for f in fns), ANSWER_SCHEMA]}
    if choice == "none":
        return None
    if choice == "required":
        return {"anyOf": [_call_schema(f) for f in fns]} if len(fns) > 1 else _call_schema(fns[0])
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    match = [f for f in fns if f["name"] == name]
    if not match:
        raise ProtocolError(f"tool_choice names {name!r}, which is not among the tools", where="tool_choice")
    return _call_schema(match[0])


def _call_text(call: dict[str, Any]) -> str:
    fn = call.get("function") or {}
    try:
        args = json.loads(fn.get("arguments") or "{}")
    except ValueError:
        args = fn.get("arguments")
    return json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False)


def tool_messages(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                  choice: str | dict[str, Any] | None) -> list[dict[str, str]]:
    """Plain ``role``/``content`` messages: the functions and the reply shape told in a
    system message (when tools are offered), earlier tool calls as their JSON, tool results
    as user messages naming the call."""
    names = {}
    out: list[dict[str, str]] = []
    for m in messages:
        if m.get("role") == "assistant" and m.get("tool_calls"):
            for c in m["tool_calls"]:
                names[c.get("id")] = (c.get("function") or {}).get("name")
            text = "\n".join(_call_text(c) for c in m["tool_calls"])
            out.append({"role": "assistant", "content": ((m.get("content") or "") + "\n" + text).strip()})
        elif m.get("role") == "tool":
            fn = names.get(m.get("tool_call_id")) or m.get("name") or "the function"
            out.append({"role": "user", "content": f"Result of {fn}: {m.get('content') or ''}"})
        else:
            out.append({"role": m["role"], "content": m.get("content") or ""})
    if tools and choice != "none":
        listing = json.dumps([{k: t["function"].get(k) for k in ("name", "description", "parameters")
                               if t["function"].get(k) is not None} for t in tools], ensure_ascii=False)
        how = ('To call a function, reply with one JSON object {"name": FUNCTION, "arguments": {...}}.')
        if choice in (None, "auto"):
            how += ' To answer without a function, reply with {"content": "your answer"}.'
        note = f"You can call these functions:\n{listing}\n{how}"
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + note}
        else:
            out.insert(0, {"role": "system", "content": note})
    return out


@dataclass
class ToolReply:
    """A reply read back: ``tool_calls`` (OpenAI's shape) or ``content``, and the finish reason."""

    content: str | None
    tool_calls: list[dict[str, Any]] | None
    finish_reason: str


def parse_tool_reply(res: ChatResult) -> ToolReply:
    """``tool_calls`` (finish ``tool_calls``) when the constrained reply is a call,
    ``content`` when it is an answer object; a reply cut short stays text."""
    obj = res.json
    if obj is None:
        try:
            obj = json.loads(res.text)
        except ValueError:
            return ToolReply(res.text, None, res.finish_reason)
    if isinstance(obj, dict) and "name" in obj and "arguments" in obj:
        call = {"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
                "function": {"name": obj["name"],
                             "arguments": json.dumps(obj["arguments"], ensure_ascii=False)}}
        return ToolReply(None, [call], "tool_calls")
    if isinstance(obj, dict) and isinstance(obj.get("content"), str):
        return ToolReply(obj["content"], None, res.finish_reason)
    return ToolReply(res.text, None, res.finish_reason)


# --- embeddings ------------------------------------------------------------------------------
@dataclass
class Embeddings:
    """Vectors for a list of texts, the tokens read and the model's digest (None: wordllama)."""

    vectors: list[list[float]]
    prompt_tokens: int
    model_digest: str | None


def embed_texts(repo: Repository, pool: EmbedderPool, model_id: str, texts: list[str]) -> Embeddings:
    """Embed ``texts`` with ``wordllama`` (the wheel's static embeddings) or a repository
    model id (``smollm2``, ``models/x.gguf``, ``MODEL+ADAPTER``): its mean-pooled last
    hidden states."""
    if not texts or any(not isinstance(t, str) or not t for t in texts):
        raise ProtocolError("input must be a non-empty string or list of non-empty strings", where="input")
    spec = {"backend": "wordllama"} if model_id in WORDLLAMA_IDS else resolve_model_id(repo, model_id)
    emb = pool.get(spec)
    vectors, n = emb.embed(texts)
    return Embeddings(vectors, n, emb.digest)
