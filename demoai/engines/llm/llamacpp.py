"""The embedded default backend: a GGUF model on CPU through llama-cpp-python."""
from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any

from demoai.errors import ContextOverflow, ModelError
from demoai.engines.llm.base import (
    DEFAULT_N_CTX, ChatResult, ModelBackend, StopFilter, Stopwatch, TokenCallback,
    check_logprobs, default_threads, digest_json, digest_path, digest_text, require,
    resolve_params,
)
from demoai.engines.llm.constrain import (UnsupportedSchema, parse_and_validate, schema_gbnf,
                                         strict_strings)
from demoai.engines.llm.scoring import (Completion, TokenLogprob, TokenScore, TokenScorer, score_rows)

__all__ = ["LlamaCppBackend", "CHATML_TEMPLATE", "SCORE_CHUNK"]

# Positions whose logits one scoring decode returns: llama.cpp keeps an output buffer as
# large as the largest such batch (rows x vocab floats: 128 x 49152 x 4 B = 25 MB for
# SmolLM2), instead of the n_ctx x vocab of a ``logits_all`` context (400 MB).
SCORE_CHUNK = 128

# Used only when a GGUF carries no chat template; its digest is recorded like any other.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class LlamaCppBackend(TokenScorer, ModelBackend):
    """A GGUF file loaded with ``llama_cpp.Llama``; generation runs on its token loop.

    The chat template is the GGUF's ``tokenizer.chat_template``, rendered once per call;
    JSON schemas become llama.cpp grammars (:meth:`grammar`, cached per schema), so a reply that
    is not cut at ``max_tokens`` always parses.
    Each call evaluates its whole prompt: reusing the previous call's KV prefix
    (``reuse_prefix=True``) is faster for growing conversations but evaluates tokens in
    other batches, which can change sampled text, so a recorded call may not replay.

    Scoring (:meth:`loglikelihood`, :meth:`loglikelihood_rolling`, echoed prompt logprobs)
    decodes on the same context with llama.cpp batches that ask for logits only at the
    positions scored, at most :data:`SCORE_CHUNK` at a time. The context part of a request
    is decoded alone (positions ``0 .. start-2``, in ``n_batch`` chunks from 0), so its KV
    cache is reused as is by the next request with the same context (the choices of a
    multiple-choice item) and a score never depends on the request before it. Text is
    encoded with the GGUF's own BOS rule (``tokenizer.ggml.add_bos_token``; none for
    SmolLM2) and special tokens parsed, as a Hugging Face tokenizer does.
    """

    name = "llamacpp"

    def __init__(self, path: str | Path, *, digest: str | None = None,
                 threads: int | None = None, n_ctx: int | None = None,
                 chat_template: str | None = None, reuse_prefix: bool = False) -> None:
        llama_cpp = require("llama_cpp", self.name)
        from llama_cpp import llama_chat_format
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"no GGUF file at {self.path}", path=str(self.path))
        self.threads = threads or default_threads()
        self.n_ctx = n_ctx or DEFAULT_N_CTX
        self.reuse_prefix = reuse_prefix
        self.model_digest = digest or digest_path(self.path)
        self._llama_cpp = llama_cpp
        try:
            self.llm = llama_cpp.Llama(
                str(self.path), n_ctx=self.n_ctx, n_threads=self.threads,
                n_threads_batch=self.threads, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"llama.cpp could not load {self.path}: {e}",
                             path=str(self.path)) from e
        template = chat_template or self.llm.metadata.get("tokenizer.chat_template") or CHATML_TEMPLATE
        self.chat_template = template
        self.chat_template_digest = digest_text(template)
        model = self.llm._model
        eos_id, bos_id = self.llm.token_eos(), self.llm.token_bos()
        self._formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id])
        self._grammars: dict[str, Any] = {}
        self._plain_formatter: Any = None
        self._batch: Any = None
        self._kv_prefix: list[int] | None = None   # tokens the scoring KV cache holds

    # --- prompt ---
    def _prompt(self, messages: list[dict]) -> tuple[list[int], list[str]]:
        try:
            res = self._formatter(messages=messages)
        except Exception as e:  # jinja errors: a template that rejects these messages
            raise ModelError(f"the chat template rejected the messages: {e}") from e
        tokens = self.llm.tokenize(res.prompt.encode("utf-8"),
                                   add_bos=not res.added_special, special=True)
        stop = res.stop if isinstance(res.stop, list) else [res.stop] if res.stop else []
        return tokens, stop

    def count_tokens(self, messages: list[dict]) -> int:
        """Prompt tokens of ``messages`` under this model's chat template."""
        return len(self._prompt(messages)[0])

    def grammar(self, schema: dict) -> Any:
        """The llama.cpp grammar (a ``LlamaGrammar``) that constrains a call to ``schema``:
        :func:`~demoai.engines.llm.constrain.schema_gbnf`, cached per schema. Its strings
        admit no raw control characters, so a constrained reply always parses once complete."""
        key = digest_json(schema)
        if key not in self._grammars:
            from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf
            try:
                try:
                    text = schema_gbnf(schema)
                except UnsupportedSchema:     # keywords ours does not cover: llama.cpp's converter
                    text = strict_strings(json_schema_to_gbnf(json.dumps(schema)))
                self._grammars[key] = LlamaGrammar.from_string(text, verbose=False)
            except Exception as e:
                raise ModelError(f"llama.cpp cannot turn this JSON schema into a grammar: {e}",
                                 schema=schema) from e
        return self._grammars[key]

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """``messages`` rendered with this model's chat template, as text (BOS text included
        where the template writes it)."""
        fmt = self._formatter
        if not add_generation_prompt:
            if self._plain_formatter is None:
                self._plain_formatter = type(fmt)(
                    template=fmt.template, eos_token=fmt.eos_token, bos_token=fmt.bos_token,
                    add_generation_prompt=False)
            fmt = self._plain_formatter
        try:
            return fmt(messages=messages).prompt
        except Exception as e:  # jinja errors: a template that rejects these messages
            raise ModelError(f"the chat template rejected the messages: {e}") from e

    # --- generation ---
    def chat(self, messages: list[dict], *, params: dict | None = None,
             json_schema: dict | None = None, on_token: TokenCallback | None = None,
             logprobs: int | None = None) -> ChatResult:
        """Complete ``messages``; deterministic for a given seed, params and settings.
        ``logprobs=k`` adds each answer token's logprob and its ``k`` likeliest alternatives
        (the model's own distribution, before sampling settings)."""
        p, logprobs = resolve_params(params), check_logprobs(logprobs)
        clock = Stopwatch()
        prompt, template_stops = self._prompt(messages)
        self._check_fits(len(prompt))
        grammar = self.grammar(json_schema) if json_schema is not None else None
        text, finish, count, lps = self._generate(
            prompt, p, grammar, template_stops, on_token, logprobs, clock)
        extra = {"logprobs": logprobs} if logprobs is not None else {}
        result = ChatResult(
            text=text, finish_reason=finish, prompt_tokens=len(prompt),
            completion_tokens=count, timings=clock.timings(count),
            record=self._record(p, json_schema, library={
                "llama_cpp_python": self._llama_cpp.__version__}, **extra),
            logprobs=lps)
        if json_schema is not None:
            result.json = parse_and_validate(text, json_schema, finish_reason=finish, result=result)
        return result

    def complete(self, prompt: str | list[int], *, params: dict | None = None,
                 logprobs: int | None = None, echo: bool = False,
                 on_token: TokenCallback | None = None) -> Completion:
        """A raw completion of ``prompt`` (text, or token ids), no chat template. ``echo``
        returns the prompt's tokens too (``max_tokens`` may then be 0), each with its logprob
        when ``logprobs`` is set (the first is None: nothing predicts it)."""
        p, logprobs = resolve_params(params, min_tokens=0 if echo else 1), check_logprobs(logprobs)
        clock = Stopwatch()
        ids = self._prompt_ids(prompt)
        self._check_prompt(ids, p["max_tokens"])
        echoed = self._echoed(ids, logprobs) if echo else None
        text, finish, count, lps = "", "length", 0, []
        if p["max_tokens"] > 0:
            text, finish, count, lps = self._generate(ids, p, None, [], on_token, logprobs, clock)
        prompt_text = prompt if isinstance(prompt, str) else self._detok(ids)
        extra = {"logprobs": logprobs} if logprobs is not None else {}
        return Completion(
            text=text, finish_reason=finish, prompt_tokens=len(ids), completion_tokens=count,
            tokens=lps or [], prompt=echoed, prompt_text=prompt_text,
            timings=clock.timings(count),
            record=self._record(p, None, library={
                "llama_cpp_python": self._llama_cpp.__version__}, raw=True, echo=echo, **extra))

    def _prompt_ids(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            ids = self._encode(prompt)
        else:
            n = self.llm.n_vocab()
            ids = [int(t) for t in prompt]
            bad = [t for t in ids if not 0 <= t < n]
            if bad:
                raise ModelError(f"token ids out of the vocabulary (0..{n - 1}): {bad[:5]}",
                                 tokens=bad[:5])
        if not ids:
            raise ModelError("the prompt is empty")
        return ids

    def _generate(self, prompt: list[int], p: dict, grammar: Any, extra_stops: list[str],
                  on_token: TokenCallback | None, logprobs: int | None,
                  clock: Stopwatch) -> tuple[str, str, int, list[TokenLogprob] | None]:
        """The token loop: text, finish reason, tokens generated and their logprobs."""
        import numpy as np
        budget = min(p["max_tokens"], self.n_ctx - len(prompt))
        llm, is_eog, vocab = self.llm, self._llama_cpp.llama_vocab_is_eog, self.llm._model.vocab
        self._kv_prefix = None              # generation reuses the scoring KV cache
        if not self.reuse_prefix:
            llm.reset()  # evaluate the whole prompt: a shared KV prefix can shift the logits
        llm.set_seed(p["seed"])
        stops = StopFilter(p["stop"] + extra_stops, on_token)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        finish, count = "length", 0
        lps: list[TokenLogprob] | None = [] if logprobs is not None else None
        n_vocab = llm.n_vocab()
        for token in llm.generate(
                prompt, top_k=p["top_k"], top_p=p["top_p"], min_p=p["min_p"],
                temp=p["temperature"], repeat_penalty=p["repeat_penalty"], grammar=grammar):
            clock.token()
            if is_eog(vocab, token):
                finish = "stop"
                break
            count += 1
            if lps is not None:
                row = np.ctypeslib.as_array(self._llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1),
                                            shape=(n_vocab,))
                lps.append(self._scored(score_rows(row[None, :], [token], logprobs or 0)[0]))
            if stops.feed(decoder.decode(llm.detokenize([token]))):
                finish = "stop"
                break
            if count >= budget:
                break
        if not stops.stopped:
            stops.feed(decoder.decode(b"", final=True))
        return stops.flush(), finish, count, lps

    # --- scoring ---
    def _encode(self, text: str) -> list[int]:
        bos = self.llm.token_bos()
        starts_with_bos = bos != -1 and text.startswith(self._detok([bos]))
        return self.llm.tokenize(text.encode("utf-8"), add_bos=not starts_with_bos, special=True)

    def _prefix_token(self) -> int:
        bos = self.llm.token_bos()
        return bos if bos != -1 else self.llm.token_eos()

    def _detok(self, ids: list[int]) -> str:
        return self.llm.detokenize(ids, special=True).decode("utf-8", errors="replace")

    def _token_text(self, token: int) -> tuple[str, bytes]:
        raw = self.llm.detokenize([token], special=True)
        return raw.decode("utf-8", errors="replace"), raw

    def _decode(self, tokens: list[int], pos: int, outputs: bool) -> None:
        """One llama.cpp batch at positions ``pos...``; logits for every row or none."""
        b = self._batch.batch
        b.n_tokens = len(tokens)
        for i, t in enumerate(tokens):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = t, pos + i, 1, outputs
            b.seq_id[i][0] = 0
        try:
            self.llm._ctx.decode(self._batch)
        except RuntimeError as e:
            self._kv_prefix = None
            raise ModelError(f"llama.cpp could not evaluate the tokens: {e}") from e

    def _score(self, tokens: list[int], start: int, top_k: int = 0) -> list[TokenScore]:
        """Scores of ``tokens[start:]``: the context part (all but the last context token)
        is decoded without logits, the rest in chunks with logits on every row."""
        import numpy as np
        if start < 1 or start >= len(tokens):
            raise ModelError("scoring needs at least one context and one scored token")
        if len(tokens) - 1 > self.n_ctx:
            raise ContextOverflow(f"{len(tokens) - 1} tokens to evaluate, the context holds "
                                  f"{self.n_ctx}", prompt_tokens=len(tokens) - 1, n_ctx=self.n_ctx)
        llm = self.llm
        if self._batch is None:
            from llama_cpp._internals import LlamaBatch
            self._batch = LlamaBatch(n_tokens=max(llm.n_batch, SCORE_CHUNK), embd=0, n_seq_max=1)
        llm.reset()                      # the generation path must re-evaluate its prompt
        prefix, rest = tokens[:start - 1], tokens[start - 1:-1]
        if self._kv_prefix != prefix:
            llm._ctx.kv_cache_clear()
            self._kv_prefix = None
            for i in range(0, len(prefix), llm.n_batch):
                self._decode(prefix[i:i + llm.n_batch], i, False)
            self._kv_prefix = prefix
        else:
            llm._ctx.kv_cache_seq_rm(0, len(prefix), -1)
        out: list[TokenScore] = []
        n_vocab = llm.n_vocab()
        for i in range(0, len(rest), SCORE_CHUNK):
            chunk = rest[i:i + SCORE_CHUNK]
            self._decode(chunk, len(prefix) + i, True)
            rows = np.ctypeslib.as_array(self._llama_cpp.llama_get_logits(llm._ctx.ctx),
                                         shape=(len(chunk), n_vocab))
            targets = tokens[start + i:start + i + len(chunk)]
            out.extend(score_rows(rows, targets, top_k))
        return out

    def decode_timings(self, prompt: list[int], n_gen: int) -> dict:
        """Seconds to evaluate ``prompt`` from an empty cache (logits of its last token only,
        then its argmax: ``ttft_s``) and to decode ``n_gen`` tokens one at a time from an
        empty cache, as llama-bench's pp and tg tests do."""
        import time

        import numpy as np
        llm = self.llm
        if self._batch is None:
            from llama_cpp._internals import LlamaBatch
            self._batch = LlamaBatch(n_tokens=max(llm.n_batch, SCORE_CHUNK), embd=0, n_seq_max=1)
        llm.reset()
        self._kv_prefix = None
        if len(prompt) + 1 > self.n_ctx or n_gen + 1 > self.n_ctx:
            raise ContextOverflow("the benchmark does not fit the context", n_ctx=self.n_ctx)
        b = self._batch.batch
        llm._ctx.kv_cache_clear()
        t0 = time.perf_counter()
        for i in range(0, len(prompt), llm.n_batch):
            chunk = prompt[i:i + llm.n_batch]
            b.n_tokens = len(chunk)
            for j, t in enumerate(chunk):
                b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = t, i + j, 1, False
                b.seq_id[j][0] = 0
            b.logits[len(chunk) - 1] = i + len(chunk) == len(prompt)
            llm._ctx.decode(self._batch)
        pp = time.perf_counter() - t0
        n_vocab = llm.n_vocab()
        int(np.argmax(np.ctypeslib.as_array(self._llama_cpp.llama_get_logits_ith(
            llm._ctx.ctx, -1), shape=(n_vocab,))))
        ttft = time.perf_counter() - t0
        llm._ctx.kv_cache_clear()
        t0 = time.perf_counter()
        for i in range(n_gen):
            self._decode([prompt[i % len(prompt)]], i, True)
        tg = time.perf_counter() - t0
        llm._ctx.kv_cache_clear()
        return {"prompt_s": pp, "ttft_s": ttft, "gen_s": tg}

    def settings(self) -> dict:
        """Threads, context, and whether the KV cache of the last call is reused."""
        return {"threads": self.threads, "n_ctx": self.n_ctx, "reuse_prefix": self.reuse_prefix}

    def describe(self) -> dict:
        """Name, digests, settings and the GGUF path and architecture."""
        d = super().describe()
        d.update(path=str(self.path), architecture=self.llm.metadata.get("general.architecture"),
                 model_name=self.llm.metadata.get("general.name"))
        return d

    def close(self) -> None:
        """Free the llama.cpp model and context."""
        if getattr(self, "_batch", None) is not None:
            self._batch.close()
            self._batch = None
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
