"""A peft LoRA adapter as a GGUF LoRA adapter that llama.cpp applies to a GGUF base.

llama.cpp reads an adapter GGUF whose metadata says ``general.type = adapter``,
``adapter.type = lora`` and ``adapter.lora.alpha``, whose ``general.architecture`` is the
base's, and whose tensors are pairs ``<base tensor>.lora_a`` / ``.lora_b`` named as the base
GGUF names its weights (``blk.3.attn_q.weight.lora_a``). It computes ``W x + s · B (A x)``
with ``s = alpha / r`` (r read from the tensors' shapes). peft stores ``A`` as (r, in) and
``B`` as (out, r): numpy's row-major shapes are GGUF's dimensions reversed, so they are
written as they are and come out as llama.cpp wants them (``A.ne = [in, r]``,
``B.ne = [r, out]``).

One subtlety: the llama converter permutes the rows of the query and key projections
(rotary halves interleaved the way llama.cpp's RoPE reads them). ``W' = P W`` means the
update ``B A`` becomes ``(P B) A``, so only B's rows are permuted, by the same permutation.
rsLoRA's ``alpha / sqrt(r)`` is written as the alpha llama.cpp divides by r. What llama.cpp
cannot express (DoRA, LoRA on embeddings or with biases, per-module ranks or alphas,
``modules_to_save``) is refused with a typed error rather than converted approximately.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from demoai.errors import BackendUnavailable, InvalidArtifact, ModelError

__all__ = ["BaseFacts", "LoraExport", "PERMUTED_ARCHS", "base_facts", "lora_to_gguf",
           "permute_rows", "gguf_header"]

PERMUTED_ARCHS = ("llama",)
"""GGUF architectures whose converter permutes the query/key rows (B is permuted too)."""
_HF_ARCH = {"llama": "llama", "mistral": "llama"}      # config.json model_type -> GGUF arch
_PEFT = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


@dataclass(frozen=True)
class BaseFacts:
    """What the conversion needs of the base: GGUF architecture, head counts, blocks, and
    (for a GGUF base) its tensors' GGUF dimensions to check the adapter against."""

    arch: str
    n_head: int
    n_head_kv: int
    n_blocks: int
    shapes: dict[str, tuple[int, ...]] | None = None


@dataclass(frozen=True)
class LoraExport:
    """A written GGUF adapter: where, the alpha written, rank, the pairs and the
    architecture."""

    path: Path
    arch: str
    alpha: float
    rank: int
    pairs: int
    size: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {**self.__dict__, "path": str(self.path)}


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
             11: "<q", 12: "<d"}


