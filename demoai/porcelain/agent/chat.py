"""Chat with a repository's model (``POST /v1/chat/completions``), through the same
bounded :class:`ModelPool` agent runs use.

A model id is what the registry resolves at HEAD (``smollm2``, ``models/x.gguf``),
optionally ``MODEL+ADAPTER_PATH``. :func:`open_chat_model` holds the model (loading it if
needed; call it off the event loop) until its ``release()``; :func:`complete_chat` makes one
call under the model's lock. A prompt longer than the context is refused (ContextOverflow),
never cut; output that breaks a requested JSON schema (cut off at ``max_tokens``) is an
answer, as OpenAI gives it, not an error. :func:`complete_text` is the raw completion
(``POST /v1/completions``: no chat template, optional echo and prompt logprobs).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from demoai.engines.llm import ChatResult, Completion, ModelPool, PooledModel, TokenLogprob
from demoai.errors import ModelError, ProtocolError
from demoai.registry.resolve import resolve_model_id
from demoai.store.git.repo import Repository

__all__ = ["open_chat_model", "complete_chat", "complete_text", "ChatCompletion", "ChatResult",
           "ChatModel", "TextCompletion", "Completion", "TokenLogprob"]

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
