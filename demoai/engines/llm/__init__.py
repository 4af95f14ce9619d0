"""LLM backends behind one interface; every call records what replaying it needs.

    backend = open_backend({"backend": "llamacpp", "path": "model.gguf"})
    result = backend.chat([{"role": "user", "content": "hi"}], params={"seed": 1})
    result.record  # backend, model and chat-template digests, params, schema digest, settings

Backends: ``llamacpp`` (embedded default, CPU), ``transformers`` (+ peft adapters),
``openai`` (any OpenAI-compatible endpoint) and ``vllm`` (GPU). Each imports its engine only
when opened, and raises BackendUnavailable with an install hint when it is missing.
Open backends are shared through one bounded :class:`~demoai.engines.llm.pool.ModelPool`.
"""
from __future__ import annotations

from typing import Any

from demoai.errors import ModelError
from demoai.engines.llm.base import (
    DEFAULT_N_CTX, DEFAULT_PARAMS, ChatResult, ModelBackend, default_threads, digest_json,
    digest_path, digest_text, resolve_params,
)
from demoai.engines.llm.pool import DEFAULT_POOL_SIZE, ModelPool, PooledModel, spec_key, use_model
from demoai.engines.llm.scoring import (Completion, LogLikelihood, RollingLogLikelihood,
                                        TokenLogprob, TopLogprob, encode_pair, rolling_windows)
from demoai.engines.llm.bench import bench_backend

__all__ = [
    "ChatResult", "ModelBackend", "open_backend", "BACKENDS", "DEFAULT_PARAMS", "DEFAULT_N_CTX",
    "default_threads", "resolve_params", "digest_path", "digest_text", "digest_json",
    "ModelPool", "PooledModel", "use_model", "spec_key", "DEFAULT_POOL_SIZE",
    "LogLikelihood", "RollingLogLikelihood", "TokenLogprob", "TopLogprob", "Completion",
    "encode_pair", "rolling_windows", "bench_backend",
]

BACKENDS = ("llamacpp", "transformers", "openai", "vllm")


def open_backend(spec: dict[str, Any]) -> ModelBackend:
    """Open the backend a spec names, e.g. ``{"backend": "llamacpp", "path": "m.gguf"}``.

    Keys by backend (all take ``digest``; local ones take ``threads`` and ``n_ctx``):
    llamacpp: ``path``, ``chat_template``, ``reuse_prefix``; transformers: ``path``, ``gguf_file``,
    ``adapter_path``, ``adapter_digest``; openai: ``base_url``, ``model``, ``api_key``,
    ``chat_template_digest``, ``schema_mode``; vllm: ``path``, ``gpu_memory_utilization``.
    ``source`` (where a resolved model came from) is recorded by callers, not used here.
    """
    spec = dict(spec)
    spec.pop("source", None)
    kind = spec.pop("backend", "llamacpp")
    if kind == "llamacpp":
        from demoai.engines.llm.llamacpp import LlamaCppBackend
        return LlamaCppBackend(_take(spec, "path"), **_only(spec, kind, "digest", "threads",
                                                            "n_ctx", "chat_template", "reuse_prefix"))
    if kind == "transformers":
        from demoai.engines.llm.hf import TransformersBackend
        return TransformersBackend(_take(spec, "path"), **_only(
            spec, kind, "digest", "threads", "n_ctx", "gguf_file", "adapter_path",
            "adapter_digest"))
    if kind == "openai":
        from demoai.engines.llm.openai_compat import OpenAIBackend
        return OpenAIBackend(_take(spec, "base_url"), _take(spec, "model"), **_only(
            spec, kind, "api_key", "digest", "chat_template_digest", "n_ctx", "schema_mode",
            "timeout"))
    if kind == "vllm":
        from demoai.engines.llm.vllm_backend import VLLMBackend
        return VLLMBackend(_take(spec, "path"), **_only(
            spec, kind, "digest", "n_ctx", "gpu_memory_utilization"))
    raise ModelError(f"unknown backend {kind!r}; one of {', '.join(BACKENDS)}", backend=kind)


def _take(spec: dict, key: str) -> Any:
    if spec.get(key) in (None, ""):
        raise ModelError(f"the backend spec needs {key!r}", key=key)
    return spec.pop(key)


def _only(spec: dict, kind: str, *keys: str) -> dict:
    unknown = set(spec) - set(keys)
    if unknown:
        raise ModelError(f"unknown keys for the {kind} backend: {sorted(unknown)}",
                         keys=sorted(unknown))
    return {k: v for k, v in spec.items() if v is not None}
