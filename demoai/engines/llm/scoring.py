"""Scoring text with a model: the result types and the tokenization rules every backend shares.

The rules are lm-evaluation-harness's, so that a score here equals one made there:

- :func:`encode_pair`: a (context, continuation) pair is split where the context's own
  encoding ends, after moving the context's trailing whitespace onto the continuation
  (``whole = encode(context + continuation)``; ``continuation = whole[len(encode(context)):]``).
  An empty context is replaced by the prefix token (BOS, else EOS).
- Text is encoded with the tokenizer's own default for special tokens (a BOS only where the
  model family's tokenizer adds one), and without one when the text already starts with the
  BOS text (a rendered chat template).
- :func:`rolling_windows`: a text is scored in disjoint windows of at most ``max_length``
  predicted tokens; the first is conditioned on the prefix token alone, each later one on the
  single token before it (lm-eval's ``context_len=1``), so a window reads ``max_length``
  tokens at most.
- Logprobs are natural logs of the model's own distribution (no temperature, penalty or
  grammar), summed in float64.
"""
from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from demoai.errors import BackendUnavailable, ContextOverflow, ModelError

__all__ = [
    "LogLikelihood", "RollingLogLikelihood", "TokenLogprob", "TopLogprob", "Completion",
    "TokenScore", "Encoder", "encode_pair", "rolling_windows", "check_requests", "check_texts",
    "unsupported", "score_rows", "offsets", "TokenScorer",
]

Encoder = Callable[[str], list[int]]
"""Text to token ids with the tokenizer's default special tokens (see module docs)."""


@dataclass
class LogLikelihood:
    """The log-probability of a continuation given its context.

    ``logprob``: sum of the continuation tokens' log-probs (natural log); ``is_greedy``:
    every continuation token is the argmax of its position; ``n_tokens``: continuation tokens;
    ``context_tokens``: context tokens scored against (after any left truncation);
    ``truncated``: the context was cut on the left to fit the context window;
    ``token_logprobs``: per continuation token."""

    logprob: float
    is_greedy: bool
    n_tokens: int
    context_tokens: int = 0
    truncated: bool = False
    token_logprobs: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready form."""
        return asdict(self)


@dataclass
class RollingLogLikelihood:
    """The log-probability of a whole text: ``logprob`` summed over its ``n_tokens`` tokens
    (each conditioned on the prefix token and what precedes it, in ``n_windows`` windows).
    Perplexity is ``exp(-logprob / n_tokens)``; bytes and words are the caller's to count."""

    logprob: float
    n_tokens: int
    n_windows: int = 1

    def to_dict(self) -> dict:
        """A JSON-ready form."""
        return asdict(self)


@dataclass
class TopLogprob:
    """One of the most likely tokens at a position."""

    token: str
    id: int
    logprob: float
    bytes: list[int] = field(default_factory=list)


@dataclass
class TokenLogprob:
    """One token of a prompt or an answer with its log-probability (None for a prompt's first
    token, which nothing predicts) and the ``top`` alternatives, most likely first."""

    token: str
    id: int
    logprob: float | None
    bytes: list[int] = field(default_factory=list)
    top: list[TopLogprob] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready form."""
        return asdict(self)


@dataclass
class Completion:
    """A raw text completion (no chat template): ``text`` generated, per-token ``tokens``
    (with logprobs when asked), the echoed ``prompt`` tokens when ``echo``, and the usual
    counts, timings and replay record."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    tokens: list[TokenLogprob] = field(default_factory=list)
    prompt: list[TokenLogprob] | None = None
    prompt_text: str = ""
    timings: dict = field(default_factory=dict)
    record: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready form."""
        return asdict(self)


@dataclass
class TokenScore:
    """What a backend's scoring pass gives for one predicted token."""

    id: int
    logprob: float
    is_greedy: bool
    top: list[tuple[int, float]] = field(default_factory=list)


def unsupported(backend: str, what: str, why: str = "") -> BackendUnavailable:
    """The typed error of a backend that cannot do ``what`` (e.g. ``loglikelihood``)."""
    msg = f"the {backend} backend cannot compute {what}" + (f": {why}" if why else "")
    return BackendUnavailable(msg, backend=backend, feature=what, unsupported=True)


