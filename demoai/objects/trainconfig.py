"""TrainConfig: a LoRA fine-tuning run's definition (``*.train.yaml``), a small YAML
document kept verbatim like prompts, agents and suites, so it diffs and merges as text.

Every key is checked at every level (top level, ``columns``, ``lora``, ``validation``): an
unknown key is refused with a "did you mean" suggestion, as are wrong types and ranges
(``lora.r`` must be a positive integer). What needs the repository (the base is a model,
the dataset exists and has the named columns, the validation split leaves rows to train
on) is checked by the training workflow before anything runs.

Example::

    name: arith-lora
    base: smollm2                 # or a model path committed in the tree (GGUF or folder)
    dataset: data/arith.jsonl
    format: template              # prompt_completion | chat | template
    template: "Question: {{question}}"
    columns: {completion: answer}
    lora: {r: 8, alpha: 16, dropout: 0.0, target_modules: [q_proj, v_proj]}
    learning_rate: 0.0002
    schedule: cosine
    warmup_steps: 2
    max_steps: 30
    batch_size: 4
    max_length: 128
    seed: 0
    threads: 1
    validation: {share: 0.1}
    eval_every: 10
    save_every: 10
    scan_every: 10                # record per-module weight/gradient norms every 10 steps
    scan_growth: 2.0              # warn when a module's weight norm grows beyond 2x the last scan
    stop_on_explosion: false      # stop (keeping the last checkpoint) instead of only warning
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from demoai.errors import InvalidArtifact
from demoai.objects.base import digest_bytes, register
from demoai.objects.textspec import PLACEHOLDER, TextArtifact, check_keys, parse_yaml

__all__ = ["TrainConfig", "TRAIN_KEYS", "TRAIN_FORMATS", "SCHEDULES", "OPTIMIZERS", "LORA_KEYS",
           "DEFAULT_TARGETS"]

TRAIN_FORMATS = ("prompt_completion", "chat", "template")
SCHEDULES = ("constant", "linear", "cosine")
OPTIMIZERS = ("adamw",)
DEFAULT_TARGETS = ("q_proj", "v_proj")
TRAIN_KEYS = ("name", "description", "base", "dataset", "format", "columns", "template", "system",
              "chat", "lora", "optimizer", "learning_rate", "weight_decay", "max_grad_norm",
              "schedule", "warmup_steps", "epochs", "max_steps", "batch_size",
              "gradient_accumulation", "max_length", "seed", "threads", "validation",
              "eval_every", "save_every", "scan_every", "scan_growth", "stop_on_explosion")
LORA_KEYS = ("r", "alpha", "dropout", "target_modules")
_COLUMN_KEYS = ("prompt", "completion", "messages")
_FORMAT_COLUMNS = {"prompt_completion": ("prompt", "completion"), "chat": ("messages",),
                   "template": ("completion",)}
# key -> (type, minimum, default); int minimums are inclusive, float ones too
_NUMBERS: dict[str, tuple[type, float, Any]] = {
    "learning_rate": (float, 0.0, 2e-4), "weight_decay": (float, 0.0, 0.0),
    "max_grad_norm": (float, 0.0, 1.0), "warmup_steps": (int, 0, 0), "epochs": (int, 1, 1),
    "max_steps": (int, 1, None), "batch_size": (int, 1, 4), "gradient_accumulation": (int, 1, 1),
    "max_length": (int, 8, 512), "seed": (int, 0, 0), "threads": (int, 1, 1),
    "eval_every": (int, 1, None), "save_every": (int, 1, None), "scan_every": (int, 1, None),
    "scan_growth": (float, 1.0, 2.0),
}


def _number(data: dict[str, Any], key: str, typ: type, lo: float, default: Any, what: str,
            section: str = "") -> Any:
    name = f"{section}.{key}" if section else key
    if key not in data or data[key] is None:
        return default
    v = data[key]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")
    if typ is int:
        ok = ok and float(v).is_integer()
    if not ok:
        kind = "an integer" if typ is int else "a number"
        raise InvalidArtifact(f"{what}: {name!r} must be {kind}, got {v!r}", key=name)
    if v < lo or (typ is int and lo >= 1 and v < 1):
        raise InvalidArtifact(f"{what}: {name!r} must be at least {lo:g}, got {v!r}", key=name)
    return typ(v)


def _lora(raw: Any, what: str) -> dict[str, Any]:
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise InvalidArtifact(f"{what}: 'lora' must be a mapping (r, alpha, dropout, target_modules)")
    check_keys(raw, LORA_KEYS, what, "lora")
    r = raw.get("r", 8)
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        raise InvalidArtifact(f"{what}: 'lora.r' must be a positive integer, got {r!r}", key="lora.r")
    alpha = _number(raw, "alpha", float, 0.0, 2.0 * r, what, "lora")
    if alpha <= 0:
        raise InvalidArtifact(f"{what}: 'lora.alpha' must be positive, got {alpha!r}", key="lora.alpha")
    dropout = _number(raw, "dropout", float, 0.0, 0.0, what, "lora")
    if dropout >= 1:
        raise InvalidArtifact(f"{what}: 'lora.dropout' must be in [0, 1), got {dropout!r}", key="lora.dropout")
    targets = raw.get("target_modules", list(DEFAULT_TARGETS))
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise InvalidArtifact(f"{what}: 'lora.target_modules' must be a non-empty list of module "
                              "names (q_proj, v_proj, ...)", key="lora.target_modules")
    return {"r": r, "alpha": alpha, "dropout": dropout, "target_modules": list(targets)}


def _validation(raw: Any, what: str) -> dict[str, Any]:
    if raw is None:
        return {"share": 0.0, "dataset": None}
    if not isinstance(raw, dict):
        raise InvalidArtifact(f"{what}: 'validation' must be a mapping: {{share: 0.1}} or "
                              "{dataset: PATH}")
    check_keys(raw, ("share", "dataset"), what, "validation")
    if ("share" in raw) == ("dataset" in raw):
        raise InvalidArtifact(f"{what}: 'validation' takes either 'share' (a fraction of the "
                              "dataset held out) or 'dataset' (a dataset path), not both or neither")
    if "dataset" in raw:
        if not isinstance(raw["dataset"], str) or not raw["dataset"]:
            raise InvalidArtifact(f"{what}: 'validation.dataset' must be a dataset path")
        return {"share": 0.0, "dataset": raw["dataset"]}
    share = _number(raw, "share", float, 0.0, 0.0, what, "validation")
    if share >= 1:
        raise InvalidArtifact(f"{what}: 'validation.share' must be below 1, got {share!r}",
                              key="validation.share")
    return {"share": share, "dataset": None}


@register
@dataclass(frozen=True)
class TrainConfig(TextArtifact):
    """A LoRA training run's definition: base model, dataset and data format, LoRA
    settings, optimizer and schedule, steps, batch, lengths, seed, threads, validation,
    evaluation and save intervals. ``meta`` holds the checked values with defaults."""

    kind = "train"
    text: str = ""

    @classmethod
    def from_text(cls, text: str, what: str = "train config") -> "TrainConfig":
        """Parse and check a ``*.train.yaml`` document."""
        data = parse_yaml(text, what)
        check_keys(data, TRAIN_KEYS, what, elsewhere={**{k: f"lora.{k}" for k in LORA_KEYS},
                                                      **{k: f"columns.{k}" for k in _COLUMN_KEYS}})
        for k in ("name", "description", "base", "dataset", "format", "template", "system",
                  "optimizer", "schedule"):
            if k in data and not isinstance(data[k], str):
                raise InvalidArtifact(f"{what}: {k!r} must be text", key=k)
        for k in ("base", "dataset"):
            if not data.get(k):
                raise InvalidArtifact(f"{what}: {k!r} is required ("
                                      + ("a model path in the tree, or smollm2" if k == "base"
                                         else "a dataset path in the tree") + ")", key=k)
        fmt = data.get("format", "template" if "template" in data else "prompt_completion")
        if fmt not in TRAIN_FORMATS:
            raise InvalidArtifact(f"{what}: 'format' must be one of {list(TRAIN_FORMATS)}, not {fmt!r}",
                                  key="format")
        cols = data.get("columns") or {}
        if not isinstance(cols, dict):
            raise InvalidArtifact(f"{what}: 'columns' must be a mapping (prompt, completion, messages)")
        check_keys(cols, _COLUMN_KEYS, what, "columns")
        defaults = {"prompt": "prompt", "completion": "completion", "messages": "messages"}
        columns = {k: cols.get(k, defaults[k]) for k in _FORMAT_COLUMNS[fmt]}
        stray = sorted(set(cols) - set(columns))
        if stray:
            raise InvalidArtifact(f"{what}: the {fmt} format takes no columns.{stray[0]}", key=f"columns.{stray[0]}")
        if any(not isinstance(v, str) or not v for v in columns.values()):
            raise InvalidArtifact(f"{what}: every 'columns' value must be a column name")
        tpl = data.get("template")
        if fmt == "template":
            if not tpl or not tpl.strip():
                raise InvalidArtifact(f"{what}: the template format needs 'template' (the prompt, "
                                      "with {{column}} placeholders)", key="template")
        elif tpl is not None:
            raise InvalidArtifact(f"{what}: 'template' is for the template format (format: template)",
                                  key="template")
        for k in ("chat", "stop_on_explosion"):
            if k in data and not isinstance(data[k], bool):
                raise InvalidArtifact(f"{what}: {k!r} must be true or false", key=k)
        optimizer = data.get("optimizer", "adamw")
        if optimizer not in OPTIMIZERS:
            raise InvalidArtifact(f"{what}: 'optimizer' must be one of {list(OPTIMIZERS)}", key="optimizer")
        schedule = data.get("schedule", "constant")
        if schedule not in SCHEDULES:
            raise InvalidArtifact(f"{what}: 'schedule' must be one of {list(SCHEDULES)}, not {schedule!r}",
                                  key="schedule")
        nums = {k: _number(data, k, t, lo, d, what) for k, (t, lo, d) in _NUMBERS.items()}
        if nums["scan_growth"] <= 1:
            raise InvalidArtifact(f"{what}: 'scan_growth' must be above 1 (a factor of growth)",
                                  key="scan_growth")
        if nums["learning_rate"] <= 0:
            raise InvalidArtifact(f"{what}: 'learning_rate' must be positive", key="learning_rate")
        meta: dict[str, Any] = {
            "name": data.get("name"), "description": data.get("description"),
            "base": data["base"], "dataset": data["dataset"], "format": fmt, "columns": columns,
            "template": tpl, "variables": list(dict.fromkeys(PLACEHOLDER.findall(tpl))) if tpl else [],
            "system": data.get("system"), "chat": data.get("chat", True),
            "stop_on_explosion": data.get("stop_on_explosion", False),
            "lora": _lora(data.get("lora"), what), "optimizer": optimizer, "schedule": schedule,
            "validation": _validation(data.get("validation"), what), **nums,
        }
        return cls(digest=digest_bytes(text.encode()), text=text, meta=meta)
