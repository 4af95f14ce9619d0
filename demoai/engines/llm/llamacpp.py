"""The embedded default backend: a GGUF model on CPU through llama-cpp-python."""
from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any

from demoai.errors import ModelError
from demoai.engines.llm.base import (
    DEFAULT_N_CTX, ChatResult, ModelBackend, StopFilter, Stopwatch, TokenCallback,
    default_threads, digest_json, digest_path, digest_text, require, resolve_params,
)
from demoai.engines.llm.constrain import (UnsupportedSchema, parse_and_validate, schema_gbnf,
                                         strict_strings)

__all__ = ["LlamaCppBackend", "CHATML_TEMPLATE"]

# Used only when a GGUF carries no chat template; its digest is recorded like any other.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class LlamaCppBackend(ModelBackend):
    """A GGUF file loaded with ``llama_cpp.Llama``; generation runs on its token loop.

    The chat template is the GGUF's ``tokenizer.chat_template``, rendered once per call;
    JSON schemas become llama.cpp grammars (:meth:`grammar`, cached per schema), so a reply that
    is not cut at ``max_tokens`` always parses.
    Each call evaluates its whole prompt: reusing the previous call's KV prefix
    (``reuse_prefix=True``) is faster for growing conversations but evaluates tokens in
    other batches, which can change sampled text, so a recorded call may not replay.
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

    # --- generation ---
    def chat(self, messages: list[dict], *, params: dict | None = None,
             json_schema: dict | None = None,
             on_token: TokenCallback | None = None) -> ChatResult:
        """Complete ``messages``; deterministic for a given seed, params and settings."""
        p = resolve_params(params)
        clock = Stopwatch()
        prompt, template_stops = self._prompt(messages)
        self._check_fits(len(prompt))
        grammar = self.grammar(json_schema) if json_schema is not None else None
        budget = min(p["max_tokens"], self.n_ctx - len(prompt))
        llm, is_eog, vocab = self.llm, self._llama_cpp.llama_vocab_is_eog, self.llm._model.vocab
        if not self.reuse_prefix:
            llm.reset()  # evaluate the whole prompt: a shared KV prefix can shift the logits
        llm.set_seed(p["seed"])
        stops = StopFilter(p["stop"] + template_stops, on_token)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        finish, count = "length", 0
        for token in llm.generate(
                prompt, top_k=p["top_k"], top_p=p["top_p"], min_p=p["min_p"],
                temp=p["temperature"], repeat_penalty=p["repeat_penalty"], grammar=grammar):
            clock.token()
            if is_eog(vocab, token):
                finish = "stop"
                break
            count += 1
            if stops.feed(decoder.decode(llm.detokenize([token]))):
                finish = "stop"
                break
            if count >= budget:
                break
        if not stops.stopped:
            stops.feed(decoder.decode(b"", final=True))
        text = stops.flush()
        result = ChatResult(
            text=text, finish_reason=finish, prompt_tokens=len(prompt),
            completion_tokens=count, timings=clock.timings(count),
            record=self._record(p, json_schema, library={
                "llama_cpp_python": self._llama_cpp.__version__}))
        if json_schema is not None:
            result.json = parse_and_validate(text, json_schema, finish_reason=finish, result=result)
        return result

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
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
