"""Step files for ``demoai data run``: a sequence of preparation steps, each checked in full
before any of them runs.

A step file is YAML: a list of steps (or a mapping with a ``steps`` list), each step a
mapping of one verb to its parameters (the verb's options, with ``_`` for ``-``)::

    steps:
      - clean: {path: data/train.jsonl, column: text, rules: [whitespace, pii, "length:min=3"]}
      - dedup: {path: data/train.jsonl, column: text, threshold: 0.8}
      - augment: {path: data/train.jsonl, column: text, templates: ["Q: {text}"]}
      - stats: {path: data/train.jsonl, column: text}
      - split: {path: data/train.jsonl, ratios: [0.9, 0.1], key: id}
      - contamination: {path: data/train.test.jsonl, against: [data/train.train.jsonl],
                        remove: true}
      - self-instruct: {path: data/seeds.jsonl, out: data/generated.jsonl, n: 5}

Verbs: ``clean``, ``dedup``, ``split``, ``contamination``, ``augment``, ``self-instruct``
and ``stats`` (``label`` is interactive, so not a step). :func:`parse_steps` refuses unknown
verbs and parameters with a suggestion, names a missing required parameter, and checks each
value's type and range (thresholds in (0, 1], ratios summing to 1, rule specs, templates);
:func:`step_outputs` says which dataset paths a step writes, so a runner can check that each
path a step reads exists at HEAD or is written by an earlier step.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from demoai.errors import DemoAIError, InvalidArtifact, PathNotFound, RefNotFound

__all__ = ["Step", "STEP_PARAMS", "REQUIRED", "VERBS", "parse_steps", "load_steps",
           "step_outputs", "split_path", "augmented_path", "check_plan"]

_COMMON = ("path", "rev", "column", "message")
STEP_PARAMS: dict[str, tuple[str, ...]] = {
    "clean": _COMMON + ("rules", "allow_empty"),
    "dedup": _COMMON + ("threshold", "exact", "near", "against", "num_perm", "ngram",
                        "semantic", "allow_empty"),
    "split": ("path", "rev", "message", "ratios", "key", "stratify", "seed", "names"),
    "contamination": _COMMON + ("against", "n", "near", "threshold", "remove", "allow_empty"),
    "augment": _COMMON + ("templates", "model", "mode", "out", "per_row", "seed", "temperature",
                          "max_tokens", "replay"),
    "self-instruct": _COMMON + ("out", "model", "n", "seed", "answer_column", "examples",
                                "threshold", "min_words", "max_words", "blocklist",
                                "temperature", "max_tokens", "replay"),
    "stats": _COMMON + ("label", "near", "language", "diversity", "plot"),
}
VERBS = tuple(STEP_PARAMS)
REQUIRED: dict[str, tuple[str, ...]] = {
    "clean": ("path", "rules"), "dedup": ("path",), "split": ("path", "ratios"),
    "contamination": ("path", "against"), "augment": ("path",),
    "self-instruct": ("path", "out"), "stats": ("path",),
}
_ALIASES = {"self_instruct": "self-instruct", "selfinstruct": "self-instruct"}


def _str(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "a non-empty string"


def _strs(v: Any) -> str | None:
    ok = isinstance(v, str) and v or isinstance(v, list) and v and all(
        isinstance(x, str) and x for x in v)
    return None if ok else "a string or a list of strings"


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _int(lo: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= lo
        return None if ok else f"an integer >= {lo}"
    return check


def _unit(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 < v <= 1.0
    return None if ok else "a number in (0, 1]"


def _num(v: Any) -> str | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
    return None if ok else "a non-negative number"


def _ratios(v: Any) -> str | None:
    from demoai.prep.split import parse_ratios
    try:
        parse_ratios(v if isinstance(v, (str, list)) else str(v))
    except InvalidArtifact as e:
        return e.message.split(": ", 1)[-1].removeprefix("ratios must be ")
    return None


def _rules(v: Any) -> str | None:
    from demoai.prep.clean import parse_rules, rule_from_text
    items = v if isinstance(v, list) else [v]
    if not items:
        return "a non-empty list of rules"
    parse_rules([rule_from_text(x) if isinstance(x, str) else x for x in items])
    return None


def _mode(v: Any) -> str | None:
    from demoai.prep.augment import MODES
    return None if v in MODES else f"one of {', '.join(MODES)}"


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "path": _str, "rev": _str, "message": _str, "key": _str, "stratify": _str, "label": _str,
    "out": _str, "model": _str, "answer_column": _str, "plot": _str,
    "column": _strs, "against": _strs, "templates": _strs, "names": _strs,
    "blocklist": _strs,
    "allow_empty": _bool, "exact": _bool, "near": _bool, "remove": _bool, "replay": _bool,
    "language": _bool, "diversity": _bool,
    "threshold": _unit, "semantic": _unit,
    "num_perm": _int(2), "ngram": _int(1), "n": _int(1), "per_row": _int(1), "seed": _int(0),
    "examples": _int(1), "min_words": _int(0), "max_words": _int(1), "max_tokens": _int(1),
    "temperature": _num, "ratios": _ratios, "rules": _rules, "mode": _mode,
}
_ONE_COLUMN = ("augment", "self-instruct")


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


def _check_step(i: int, verb: str, params: dict[str, Any]) -> None:
    where = f"steps: step {i} ({verb})"
    for k in params:
        if k not in STEP_PARAMS[verb]:
            raise InvalidArtifact(f"{where}: unknown parameter {k!r}"
                                  f"{_near(str(k), list(STEP_PARAMS[verb]))}", step=i,
                                  parameter=k)
    for k in REQUIRED[verb]:
        if k not in params:
            raise InvalidArtifact(f"{where}: {k!r} is required", step=i, parameter=k)
    for k, v in params.items():
        check = _str if (k == "column" and verb in _ONE_COLUMN) else _CHECKS[k]
        try:
            bad = check(v)
        except DemoAIError as e:          # a rule refused, or its detector not installed
            e.message = f"{where}: {k}: {e.message}"
            e.args = (e.message,)
            raise
        if bad:
            raise InvalidArtifact(f"{where}: {k} must be {bad}, not {v!r}", step=i, parameter=k)
    if verb == "augment" and ("templates" in params) == ("model" in params):
        raise InvalidArtifact(f"{where}: give either templates or model", step=i)


def parse_steps(doc: Any) -> list[Step]:
    """Steps from a parsed step file (see the module docstring), every one checked."""
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
        verb = _ALIASES.get(verb, verb)
        if verb not in STEP_PARAMS:
            hint = (" (label is interactive: run `demoai data label`)" if verb == "label"
                    else _near(str(verb), list(STEP_PARAMS)))
            raise InvalidArtifact(f"steps: step {i}: unknown verb {verb!r}{hint}", step=i)
        params = params or {}
        if not isinstance(params, dict):
            raise InvalidArtifact(f"steps: step {i} ({verb}): parameters must be a mapping",
                                  step=i)
        _check_step(i, verb, params)
        out.append(Step(verb, dict(params), i))
    return out


def load_steps(path: str | Path) -> list[Step]:
    """The steps of a YAML step file."""
    import yaml
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PathNotFound(f"{path}: no such step file", path=str(path)) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InvalidArtifact(f"steps: {path} is not valid YAML ({e})", path=str(path)) from None
    return parse_steps(doc)


def split_path(rel: str, name: str) -> str:
    """Where ``split`` writes the split ``name`` of ``rel``: ``stem.NAME.ext``."""
    p = Path(rel)
    return str(p.with_name(f"{p.stem}.{name}{p.suffix}")) if p.suffix else f"{rel}.{name}"


def augmented_path(rel: str) -> str:
    """Where ``augment`` writes by default: ``stem.augmented.ext``."""
    p = Path(rel)
    return str(p.with_name(f"{p.stem}.augmented{p.suffix}"))


def step_outputs(step: Step) -> list[str]:
    """The dataset paths ``step`` writes (besides its ``PATH.prep/`` side tables)."""
    p = step.params
    if step.verb in ("clean", "dedup"):
        return [p["path"]]
    if step.verb == "contamination":
        return [p["path"]] if p.get("remove") else []
    if step.verb == "split":
        from demoai.prep.split import parse_ratios, split_names
        k = len(parse_ratios(p["ratios"]))
        names = p.get("names")
        names = split_names(k, names.split(",") if isinstance(names, str) else names)
        return [split_path(p["path"], n) for n in names]
    if step.verb == "augment":
        return [p.get("out") or augmented_path(p["path"])]
    if step.verb == "self-instruct":
        return [p["out"]]
    return []


_MADE_COLUMNS = {"augment": ["aug_id", "source_key", "augment"]}


def check_plan(repo: Any, steps: list[Step], rel_path: Callable[[str], str]) -> None:
    """Before anything runs: each path a step reads is a dataset at its revision or is
    written by an earlier step, each named column is in it, and each ``against`` names a
    dataset or a ref. ``repo`` is the repository; ``rel_path`` turns a path as written into
    a repository path."""
    head = repo.head_commit()
    arts = repo.artifacts(head) if head else {}
    made: dict[str, list[str] | None] = {}       # path -> its columns (None: not known)

    def columns_at(rel: str, rev: str, where: str) -> list[str] | None:
        if rev == "HEAD" and rel in made:
            return made[rel]
        try:
            found = arts if rev == "HEAD" else repo.artifacts(repo.resolve(rev))
        except RefNotFound:
            raise RefNotFound(f"{where}: no revision {rev!r}", ref=rev) from None
        art = found.get(rel)
        if getattr(art, "kind", None) != "dataset":
            later = "" if rev != "HEAD" else ", and no earlier step writes it"
            raise PathNotFound(f"{where}: no dataset {rel} at {rev}{later}", path=rel)
        return art.columns

    for s in steps:
        p, where = s.params, f"steps: step {s.number} ({s.verb})"
        rel = rel_path(p["path"])
        cols = columns_at(rel, p.get("rev", "HEAD"), where)
        wanted = p.get("column") or []
        for c in [wanted] if isinstance(wanted, str) else wanted:
            if cols is not None and c not in cols:
                raise InvalidArtifact(f"{where}: no column {c!r} in {rel}{_near(c, cols)}",
                                      step=s.number, column=c, reason="missing")
        against = p.get("against") or []
        for spec in [against] if isinstance(against, str) else against:
            for one in [spec]:
                target, _, ref = one.rpartition("@") if "@" in one else (one, "", "")
                if ref:
                    columns_at(rel_path(target), ref, where)
                elif not (rel_path(target) in made or getattr(arts.get(
                        rel_path(target)), "kind", None) == "dataset"):
                    try:
                        repo.resolve(one)
                    except RefNotFound:
                        raise PathNotFound(f"{where}: against {one!r} is neither a dataset at "
                                           "HEAD, nor written by an earlier step, nor a ref",
                                           path=one) from None
        for o in step_outputs(s):
            made[rel_path(o)] = (None if s.verb == "self-instruct" or cols is None
                                 else cols + _MADE_COLUMNS.get(s.verb, []))
