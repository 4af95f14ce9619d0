"""Speed of a backend alone, as llama-bench measures it: prompt processing (``pp512``: tokens/s
evaluating a prompt from an empty cache) and text generation (``tg128``: tokens/s decoding one
token at a time from an empty cache), each repeated, with mean and standard deviation.

The prompt is ``n_prompt`` random token ids (seeded), as llama-bench's are, so the figure does
not depend on a text. Local backends time the two phases apart through
``ModelBackend.decode_timings``; a backend without it (an endpoint) is timed through
``complete`` with a text prompt: its prompt phase is then the time to first token and its
generation the rest of the call, and the token counts are the server's.
"""
from __future__ import annotations

import platform
import statistics
import time
from typing import Any

from demoai.errors import BackendUnavailable, ModelError
from demoai.engines.llm.base import ModelBackend

__all__ = ["bench_backend"]


def _stats(values: list[float]) -> dict[str, float]:
    mean = statistics.fmean(values)
    return {"mean": mean, "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def _random_tokens(backend: ModelBackend, n: int, seed: int) -> list[int]:
    import random
    vocab = _vocab_size(backend)
    rng = random.Random(seed)
    # skip the lowest ids: special tokens sit there in most vocabularies
    low = min(256, vocab // 2)
    return [rng.randrange(low, vocab) for _ in range(n)]


def _vocab_size(backend: ModelBackend) -> int:
    llm = getattr(backend, "llm", None)
    if llm is not None and hasattr(llm, "n_vocab"):
        return int(llm.n_vocab())
    model = getattr(backend, "model", None)
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "vocab_size", None):
        return int(config.vocab_size)
    tok = getattr(backend, "tokenizer", None)
    if tok is not None:
        return len(tok)
    raise BackendUnavailable("cannot find this backend's vocabulary size", backend=backend.name)


def bench_backend(backend: ModelBackend, n_prompt: int = 512, n_gen: int = 128,
                  repetitions: int = 3, *, seed: int = 0, warmup: bool = True) -> dict[str, Any]:
    """Prompt and generation speed of ``backend``: a dict with ``pp`` and ``tg`` (each
    ``{"n_tokens", "tokens_per_s": {mean, std, min, max}, "seconds": [...]}``), ``ttft_s``
    ({mean, std, min, max}), ``repetitions``, ``method`` (``decode`` or ``complete``),
    ``backend`` (its ``describe()``) and ``hardware``. One untimed warm-up run goes first."""
    if n_prompt < 1 or n_gen < 1 or repetitions < 1:
        raise ModelError("n_prompt, n_gen and repetitions must be at least 1",
                         n_prompt=n_prompt, n_gen=n_gen, repetitions=repetitions)
    try:
        prompt = _random_tokens(backend, n_prompt, seed)
        run = lambda: backend.decode_timings(prompt, n_gen)  # noqa: E731
        method = "decode"
        if warmup:
            backend.decode_timings(prompt[:min(16, n_prompt)], min(4, n_gen))
    except BackendUnavailable as e:
        if not e.fields.get("unsupported"):
            raise
        run, method = _complete_run(backend, n_prompt, n_gen), "complete"
        if warmup:
            run()
    pp_s, tg_s, ttft, pp_n, tg_n = [], [], [], n_prompt, n_gen
    for _ in range(repetitions):
        t = run()
        pp_s.append(t["prompt_s"])
        tg_s.append(t["gen_s"])
        ttft.append(t["ttft_s"])
        pp_n, tg_n = t.get("n_prompt", n_prompt), t.get("n_gen", n_gen)
    return {
        "pp": {"n_tokens": pp_n, "seconds": pp_s,
               "tokens_per_s": _stats([pp_n / s if s > 0 else 0.0 for s in pp_s])},
        "tg": {"n_tokens": tg_n, "seconds": tg_s,
               "tokens_per_s": _stats([tg_n / s if s > 0 else 0.0 for s in tg_s])},
        "ttft_s": _stats(ttft), "repetitions": repetitions, "method": method,
        "backend": backend.describe(),
        "hardware": {"machine": platform.machine(), "processor": platform.processor(),
                     "system": platform.system(), "threads": getattr(backend, "threads", None)},
    }


def _complete_run(backend: ModelBackend, n_prompt: int, n_gen: int) -> Any:
    """A timing function over ``complete``: a prompt of about ``n_prompt`` tokens of words."""
    words = "the quick brown fox jumps over a lazy dog while seven wise owls watch"
    text = " ".join((words.split() * (n_prompt // 14 + 1))[:n_prompt])

    def run() -> dict[str, float]:
        t0 = time.perf_counter()
        first: list[float] = []
        res = backend.complete(text, params={"max_tokens": n_gen, "temperature": 0.0},
                               on_token=lambda _: first or first.append(time.perf_counter()))
        total = time.perf_counter() - t0
        ttft = (first[0] - t0) if first else total
        return {"prompt_s": ttft, "ttft_s": ttft, "gen_s": max(total - ttft, 1e-9),
                "n_prompt": res.prompt_tokens, "n_gen": max(res.completion_tokens - 1, 1)}
    return run
