"""What an evaluation will do, checked before any model is loaded: the suite at a revision,
its dataset rows and prompt pinned by digest, the metrics known and fed by the task, and one
request per row.

Everything that can be refused up front is refused here with a typed error (an unknown
metric, a template naming a missing column, a metric the task cannot feed); what can only
fail per row (a row without its reference, a target outside the choices) becomes an errored
item, counted and kept, never scored as 0.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any

from demoai.errors import InvalidArtifact, PathNotFound, RefNotFound
from demoai.eval.metrics import get_metric
from demoai.objects import Dataset, Prompt, Suite
from demoai.objects.textspec import PLACEHOLDER
from demoai.registry.resolve import load_text_artifact
from demoai.store.git.repo import Repository, normalize_path
from demoai.store.kinds import load_table

__all__ = ["Item", "Plan", "load_plan", "TASK_INPUTS", "metric_inputs", "committed_dataset"]

TASK_INPUTS: dict[str, tuple[str, ...]] = {
    "generate": ("predictions", "references"),
    "multiple_choice": ("loglikelihoods", "gold", "choices", "predictions", "references"),
    "loglikelihood": ("nll", "tokens", "is_greedy"),
    "perplexity": ("nll", "tokens", "words", "num_bytes"),
    "cases": (),
}
"""The inputs each task's predictions give metric functions (by parameter name)."""


def metric_inputs(name: str) -> tuple[list[str], set[str]]:
    """(required positional inputs, keyword options) of the metric ``name``, read from its
    function's signature: parameters without defaults are inputs, the rest options."""
    fn = get_metric(name)
    required, options = [], set()
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty and p.kind != p.KEYWORD_ONLY:
            required.append(p.name)
        else:
            options.add(p.name)
    return required, options


@dataclass
class Item:
    """One row to evaluate: its position, its id (the key column's value, else the
    position), the rendered request and what scoring needs, or why it cannot run."""

    index: int
    item_id: str
    request: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Plan:
    """A checked evaluation: the suite, its pinned inputs and its items."""

    suite: Suite
    suite_path: str
    source: dict[str, Any]
    task: str
    dataset: Dataset | None = None
    dataset_path: str | None = None
    prompt: Prompt | None = None
    prompt_path: str | None = None
    items: list[Item] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    @property
    def name(self) -> str:
        """The suite's name, else its file name without ``.suite.yaml``."""
        base = self.suite_path.rsplit("/", 1)[-1]
        for ext in (".suite.yaml", ".suite.yml"):
            base = base.removesuffix(ext)
        return self.suite.meta.get("name") or base

    def generation_spec(self) -> dict[str, Any]:
        """What fixes the predictions (not the metrics): task, template, prompt, chat,
        system, delimiter, columns, limit, parameters, seed, dataset and prompt digests."""
        m = self.suite.meta
        keep = ("task", "template", "system", "chat", "delimiter", "columns", "limit", "cases")
        return {**{k: m.get(k) for k in keep}, "params": self.params, "seed": self.seed,
                "items": len(self.items),
                "dataset": self.dataset.digest if self.dataset else None,
                "prompt": self.prompt.digest if self.prompt else None}


def _check_metrics(task: str, specs: list[dict[str, Any]], what: str) -> None:
    have = set(TASK_INPUTS[task])
    for spec in specs:
        required, options = metric_inputs(spec["name"])     # InvalidArtifact for unknown names
        lacking = [r for r in required if r not in have]
        if lacking:
            raise InvalidArtifact(f"{what}: metric {spec['name']!r} needs {', '.join(lacking)}, "
                                  f"which a {task} task does not produce", metric=spec["name"])
        unknown = sorted(set(spec) - {"name"} - options)
        if unknown:
            raise InvalidArtifact(f"{what}: metric {spec['name']!r} takes no {unknown} "
                                  f"(its options: {sorted(options) or 'none'})", metric=spec["name"])


def committed_dataset(repo: Repository, path: str, rev: str, what: str) -> Dataset:
    """The Dataset committed at ``path`` in ``rev`` (a clear error when it is not)."""
    norm = normalize_path(path)
    try:
        art = repo.artifact_at(rev, norm)
    except (PathNotFound, RefNotFound):
        raise PathNotFound(f"{what}: dataset {norm} is not committed at {rev} (add and commit it "
                           "first: evaluations pin their data by digest)", path=norm) from None
    if not isinstance(art, Dataset):
        raise InvalidArtifact(f"{what}: {norm} is a {art.kind}, not a dataset", path=norm)
    return art


