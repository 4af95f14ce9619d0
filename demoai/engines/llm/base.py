"""The one interface every LLM backend implements, and what each call records for replay."""
from __future__ import annotations

import abc
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from demoai.errors import BackendUnavailable, ContextOverflow, ModelError
from demoai.engines.llm.scoring import (Completion, LogLikelihood, RollingLogLikelihood,
                                        TokenLogprob, unsupported)

__all__ = [
    "ChatResult", "ModelBackend", "DEFAULT_PARAMS", "DEFAULT_N_CTX", "INSTALL_HINTS",
    "default_threads", "resolve_params", "digest_text", "digest_json", "digest_path",
    "require", "Stopwatch", "StopFilter", "TokenCallback", "check_logprobs", "MAX_TOP_LOGPROBS",
]

MAX_TOP_LOGPROBS = 20

TokenCallback = Callable[[str], None]

DEFAULT_N_CTX = 2048
# Greedy by default: a call with no params replays to the same text.
DEFAULT_PARAMS: dict[str, Any] = {
    "temperature": 0.0, "top_p": 0.95, "top_k": 40, "min_p": 0.05,
    "repeat_penalty": 1.0, "max_tokens": 256, "seed": 0, "stop": [],
}
INSTALL_HINTS = {
    "llama_cpp": "pip install 'demoai[llm]'",
    "transformers": "pip install torch==2.13.0 && pip install 'demoai[train]'",
    "torch": "pip install torch==2.13.0",
    "peft": "pip install 'demoai[train]'",
    "openai": "pip install 'demoai[openai]'",
    "vllm": "pip install 'demoai[vllm]' (needs a GPU)",
}


@dataclass
class ChatResult:
    """One completed chat call: the text, usage, timings and the replay record."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    timings: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict)
    json: Any = None  # the parsed object when a json_schema constrained the call
    logprobs: list[TokenLogprob] | None = None  # per answer token, when the call asked

    def to_dict(self) -> dict:
        """A JSON-ready form."""
        return asdict(self)


class ModelBackend(abc.ABC):
    """A loaded model that answers chat calls; ``close()`` frees it.

    Scoring (``loglikelihood``, ``loglikelihood_rolling``), raw completions (``complete``),
    ``render_chat`` and ``decode_timings`` are optional: a backend that cannot do one raises
    BackendUnavailable (``fields["unsupported"]`` true) from the default here.
    """

    name: str = ""
    model_digest: str = ""
    chat_template_digest: str = ""
    n_ctx: int = DEFAULT_N_CTX
    threads: int = 1

    @abc.abstractmethod
    def chat(self, messages: list[dict], *, params: dict | None = None,
             json_schema: dict | None = None, on_token: TokenCallback | None = None,
             logprobs: int | None = None) -> ChatResult:
        """Complete ``messages``; ``on_token`` receives each streamed piece of text;
        ``logprobs=k`` (0..20) fills ``ChatResult.logprobs`` (each token's logprob and its
        ``k`` likeliest alternatives) and is recorded; None leaves the record as it was."""

    @abc.abstractmethod
    def count_tokens(self, messages: list[dict]) -> int:
        """The prompt length of ``messages`` once the chat template is applied."""

    def loglikelihood(self, requests: list[tuple[str, str]], *,
                      max_length: int | None = None) -> list[LogLikelihood]:
        """For each (context, continuation) in raw text: the continuation's log-probability
        (see :mod:`demoai.engines.llm.scoring` for the tokenization rules)."""
        raise unsupported(self.name, "loglikelihood")

    def loglikelihood_rolling(self, texts: list[str], *,
                              max_length: int | None = None) -> list[RollingLogLikelihood]:
        """For each text: its log-probability, in windows of ``max_length`` tokens."""
        raise unsupported(self.name, "loglikelihood_rolling")

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """``messages`` under this model's chat template, as the text the model reads."""
        raise unsupported(self.name, "render_chat", "the chat template is not available here")

    def complete(self, prompt: str | list[int], *, params: dict | None = None,
                 logprobs: int | None = None, echo: bool = False,
                 on_token: TokenCallback | None = None) -> Completion:
        """A raw text completion of ``prompt`` (no chat template), with per-token logprobs
        (``logprobs=k``: and the ``k`` likeliest alternatives) and the prompt's tokens when
        ``echo`` (then ``max_tokens`` may be 0)."""
        raise unsupported(self.name, "complete")

    def decode_timings(self, prompt: list[int], n_gen: int) -> dict:
        """``{"prompt_s", "ttft_s", "gen_s"}``: seconds to evaluate ``prompt`` token ids from an
        empty cache, to its first token, and to decode ``n_gen`` tokens one at a time."""
        raise unsupported(self.name, "decode_timings")

    def describe(self) -> dict:
        """What this backend is: name, digests and settings."""
        return {"backend": self.name, "model_digest": self.model_digest,
                "chat_template_digest": self.chat_template_digest,
                "settings": self.settings()}

    def settings(self) -> dict:
        """The runtime settings that can change an output."""
        return {"threads": self.threads, "n_ctx": self.n_ctx}

    def close(self) -> None:
        """Free the model; the default has nothing to free."""

    def __enter__(self) -> "ModelBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, params: dict, json_schema: dict | None, **extra: Any) -> dict:
        rec = {"backend": self.name, "model_digest": self.model_digest,
               "chat_template_digest": self.chat_template_digest, "params": params,
               "json_schema": digest_json(json_schema) if json_schema is not None else None,
               "settings": self.settings()}
        rec.update(extra)
        return rec

    def _check_fits(self, prompt_tokens: int) -> None:
        if prompt_tokens >= self.n_ctx:
            raise ContextOverflow(
                f"prompt is {prompt_tokens} tokens, the context holds {self.n_ctx} "
                f"(at least one must be left to answer)",
                prompt_tokens=prompt_tokens, n_ctx=self.n_ctx)


