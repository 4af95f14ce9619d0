"""Brain scan: statistics of a model's weights, of an adapter's update, of the change
between two checkpoints, and of activations on probe prompts.

Tensors are read one at a time (a GGUF through the ``gguf`` reader, dequantized by
``gguf.quants``; safetensors through a memory map of its header's offsets, BF16 widened by
hand), so peak memory stays about one tensor's float32 copy. Statistics are over the finite
values; NaN and Inf are counted, never dropped silently. ``near_zero`` is the share of
entries with ``|w| < NEAR_ZERO``. For an adapter, each LoRA pair gives ``delta = B @ A *
scaling`` (``lora_alpha / r``, or ``/ sqrt(r)`` with rsLoRA) and its norm against the base
weight it modifies.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from demoai.errors import InvalidArtifact

__all__ = ["TensorStats", "NEAR_ZERO", "tensor_stats", "iter_tensors", "scan_weights",
           "scan_adapter", "scan_diff", "tensor_loaders", "scan_activations", "split_name", "heatmap",
           "ActivationStats"]

NEAR_ZERO = 1e-6
_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
              "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_LAYER = re.compile(r"(?:^|\.)(?:blk|layers|h|block|blocks)\.(\d+)\.(.+)$")


@dataclass
class TensorStats:
    """One tensor's statistics (``layer`` is None outside the repeated blocks)."""

    name: str
    layer: int | None
    module: str
    shape: list[int]
    n: int
    norm: float
    max_abs: float
    mean: float
    std: float
    near_zero: float
    nan: int
    inf: int
    base_norm: float | None = None     # adapters: the base weight's norm
    ratio: float | None = None         # adapters: ||delta|| / ||base||; diff: ||B-A|| / ||A||

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


def split_name(name: str) -> tuple[int | None, str]:
    """(layer index, module) of a tensor name: ``blk.3.attn_q.weight`` -> (3, ``attn_q.weight``)."""
    m = _LAYER.search(name)
    return (int(m.group(1)), m.group(2)) if m else (None, name)


def tensor_stats(name: str, w: np.ndarray) -> TensorStats:
    """Statistics of one tensor, in float64 accumulators."""
    x = np.asarray(w).reshape(-1)
    if x.dtype.kind not in "fc":
        x = x.astype(np.float32)
    layer, module = split_name(name)
    if np.isfinite(x).all():          # the common case: one pass to check, none to filter
        v, nan, n_inf = x, 0, 0
    else:
        nan = int(np.isnan(x).sum())
        fin = np.isfinite(x)
        n_inf = int(x.size - fin.sum() - nan)
        v = x[fin]
    if v.size == 0:
        return TensorStats(name, layer, module, list(w.shape), int(x.size), 0.0, 0.0, 0.0, 0.0, 0.0,
                           nan, n_inf)
    s1 = float(np.sum(v, dtype=np.float64))
    s2 = float(np.dot(v, v)) if v.dtype == np.float32 else float(np.dot(v.astype(np.float64), v.astype(np.float64)))
    mean = s1 / v.size
    var = max(s2 / v.size - mean * mean, 0.0)
    near = int(np.count_nonzero((v > -NEAR_ZERO) & (v < NEAR_ZERO)))
    return TensorStats(name, layer, module, list(w.shape), int(x.size), math.sqrt(s2),
                       float(max(v.max(), -v.min())), mean, math.sqrt(var), near / x.size, nan, n_inf)


def _safetensors_loaders(path: Path) -> dict[str, Callable[[], np.ndarray]]:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    base = 8 + n

    def load(name: str, t: dict) -> np.ndarray:
        a, b = t["data_offsets"]
        raw = mm[base + a:base + b]
        if t["dtype"] == "BF16":
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif t["dtype"] in _ST_DTYPES:
            arr = raw.view(_ST_DTYPES[t["dtype"]])
        else:
            raise InvalidArtifact(f"{path.name}: tensor {name} has unsupported dtype {t['dtype']}")
        return arr.reshape(t["shape"])
    return {name: (lambda name=name, t=t: load(name, t)) for name, t in header.items()
            if name != "__metadata__"}


