"""The transformers backend: a model folder or a GGUF on torch, with an optional peft adapter.

Decoding is a plain KV-cached token loop (greedy, or seeded sampling with a private
``torch.Generator``), so a JSON schema can mask the logits *before* top-k/top-p, and the
same seed gives the same text without touching torch's global RNG.

Scoring runs one float32 forward pass per request (no padding, no batching), with
``log_softmax`` over the logits as lm-evaluation-harness's ``hf`` model computes it; text is
encoded with the tokenizer's own special-token default (its post-processor decides the BOS).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from demoai.errors import ContextOverflow, ModelError
from demoai.engines.llm.base import (
    DEFAULT_N_CTX, ChatResult, ModelBackend, StopFilter, Stopwatch, TokenCallback,
    check_logprobs, default_threads, digest_json, digest_path, digest_text, require,
    resolve_params,
)
from demoai.engines.llm.constrain import (
    SchemaAutomaton, TokenConstraint, UnsupportedSchema, parse_and_validate,
)
from demoai.engines.llm.llamacpp import CHATML_TEMPLATE
from demoai.engines.llm.scoring import (Completion, TokenLogprob, TokenScore, TokenScorer)

__all__ = ["TransformersBackend"]


class TransformersBackend(TokenScorer, ModelBackend):
    """A causal LM loaded with transformers (``gguf_file=`` dequantizes a GGUF)."""

    name = "transformers"

    def __init__(self, path: str | Path, *, digest: str | None = None,
                 threads: int | None = None, n_ctx: int | None = None,
                 gguf_file: str | None = None, adapter_path: str | Path | None = None,
                 adapter_digest: str | None = None) -> None:
        self.torch = torch = require("torch", self.name)
        transformers = require("transformers", self.name)
        path = Path(path)
        if path.is_file():  # a GGUF file given directly
            path, gguf_file = path.parent, path.name
        if not path.is_dir():
            raise ModelError(f"no model folder at {path}", path=str(path))
        self.path, self.gguf_file = path, gguf_file
        self.threads = threads or default_threads()
        torch.set_num_threads(self.threads)  # process-wide: torch has no per-model setting
        weights = path / gguf_file if gguf_file else path
        self.model_digest = digest or digest_path(weights)
        kw: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        transformers.utils.logging.disable_progress_bar()
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), **kw)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(path), dtype=torch.float32, **kw)
        except (OSError, ValueError) as e:
            raise ModelError(f"transformers could not load {weights}: {e}",
                             path=str(weights)) from e
        self.adapter_path, self.adapter_digest = adapter_path, None
        if adapter_path is not None:
            peft = require("peft", self.name)
            if not (Path(adapter_path) / "adapter_config.json").is_file():
                raise ModelError(f"no peft adapter at {adapter_path}", path=str(adapter_path))
            model = peft.PeftModel.from_pretrained(model, str(adapter_path))
            self.adapter_digest = adapter_digest or digest_path(adapter_path)
        self.model = model.eval()
        limit = getattr(model.config, "max_position_embeddings", None) or DEFAULT_N_CTX
        self.n_ctx = min(n_ctx or DEFAULT_N_CTX, limit)
        template = self.tokenizer.chat_template
        if not isinstance(template, str):  # absent, or a dict of named templates
            template = (template or {}).get("default") or CHATML_TEMPLATE
            self.tokenizer.chat_template = template
        self.chat_template_digest = digest_text(template)
        self.eos_ids = self._eos_ids()
        self._token_strings: list[str | None] | None = None
        self._constraints: dict[str, TokenConstraint] = {}

    def _eos_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        gen = getattr(self.model, "generation_config", None)
        extra = getattr(gen, "eos_token_id", None)
        ids.update(extra if isinstance(extra, list) else [extra])
        return sorted(i for i in ids if i is not None)

    def _prompt(self, messages: list[dict]) -> list[int]:
        try:
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                      tokenize=False)
        except Exception as e:  # jinja errors: a template that rejects these messages
            raise ModelError(f"the chat template rejected the messages: {e}") from e
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, messages: list[dict]) -> int:
        """Prompt tokens of ``messages`` under the tokenizer's chat template."""
        return len(self._prompt(messages))

    def settings(self) -> dict:
        """Threads, context, and the adapter applied (digest)."""
        return {"threads": self.threads, "n_ctx": self.n_ctx, "adapter": self.adapter_digest}

    def _constraint(self, schema: dict) -> TokenConstraint:
        key = digest_json(schema)
        if key not in self._constraints:
            if self._token_strings is None:
                tok = self.tokenizer
                special = set(tok.all_special_ids)
                pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
                self._token_strings = [
                    None if i in special or p is None else _piece_text(tok, p)
                    for i, p in enumerate(pieces)]
            self._constraints[key] = TokenConstraint(
                SchemaAutomaton(schema), self._token_strings, self.eos_ids)
        return self._constraints[key]

    def next_token_logits(self, messages: list[dict]) -> Any:
        """The raw logits for the first answer token (evals and adapter checks use it)."""
        torch = self.torch
        ids = torch.tensor([self._prompt(messages)])
        with torch.inference_mode():
            return self.model(input_ids=ids).logits[0, -1].clone()

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """``messages`` rendered with the tokenizer's chat template, as text."""
        try:
            return self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=add_generation_prompt, tokenize=False)
        except Exception as e:  # jinja errors: a template that rejects these messages
            raise ModelError(f"the chat template rejected the messages: {e}") from e

    def chat(self, messages: list[dict], *, params: dict | None = None,
             json_schema: dict | None = None, on_token: TokenCallback | None = None,
             logprobs: int | None = None) -> ChatResult:
        """Complete ``messages``; a schema masks every step to tokens that keep JSON valid.
        ``logprobs=k``: each answer token's logprob under the model's own distribution (before
        penalties and the schema mask) and its ``k`` likeliest alternatives."""
        p, logprobs = resolve_params(params), check_logprobs(logprobs)
        clock = Stopwatch()
        prompt = self._prompt(messages)
        self._check_fits(len(prompt))
        constraint = None
        if json_schema is not None:
            try:
                constraint = self._constraint(json_schema)
            except UnsupportedSchema:
                constraint = None  # generate, then validate below: an error if it fails
        text, finish, out_ids, lps = self._generate(prompt, p, constraint, on_token, logprobs, clock)
        extra = {"logprobs": logprobs} if logprobs is not None else {}
        result = ChatResult(
            text=text, finish_reason=finish, prompt_tokens=len(prompt),
            completion_tokens=len(out_ids), timings=clock.timings(len(out_ids)),
            record=self._record(p, json_schema, library=self._versions(),
                                constrained=constraint is not None if json_schema else None,
                                **extra),
            logprobs=lps)
        if json_schema is not None:
            result.json = parse_and_validate(text, json_schema, finish_reason=finish, result=result)
        return result

    def complete(self, prompt: str | list[int], *, params: dict | None = None,
                 logprobs: int | None = None, echo: bool = False,
                 on_token: TokenCallback | None = None) -> Completion:
        """A raw completion of ``prompt`` (text, or token ids), no chat template; ``echo``
        returns the prompt's tokens (with logprobs when asked; the first is None)."""
        p, logprobs = resolve_params(params, min_tokens=0 if echo else 1), check_logprobs(logprobs)
        clock = Stopwatch()
        ids = self._encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        bad = [t for t in ids if not 0 <= t < self.model.config.vocab_size]
        if bad or not ids:
            raise ModelError("the prompt is empty" if not ids else
                             f"token ids out of the vocabulary: {bad[:5]}", tokens=bad[:5])
        self._check_prompt(ids, p["max_tokens"])
        echoed = self._echoed(ids, logprobs) if echo else None
        text, finish, out_ids, lps = "", "length", [], None
        if p["max_tokens"] > 0:
            text, finish, out_ids, lps = self._generate(ids, p, None, on_token, logprobs, clock)
        extra = {"logprobs": logprobs} if logprobs is not None else {}
        return Completion(
            text=text, finish_reason=finish, prompt_tokens=len(ids),
            completion_tokens=len(out_ids), tokens=lps or [], prompt=echoed,
            prompt_text=prompt if isinstance(prompt, str) else self.tokenizer.decode(ids),
            timings=clock.timings(len(out_ids)),
            record=self._record(p, None, library=self._versions(), raw=True, echo=echo, **extra))

    def _generate(self, prompt: list[int], p: dict, constraint: TokenConstraint | None,
                  on_token: TokenCallback | None, logprobs: int | None,
                  clock: Stopwatch) -> tuple[str, str, list[int], list[TokenLogprob] | None]:
        """The KV-cached token loop: text, finish reason, token ids and their logprobs."""
        torch = self.torch
        state = constraint.automaton.start if constraint is not None else None
        gen = torch.Generator().manual_seed(p["seed"])
        budget = min(p["max_tokens"], self.n_ctx - len(prompt))
        stops = StopFilter(p["stop"], on_token)
        out_ids: list[int] = []
        lps: list[TokenLogprob] | None = [] if logprobs is not None else None
        shown, finish, past = "", "length", None
        ids = torch.tensor([prompt])
        with torch.inference_mode():
            while len(out_ids) < budget:
                res = self.model(input_ids=ids, past_key_values=past, use_cache=True)
                past, logits = res.past_key_values, res.logits[0, -1].float()
                raw = torch.log_softmax(logits, -1) if lps is not None else None
                logits = self._penalize(logits.clone(), prompt + out_ids, p["repeat_penalty"])
                if constraint is not None:
                    logits = self._masked(logits, constraint, state)
                token = _sample(torch, logits, p, gen)
                clock.token()
                if token in self.eos_ids:
                    finish = "stop"
                    break
                out_ids.append(token)
                if raw is not None:
                    lps.append(self._scored(self._row_score(raw, token, logprobs or 0)))
                if constraint is not None:
                    state = constraint.automaton.walk(state, self._token_strings[token] or "")
                text = self.tokenizer.decode(out_ids, skip_special_tokens=True)
                if not text.endswith("\ufffd"):  # hold back a half-decoded character
                    piece, shown = text[len(shown):], text
                    if stops.feed(piece):
                        finish = "stop"
                        break
                ids = torch.tensor([[token]])
        if not stops.stopped:
            stops.feed(self.tokenizer.decode(out_ids, skip_special_tokens=True)[len(shown):])
        return stops.flush(), finish, out_ids, lps

    # --- scoring ---
    def _encode(self, text: str) -> list[int]:
        tok = self.tokenizer
        bos = tok.decode([self._prefix_token()])
        if bos and text.startswith(bos):      # already carries its BOS (a rendered template)
            return tok.encode(text, add_special_tokens=False)
        return tok.encode(text)

    def _prefix_token(self) -> int:
        tok = self.tokenizer
        return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def _row_score(self, logprobs_row: Any, token: int, top_k: int) -> TokenScore:
        top = []
        if top_k > 0:
            vals, idx = self.torch.topk(logprobs_row, min(top_k, logprobs_row.shape[-1]))
            top = [(int(i), float(v)) for v, i in zip(vals, idx)]
        return TokenScore(token, float(logprobs_row[token]),
                          int(self.torch.argmax(logprobs_row)) == token, top)

    def _score(self, tokens: list[int], start: int, top_k: int = 0) -> list[TokenScore]:
        """Scores of ``tokens[start:]`` from one forward pass over ``tokens[:-1]``."""
        torch = self.torch
        if start < 1 or start >= len(tokens):
            raise ModelError("scoring needs at least one context and one scored token")
        if len(tokens) - 1 > self.n_ctx:
            raise ContextOverflow(f"{len(tokens) - 1} tokens to evaluate, the context holds "
                                  f"{self.n_ctx}", prompt_tokens=len(tokens) - 1, n_ctx=self.n_ctx)
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([tokens[:-1]])).logits[0, start - 1:]
            lp = torch.log_softmax(logits.float(), dim=-1)
            targets = torch.tensor(tokens[start:])
            picked = lp.gather(1, targets[:, None])[:, 0].tolist()
            greedy = (lp.argmax(-1) == targets).tolist()
            tops: list[list[tuple[int, float]]] = [[] for _ in picked]
            if top_k > 0:
                vals, idx = torch.topk(lp, min(top_k, lp.shape[-1]), dim=-1)
                tops = [list(zip(i, v)) for i, v in zip(idx.tolist(), vals.tolist())]
        return [TokenScore(t, v, g, top) for t, v, g, top in
                zip(tokens[start:], picked, greedy, tops)]

    def _token_text(self, token: int) -> tuple[str, bytes]:
        text = self.tokenizer.decode([token])
        return text, text.encode("utf-8")

    def decode_timings(self, prompt: list[int], n_gen: int) -> dict:
        """Seconds to evaluate ``prompt`` (to its first token's argmax: ``ttft_s``) and to
        decode ``n_gen`` tokens one at a time with the KV cache, from an empty cache."""
        import time
        torch = self.torch
        if len(prompt) + 1 > self.n_ctx or n_gen + 1 > self.n_ctx:
            raise ContextOverflow("the benchmark does not fit the context", n_ctx=self.n_ctx)
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = self.model(input_ids=torch.tensor([prompt]), use_cache=True)
            pp = time.perf_counter() - t0
            int(out.logits[0, -1].argmax())
            ttft = time.perf_counter() - t0
            past = None
            t0 = time.perf_counter()
            for i in range(n_gen):
                res = self.model(input_ids=torch.tensor([[prompt[i % len(prompt)]]]),
                                 past_key_values=past, use_cache=True)
                past = res.past_key_values
                int(res.logits[0, -1].argmax())
            tg = time.perf_counter() - t0
        return {"prompt_s": pp, "ttft_s": ttft, "gen_s": tg}

    def _masked(self, logits: Any, constraint: TokenConstraint, state: Any) -> Any:
        """Logits with every token the schema forbids here set to -inf."""
        torch, cache = self.torch, constraint.masks
        idx = cache.get(state)
        if idx is None:
            idx = torch.tensor(constraint.allowed(state), dtype=torch.long)
            idx = cache[state] = idx[idx < logits.shape[-1]]
        out = torch.full_like(logits, float("-inf"))
        out[idx] = logits[idx]
        return out

    def _penalize(self, logits: Any, history: list[int], penalty: float) -> Any:
        if penalty == 1.0 or not history:
            return logits
        idx = self.torch.tensor(sorted(set(history)))
        vals = logits[idx]
        logits[idx] = self.torch.where(vals > 0, vals / penalty, vals * penalty)
        return logits

    def _versions(self) -> dict:
        import transformers
        out = {"torch": self.torch.__version__, "transformers": transformers.__version__}
        if self.adapter_path is not None:
            import peft
            out["peft"] = peft.__version__
        return out

    def describe(self) -> dict:
        """Name, digests, settings, the model folder or GGUF and the adapter."""
        d = super().describe()
        d.update(path=str(self.path), gguf_file=self.gguf_file,
                 adapter_path=str(self.adapter_path) if self.adapter_path else None,
                 architecture=getattr(self.model.config, "model_type", None))
        return d

    def close(self) -> None:
        """Drop the model and the caches."""
        self.model = None
        self._constraints.clear()


def _piece_text(tok: Any, piece: str) -> str:
    text = tok.convert_tokens_to_string([piece])
    if piece.startswith("\u2581") and not text.startswith(" "):  # sentencepiece word start
        text = " " + text
    return text




def _sample(torch: Any, logits: Any, p: dict, gen: Any) -> int:
    """Greedy at temperature 0; else temperature, top-k, top-p, min-p, then a seeded draw."""
    if p["temperature"] <= 0:
        return int(torch.argmax(logits))
    logits = logits / p["temperature"]
    if p["top_k"] and p["top_k"] > 0:
        kth = torch.topk(logits, min(p["top_k"], logits.shape[-1])).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if p["top_p"] < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        drop = torch.cumsum(sorted_p, 0) - sorted_p > p["top_p"]
        probs[order[drop]] = 0.0
    if p["min_p"] > 0:
        probs = probs.masked_fill(probs < p["min_p"] * probs.max(), 0.0)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=gen))

