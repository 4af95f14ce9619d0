"""Any OpenAI-compatible chat endpoint (vLLM, llama.cpp's server, hosted APIs) via ``openai``."""
from __future__ import annotations

import re
from typing import Any

from demoai.errors import BackendUnavailable, ContextOverflow, ModelError
from demoai.engines.llm.base import (
    DEFAULT_N_CTX, ChatResult, ModelBackend, StopFilter, Stopwatch, TokenCallback, require,
    resolve_params,
)
from demoai.engines.llm.constrain import parse_and_validate

__all__ = ["OpenAIBackend"]

SCHEMA_MODES = ("auto", "json_schema", "json_object")
_CTX = re.compile(r"maximum context length is (\d+)")
_PROMPT = re.compile(r"(\d+) in the messages|(\d+) in your prompt")


class OpenAIBackend(ModelBackend):
    """Chat completions from a server; the weights and template live there.

    The server cannot prove which weights it runs, so ``model_digest`` is the caller's
    ``digest`` when given, else ``unverified:<model>``; the same goes for the template.
    JSON schemas go out as ``response_format`` type ``json_schema`` (OpenAI, vLLM) or
    ``json_object`` with a ``schema`` (llama.cpp's server); ``auto`` tries the first and
    falls back once when the server rejects it. The output is validated either way.
    """

    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 digest: str | None = None, chat_template_digest: str | None = None,
                 n_ctx: int | None = None, schema_mode: str = "auto",
                 timeout: float = 600.0) -> None:
        openai = require("openai", self.name)
        if schema_mode not in SCHEMA_MODES:
            raise ModelError(f"schema_mode must be one of {SCHEMA_MODES}", schema_mode=schema_mode)
        self._openai = openai
        self.base_url, self.model = base_url, model
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed",
                                    max_retries=0, timeout=timeout)
        self.model_digest = digest or f"unverified:{model}"
        self.chat_template_digest = chat_template_digest or "unverified:server-side"
        self.n_ctx = n_ctx or DEFAULT_N_CTX
        self.threads = 0  # the server's business
        self.schema_mode = schema_mode

    def settings(self) -> dict:
        """The endpoint and model name (the server's own settings are not visible)."""
        return {"base_url": self.base_url, "model": self.model, "n_ctx": self.n_ctx}

    def _response_format(self, schema: dict, mode: str) -> dict:
        if mode == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema",
                "json_schema": {"name": "output", "schema": schema}}

    def _create(self, messages: list[dict], p: dict, schema: dict | None,
                stream: bool) -> Any:
        kw: dict[str, Any] = dict(
            model=self.model, messages=messages, temperature=p["temperature"],
            top_p=p["top_p"], max_tokens=p["max_tokens"], seed=p["seed"], stream=stream,
            # not in OpenAI's API; vLLM and llama.cpp's server read them
            extra_body={"top_k": p["top_k"], "min_p": p["min_p"],
                        "repeat_penalty": p["repeat_penalty"],
                        "repetition_penalty": p["repeat_penalty"]})
        if p["stop"]:
            kw["stop"] = p["stop"]
        if stream:
            kw["stream_options"] = {"include_usage": True}
        mode = self.schema_mode
        if schema is None:
            return self._call(kw)
        modes = ["json_schema", "json_object"] if mode == "auto" else [mode]
        for i, m in enumerate(modes):
            try:
                out = self._call({**kw, "response_format": self._response_format(schema, m)})
            except ModelError as e:
                # llama.cpp's server answers 500 to a response_format it does not know
                rejected = getattr(e, "status", None) in (400, 422) or "response_format" in str(e)
                if i + 1 < len(modes) and rejected and not isinstance(e, ContextOverflow):
                    continue
                raise
            self.schema_mode = m  # remember what this server speaks
            return out
        raise AssertionError("unreachable")

    def _call(self, kw: dict) -> Any:
        o = self._openai
        try:
            return self.client.chat.completions.create(**kw)
        except o.APIConnectionError as e:
            raise BackendUnavailable(f"no OpenAI-compatible server at {self.base_url}: {e}",
                                     base_url=self.base_url) from e
        except o.APIStatusError as e:
            msg = str(e)
            if "context" in msg and ("length" in msg or "window" in msg):
                ctx, prompt = _CTX.search(msg), _PROMPT.search(msg)
                raise ContextOverflow(
                    f"the server refused the prompt as too long: {msg}",
                    n_ctx=int(ctx.group(1)) if ctx else None,
                    prompt_tokens=int(next(g for g in prompt.groups() if g)) if prompt else None,
                    status=e.status_code) from e
            raise ModelError(f"the server answered {e.status_code}: {msg}",
                             status=e.status_code) from e

    def chat(self, messages: list[dict], *, params: dict | None = None,
             json_schema: dict | None = None,
             on_token: TokenCallback | None = None) -> ChatResult:
        """One chat completion; streamed when ``on_token`` is given."""
        p = resolve_params(params)
        clock = Stopwatch()
        if on_token is None:
            resp = self._create(messages, p, json_schema, stream=False)
            clock.token()
            choice = resp.choices[0]
            text, finish = choice.message.content or "", choice.finish_reason or "stop"
            usage, fingerprint = resp.usage, getattr(resp, "system_fingerprint", None)
            chunks = None
        else:
            stops = StopFilter([], on_token)
            text, finish, usage, fingerprint, chunks = "", "stop", None, None, 0
            for chunk in self._create(messages, p, json_schema, stream=True):
                usage = chunk.usage or usage
                fingerprint = getattr(chunk, "system_fingerprint", None) or fingerprint
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                piece = choice.delta.content if choice.delta else None
                if piece:
                    clock.token()
                    chunks += 1
                    stops.feed(piece)
                finish = choice.finish_reason or finish
            text = stops.flush()
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion = usage.completion_tokens if usage else (chunks or 0)
        result = ChatResult(
            text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
            completion_tokens=completion, timings=clock.timings(completion),
            record=self._record(p, json_schema, server={
                "system_fingerprint": fingerprint, "schema_mode": self.schema_mode,
                "usage": "server" if usage else "chunks"}))
        if json_schema is not None:
            result.json = parse_and_validate(text, json_schema, finish_reason=finish, result=result)
        return result

    def count_tokens(self, messages: list[dict]) -> int:
        """The server's own count: a one-token completion's ``prompt_tokens``."""
        p = resolve_params({"max_tokens": 1})
        resp = self._create(messages, p, None, stream=False)
        if resp.usage is None:
            raise ModelError("the server reports no usage, so tokens cannot be counted")
        return resp.usage.prompt_tokens

    def describe(self) -> dict:
        """Name, digests and the endpoint."""
        return {**super().describe(), "base_url": self.base_url, "model": self.model}

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()
