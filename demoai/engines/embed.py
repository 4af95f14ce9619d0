"""Text embeddings: wordllama's shipped static embeddings, and pooled hidden states of a
chat model (llama.cpp with mean pooling, or transformers with the attention-masked mean of
the last hidden state). Nothing is downloaded.

    emb = open_embedder({"backend": "wordllama"})
    vectors, tokens = emb.embed(["hello", "world"])
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterator

from demoai.engines.llm.base import require
from demoai.errors import BackendUnavailable, ModelError

__all__ = ["Embedder", "wordllama_embedder", "open_embedder", "EmbedderPool", "WORDLLAMA_IDS"]

WORDLLAMA_IDS = ("wordllama", "wordllama:l2_supercat_256")


@contextlib.contextmanager
def _keep_root_logging() -> Iterator[None]:
    """Undo what a library does to the root logger while it is imported (wordllama calls
    ``logging.basicConfig(level=INFO)`` at import, which would print every HTTP request
    httpx makes afterwards)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    # basicConfig does nothing at all while the root logger has a handler: no window in
    # which another thread's log calls would see INFO switched on
    guard = logging.NullHandler()
    if not handlers:
        root.addHandler(guard)
    try:
        yield
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)


def wordllama_embedder() -> Callable[[list[str]], Any]:
    """wordllama's shipped 256-dim ``l2_supercat`` model as ``embed(texts) -> array``, loaded
    without network (``WordLlama.load`` with downloads off; where a release looks for its
    tokenizer in the wrong folder, the wheel's own files are read directly).
    BackendUnavailable when wordllama or its files are missing."""
    try:
        with _keep_root_logging():
            import wordllama
            import wordllama.inference  # noqa: F401 - configures logging at import too
            from wordllama import WordLlama
    except ImportError as e:
        raise BackendUnavailable("embeddings need wordllama: pip install 'demoai[embed]'",
                                 package="wordllama") from e
    try:
        model = WordLlama.load(disable_download=True)
    except (FileNotFoundError, OSError):
        from safetensors import safe_open
        from wordllama.inference import WordLlamaInference
        root = Path(wordllama.__file__).parent
        weights = root / "weights" / "l2_supercat_256.safetensors"
        tokenizer = root / "tokenizers" / "l2_supercat_tokenizer_config.json"
        if not (weights.is_file() and tokenizer.is_file()):
            raise BackendUnavailable(f"wordllama's shipped model is missing ({weights.name})",
                                     package="wordllama") from None
        with safe_open(str(weights), framework="np", device="cpu") as f:
            table = f.get_tensor("embedding.weight")
        model = WordLlamaInference(table, WordLlama.load_tokenizer(tokenizer))
    return lambda texts: model.embed(list(texts))


class Embedder:
    """An open embedding model: ``embed(texts)`` -> (list of float vectors, prompt tokens)."""

    def __init__(self, name: str, digest: str | None, fn: Callable[[list[str]], tuple[list, int]],
                 close: Callable[[], None] | None = None) -> None:
        self.name, self.digest, self._fn, self._close = name, digest, fn, close
        self.lock = threading.Lock()

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Vectors (one per text) and the number of tokens read, under the model's lock."""
        with self.lock:
            return self._fn(texts)

    def close(self) -> None:
        """Free the model."""
        if self._close is not None:
            self._close()


def _wordllama() -> Embedder:
    fn = wordllama_embedder()

    def embed(texts: list[str]) -> tuple[list, int]:
        vecs = fn(texts)
        return [list(map(float, v)) for v in vecs], sum(len(t.split()) for t in texts)
    return Embedder("wordllama", None, embed)


def _llamacpp(spec: dict[str, Any]) -> Embedder:
    llama_cpp = require("llama_cpp", "llamacpp")
    llm = llama_cpp.Llama(model_path=str(spec["path"]), embedding=True, n_ctx=int(spec.get("n_ctx") or 2048),
                          n_threads=int(spec.get("threads") or 1), verbose=False,
                          pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN)

    def embed(texts: list[str]) -> tuple[list, int]:
        n = sum(len(llm.tokenize(t.encode(), add_bos=True)) for t in texts)
        vecs = llm.embed(texts, normalize=False)
        return [list(map(float, v)) for v in vecs], n
    return Embedder("llamacpp", spec.get("digest"), embed, llm.close)


def _transformers(spec: dict[str, Any]) -> Embedder:
    torch = require("torch", "transformers")
    transformers = require("transformers", "transformers")
    path = Path(spec["path"])
    kw = {"gguf_file": spec["gguf_file"]} if spec.get("gguf_file") else {}
    torch.set_num_threads(int(spec.get("threads") or 1))
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(path), **kw)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, **kw)
    except (OSError, ValueError) as e:
        raise ModelError(f"transformers could not load {path}: {e}", path=str(path)) from e
    if spec.get("adapter_path"):
        peft = require("peft", "transformers")
        model = peft.PeftModel.from_pretrained(model, str(spec["adapter_path"]))
    model.eval()

    def embed(texts: list[str]) -> tuple[list, int]:
        out, n = [], 0
        with torch.no_grad():
            for t in texts:     # one at a time: no padding, so no pad token is needed
                ids = tok(t, return_tensors="pt")
                hs = model(**ids, output_hidden_states=True).hidden_states[-1][0]
                out.append([float(x) for x in hs.mean(0)])
                n += int(ids["input_ids"].shape[1])
        return out, n
    return Embedder("transformers", spec.get("digest"), embed)


def open_embedder(spec: dict[str, Any]) -> Embedder:
    """An embedder for ``{"backend": "wordllama"}`` or a resolved chat-model backend spec
    (``llamacpp``: mean-pooled llama.cpp embeddings; ``transformers``: masked mean of the
    last hidden state)."""
    kind = spec.get("backend")
    if kind == "wordllama":
        return _wordllama()
    if kind == "llamacpp":
        return _llamacpp(spec)
    if kind == "transformers":
        return _transformers(spec)
    raise ModelError(f"the {kind} backend gives no embeddings here", backend=kind)


class EmbedderPool:
    """Open embedders by spec key, at most ``size`` (least recently used closed first)."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._items: OrderedDict[str, Embedder] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, spec: dict[str, Any]) -> Embedder:
        """The embedder for ``spec``, opened on first use."""
        key = repr(sorted((k, v) for k, v in spec.items() if k != "source"))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            emb = open_embedder(spec)
            self._items[key] = emb
            while len(self._items) > self.size:
                _, old = self._items.popitem(last=False)
                old.close()
            return emb

    def close(self) -> None:
        """Close every embedder."""
        with self._lock:
            for e in self._items.values():
                e.close()
            self._items.clear()
