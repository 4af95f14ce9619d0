"""The GPU backend: vLLM's offline ``LLM`` engine, with guided JSON decoding for schemas.

vLLM is optional (it needs a GPU); without it, opening this backend raises
BackendUnavailable. For a vLLM *server*, use the ``openai`` backend instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from demoai.errors import ContextOverflow, ModelError
from demoai.engines.llm.base import (
    DEFAULT_N_CTX, ChatResult, ModelBackend, Stopwatch, TokenCallback, check_logprobs,
    digest_path, digest_text, require, resolve_params,
)
from demoai.engines.llm.constrain import parse_and_validate
from demoai.engines.llm.scoring import (Completion, LogLikelihood, RollingLogLikelihood,
                                        TokenLogprob, TokenScore, TokenScorer)

__all__ = ["VLLMBackend"]


class VLLMBackend(TokenScorer, ModelBackend):
    """A model folder (or GGUF) served in-process by ``vllm.LLM``.

    The offline engine does not stream: ``on_token`` receives the whole text once.
    Scoring batches every request into one ``generate`` with ``prompt_logprobs`` (one new
    token each, so a scored sequence is at most ``n_ctx - 1`` tokens); tokenization follows
    :mod:`demoai.engines.llm.scoring` with vLLM's (Hugging Face) tokenizer. Logprobs are
    vLLM's defaults (raw, before sampling settings).
    """

    name = "vllm"

    def __init__(self, path: str | Path, *, digest: str | None = None,
                 n_ctx: int | None = None, gpu_memory_utilization: float = 0.9) -> None:
        self._vllm = vllm = require("vllm", self.name)
        self.path = Path(path)
        if not self.path.exists():
            raise ModelError(f"no model at {self.path}", path=str(self.path))
        self.n_ctx = n_ctx or DEFAULT_N_CTX
        self.threads = 0  # GPU
        self.model_digest = digest or digest_path(self.path)
        self.gpu_memory_utilization = gpu_memory_utilization
        self.llm = vllm.LLM(model=str(self.path), max_model_len=self.n_ctx,
                            gpu_memory_utilization=gpu_memory_utilization)
        self.tokenizer = self.llm.get_tokenizer()
        self.chat_template_digest = digest_text(getattr(self.tokenizer, "chat_template", "") or "")

    def settings(self) -> dict:
        """Context and GPU memory share."""
        return {"n_ctx": self.n_ctx, "gpu_memory_utilization": self.gpu_memory_utilization}

    def count_tokens(self, messages: list[dict]) -> int:
        """Prompt tokens of ``messages`` under the tokenizer's chat template."""
        return len(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                      tokenize=True))

    def _sampling(self, p: dict, schema: dict | None, *, logprobs: int | None = None,
                  prompt_logprobs: int | None = None) -> Any:
        kw: dict[str, Any] = dict(
            temperature=p["temperature"], top_p=p["top_p"], top_k=p["top_k"],
            min_p=p["min_p"], repetition_penalty=p["repeat_penalty"],
            max_tokens=max(1, p["max_tokens"]), seed=p["seed"], stop=p["stop"] or None,
            logprobs=logprobs, prompt_logprobs=prompt_logprobs)
        if schema is not None:
            try:  # vLLM >= 0.10
                from vllm.sampling_params import StructuredOutputsParams
                kw["structured_outputs"] = StructuredOutputsParams(json=schema)
            except ImportError:
                from vllm.sampling_params import GuidedDecodingParams
                kw["guided_decoding"] = GuidedDecodingParams(json=schema)
        return self._vllm.SamplingParams(**kw)

    def chat(self, messages: list[dict], *, params: dict | None = None,
             json_schema: dict | None = None, on_token: TokenCallback | None = None,
             logprobs: int | None = None) -> ChatResult:
        """One chat completion; a schema constrains decoding through vLLM's guided JSON;
        ``logprobs=k`` returns vLLM's sample logprobs with ``k`` alternatives."""
        p, logprobs = resolve_params(params), check_logprobs(logprobs)
        clock = Stopwatch()
        self._check_fits(self.count_tokens(messages))
        sp = self._sampling(p, json_schema, logprobs=logprobs)
        out = self.llm.chat(messages, sp, use_tqdm=False)[0]
        gen = out.outputs[0]
        clock.token()
        if on_token is not None and gen.text:
            on_token(gen.text)
        n = len(gen.token_ids)
        extra = {"logprobs": logprobs} if logprobs is not None else {}
        result = ChatResult(
            text=gen.text, finish_reason=gen.finish_reason or "stop",
            prompt_tokens=len(out.prompt_token_ids or []), completion_tokens=n,
            timings=clock.timings(n),
            record=self._record(p, json_schema, library={"vllm": self._vllm.__version__}, **extra),
            logprobs=self._sample_logprobs(gen, logprobs))
        if json_schema is not None:
            result.json = parse_and_validate(gen.text, json_schema,
                                             finish_reason=result.finish_reason, result=result)
        return result

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """``messages`` under the tokenizer's chat template, as text."""
        try:
            return self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=add_generation_prompt, tokenize=False)
        except Exception as e:  # jinja errors: a template that rejects these messages
            raise ModelError(f"the chat template rejected the messages: {e}") from e

    # --- scoring ---
    def _encode(self, text: str) -> list[int]:
        bos = self.tokenizer.decode([self._prefix_token()])
        if bos and text.startswith(bos):
            return self.tokenizer.encode(text, add_special_tokens=False)
        return self.tokenizer.encode(text)

    def _prefix_token(self) -> int:
        tok = self.tokenizer
        return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def loglikelihood(self, requests: list[tuple[str, str]], *,
                      max_length: int | None = None) -> list[LogLikelihood]:
        """As :meth:`TokenScorer.loglikelihood`, in windows of at most ``n_ctx - 2`` tokens
        (vLLM generates one token after each scored prompt)."""
        return super().loglikelihood(requests, max_length=min(max_length or self.n_ctx,
                                                              self.n_ctx - 2))

    def loglikelihood_rolling(self, texts: list[str], *,
                              max_length: int | None = None) -> list[RollingLogLikelihood]:
        """As :meth:`TokenScorer.loglikelihood_rolling`, in windows of at most ``n_ctx - 2``."""
        return super().loglikelihood_rolling(texts, max_length=min(max_length or self.n_ctx,
                                                                   self.n_ctx - 2))

    def _score_many(self, items: list[tuple[list[int], int]], top_k: int = 0) -> list[list[TokenScore]]:
        """One batched ``generate``: each prompt's ``prompt_logprobs`` (rank 1 is greedy)."""
        for tokens, start in items:
            if start < 1 or start >= len(tokens):
                raise ModelError("scoring needs at least one context and one scored token")
            if len(tokens) + 1 > self.n_ctx:
                raise ContextOverflow(f"{len(tokens)} tokens to score, the context holds "
                                      f"{self.n_ctx}", prompt_tokens=len(tokens), n_ctx=self.n_ctx)
        if not items:
            return []
        sp = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=max(1, top_k),
                                       detokenize=False)
        prompts = [{"prompt_token_ids": list(tokens)} for tokens, _ in items]
        outs = self.llm.generate(prompts, sp, use_tqdm=False)
        return [[_token_score(tokens[i], out.prompt_logprobs[i], top_k)
                 for i in range(start, len(tokens))]
                for (tokens, start), out in zip(items, outs)]

    def _score(self, tokens: list[int], start: int, top_k: int = 0) -> list[TokenScore]:
        return self._score_many([(tokens, start)], top_k)[0]

    def _token_text(self, token: int) -> tuple[str, bytes]:
        text = self.tokenizer.decode([token])
        return text, text.encode("utf-8")

    def _sample_logprobs(self, gen: Any, k: int | None) -> list[TokenLogprob] | None:
        if k is None:
            return None
        return [self._scored(_token_score(t, d, k)) for t, d in zip(gen.token_ids, gen.logprobs or [])]

    def complete(self, prompt: str | list[int], *, params: dict | None = None,
                 logprobs: int | None = None, echo: bool = False,
                 on_token: TokenCallback | None = None) -> Completion:
        """A raw completion (no chat template) with sample and, for ``echo``, prompt
        logprobs; with ``max_tokens`` 0 one token is generated and dropped."""
        p, logprobs = resolve_params(params, min_tokens=0 if echo else 1), check_logprobs(logprobs)
        clock = Stopwatch()
        ids = self._encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        if not ids:
            raise ModelError("the prompt is empty")
        self._check_fits(len(ids))
        sp = self._sampling(p, None, logprobs=logprobs,
                            prompt_logprobs=logprobs if echo and logprobs is not None else None)
        out = self.llm.generate([{"prompt_token_ids": ids}], sp, use_tqdm=False)[0]
        gen = out.outputs[0]
        clock.token()
        keep = p["max_tokens"] > 0
        text = gen.text if keep else ""
        if on_token is not None and text:
            on_token(text)
        echoed = None
        if echo:
            plp = out.prompt_logprobs or [None] * len(ids)
            echoed = [self._token(ids[0], None, [])] + [
                self._scored(_token_score(t, d, logprobs)) if logprobs is not None and d
                else self._token(t, None, []) for t, d in zip(ids[1:], plp[1:])]
        n = len(gen.token_ids) if keep else 0
        return Completion(
            text=text, finish_reason=(gen.finish_reason or "stop") if keep else "length",
            prompt_tokens=len(ids), completion_tokens=n,
            tokens=(self._sample_logprobs(gen, logprobs) or []) if keep else [],
            prompt=echoed, prompt_text=prompt if isinstance(prompt, str) else self.tokenizer.decode(ids),
            timings=clock.timings(n),
            record=self._record(p, None, library={"vllm": self._vllm.__version__}, raw=True,
                                echo=echo, **({"logprobs": logprobs} if logprobs is not None else {})))

    def close(self) -> None:
        """Drop the engine (vLLM frees the GPU memory when it is collected)."""
        self.llm = None


def _token_score(token: int, entry: Any, top_k: int) -> TokenScore:
    """A :class:`TokenScore` from one vLLM logprobs entry (``{id: Logprob}``; rank 1 is the
    argmax; the entry always holds the token itself)."""
    if not entry or token not in entry:
        raise ModelError(f"vLLM returned no logprob for token {token}", token=token)
    mine = entry[token]
    ranked = sorted(((lp.rank, i, lp.logprob) for i, lp in entry.items()
                     if lp.rank is not None), key=lambda x: (x[0], x[1]))
    top = [(i, float(v)) for r, i, v in ranked if r <= top_k]
    return TokenScore(token, float(mine.logprob), mine.rank == 1, top)
