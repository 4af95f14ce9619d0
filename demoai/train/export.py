"""Writing registered models back out for upstream tools, and baking adapters into bases.

``export_artifact`` writes a Model or Adapter as the plain file/folder its format is (a GGUF
llama.cpp loads, a transformers folder, a peft adapter folder ``PeftModel.from_pretrained``
loads), verified chunk by chunk; a LoRA adapter with ``gguf`` becomes a GGUF LoRA that
llama.cpp applies to its base (:mod:`demoai.train.gguf_lora`), the base found from the
adapter's ``base_model_name_or_path`` (``smollm2`` or a model path in the tree). ``merge_adapter`` loads a transformers base (a folder, or a
GGUF dequantized by transformers), applies a peft adapter and folds it in with
``merge_and_unload``, and saves a transformers folder with the base's tokenizer.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from demoai.errors import BackendUnavailable, InvalidArtifact, ModelError, PathNotFound
from demoai.objects import Adapter, Model
from demoai.store.git.repo import Repository
from demoai.store.kinds import materialize
from demoai.train.gguf_lora import BaseFacts, base_facts, lora_to_gguf

__all__ = ["EXPORT_FORMATS", "export_artifact", "merge_adapter", "adapter_base_facts"]

EXPORT_FORMATS = ("gguf", "folder")


def adapter_base_facts(repo: Repository, adapter: Adapter, *, base: str | None = None,
                       rev: str = "HEAD") -> BaseFacts:
    """The facts of the base ``adapter`` was trained on (``base`` overrides the adapter's
    ``base_model_name_or_path``): ``smollm2`` or a model committed at ``rev``."""
    from demoai.registry.resolve import resolve_model
    ref = base or adapter.config.get("base_model_name_or_path")
    if not ref:
        raise InvalidArtifact("the adapter names no base model (base_model_name_or_path); "
                              "name one", path="adapter_config.json")
    try:
        spec = resolve_model(repo, str(ref), rev)
    except (PathNotFound, InvalidArtifact) as e:
        raise InvalidArtifact(f"the adapter's base {ref!r} is not a model of this repository at "
                              f"{rev} ({e.message})", base=str(ref)) from e
    path = Path(spec["path"])
    return base_facts(path / spec["gguf_file"] if spec.get("gguf_file") else path)


def export_artifact(repo: Repository, art: Model | Adapter, out: Path, fmt: str | None = None,
                    *, force: bool = False, base: str | None = None, rev: str = "HEAD") -> Path:
    """Write ``art`` at ``out`` in ``fmt`` (default: its own form: ``gguf`` for a GGUF
    model, ``folder`` otherwise). A LoRA adapter in ``gguf`` is converted for llama.cpp
    (its base, ``base`` or the one it names, read at ``rev``: a GGUF base's tensor shapes
    are checked against the adapter). An existing ``out`` is refused unless ``force``."""
    fmt = fmt or ("gguf" if art.format == "gguf" else "folder")
    if fmt not in EXPORT_FORMATS:
        raise InvalidArtifact(f"unknown export format {fmt!r}; one of {', '.join(EXPORT_FORMATS)}",
                              format=fmt)
    if fmt == "gguf" and isinstance(art, Adapter):
        return _adapter_to_gguf(repo, art, Path(out), force=force, base=base, rev=rev)
    if fmt == "gguf" and art.format != "gguf":
        raise InvalidArtifact(f"a {art.format} {art.kind} cannot be exported as GGUF yet: only "
                              "GGUF models are (export it as a folder)", format=fmt)
    out = Path(out)
    if fmt == "gguf" and out.is_dir():
        out = out / next(iter(art.files))
    if out.exists() and not force:
        raise InvalidArtifact(f"{out} exists (use --force to replace it)", path=str(out))
    if not out.parent.is_dir():
        raise PathNotFound(f"{out.parent}: no such folder", path=str(out.parent))
    if fmt == "folder" and len(art.files) == 1 and art.format in ("gguf", "safetensors"):
        out.mkdir(exist_ok=True)
        return materialize(repo, art, out / next(iter(art.files)))
    return materialize(repo, art, out)


def _adapter_to_gguf(repo: Repository, art: Adapter, out: Path, *, force: bool, base: str | None,
                     rev: str) -> Path:
    if out.is_dir():
        out = out / "adapter-lora.gguf"
    if out.exists() and not force:
        raise InvalidArtifact(f"{out} exists (use --force to replace it)", path=str(out))
    if not out.parent.is_dir():
        raise PathNotFound(f"{out.parent}: no such folder", path=str(out.parent))
    facts = adapter_base_facts(repo, art, base=base, rev=rev)
    from demoai.train.registry import local_path
    lora_to_gguf(local_path(repo, art), facts, out,
                 name=f"LoRA on {art.config.get('base_model_name_or_path') or base}")
    return out


def merge_adapter(base_dir: Path, gguf_file: str | None, adapter_dir: Path, out: Path,
                  threads: int = 1) -> Path:
    """Fold the peft adapter at ``adapter_dir`` into the transformers base at ``base_dir``
    (``gguf_file`` names a GGUF inside it to dequantize) and save the merged model and the
    base's tokenizer in ``out`` (replaced whole)."""
    try:
        import peft
        import torch
        import transformers
    except ImportError as e:
        raise BackendUnavailable(f"merging needs torch, transformers and peft: pip install "
                                 f"'demoai[train]' ({e})", module=str(e.name)) from e
    torch.set_num_threads(threads)
    kw = {"gguf_file": gguf_file} if gguf_file else {}
    transformers.utils.logging.disable_progress_bar()
    try:
        tok = transformers.AutoTokenizer.from_pretrained(str(base_dir), **kw)
        base = transformers.AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32, **kw)
    except (OSError, ValueError) as e:
        raise ModelError(f"transformers could not load the base model: {e}", path=str(base_dir)) from e
    try:
        merged = peft.PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise ModelError(f"the adapter does not fit this base: {e}", path=str(adapter_dir)) from e
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    os.replace(tmp, out)
    return out
