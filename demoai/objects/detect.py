"""Kind detection from a path in the working tree."""
from __future__ import annotations

from pathlib import Path

from demoai.errors import PathNotFound, UnknownKind

__all__ = ["detect_kind", "dataset_format", "KINDS"]

KINDS = ("dataset", "prompt", "model", "adapter", "eval", "session", "agent", "suite", "gate",
         "arena", "train")
_DATASET_EXT = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def dataset_format(path: Path) -> str:
    """The on-disk format of a dataset path: jsonl, csv, parquet or hf (a saved folder)."""
    if path.is_dir():
        return "hf"
    fmt = _DATASET_EXT.get(path.suffix.lower())
    if fmt is None:
        raise UnknownKind(f"{path}: not a dataset file (.jsonl, .csv, .parquet or a saved HF dataset folder)",
                          path=str(path))
    return fmt


def detect_kind(path: str | Path) -> str:
    """Which artifact kind a file or folder holds, from its name and contents."""
    path = Path(path)
    if not path.exists():
        raise PathNotFound(f"{path}: no such file or directory", path=str(path))
    name = path.name.lower()
    if path.is_dir():
        names = {p.name for p in path.iterdir()}
        if "adapter_config.json" in names:
            return "adapter"
        if "config.json" in names and any(n.endswith((".safetensors", ".bin", ".gguf")) for n in names):
            return "model"
        if ({"dataset_info.json", "state.json"} & names) and any(n.endswith(".arrow") for n in names):
            return "dataset"
        raise UnknownKind(f"{path}: cannot tell what this folder holds (no adapter_config.json, "
                          "model config.json with weights, or saved dataset); use --kind", path=str(path))
    if name.endswith((".prompt.yaml", ".prompt.yml")):
        return "prompt"
    if name.endswith((".agent.yaml", ".agent.yml")):
        return "agent"
    if name.endswith((".suite.yaml", ".suite.yml")):
        return "suite"
    if name.endswith((".train.yaml", ".train.yml")):
        return "train"
    for kind in ("eval", "gate", "arena"):
        if name.endswith(f".{kind}.json"):
            return kind
    if path.suffix.lower() in _DATASET_EXT:
        return "dataset"
    if name.endswith((".gguf", ".safetensors")):
        return "model"
    raise UnknownKind(f"{path}: unknown artifact type; use --kind {{{','.join(KINDS)}}}", path=str(path))
