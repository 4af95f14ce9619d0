"""Writing registered models back out for upstream tools, and baking adapters into bases.

``export_artifact`` writes a Model or Adapter as the plain file/folder its format is (a GGUF
llama.cpp loads, a transformers folder, a peft adapter folder ``PeftModel.from_pretrained``
loads), verified chunk by chunk. ``merge_adapter`` loads a transformers base (a folder, or a
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

__all__ = ["EXPORT_FORMATS", "export_artifact", "merge_adapter"]

EXPORT_FORMATS = ("gguf", "folder")


def export_artifact(repo: Repository, art: Model | Adapter, out: Path, fmt: str | None = None,
                    *, force: bool = False) -> Path:
    """Write ``art`` at ``out`` in ``fmt`` (default: its own form: ``gguf`` for a GGUF
    model, ``folder`` otherwise). An existing ``out`` is refused unless ``force``."""
    fmt = fmt or ("gguf" if art.format == "gguf" else "folder")
    if fmt not in EXPORT_FORMATS:
        raise InvalidArtifact(f"unknown export format {fmt!r}; one of {', '.join(EXPORT_FORMATS)}",
                              format=fmt)
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