def default_threads() -> int:
    """CPU threads for inference: ``DEMOAI_LLM_THREADS`` or 1."""
    raw = os.environ.get("DEMOAI_LLM_THREADS", "").strip()
    try:
        return max(1, int(raw)) if raw else 1
    except ValueError:
        raise ModelError(f"DEMOAI_LLM_THREADS must be an integer, not {raw!r}") from None


def resolve_params(params: dict | None, *, min_tokens: int = 1) -> dict:
    """Sampling params with every default filled in, as they are recorded (``max_tokens``
    at least ``min_tokens``: 0 only for a raw completion that echoes its prompt)."""
    out = dict(DEFAULT_PARAMS)
    unknown = set(params or {}) - set(DEFAULT_PARAMS)
    if unknown:
        raise ModelError(f"unknown sampling params: {sorted(unknown)}", params=sorted(unknown))
    out.update(params or {})
    stop = out["stop"]
    out["stop"] = [stop] if isinstance(stop, str) else list(stop or [])
    out["max_tokens"] = int(out["max_tokens"])
    out["seed"] = int(out["seed"])
    if out["max_tokens"] < min_tokens:
        raise ModelError(f"max_tokens must be at least {min_tokens}", max_tokens=out["max_tokens"])
    return out


def check_logprobs(logprobs: int | None) -> int | None:
    """``logprobs`` as given (None: not asked), or ModelError outside 0..MAX_TOP_LOGPROBS."""
    if logprobs is None:
        return None
    if isinstance(logprobs, bool) or not isinstance(logprobs, int) or not (
            0 <= logprobs <= MAX_TOP_LOGPROBS):
        raise ModelError(f"logprobs must be an integer from 0 to {MAX_TOP_LOGPROBS}",
                         logprobs=logprobs)
    return logprobs


def digest_text(text: str) -> str:
    """``blake3:<hex>`` of a text."""
    import blake3
    return "blake3:" + blake3.blake3(text.encode("utf-8")).hexdigest()


def digest_json(obj: Any) -> str:
    """``blake3:<hex>`` of the canonical JSON of ``obj``."""
    return digest_text(json.dumps(obj, sort_keys=True, separators=(",", ":")))


def digest_path(path: str | os.PathLike) -> str:
    """``blake3:<hex>`` of a weights file, or of a folder's files (names and contents)."""
    import blake3
    p = Path(path)
    if p.is_file():
        h = blake3.blake3(max_threads=blake3.blake3.AUTO)
        h.update_mmap(p)
        return "blake3:" + h.hexdigest()
    if not p.is_dir():
        raise ModelError(f"no model at {p}", path=str(p))
    lines = []
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        lines.append(f"{f.relative_to(p).as_posix()}\0{digest_path(f)}\n")
    return digest_text("".join(lines))


def require(module: str, backend: str) -> Any:
    """Import ``module`` or raise BackendUnavailable with the install hint."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as e:
        hint = INSTALL_HINTS.get(module.split(".")[0], f"pip install {module}")
        raise BackendUnavailable(f"the {backend} backend needs {module}: {hint}",
                                 backend=backend, module=module, hint=hint) from e


class Stopwatch:
    """Measures time to first token and total time of one call."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None

    def token(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def timings(self, completion_tokens: int) -> dict:
        total = time.perf_counter() - self.start
        ttft = (self.first - self.start) if self.first is not None else total
        return {"ttft_s": ttft, "total_s": total,
                "tokens_per_s": completion_tokens / total if total > 0 else 0.0}



class StopFilter:
    """Passes streamed text on, holding back what may be the start of a stop string."""

    def __init__(self, stops: list[str], on_token: TokenCallback | None) -> None:
        self.stops = [s for s in stops if s]
        self.on_token = on_token
        self.text = ""
        self.sent = 0
        self.stopped = False

    def feed(self, piece: str) -> bool:
        """Add a piece; True once a stop string appeared (the text is cut before it)."""
        self.text += piece
        hold = 0
        for s in self.stops:
            at = self.text.find(s, max(0, self.sent - len(s)))
            if at >= 0:
                self.text = self.text[:at]
                self.stopped = True
                break
            hold = max(hold, _partial_suffix(self.text, s))
        self._emit(len(self.text) - (0 if self.stopped else hold))
        return self.stopped

    def flush(self) -> str:
        """Send what was held back; the full text."""
        self._emit(len(self.text))
        return self.text

    def _emit(self, upto: int) -> None:
        if upto > self.sent:
            if self.on_token is not None:
                self.on_token(self.text[self.sent:upto])
            self.sent = upto


def _partial_suffix(text: str, stop: str) -> int:
    for n in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:n]):
            return n
    return 0