def check_requests(requests: Sequence[Any]) -> list[tuple[str, str]]:
    """``requests`` as (context, continuation) string pairs, or ModelError."""
    out = []
    for i, r in enumerate(requests):
        if (not isinstance(r, (tuple, list)) or len(r) != 2
                or not all(isinstance(s, str) for s in r)):
            raise ModelError(f"loglikelihood request {i} must be a (context, continuation) "
                             f"pair of strings", index=i)
        if not r[1]:
            raise ModelError(f"loglikelihood request {i} has an empty continuation", index=i)
        out.append((r[0], r[1]))
    return out


def check_texts(texts: Sequence[Any]) -> list[str]:
    """``texts`` as strings, or ModelError."""
    if isinstance(texts, str):
        raise ModelError("loglikelihood_rolling takes a list of texts, not one string")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ModelError(f"text {i} is {type(t).__name__}, not a string", index=i)
    return list(texts)


def encode_pair(encode: Encoder, context: str, continuation: str,
                prefix_token: int) -> tuple[list[int], list[int]]:
    """Context and continuation token ids, split as lm-evaluation-harness splits them."""
    if context == "":
        cont = encode(continuation)
        if cont and cont[0] == prefix_token:   # the tokenizer added the prefix itself
            return cont[:1], cont[1:]
        return [prefix_token], cont
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = encode(context + continuation)
    ctx = encode(context)
    return ctx, whole[len(ctx):]


def rolling_windows(tokens: list[int], prefix_token: int,
                    max_length: int) -> list[tuple[list[int], list[int]]]:
    """Disjoint (context, predicted) windows covering ``tokens``; the first is conditioned on
    ``prefix_token``, each later one on the token before it. Every window's input (context
    and predicted tokens but the last) is at most ``max_length`` tokens."""
    if max_length < 1:
        raise ModelError("max_length must be at least 1", max_length=max_length)
    out: list[tuple[list[int], list[int]]] = []
    if not tokens:
        return out
    first = min(max_length, len(tokens))
    out.append(([prefix_token], tokens[:first]))
    done = first
    while done < len(tokens):
        n = min(len(tokens) - done, max_length)
        end = done + n
        ctx_start = max(0, end - max_length - 1)
        out.append((tokens[ctx_start:done], tokens[done:end]))
        done = end
    return out


def score_rows(logits: Any, targets: Sequence[int], top_k: int = 0) -> list[TokenScore]:
    """Log-softmax scores of ``targets`` under rows of ``logits`` (a float array
    ``[len(targets), vocab]``), with each row's ``top_k`` most likely tokens."""
    import numpy as np
    rows = np.asarray(logits, dtype=np.float32)
    out = []
    for row, t in zip(rows, targets):
        m = float(row.max())
        lse = m + float(np.log(np.exp(row - m, dtype=np.float32).sum(dtype=np.float64)))
        top: list[tuple[int, float]] = []
        if top_k > 0:
            k = min(top_k, row.shape[0])
            idx = np.argpartition(-row, k - 1)[:k]
            idx = idx[np.lexsort((idx, -row[idx]))]
            top = [(int(i), float(row[i]) - lse) for i in idx]
        out.append(TokenScore(int(t), float(row[t]) - lse, int(np.argmax(row)) == int(t), top))
    return out


def offsets(pieces: Sequence[str], start: int = 0) -> list[int]:
    """Character offsets of consecutive text pieces, from ``start``."""
    out, at = [], start
    for p in pieces:
        out.append(at)
        at += len(p)
    return out