def gguf_header(path: Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The scalar and string metadata of a GGUF file (arrays are skipped) and its tensors'
    dimensions (GGUF order), read from the header alone: a few milliseconds, where a full
    ``gguf.GGUFReader`` parses every token of the vocabulary."""
    import struct
    with open(path, "rb") as f:
        def take(fmt: str) -> Any:
            n = struct.calcsize(fmt)
            return struct.unpack(fmt, f.read(n))[0]

        def text() -> str:
            return f.read(take("<Q")).decode("utf-8", "replace")

        def value(vtype: int) -> Any:
            if vtype == 8:
                return text()
            if vtype == 9:
                item, count = take("<I"), take("<Q")
                if item == 8:
                    for _ in range(count):
                        f.seek(take("<Q"), 1)
                elif item in _SCALARS:
                    f.seek(struct.calcsize(_SCALARS[item]) * count, 1)
                else:
                    for _ in range(count):
                        value(item)
                return None
            if vtype not in _SCALARS:
                raise ModelError(f"{path.name}: unknown GGUF value type {vtype}", path=str(path))
            return take(_SCALARS[vtype])

        if f.read(4) != b"GGUF":
            raise ModelError(f"{path.name}: not a GGUF file", path=str(path))
        take("<I")
        n_tensors, n_kv = take("<Q"), take("<Q")
        meta = {}
        for _ in range(n_kv):
            key = text()
            v = value(take("<I"))
            if v is not None:
                meta[key] = v
        shapes = {}
        for _ in range(n_tensors):
            name = text()
            dims = tuple(take("<Q") for _ in range(take("<I")))
            take("<I")
            take("<Q")
            shapes[name] = dims
    return meta, shapes


def base_facts(path: Path) -> BaseFacts:
    """Architecture and head counts of a base model: a GGUF file (its header) or a
    transformers folder (``config.json``)."""
    path = Path(path)
    if path.is_file() and path.name.lower().endswith(".gguf"):
        meta, shapes = gguf_header(path)
        arch = meta.get("general.architecture")
        heads = meta.get(f"{arch}.attention.head_count")
        kv = meta.get(f"{arch}.attention.head_count_kv") or heads
        blocks = meta.get(f"{arch}.block_count")
        if not (arch and heads and blocks):
            raise ModelError(f"{path.name}: the GGUF header lacks the architecture or head counts",
                             path=str(path))
        return BaseFacts(str(arch), int(heads), int(kv), int(blocks), shapes)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ModelError(f"{path}: neither a GGUF file nor a transformers folder (no config.json)",
                         path=str(path))
    cfg = json.loads(cfg_file.read_text())
    mt = cfg.get("model_type")
    if mt not in _HF_ARCH:
        raise InvalidArtifact(f"{path}: a {mt!r} base; GGUF LoRA export supports llama-architecture "
                              f"bases ({', '.join(sorted(_HF_ARCH))})", model_type=mt)
    heads = int(cfg["num_attention_heads"])
    return BaseFacts(_HF_ARCH[mt], heads, int(cfg.get("num_key_value_heads") or heads),
                     int(cfg["num_hidden_layers"]))


def permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """The llama converter's row permutation of a query/key projection with ``n_head``
    heads: within each head, the two rotary halves are interleaved."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def _adapter_settings(cfg: dict[str, Any]) -> tuple[int, float]:
    def refuse(why: str) -> None:
        raise InvalidArtifact(f"this adapter cannot be a GGUF LoRA: {why}", peft_type=cfg.get("peft_type"))
    if cfg.get("peft_type", "LORA") != "LORA":
        refuse(f"it is a {cfg.get('peft_type')} adapter, not LoRA")
    if cfg.get("use_dora"):
        refuse("DoRA's magnitude vectors have no llama.cpp form")
    if cfg.get("modules_to_save"):
        refuse(f"it trains whole modules too ({cfg['modules_to_save']})")
    if cfg.get("bias", "none") != "none":
        refuse("it trains biases")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        refuse("llama.cpp takes one alpha per adapter, not per-module ranks or alphas")
    if cfg.get("fan_in_fan_out"):
        refuse("fan_in_fan_out (Conv1D) layers are not llama's")
    r = int(cfg.get("r") or 0)
    if r <= 0:
        refuse(f"its rank is {cfg.get('r')!r}")
    alpha = float(cfg.get("lora_alpha") or r)
    if cfg.get("use_rslora"):
        alpha = alpha * math.sqrt(r)        # llama.cpp scales by alpha / r
    return r, alpha


def _tensor_name_map(facts: BaseFacts) -> Any:
    import gguf
    arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}.get(facts.arch)
    if arch is None or facts.arch not in PERMUTED_ARCHS:
        raise InvalidArtifact(f"GGUF LoRA export supports llama-architecture bases, not "
                              f"{facts.arch!r}", arch=facts.arch)
    return gguf.get_tensor_name_map(arch, facts.n_blocks)