def _gguf_loaders(path: Path) -> dict[str, Callable[[], np.ndarray]]:
    import gguf
    from gguf.quants import dequantize
    r = gguf.GGUFReader(str(path))

    def load(t: Any) -> np.ndarray:
        return dequantize(t.data, t.tensor_type).reshape([int(d) for d in reversed(t.shape)])
    return {t.name: (lambda t=t: load(t)) for t in r.tensors}


def tensor_loaders(path: Path) -> dict[str, Callable[[], np.ndarray]]:
    """name -> a function reading that tensor (float array), for a GGUF or safetensors file
    or every ``*.safetensors`` (else ``*.gguf``) of a folder; nothing is read until called."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.gguf"))
        if not files:
            raise InvalidArtifact(f"{path}: no safetensors or GGUF weights to scan", path=str(path))
        out: dict[str, Callable[[], np.ndarray]] = {}
        for f in files:
            out.update(tensor_loaders(f))
        return out
    if not path.is_file():
        raise InvalidArtifact(f"{path}: no weights file", path=str(path))
    return _gguf_loaders(path) if path.name.lower().endswith(".gguf") else _safetensors_loaders(path)


def iter_tensors(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float array) of every tensor at ``path`` (see :func:`tensor_loaders`), one at
    a time."""
    for name, load in tensor_loaders(path).items():
        yield name, load()


Progress = Callable[[int, int], None] | None


def scan_weights(path: Path) -> list[TensorStats]:
    """Statistics of every tensor of the weights at ``path``."""
    return [tensor_stats(name, w) for name, w in iter_tensors(path)]


def _adapter_file(adapter: Path) -> Path:
    f = adapter / "adapter_model.safetensors"
    if not f.is_file():
        raise InvalidArtifact(f"{adapter}: no adapter_model.safetensors", path=str(adapter))
    return f


def _hf_to_gguf(base_names: set[str], arch: str | None, n_blocks: int) -> Callable[[str], str | None]:
    """Maps an HF weight name to the name the base holds (itself, or its GGUF name)."""
    mapper = None
    if arch:
        try:
            import gguf
            arch_id = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
            mapper = gguf.get_tensor_name_map(arch_id, n_blocks)
        except (StopIteration, ImportError, KeyError):
            mapper = None

    def find(name: str) -> str | None:
        if name in base_names:
            return name
        if mapper is not None:
            g = mapper.get_name(name, try_suffixes=(".weight", ".bias"))
            if g in base_names:
                return g
        return None
    return find


def scan_adapter(base: Path, adapter: Path, arch: str | None = None) -> list[TensorStats]:
    """Per LoRA pair: statistics of ``delta = B @ A * scaling`` and its norm against the base
    weight (``ratio``). The base is read one tensor at a time, once."""
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    r = int(cfg.get("r") or 8)
    default_scale = float(cfg.get("lora_alpha", r)) / (math.sqrt(r) if cfg.get("use_rslora") else r)
    tensors = {k: f() for k, f in _safetensors_loaders(_adapter_file(adapter)).items()}
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for name, arr in tensors.items():
        m = re.match(r"^(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$", name)
        if m:
            pairs.setdefault(m.group(1), {})[m.group(2)] = arr
    deltas: dict[str, np.ndarray] = {}
    for mod, ab in pairs.items():
        if "A" in ab and "B" in ab:
            d = ab["B"].astype(np.float32) @ ab["A"].astype(np.float32)
            deltas[mod + ".weight"] = d * default_scale
    base_norms: dict[str, float] = {}
    want: set[str] = set(deltas)
    names: list[str] = []
    for name, w in iter_tensors(base):
        names.append(name)
        base_norms[name] = float(np.linalg.norm(w.astype(np.float32).reshape(-1)))
    n_blocks = 1 + max((split_name(n)[0] or 0) for n in names) if names else 0
    find = _hf_to_gguf(set(base_norms), arch, n_blocks)
    out = []
    for name in sorted(want, key=lambda k: (split_name(k)[0] or -1, k)):
        s = tensor_stats(name, deltas[name])
        bn = base_norms.get(find(name) or "", None)
        s.base_norm = bn
        s.ratio = s.norm / bn if bn else None
        out.append(s)
    return out


