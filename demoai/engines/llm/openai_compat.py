"""Any OpenAI-compatible chat endpoint (vLLM, llama.cpp's server, hosted APIs) via ``openai``."""
from __future__ import annotations

import re
from typing import Any

from demoai.errors import BackendUnavailable, ContextOverflow, ModelError
from demoai.engines.llm.base import (
    DEFAULT_N_CTX, ChatResult, ModelBackend, StopFilter, Stopwatch, TokenCallback,
    check_logprobs, require, resolve_params,
)
from demoai.engines.llm.constrain import parse_and_validate
from demoai.engines.llm.scoring import (Completion, LogLikelihood, RollingLogLikelihood,
                                        TokenLogprob, TopLogprob, check_requests, check_texts,
                                        unsupported)

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

    Scoring uses the legacy ``/v1/completions`` with ``echo=True, logprobs=1, max_tokens=0``
    (``1`` where a server refuses 0; the generated token is dropped): a pair is scored by
    echoing ``context + continuation`` and the context alone, and split where the context's
    own tokens end, as lm-evaluation-harness splits it. A server that answers without prompt
    logprobs raises BackendUnavailable (``unsupported``). The server's tokenizer decides the
    BOS; an empty context is scored only where the server adds one.
    """

    BATCH = 16                  # prompts per scoring request

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
        self._echo_tokens = 0   # max_tokens sent with echo: 1 once a server refuses 0

    def settings(self) -> dict:
        """The endpoint and model name (the server's own settings are not visible)."""
        return {"base_url": self.base_url, "model": self.model, "n_ctx": self.n_ctx}

    def _response_format(self, schema: dict, mode: str) -> dict:
        if mode == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema",
                "json_schema": {"name": "output", "schema": schema}}

    def _create(self, messages: list[dict], p: dict, schema: dict | None,
                stream: bool, logprobs: int | None = None) -> Any:
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
        if logprobs is not None:
            kw.update(logprobs=True, top_logprobs=logprobs)
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

    def _call(self, kw: dict, create: Any = None) -> Any:
        o = self._openai
        try:
            return (create or self.client.chat.completions.create)(**kw)
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
             json_schema: dict | None = None, on_token: TokenCallback | None = None,
             logprobs: int | None = None) -> ChatResult:
        """One chat completion; streamed when ``on_token`` is given; ``logprobs=k`` asks the
        server for ``logprobs`` and ``top_logprobs=k``."""
        p, logprobs = resolve_params(params), check_logprobs(logprobs)
        clock = Stopwatch()
        lps: list[TokenLogprob] | None = [] if logprobs is not None else None
        if on_token is None:
            resp = self._create(messages, p, json_schema, stream=False, logprobs=logprobs)
            clock.token()
            choice = resp.choices[0]
            text, finish = choice.message.content or "", choice.finish_reason or "stop"
            usage, fingerprint = resp.usage, getattr(resp, "system_fingerprint", None)
            chunks = None
            if lps is not None:
                lps.extend(_chat_logprobs(choice))
        else:
            stops = StopFilter([], on_token)
            text, finish, usage, fingerprint, chunks = "", "stop", None, None, 0
            for chunk in self._create(messages, p, json_schema, stream=True, logprobs=logprobs):
                usage = chunk.usage or usage
                fingerprint = getattr(chunk, "system_fingerprint", None) or fingerprint
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                piece = choice.delta.content if choice.delta else None
                if lps is not None:
                    lps.extend(_chat_logprobs(choice))
                if piece:
                    clock.token()
                    chunks += 1
                    stops.feed(piece)
                finish = choice.finish_reason or finish
            text = stops.flush()
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion = usage.completion_tokens if usage else (chunks or 0)
        extra = {"logprobs": logprobs} if logprobs is not None else {}
        result = ChatResult(
            text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
            completion_tokens=completion, timings=clock.timings(completion),
            record=self._record(p, json_schema, server={
                "system_fingerprint": fingerprint, "schema_mode": self.schema_mode,
                "usage": "server" if usage else "chunks"}, **extra),
            logprobs=lps)
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

    # --- legacy completions and scoring ---
    def _completions(self, prompts: list[Any], *, max_tokens: int, logprobs: int | None,
                     echo: bool, p: dict | None = None, with_usage: bool = False) -> Any:
        """One ``/v1/completions`` call; the choices in prompt order (with ``with_usage``: the
        first choice and the usage)."""
        kw: dict[str, Any] = dict(model=self.model, prompt=prompts, max_tokens=max_tokens,
                                  echo=echo, temperature=0.0 if p is None else p["temperature"])
        if logprobs is not None:
            kw["logprobs"] = logprobs
        if p is not None:
            kw.update(top_p=p["top_p"], seed=p["seed"], extra_body={
                "top_k": p["top_k"], "min_p": p["min_p"], "repeat_penalty": p["repeat_penalty"],
                "repetition_penalty": p["repeat_penalty"]})
            if p["stop"]:
                kw["stop"] = p["stop"]
        try:
            resp = self._call(kw, self.client.completions.create)
        except ContextOverflow:
            raise
        except ModelError as e:
            if getattr(e, "fields", {}).get("status") == 404:
                raise unsupported(self.name, "completions",
                                  f"{self.base_url} has no /v1/completions") from e
            raise
        choices = sorted(resp.choices, key=lambda c: c.index)
        return (choices[0], resp.usage) if with_usage else choices

    def _echo(self, prompts: list[str]) -> dict[str, tuple[list[str], list[float | None], list[dict]]]:
        """Each prompt's echoed tokens, logprobs and top logprobs (``max_tokens`` 0, else 1)."""
        out: dict[str, Any] = {}
        todo = list(dict.fromkeys(prompts))
        for i in range(0, len(todo), self.BATCH):
            batch = todo[i:i + self.BATCH]
            try:
                choices = self._completions(batch, max_tokens=self._echo_tokens, logprobs=1, echo=True)
            except ModelError as e:
                if (self._echo_tokens == 0 and e.fields.get("status") in (400, 422)
                        and not isinstance(e, ContextOverflow)):
                    self._echo_tokens = 1        # a server that wants at least one new token
                    choices = self._completions(batch, max_tokens=1, logprobs=1, echo=True)
                else:
                    raise
            for prompt, c in zip(batch, choices):
                lp = c.logprobs
                if lp is None or not lp.token_logprobs:
                    raise unsupported(self.name, "loglikelihood",
                                      "the server returns no prompt logprobs (echo)")
                offs = list(lp.text_offset or [])
                n = len(lp.tokens)
                if self._echo_tokens:          # drop what was generated after the prompt
                    n = sum(1 for o in offs if o < len(prompt)) if offs else n - 1
                out[prompt] = (list(lp.tokens[:n]), list(lp.token_logprobs[:n]),
                               [dict(t or {}) for t in (lp.top_logprobs or [None] * n)[:n]])
        return out

    def loglikelihood(self, requests: list[tuple[str, str]], *,
                      max_length: int | None = None) -> list[LogLikelihood]:
        """Each pair's continuation logprob from the server's echoed prompt logprobs."""
        pairs = []
        for context, continuation in check_requests(requests):
            n_spaces = len(context) - len(context.rstrip())
            if n_spaces:
                context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
            pairs.append((context, context + continuation))
        echoed = self._echo([x for pair in pairs for x in pair if x])
        out = []
        for i, (context, whole) in enumerate(pairs):
            _, lps, tops = echoed[whole]
            start = len(echoed[context][0]) if context else 0
            cont, cont_tops = lps[start:], tops[start:]
            if not cont or any(v is None for v in cont):
                raise unsupported(self.name, "loglikelihood",
                                  f"request {i}: the server leaves the first continuation "
                                  f"token unscored (an empty context needs a BOS it adds)")
            greedy = all(not t or v >= max(t.values()) for v, t in zip(cont, cont_tops))
            out.append(LogLikelihood(logprob=float(sum(cont)), is_greedy=greedy,
                                     n_tokens=len(cont), context_tokens=start,
                                     token_logprobs=[float(v) for v in cont]))
        return out

    def loglikelihood_rolling(self, texts: list[str], *,
                              max_length: int | None = None) -> list[RollingLogLikelihood]:
        """Each text's logprob summed over the tokens the server scores (all but a first
        token that nothing precedes: a server that adds a BOS scores every token)."""
        texts = check_texts(texts)
        echoed = self._echo([t for t in texts if t])
        out = []
        for t in texts:
            lps = [v for v in echoed[t][1] if v is not None] if t else []
            out.append(RollingLogLikelihood(logprob=float(sum(lps)), n_tokens=len(lps)))
        return out

    def complete(self, prompt: str | list[int], *, params: dict | None = None,
                 logprobs: int | None = None, echo: bool = False,
                 on_token: TokenCallback | None = None) -> Completion:
        """A legacy ``/v1/completions`` call (not streamed: ``on_token`` gets the text once)."""
        p, logprobs = resolve_params(params, min_tokens=0 if echo else 1), check_logprobs(logprobs)
        clock = Stopwatch()
        resp_choices = self._completions([prompt], max_tokens=p["max_tokens"], logprobs=logprobs,
                                         echo=echo, p=p, with_usage=True)
        c, usage = resp_choices
        clock.token()
        text = c.text or ""
        prompt_text = prompt if isinstance(prompt, str) else ""
        if echo and isinstance(prompt, str) and text.startswith(prompt):
            text = text[len(prompt):]
        toks: list[TokenLogprob] = []
        lp = c.logprobs
        if lp is not None and lp.tokens:
            tops = lp.top_logprobs or [None] * len(lp.tokens)
            toks = [TokenLogprob(t, -1, v, list(t.encode("utf-8")),
                                 [TopLogprob(k, -1, x, list(k.encode("utf-8")))
                                  for k, x in sorted((top or {}).items(), key=lambda kv: -kv[1])])
                    for t, v, top in zip(lp.tokens, lp.token_logprobs, tops)]
        n_prompt = 0
        if echo and toks:
            offs = lp.text_offset or []
            n_prompt = (sum(1 for o in offs if o < len(prompt_text)) if offs and prompt_text
                        else len(prompt) if not isinstance(prompt, str) else len(toks))
        if on_token is not None and text:
            on_token(text)
        return Completion(
            text=text, finish_reason=c.finish_reason or "stop",
            prompt_tokens=usage.prompt_tokens if usage else n_prompt,
            completion_tokens=usage.completion_tokens if usage else max(0, len(toks) - n_prompt),
            tokens=toks[n_prompt:] if logprobs is not None else [],
            prompt=toks[:n_prompt] if echo else None, prompt_text=prompt_text,
            timings=clock.timings(max(0, len(toks) - n_prompt)),
            record=self._record(p, None, raw=True, echo=echo, usage=bool(usage),
                                **({"logprobs": logprobs} if logprobs is not None else {})))

    def describe(self) -> dict:
        """Name, digests and the endpoint."""
        return {**super().describe(), "base_url": self.base_url, "model": self.model}

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()


def _chat_logprobs(choice: Any) -> list[TokenLogprob]:
    """A chat choice's (or chunk's) ``logprobs.content`` as TokenLogprobs."""
    content = getattr(getattr(choice, "logprobs", None), "content", None) or []
    return [TokenLogprob(c.token, -1, c.logprob, list(c.bytes or []),
                         [TopLogprob(t.token, -1, t.logprob, list(t.bytes or []))
                          for t in (c.top_logprobs or [])]) for c in content]