def _pairs(adapter: Path) -> dict[str, dict[str, np.ndarray]]:
    from demoai.train.scan import tensor_loaders
    files = sorted(adapter.glob("*.safetensors"))
    if not files:
        raise InvalidArtifact(f"{adapter}: no adapter_model.safetensors", path=str(adapter))
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for f in files:
        for name, load in tensor_loaders(f).items():
            if "lora_embedding_" in name:
                raise InvalidArtifact(f"this adapter cannot be a GGUF LoRA: {name} is a LoRA on "
                                      "the embeddings", tensor=name)
            m = _PEFT.match(name)
            if m is None:
                raise InvalidArtifact(f"this adapter cannot be a GGUF LoRA: {name} is not a LoRA "
                                      "A/B matrix", tensor=name)
            pairs.setdefault(m["module"], {})[m["ab"]] = np.asarray(load(), dtype=np.float32)
    for module, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise InvalidArtifact(f"{adapter}: {module} has lora_{''.join(ab)} without its pair",
                                  module=module)
    return pairs


def lora_to_gguf(adapter: Path, base: BaseFacts, out: Path, *, name: str | None = None,
                 dtype: str = "f32") -> LoraExport:
    """Write the peft adapter folder ``adapter`` as the GGUF LoRA ``out`` for a base with
    ``base``'s facts (``dtype``: ``f32`` or ``f16``). Written to a temporary file first,
    then moved into place."""
    try:
        import gguf
    except ImportError as e:     # pragma: no cover - a dependency of the llm extra
        raise BackendUnavailable("GGUF export needs the gguf package: pip install gguf",
                                 module="gguf") from e
    adapter, out = Path(adapter), Path(out)
    cfg_file = adapter / "adapter_config.json"
    if not cfg_file.is_file():
        raise InvalidArtifact(f"{adapter}: no adapter_config.json", path=str(adapter))
    r, alpha = _adapter_settings(json.loads(cfg_file.read_text()))
    names = _tensor_name_map(base)
    np_type = {"f32": np.float32, "f16": np.float16}.get(dtype)
    if np_type is None:
        raise InvalidArtifact(f"dtype must be f32 or f16, not {dtype!r}", dtype=dtype)
    tensors: list[tuple[str, np.ndarray]] = []
    for module, ab in sorted(_pairs(adapter).items()):
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None:
            raise InvalidArtifact(f"this adapter cannot be a GGUF LoRA: {module} has no "
                                  f"{base.arch} GGUF counterpart", module=module)
        a, b = ab["A"], ab["B"]
        if a.shape[0] != b.shape[1] or a.shape[0] != r:
            raise InvalidArtifact(f"{module}: lora_A {a.shape} and lora_B {b.shape} do not share "
                                  f"the rank {r}", module=module)
        if base.shapes is not None:
            want = base.shapes.get(target)
            if want is None or want[:2] != (a.shape[1], b.shape[0]):
                raise InvalidArtifact(f"the adapter does not fit this base: {module} is "
                                      f"{b.shape[0]}x{a.shape[1]}, the base's {target} is "
                                      f"{'missing' if want is None else 'x'.join(map(str, want[::-1]))}",
                                      module=module)
        leaf = module.rsplit(".", 1)[-1]
        if leaf in ("q_proj", "k_proj"):
            heads = base.n_head if leaf == "q_proj" else base.n_head_kv
            if b.shape[0] % (2 * heads):
                raise InvalidArtifact(f"the adapter does not fit this base: {module} has "
                                      f"{b.shape[0]} outputs, not a multiple of 2 x {heads} heads",
                                      module=module)
            b = permute_rows(b, heads)
        tensors += [(f"{target}.lora_a", a.astype(np_type)), (f"{target}.lora_b", b.astype(np_type))]
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    w = gguf.GGUFWriter(str(tmp), base.arch)
    try:
        w.add_type(gguf.GGUFType.ADAPTER)
        w.add_string(gguf.Keys.Adapter.TYPE, "lora")
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        if name:
            w.add_name(name)
        for tname, arr in tensors:
            w.add_tensor(tname, np.ascontiguousarray(arr))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
    finally:
        w.close()
    os.replace(tmp, out)
    return LoraExport(out, base.arch, alpha, r, len(tensors) // 2, out.stat().st_size)