def _text(v: Any) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def load_plan(repo: Repository, suite_path: str, *, rev: str | None = None,
              limit: int | None = None) -> Plan:
    """Load and check the suite at ``suite_path`` (committed at ``rev``; None: the
    working-tree file, else HEAD's) and build its items. Datasets and prompts are always
    taken committed (at ``rev``, or HEAD), so the result can pin them."""
    suite, source = load_text_artifact(repo, suite_path, rev, Suite)
    what = normalize_path(suite_path)
    m = suite.meta
    task = m["task"]
    data_rev = rev or "HEAD"
    plan = Plan(suite=suite, suite_path=what, source=source, task=task,
                params=dict(m.get("parameters") or {}), seed=int(m.get("seed") or 0))
    plan.params.pop("seed", None)
    if task == "cases":
        return plan
    _check_metrics(task, m["metrics"], what)
    plan.metrics = m["metrics"]
    plan.dataset_path = normalize_path(m["dataset"])
    plan.dataset = ds = committed_dataset(repo, m["dataset"], data_rev, what)
    template, system = m.get("template"), m.get("system")
    if m.get("prompt"):
        prompt, _ = load_text_artifact(repo, m["prompt"], data_rev, Prompt)
        plan.prompt, plan.prompt_path = prompt, normalize_path(m["prompt"])
        template = prompt.meta["template"]
        system = system or prompt.meta.get("system")
        for k, v in (prompt.meta.get("parameters") or {}).items():
            plan.params.setdefault(k, v)
    cols = m["columns"]
    needed = set(cols.values()) | set(PLACEHOLDER.findall(template or ""))
    missing = sorted(needed - set(ds.columns))
    if missing:
        raise InvalidArtifact(f"{what}: the dataset {plan.dataset_path} has no column(s) "
                              f"{', '.join(missing)} (it has {', '.join(ds.columns)})",
                              columns=missing)
    table = load_table(repo, ds, columns=sorted(needed | ({ds.key} if ds.key else set())))
    rows = table.to_pylist()
    n = min(x for x in (limit, m.get("limit"), len(rows)) if x is not None)
    id_col = cols.get("key") or ds.key
    for i, row in enumerate(rows[:n]):
        item_id = str(row[id_col]) if id_col and row.get(id_col) is not None else str(i)
        plan.items.append(_item(i, item_id, row, task, template, system, m, cols))
    return plan


def _render(template: str, row: dict[str, Any]) -> str:
    return PLACEHOLDER.sub(lambda mt: "" if row[mt.group(1)] is None else str(row[mt.group(1)]),
                           template)


def _item(i: int, item_id: str, row: dict[str, Any], task: str, template: str | None,
          system: str | None, m: dict[str, Any], cols: dict[str, str]) -> Item:
    item = Item(i, item_id)
    if task == "perplexity":
        text = row[cols["text"]]
        if not isinstance(text, str) or not text:
            item.error = f"column {cols['text']!r} is empty or not text"
        item.request = {"text": text}
        return item
    assert template is not None
    item.request = {"input": _render(template, row), "system": system, "chat": m["chat"]}
    if task == "generate":
        ref = row[cols["reference"]]
        refs = [ref] if isinstance(ref, str) else ref
        if not refs or not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            item.error = f"no reference in column {cols['reference']!r}"
        item.request["references"] = refs if item.error is None else None
    elif task == "multiple_choice":
        choices, target = row[cols["choices"]], row[cols["target"]]
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            item.error = f"column {cols['choices']!r} is not a list of choice texts"
        elif isinstance(target, bool) or not isinstance(target, (int, str)):
            item.error = f"no target in column {cols['target']!r}"
        elif isinstance(target, str):
            if target not in choices:
                item.error = f"target {target!r} is not one of the choices"
            else:
                target = choices.index(target)
        elif not 0 <= target < len(choices):
            item.error = f"target {target} is outside the {len(choices)} choices"
        item.request.update(choices=choices if item.error is None else None,
                            gold=target if item.error is None else None,
                            delimiter=m["delimiter"])
    elif task == "loglikelihood":
        cont = row[cols["continuation"]]
        if not isinstance(cont, str) or not cont:
            item.error = f"column {cols['continuation']!r} is empty or not text"
        item.request.update(continuation=cont, delimiter=m["delimiter"])
    item.request["reference_text"] = _text(row.get(cols.get("reference", ""), None)) \
        if "reference" in cols else None
    return item
