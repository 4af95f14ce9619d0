"""Step files for ``demoai data run``: a sequence of preparation steps, each checked in full
before any of them runs.

A step file is YAML: a list of steps (or a mapping with a ``steps`` list), each step a
mapping of one verb to its parameters::

    steps:
      - clean: {path: data/train.jsonl, column: text, rules: [whitespace, pii]}
      - dedup: {path: data/train.jsonl, column: text, threshold: 0.8}
      - split: {path: data/train.jsonl, ratios: [0.9, 0.1], key: id}
      - contamination: {path: data/test.jsonl, against: [data/train.train.jsonl], remove: true}

Unknown verbs and parameters are refused with a suggestion; a required parameter that is
missing is named.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demoai.errors import InvalidArtifact

__all__ = ["Step", "STEP_PARAMS", "REQUIRED", "parse_steps", "load_steps"]

_COMMON = ("path", "rev", "column", "message")
STEP_PARAMS: dict[str, tuple[str, ...]] = {
    "clean": _COMMON + ("rules", "allow_empty"),
    "dedup": _COMMON + ("threshold", "exact", "near", "against", "num_perm", "ngram",
                        "allow_empty"),
    "split": ("path", "rev", "message", "ratios", "key", "stratify", "seed", "names"),
    "contamination": _COMMON + ("against", "n", "near", "threshold", "remove", "allow_empty"),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "clean": ("path", "rules"), "dedup": ("path",), "split": ("path", "ratios"),
    "contamination": ("path", "against"),
}


@dataclass
class Step:
    """One step: its verb, parameters and position (1-based) in the file."""

    verb: str
    params: dict[str, Any] = field(default_factory=dict)
    number: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"verb": self.verb, "params": self.params, "number": self.number}


def _near(word: str, options: list[str]) -> str:
    m = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f"; did you mean {m[0]!r}?" if m else f" (known: {', '.join(sorted(options))})"


def parse_steps(doc: Any) -> list[Step]:
    """Steps from a parsed step file (see the module docstring)."""
    if isinstance(doc, dict):
        extra = set(doc) - {"steps"}
        if extra:
            raise InvalidArtifact(f"steps: unknown top-level key(s) {sorted(extra)}; the file "
                                  "is a list of steps or a mapping with 'steps'")
        doc = doc.get("steps")
    if not isinstance(doc, list) or not doc:
        raise InvalidArtifact("steps: the file must hold a non-empty list of steps")
    out = []
    for i, item in enumerate(doc, 1):
        if not isinstance(item, dict) or len(item) != 1:
            raise InvalidArtifact(f"steps: step {i} must be a mapping of one verb to its "
                                  f"parameters, like '- clean: {{path: ..., rules: [...]}}'",
                                  step=i)
        verb, params = next(iter(item.items()))
        if verb not in STEP_PARAMS:
            raise InvalidArtifact(f"steps: step {i}: unknown verb {verb!r}"
                                  f"{_near(str(verb), list(STEP_PARAMS))}", step=i)
        params = params or {}
        if not isinstance(params, dict):
            raise InvalidArtifact(f"steps: step {i} ({verb}): parameters must be a mapping",
                                  step=i)
        for k in params:
            if k not in STEP_PARAMS[verb]:
                raise InvalidArtifact(f"steps: step {i} ({verb}): unknown parameter {k!r}"
                                      f"{_near(str(k), list(STEP_PARAMS[verb]))}", step=i,
                                      parameter=k)
        for k in REQUIRED[verb]:
            if k not in params:
                raise InvalidArtifact(f"steps: step {i} ({verb}): {k!r} is required", step=i,
                                      parameter=k)
        out.append(Step(verb, dict(params), i))
    return out


def load_steps(path: str | Path) -> list[Step]:
    """The steps of a YAML step file."""
    import yaml
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        from demoai.errors import PathNotFound
        raise PathNotFound(f"{path}: no such step file", path=str(path)) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InvalidArtifact(f"steps: {path} is not valid YAML ({e})", path=str(path)) from None
    return parse_steps(doc)