class TokenScorer(abc.ABC):
    """The scoring API of a local backend, built on what it provides: ``_encode(text)``
    (:data:`Encoder`), ``_prefix_token()``, ``_score(tokens, start, top_k)`` (a
    :class:`TokenScore` for each of ``tokens[start:]``, ``start >= 1``) and
    ``_token_text(token)`` (its text and bytes)."""

    n_ctx: int
    name: str

    @abc.abstractmethod
    def _encode(self, text: str) -> list[int]:
        """Token ids of ``text`` as the model's tokenizer gives them."""

    @abc.abstractmethod
    def _prefix_token(self) -> int:
        """The token that conditions the first one (BOS, else EOS)."""

    @abc.abstractmethod
    def _score(self, tokens: list[int], start: int, top_k: int = 0) -> list[TokenScore]:
        """The score of each of ``tokens[start:]`` given the tokens before it."""

    @abc.abstractmethod
    def _token_text(self, token: int) -> tuple[str, bytes]:
        """A token's text and its exact bytes."""

    def _token(self, token: int, logprob: float | None, top: list[TopLogprob]) -> TokenLogprob:
        text, raw = self._token_text(token)
        return TokenLogprob(text, token, logprob, list(raw), top)

    def _scored(self, s: TokenScore) -> TokenLogprob:
        top = []
        for i, lp in s.top:
            text, raw = self._token_text(i)
            top.append(TopLogprob(text, i, lp, list(raw)))
        return self._token(s.id, s.logprob, top)

    def _check_prompt(self, ids: list[int], max_tokens: int) -> None:
        """A prompt that leaves no room to answer (or, echo only, does not fit) is refused."""
        if max_tokens > 0:
            self._check_fits(len(ids))      # type: ignore[attr-defined]  (ModelBackend's)
        elif len(ids) > self.n_ctx:
            raise ContextOverflow(f"prompt is {len(ids)} tokens, the context holds {self.n_ctx}",
                                  prompt_tokens=len(ids), n_ctx=self.n_ctx)

    def _echoed(self, ids: list[int], logprobs: int | None) -> list[TokenLogprob]:
        """The prompt's tokens for an echo, with their logprobs when asked (the first has
        none: nothing predicts it)."""
        out = [self._token(ids[0], None, [])]
        if logprobs is not None and len(ids) > 1:
            return out + [self._scored(s) for s in self._score(ids, 1, top_k=logprobs)]
        return out + [self._token(t, None, []) for t in ids[1:]]

    def _score_many(self, items: list[tuple[list[int], int]]) -> list[list[TokenScore]]:
        """``_score`` of each (tokens, start); a backend that batches overrides it."""
        return [self._score(tokens, start) for tokens, start in items]

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation token ids as :func:`encode_pair` splits them."""
        return encode_pair(self._encode, context, continuation, self._prefix_token())

    def loglikelihood(self, requests: Sequence[tuple[str, str]], *,
                      max_length: int | None = None) -> list[LogLikelihood]:
        """Log-probability of each (context, continuation) in raw text (no chat template).
        Contexts longer than ``max_length`` (default: the context window) lose tokens on the
        left, as lm-evaluation-harness does; a continuation longer than it is a ModelError."""
        limit = max_length or self.n_ctx
        out: list[LogLikelihood] = []
        items: list[tuple[list[int], int]] = []
        cut: list[bool] = []
        for i, (context, continuation) in enumerate(check_requests(requests)):
            ctx, cont = self.encode_pair(context, continuation)
            if not cont:
                raise ModelError(f"request {i}: the continuation {continuation!r} encodes to "
                                 f"no tokens", index=i)
            if len(cont) > limit:
                raise ModelError(f"request {i}: the continuation is {len(cont)} tokens, the "
                                 f"window {limit}", index=i, n_tokens=len(cont))
            whole = (ctx + cont)[-(limit + 1):]
            items.append((whole, len(whole) - len(cont)))
            cut.append(len(ctx) > len(whole) - len(cont))
        for (whole, start), truncated, scores in zip(items, cut, self._score_many(items)):
            lps = [s.logprob for s in scores]
            out.append(LogLikelihood(
                logprob=float(sum(lps)), is_greedy=all(s.is_greedy for s in scores),
                n_tokens=len(whole) - start, context_tokens=start,
                truncated=truncated, token_logprobs=lps))
        return out

    def loglikelihood_rolling(self, texts: Sequence[str], *,
                              max_length: int | None = None) -> list[RollingLogLikelihood]:
        """Log-probability of each whole text, in windows of ``max_length`` tokens (default:
        the context window), the first conditioned on the prefix token."""
        limit = max_length or self.n_ctx
        per_text = [rolling_windows(self._encode(t), self._prefix_token(), limit)
                    for t in check_texts(texts)]
        flat = [(ctx + pred, len(ctx)) for windows in per_text for ctx, pred in windows]
        scores = iter(self._score_many(flat))
        out = []
        for windows in per_text:
            total, n = 0.0, 0
            for _ in windows:
                got = next(scores)
                total += sum(s.logprob for s in got)
                n += len(got)
            out.append(RollingLogLikelihood(logprob=total, n_tokens=n, n_windows=len(windows)))
        return out
