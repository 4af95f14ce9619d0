"""The GPU backend: vLLM's offline ``LLM`` engine, with guided JSON decoding for schemas.

vLLM is optional (it needs a GPU); without it, opening this backend raises
BackendUnavailable. For a vLLM *server*, use the ``openai`` backend instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from demoai.errors import ModelError
from demoai.engines.llm.base import (
    DEFAULT_N_CTX, ChatResult, ModelBackend, Stopwatch, TokenCallback, digest_path,
    digest_text, require, resolve_params,
)
from demoai.engines.llm.constrain import parse_and_validate

__all__ = ["VLLMBackend"]


class VLLMBackend(ModelBackend):
    """A model folder (or GGUF) served in-process by ``vllm.LLM``.

    The offline engine does not stream: ``on_token`` receives the whole text once.
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

    def _sampling(self, p: dict, schema: dict | None) -> Any:
        kw: dict[str, Any] = dict(
            temperature=p["temperature"], top_p=p["top_p"], top_k=p["top_k"],
            min_p=p["min_p"], repetition_penalty=p["repeat_penalty"],
            max_tokens=p["max_tokens"], seed=p["seed"], stop=p["stop"] or None)
        if schema is not None:
            try:  # vLLM >= 0.10
                from vllm.sampling_params import StructuredOutputsParams
                kw["structured_outputs"] = StructuredOutputsParams(json=schema)
            except ImportError:
                from vllm.sampling_params import GuidedDecodingParams
                kw["guided_decoding"] = GuidedDecodingParams(json=schema)
        return self._vllm.SamplingParams(**kw)

    def chat(self, messages: list[dict], *, params: dict | None = None,
             json_schema: dict | None = None,
             on_token: TokenCallback | None = None) -> ChatResult:
        """One chat completion; a schema constrains decoding through vLLM's guided JSON."""
        p = resolve_params(params)
        clock = Stopwatch()
        self._check_fits(self.count_tokens(messages))
        out = self.llm.chat(messages, self._sampling(p, json_schema), use_tqdm=False)[0]
        gen = out.outputs[0]
        clock.token()
        if on_token is not None and gen.text:
            on_token(gen.text)
        n = len(gen.token_ids)
        result = ChatResult(
            text=gen.text, finish_reason=gen.finish_reason or "stop",
            prompt_tokens=len(out.prompt_token_ids or []), completion_tokens=n,
            timings=clock.timings(n),
            record=self._record(p, json_schema, library={"vllm": self._vllm.__version__}))
        if json_schema is not None:
            result.json = parse_and_validate(gen.text, json_schema,
                                             finish_reason=result.finish_reason, result=result)
        return result

    def close(self) -> None:
        """Drop the engine (vLLM frees the GPU memory when it is collected)."""
        self.llm = None