def scan_diff(a: Path, b: Path) -> list[TensorStats]:
    """Per tensor both hold with the same shape: statistics of ``B - A`` and ``ratio`` =
    ``||B-A|| / ||A||`` (one pair of tensors in memory at a time)."""
    la, lb = tensor_loaders(a), tensor_loaders(b)
    out = []
    for name, load_a in la.items():
        if name not in lb:
            continue
        wa, wb = load_a().astype(np.float32), lb[name]().astype(np.float32)
        if wa.shape != wb.shape:
            continue
        s = tensor_stats(name, wb - wa)
        s.base_norm = float(np.linalg.norm(wa.reshape(-1)))
        s.ratio = s.norm / s.base_norm if s.base_norm else None
        out.append(s)
    return out


@dataclass
class ActivationStats:
    """Per layer activation statistics over a probe set, and the top MLP units of one prompt."""

    layer: int
    mean: float
    std: float
    max_abs: float
    dead_share: float
    top_units: list[list[float]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


def scan_activations(model_dir: Path, prompts: list[str], *, gguf_file: str | None = None,
                     top_k: int = 5, threads: int = 1, focus: int = 0) -> list[ActivationStats]:
    """Forward hooks on each decoder layer's MLP activation (its input to ``down_proj``):
    per layer mean, std, max |a| over every probe token, the share of units never above 0
    (dead), and the ``top_k`` units by mean activation on prompt ``focus``. One prompt is
    run at a time; each hook keeps running sums only."""
    import torch
    import transformers
    torch.set_num_threads(threads)
    kw = {"gguf_file": gguf_file} if gguf_file else {}
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir), **kw)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, **kw).eval()
    layers = getattr(getattr(model, "model", model), "layers", None)
    if layers is None:
        raise InvalidArtifact("scan activations: the model has no .model.layers decoder blocks")
    acc: dict[int, dict[str, Any]] = {}
    state = {"prompt": 0}

    def hook(i: int) -> Callable:
        def pre(mod: Any, args: tuple) -> None:
            a = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            d = acc.setdefault(i, {"s1": 0.0, "s2": 0.0, "n": 0, "max": 0.0,
                                   "alive": torch.zeros(a.shape[-1], dtype=torch.bool), "focus": None})
            d["s1"] += float(a.sum())
            d["s2"] += float((a * a).sum())
            d["n"] += a.numel()
            d["max"] = max(d["max"], float(a.abs().max()))
            d["alive"] |= (a > 0).any(0)
            if state["prompt"] == focus:
                d["focus"] = a.mean(0)
        return pre

    handles = [layer.mlp.down_proj.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            for j, p in enumerate(prompts):
                state["prompt"] = j
                ids = tok(p, return_tensors="pt")
                model(**ids)
    finally:
        for h in handles:
            h.remove()
    out = []
    for i in sorted(acc):
        d = acc[i]
        mean = d["s1"] / d["n"]
        std = math.sqrt(max(d["s2"] / d["n"] - mean * mean, 0.0))
        top: list[list[float]] = []
        if d["focus"] is not None:
            vals, idx = torch.topk(d["focus"], min(top_k, d["focus"].numel()))
            top = [[int(k), float(v)] for k, v in zip(idx, vals)]
        out.append(ActivationStats(i, mean, std, d["max"], 1.0 - float(d["alive"].float().mean()), top))
    return out


def heatmap(stats: list[TensorStats], out: Path, value: str = "norm", title: str = "") -> Path | None:
    """A layer x module PNG of ``value`` (matplotlib's Agg canvas); None when no tensor
    sits in a numbered layer."""
    rows = [s for s in stats if s.layer is not None and getattr(s, value) is not None]
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    layers = sorted({s.layer for s in rows})
    modules = sorted({s.module for s in rows})
    grid = np.full((len(layers), len(modules)), np.nan)
    for s in rows:
        grid[layers.index(s.layer), modules.index(s.module)] = getattr(s, value)
    fig = Figure(figsize=(max(6, len(modules) * 0.6), max(4, len(layers) * 0.25)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis")
    ax.set_xticks(range(len(modules)), modules, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(layers)), [str(x) for x in layers], fontsize=6)
    ax.set_xlabel("module")
    ax.set_ylabel("layer")
    ax.set_title(title or value)
    fig.colorbar(im, ax=ax, label=value)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    return out
