"""Suite: an evaluation definition (``*.suite.yaml``), a small YAML document kept verbatim
like prompts and agents, so it diffs and merges as text.

A suite is either a *task* over a dataset in the tree (``generate``, ``multiple_choice``,
``loglikelihood``, ``perplexity``, as lm-evaluation-harness has them) or a list of *cases*
with assertions (a sanity suite that runs like unit tests). This module checks the
document's shape: known keys at every level, their types, what each task needs. What needs
the repository or the metric registry (the dataset has the named columns, the metrics
exist, the cases' assertions are well formed) is checked by the evaluation workflow before
anything runs.

Example::

    name: arithmetic
    task: generate
    dataset: data/arith.jsonl
    template: "Question: {{question}}\\nAnswer with the number only."
    reference: answer
    parameters: {temperature: 0, max_tokens: 16}
    metrics: [exact_match, {name: contains}]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from demoai.errors import InvalidArtifact
from demoai.objects.base import digest_bytes, register
from demoai.objects.textspec import PLACEHOLDER, TextArtifact, check_keys, check_parameters, parse_yaml

__all__ = ["Suite", "SUITE_KEYS", "SUITE_TASKS", "TASK_COLUMNS", "DEFAULT_METRICS"]

SUITE_TASKS = ("generate", "multiple_choice", "loglikelihood", "perplexity", "cases")
SUITE_KEYS = ("name", "description", "task", "dataset", "prompt", "template", "system", "chat",
              "reference", "choices", "target", "continuation", "text", "delimiter", "key",
              "metrics", "parameters", "seed", "limit", "model", "judge", "cases")
TASK_COLUMNS: dict[str, tuple[str, ...]] = {
    "generate": ("reference",),
    "multiple_choice": ("choices", "target"),
    "loglikelihood": ("continuation",),
    "perplexity": ("text",),
    "cases": (),
}
"""The column keys each task requires (each names a column of the dataset)."""
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "generate": ("exact_match",),
    "multiple_choice": ("acc", "acc_norm"),
    "loglikelihood": ("greedy_acc", "perplexity"),
    "perplexity": ("perplexity", "word_perplexity", "bits_per_byte"),
    "cases": (),
}
"""Metrics a suite gets when it names none."""
_COLUMN_KEYS = ("reference", "choices", "target", "continuation", "text", "key")


def _metric_specs(raw: Any, what: str) -> list[dict[str, Any]]:
    """``metrics:`` as a list of ``{"name": ..., **arguments}`` (a bare name has none)."""
    if not isinstance(raw, list) or not raw:
        raise InvalidArtifact(f"{what}: 'metrics' must be a non-empty list of metric names "
                              "or {name: ..., <argument>: ...} mappings")
    out, seen = [], set()
    for i, m in enumerate(raw):
        spec = {"name": m} if isinstance(m, str) else m
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
            raise InvalidArtifact(f"{what}: metrics[{i}] must be a name or a mapping with 'name'")
        if spec["name"] in seen:
            raise InvalidArtifact(f"{what}: metric {spec['name']!r} is listed twice")
        seen.add(spec["name"])
        out.append(dict(spec))
    return out


@register
@dataclass(frozen=True)
class Suite(TextArtifact):
    """An evaluation suite: the dataset (a path in the tree) and how each row becomes a
    request (a Prompt reference or an inline ``template``), the decoding ``parameters`` and
    ``seed``, the ``metrics``; or ``cases`` with assertions."""

    kind = "suite"
    text: str = ""

    @classmethod
    def from_text(cls, text: str, what: str = "suite") -> "Suite":
        """Parse and check a ``*.suite.yaml`` document."""
        data = parse_yaml(text, what)
        check_keys(data, SUITE_KEYS, what)
        task = data.get("task", "cases" if "cases" in data else "generate")
        if task not in SUITE_TASKS:
            raise InvalidArtifact(f"{what}: task must be one of {list(SUITE_TASKS)}, not {task!r}")
        for k in ("name", "description", "dataset", "prompt", "template", "system", "model", "judge",
                  "delimiter", *_COLUMN_KEYS):
            if k in data and not isinstance(data[k], str):
                raise InvalidArtifact(f"{what}: {k!r} must be text")
        if "chat" in data and not isinstance(data["chat"], bool):
            raise InvalidArtifact(f"{what}: 'chat' must be true or false")
        for k in ("seed", "limit"):
            v = data.get(k)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or (k == "limit" and v < 1)):
                raise InvalidArtifact(f"{what}: {k!r} must be {'a positive ' if k == 'limit' else 'an '}integer")
        params = check_parameters(data.get("parameters"), what)
        meta: dict[str, Any] = {
            "name": data.get("name"), "description": data.get("description"), "task": task,
            "model": data.get("model"), "parameters": params, "seed": data.get("seed", params.get("seed", 0)),
        }
        if task == "cases":
            cases = data.get("cases")
            if not isinstance(cases, list) or not cases:
                raise InvalidArtifact(f"{what}: 'cases' must be a non-empty list")
            stray = [k for k in ("dataset", "prompt", "template", "metrics", *_COLUMN_KEYS) if k in data]
            if stray:
                raise InvalidArtifact(f"{what}: a suite of cases takes no {stray} (those are for "
                                      "dataset tasks)")
            meta["cases"] = cases
            meta["system"] = data.get("system")
            meta["judge"] = data.get("judge")
            return cls(digest=digest_bytes(text.encode()), text=text, meta=meta)
        if "judge" in data:
            raise InvalidArtifact(f"{what}: 'judge' is the model that grades cases; a {task} task "
                                  "scores with its metrics")
        if "cases" in data:
            raise InvalidArtifact(f"{what}: 'cases' makes a sanity suite; a {task} task takes "
                                  "a dataset instead")
        if not data.get("dataset"):
            raise InvalidArtifact(f"{what}: 'dataset' (a dataset path in the tree) is required "
                                  f"for a {task} task")
        if task != "perplexity":
            if ("prompt" in data) == ("template" in data):
                raise InvalidArtifact(f"{what}: give either 'prompt' (a prompt path) or 'template' "
                                      "(inline, with {{column}} placeholders)")
        elif "prompt" in data or "template" in data:
            raise InvalidArtifact(f"{what}: a perplexity task scores the 'text' column as it is; "
                                  "it takes no prompt or template")
        missing = [k for k in TASK_COLUMNS[task] if not data.get(k)]
        if missing:
            raise InvalidArtifact(f"{what}: a {task} task needs {', '.join(repr(m) for m in missing)} "
                                  "(the dataset column holding it)")
        tpl = data.get("template")
        if tpl is not None and not tpl.strip():
            raise InvalidArtifact(f"{what}: 'template' must be non-empty text")
        meta.update({
            "dataset": data["dataset"], "prompt": data.get("prompt"), "template": tpl,
            "variables": list(dict.fromkeys(PLACEHOLDER.findall(tpl))) if tpl else None,
            "system": data.get("system"),
            "chat": data.get("chat", task == "generate"),
            "delimiter": data.get("delimiter", " "),
            "columns": {k: data[k] for k in _COLUMN_KEYS if data.get(k)},
            "metrics": _metric_specs(data.get("metrics", list(DEFAULT_METRICS[task])), what),
            "limit": data.get("limit"),
        })
        return cls(digest=digest_bytes(text.encode()), text=text, meta=meta)
