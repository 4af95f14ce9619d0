"""Assertions of sanity-suite cases: parse a spec, check it, and judge one output with it.

A spec is a mapping ``{type, value, threshold, weight}``; every type also exists negated as
``not-<type>``. The types follow promptfoo's: ``equals``, ``contains``, ``icontains``,
``contains-any``/``-all``, ``icontains-any``/``-all``, ``starts-with``, ``regex``, ``is-json``,
``contains-json``, ``json-schema``, ``max-length``, ``latency-ms``, ``python``, ``similar``
and ``model-graded``. :func:`parse_assertion` refuses bad specs with
:class:`~demoai.errors.InvalidArtifact` before anything runs; :func:`evaluate` returns an
:class:`AssertionOutcome`.

Rules worth knowing:
- A negated assertion passes where the plain one fails and scores ``1 - score``; an ERRORED
  assertion (a judge that answers off-format, a ``python`` check that raises, a latency that
  was not measured) stays errored under ``not-``: it never turns into a pass or a fail.
- ``python`` runs the suite author's own code: an expression over ``output`` (and
  ``context``), or a function body that ``return``s. Its namespace holds a few harmless
  builtins and ``re``/``json``/``math``, no ``open``/``__import__``, and names or attributes
  starting with ``_`` are refused, which stops mistakes, not a determined author: it is not a
  sandbox. It returns a bool, a 0-1 score (passes at ``threshold``, 0.5 unless given), or
  ``{"pass", "score", "reason"}``.
- ``similar`` is the best cosine similarity between the output and the reference(s), from an
  ``embed(texts) -> array`` callable (default: :func:`default_embedder`); passes at
  ``threshold`` (0.75 unless given).
- ``model-graded`` asks ``judge(messages, json_schema) -> str`` for
  ``{"pass": bool, "score": 0..1, "reason": str}`` (:data:`JUDGE_SCHEMA`); the judge's call
  (messages, schema, raw reply, and the judge's own record when it returns one) is kept in the
  outcome's ``record`` so it can be replayed.
"""
from __future__ import annotations

import ast
import difflib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Callable

from demoai.errors import BackendUnavailable, DemoAIError, InvalidArtifact
from demoai.engines.llm.constrain import schema_errors
from demoai.objects.textspec import check_keys

__all__ = [
    "Assertion", "AssertionOutcome", "ASSERTION_TYPES", "ASSERTION_KEYS", "JUDGE_SCHEMA",
    "Embedder", "Judge", "parse_assertion", "evaluate", "default_embedder", "judge_messages",
    "find_json",
]

Embedder = Callable[[list[str]], Any]
"""``embed(texts) -> array`` of shape ``(len(texts), dim)``."""
Judge = Callable[[list[dict], dict], Any]
"""``judge(messages, json_schema) -> str`` (or an object with ``.text`` and ``.record``)."""

ASSERTION_TYPES = (
    "equals", "contains", "icontains", "contains-any", "contains-all", "icontains-any",
    "icontains-all", "starts-with", "regex", "is-json", "contains-json", "json-schema",
    "max-length", "latency-ms", "python", "similar", "model-graded",
)
ASSERTION_KEYS = ("type", "value", "threshold", "weight")
_SCORED = ("python", "similar", "model-graded")  # the types that take a threshold
_DEFAULT_THRESHOLD = {"python": 0.5, "similar": 0.75}
JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"pass": {"type": "boolean"},
                   "score": {"type": "number", "minimum": 0, "maximum": 1},
                   "reason": {"type": "string", "maxLength": 200}},
    "required": ["pass", "score", "reason"],
    "additionalProperties": False,
}
_JUDGE_SYSTEM = (
    "You grade an output against a rubric. Answer with one JSON object and nothing else, "
    'with the keys "pass" (true when the output meets the rubric, else false), "score" (a '
    'number from 0 to 1: how well it meets the rubric) and "reason" (why, briefly).')
_SAFE_BUILTINS = {f.__name__: f for f in (
    abs, all, any, bool, dict, enumerate, filter, float, int, isinstance, len, list, map, max,
    min, range, repr, reversed, round, set, sorted, str, sum, tuple, zip)}


@dataclass(frozen=True)
class Assertion:
    """A checked assertion spec: the base ``type``, whether it is negated, its ``value``,
    ``threshold`` (scored types only) and ``weight``."""

    type: str
    value: Any = None
    negate: bool = False
    threshold: float | None = None
    weight: float = 1.0

    @property
    def name(self) -> str:
        """The type as written: ``not-contains`` for a negated ``contains``."""
        return ("not-" if self.negate else "") + self.type

    def to_dict(self) -> dict[str, Any]:
        """The spec as a suite file writes it."""
        d: dict[str, Any] = {"type": self.name}
        if self.value is not None:
            d["value"] = self.value
        if self.threshold is not None:
            d["threshold"] = self.threshold
        if self.weight != 1.0:
            d["weight"] = self.weight
        return d


@dataclass
class AssertionOutcome:
    """How one output fared under one assertion. ``errored`` means the check itself could not
    be made (then ``passed`` is False and the case is ERRORED, not failed); ``record`` keeps
    what a replay needs (the judge's call for ``model-graded``)."""

    type: str
    passed: bool
    score: float
    reason: str
    errored: bool = False
    record: dict[str, Any] | None = None
    weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


def parse_assertion(raw: Any, where: str = "assertion") -> Assertion:
    """Check one spec (a mapping) and return it as an :class:`Assertion`; a bad key, type or
    value raises :class:`InvalidArtifact` naming ``where`` (with "did you mean")."""
    if isinstance(raw, Assertion):
        return raw
    if not isinstance(raw, dict):
        raise InvalidArtifact(f"{where}: an assertion must be a mapping with a 'type', "
                              f"not {type(raw).__name__}")
    check_keys(raw, ASSERTION_KEYS, where)
    written = raw.get("type")
    if not isinstance(written, str) or not written:
        raise InvalidArtifact(f"{where}: 'type' is required (one of {', '.join(ASSERTION_TYPES)})")
    negate = written.startswith("not-")
    base = written[4:] if negate else written
    if base not in ASSERTION_TYPES:
        every = [*ASSERTION_TYPES, *("not-" + t for t in ASSERTION_TYPES)]
        close = difflib.get_close_matches(written, every, n=1, cutoff=0.6)
        raise InvalidArtifact(
            f"{where}: unknown assertion type {written!r}"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + f" (known: {', '.join(ASSERTION_TYPES)}, each also as not-<type>)",
            keys=["type"], suggestions={written: close[0]} if close else {})
    value = _check_value(base, raw.get("value"), f"{where} ({written})")
    threshold = raw.get("threshold")
    if threshold is not None:
        if base not in _SCORED:
            raise InvalidArtifact(f"{where}: 'threshold' applies only to {', '.join(_SCORED)}; "
                                  f"{written!r} passes or fails outright")
        if not _number(threshold) or not 0 <= threshold <= 1:
            raise InvalidArtifact(f"{where}: 'threshold' must be a number from 0 to 1, "
                                  f"not {threshold!r}")
        threshold = float(threshold)
    weight = raw.get("weight", 1.0)
    if not _number(weight) or weight < 0:
        raise InvalidArtifact(f"{where}: 'weight' must be a number >= 0, not {weight!r}")
    return Assertion(base, value, negate, threshold, float(weight))


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_value(base: str, value: Any, where: str) -> Any:
    """The value a type needs, normalized (numbers become text for the text checks)."""
    if base in ("contains", "icontains", "starts-with", "regex", "python", "model-graded"):
        if _number(value) and base not in ("python", "model-graded"):
            value = str(value)
        if not isinstance(value, str) or not value:
            raise InvalidArtifact(f"{where}: 'value' must be non-empty text")
        if base == "regex":
            try:
                re.compile(value)
            except re.error as e:
                raise InvalidArtifact(f"{where}: bad regular expression {value!r}: {e}") from None
        if base == "python":
            _compile_python(value, where)
        return value
    if base == "equals":
        if value is None:
            raise InvalidArtifact(f"{where}: 'value' is required (the expected output)")
        if isinstance(value, (dict, list)):
            return value
        if isinstance(value, (str, bool)) or _number(value):
            return value if isinstance(value, str) else json.dumps(value)
        raise InvalidArtifact(f"{where}: 'value' must be text, a number or JSON data")
    if base in ("contains-any", "contains-all", "icontains-any", "icontains-all"):
        if not isinstance(value, list) or not value:
            raise InvalidArtifact(f"{where}: 'value' must be a non-empty list of strings")
        out = [str(v) if _number(v) else v for v in value]
        if not all(isinstance(v, str) and v for v in out):
            raise InvalidArtifact(f"{where}: 'value' must be a non-empty list of strings")
        return out
    if base in ("is-json", "contains-json", "json-schema"):
        if value is None and base != "json-schema":
            return None
        if not isinstance(value, dict):
            raise InvalidArtifact(f"{where}: 'value' must be a JSON schema (a mapping)")
        _check_schema(value, where)
        return value
    if base in ("max-length", "latency-ms"):
        ok = _number(value) and value >= 0 and (base == "latency-ms" or float(value).is_integer())
        if not ok:
            unit = "characters (an integer)" if base == "max-length" else "milliseconds"
            raise InvalidArtifact(f"{where}: 'value' must be a number >= 0 of {unit}, not {value!r}")
        return int(value) if base == "max-length" else float(value)
    if base == "similar":
        refs = [value] if isinstance(value, str) else value
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r for r in refs):
            raise InvalidArtifact(f"{where}: 'value' must be reference text or a list of them")
        return value
    raise AssertionError(base)  # every type is handled above


def _check_schema(schema: dict, where: str) -> None:
    try:
        import jsonschema
    except ImportError:  # without jsonschema the subset validator checks what it knows
        return
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        raise InvalidArtifact(f"{where}: not a valid JSON schema: {e.message}") from None


def _compile_python(source: str, where: str) -> tuple[Any, bool]:
    """Compile a ``python`` check: (code, is_expression). Refuses imports and ``_`` names."""
    try:
        tree: ast.AST = ast.parse(source, mode="eval")
        is_expr = True
    except SyntaxError:
        body = "def _check(output, context):\n" + "".join(
            "    " + line + "\n" for line in source.splitlines())
        try:
            tree = ast.parse(body, mode="exec")
        except SyntaxError as e:
            raise InvalidArtifact(f"{where}: not a Python expression or function body: "
                                  f"{e.msg} (line {e.lineno})") from None
        is_expr = False
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            raise InvalidArtifact(f"{where}: imports are not allowed; re, json and math are "
                                  "already there")
        name = node.attr if isinstance(node, ast.Attribute) else \
            node.id if isinstance(node, ast.Name) else None
        if name and name.startswith("_") and name != "_check":
            raise InvalidArtifact(f"{where}: names starting with '_' ({name}) are not allowed")
    return compile(tree, "<assertion>", "eval" if is_expr else "exec"), is_expr


def evaluate(assertion: Assertion | dict, output: str, *, latency_ms: float | None = None,
             embed: Embedder | None = None, judge: Judge | None = None,
             prompt: str | None = None) -> AssertionOutcome:
    """Judge ``output`` with one assertion (a spec is parsed first).

    ``latency_ms`` feeds ``latency-ms``; ``embed`` feeds ``similar`` (default:
    :func:`default_embedder`, which raises BackendUnavailable when wordllama is missing);
    ``judge`` is required by ``model-graded`` (BackendUnavailable without one); ``prompt`` (the
    case's last user message) is shown to the judge and to ``python`` as ``context["prompt"]``.
    """
    a = parse_assertion(assertion)
    score, passed, reason, record, errored = _check(a, output, latency_ms, embed, judge, prompt)
    if errored:
        return AssertionOutcome(a.name, False, 0.0, reason, True, record, a.weight)
    if a.negate:
        passed, score = not passed, 1.0 - score
        reason = ("not: " if passed else "negated check failed: ") + reason
    return AssertionOutcome(a.name, passed, float(score), reason, False, record, a.weight)


def _check(a: Assertion, out: str, latency_ms: float | None, embed: Embedder | None,
           judge: Judge | None, prompt: str | None) -> tuple[float, bool, str, dict | None, bool]:
    """(score, passed, reason, record, errored) of the plain (not negated) check."""
    t, v = a.type, a.value

    def verdict(ok: bool, reason: str) -> tuple[float, bool, str, None, bool]:
        return (1.0 if ok else 0.0), ok, reason, None, False

    if t == "equals":
        if isinstance(v, (dict, list)):
            got = _loads(out)
            return verdict(got == v, f"output as JSON {'equals' if got == v else 'differs from'} "
                                     f"{json.dumps(v)}")
        return verdict(out == v, f"output {'equals' if out == v else 'is not'} {v!r}")
    if t in ("contains", "icontains"):
        hay, needle = (out.lower(), v.lower()) if t == "icontains" else (out, v)
        ok = needle in hay
        return verdict(ok, f"output {'contains' if ok else 'does not contain'} {v!r}")
    if t in ("contains-any", "contains-all", "icontains-any", "icontains-all"):
        fold = t.startswith("i")
        hay = out.lower() if fold else out
        found = [s for s in v if (s.lower() if fold else s) in hay]
        missing = [s for s in v if s not in found]
        if t.endswith("any"):
            return verdict(bool(found), f"found {found!r}" if found else f"none of {v!r} found")
        return verdict(not missing, f"missing {missing!r}" if missing else f"all of {v!r} found")
    if t == "starts-with":
        ok = out.startswith(v)
        return verdict(ok, f"output {'starts' if ok else 'does not start'} with {v!r}")
    if t == "regex":
        m = re.search(v, out)
        return verdict(m is not None, f"/{v}/ matched {m.group(0)!r}" if m else f"/{v}/ did not match")
    if t in ("is-json", "contains-json", "json-schema"):
        return verdict(*_json_check(t, v, out))
    if t == "max-length":
        return verdict(len(out) <= v, f"{len(out)} characters (max {v})")
    if t == "latency-ms":
        if latency_ms is None:
            return 0.0, False, "no latency was measured for this output", None, True
        return verdict(latency_ms <= v, f"{latency_ms:.0f} ms (max {v:g} ms)")
    if t == "python":
        return _python_check(a, out, latency_ms, prompt)
    if t == "similar":
        return _similar_check(a, out, embed)
    if t == "model-graded":
        return _graded_check(a, out, judge, prompt)
    raise AssertionError(t)


_DECODER = json.JSONDecoder()
_MISSING = object()


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _MISSING


def find_json(text: str) -> list[Any]:
    """Every JSON object or array embedded in ``text`` (outermost ones, in order)."""
    found, i = [], 0
    while i < len(text):
        if text[i] in "{[":
            try:
                obj, end = _DECODER.raw_decode(text, i)
            except ValueError:
                i += 1
                continue
            found.append(obj)
            i = end
        else:
            i += 1
    return found


def _json_check(t: str, schema: dict | None, out: str) -> tuple[bool, str]:
    whole = _loads(out.strip())
    if t == "is-json":
        candidates = [] if whole is _MISSING else [whole]
    elif t == "contains-json":
        candidates = find_json(out)
    else:  # json-schema: the output itself, else the JSON it contains
        candidates = [whole] if whole is not _MISSING else find_json(out)
    if not candidates:
        return False, "output is not JSON" if t == "is-json" else "output holds no JSON"
    if schema is None:
        return True, "output is JSON" if t == "is-json" else "output holds JSON"
    first: list[str] = []
    for obj in candidates:
        errors = schema_errors(obj, schema)
        if not errors:
            return True, "JSON matches the schema"
        first = first or errors
    return False, f"JSON does not match the schema: {first[0]}"


def _python_check(a: Assertion, out: str, latency_ms: float | None,
                  prompt: str | None) -> tuple[float, bool, str, dict | None, bool]:
    code, is_expr = _compile_python(a.value, "python assertion")
    context = {"latency_ms": latency_ms, "prompt": prompt}
    names: dict[str, Any] = {"__builtins__": dict(_SAFE_BUILTINS), "re": re, "json": json,
                             "math": math, "output": out, "context": context}
    try:
        if is_expr:
            got = eval(code, names)  # noqa: S307 - the suite author's own check
        else:
            exec(code, names)  # noqa: S102 - defines _check from the author's body
            got = names["_check"](out, context)
    except Exception as e:  # the author's code failed: the check could not be made
        return 0.0, False, f"python check raised {type(e).__name__}: {e}", None, True
    threshold = a.threshold if a.threshold is not None else _DEFAULT_THRESHOLD["python"]
    reason = ""
    if isinstance(got, dict):
        reason = str(got.get("reason", ""))
        if "score" in got and _number(got["score"]):
            got = float(got["score"]) if "pass" not in got else (bool(got["pass"]), float(got["score"]))
        elif "pass" in got:
            got = bool(got["pass"])
        else:
            return 0.0, False, f"python check returned a dict without pass/score: {got!r}", None, True
    if isinstance(got, tuple):
        ok, score = got
        if not 0 <= score <= 1:
            return 0.0, False, f"python check scored {score}, outside 0..1", None, True
        return score, ok and score >= threshold, reason or f"score {score:.3g}", None, False
    if isinstance(got, bool):
        return (1.0 if got else 0.0), got, reason or f"python check returned {got}", None, False
    if _number(got):
        if not 0 <= got <= 1:
            return 0.0, False, f"python check scored {got}, outside 0..1", None, True
        return float(got), got >= threshold, reason or f"score {got:.3g} (threshold {threshold:g})", None, False
    return 0.0, False, f"python check returned {type(got).__name__}, not a bool or a 0-1 score", None, True


@lru_cache(maxsize=1)
def default_embedder() -> Embedder:
    """wordllama's shipped 256-dim model as an embedder, loaded without network
    (:func:`demoai.engines.embed.wordllama_embedder`); BackendUnavailable when missing."""
    from demoai.engines.embed import wordllama_embedder
    return wordllama_embedder()


def _similar_check(a: Assertion, out: str, embed: Embedder | None) -> tuple[float, bool, str, dict | None, bool]:
    import numpy as np
    refs = [a.value] if isinstance(a.value, str) else list(a.value)
    embed = embed or default_embedder()
    try:
        vecs = np.asarray(embed([out, *refs]), dtype=np.float64)
    except DemoAIError as e:
        return 0.0, False, f"the embedder failed: {e}", None, True
    if vecs.ndim != 2 or vecs.shape[0] != len(refs) + 1:
        return 0.0, False, f"the embedder returned shape {vecs.shape}, expected ({len(refs) + 1}, dim)", None, True
    norms = np.linalg.norm(vecs, axis=1)
    sims = [float(vecs[0] @ vecs[i] / (norms[0] * norms[i])) if norms[0] and norms[i] else 0.0
            for i in range(1, len(refs) + 1)]
    best = max(range(len(sims)), key=sims.__getitem__)
    threshold = a.threshold if a.threshold is not None else _DEFAULT_THRESHOLD["similar"]
    score = min(1.0, max(0.0, sims[best]))
    return (score, sims[best] >= threshold,
            f"similarity {sims[best]:.3f} to {refs[best]!r} (threshold {threshold:g})", None, False)


def judge_messages(rubric: str, output: str, prompt: str | None = None) -> list[dict]:
    """The chat a ``model-graded`` assertion sends its judge."""
    parts = [f"Rubric: {rubric}"]
    if prompt:
        parts.append(f"Question the output answers: {prompt}")
    parts.append(f"Output to grade:\n{output}")
    return [{"role": "system", "content": _JUDGE_SYSTEM},
            {"role": "user", "content": "\n\n".join(parts)}]


def _graded_check(a: Assertion, out: str, judge: Judge | None,
                  prompt: str | None) -> tuple[float, bool, str, dict | None, bool]:
    if judge is None:
        raise BackendUnavailable("a model-graded assertion needs a judge model: pass judge=",
                                 assertion=a.name)
    messages = judge_messages(a.value, out, prompt)
    record: dict[str, Any] = {"messages": messages, "json_schema": JUDGE_SCHEMA, "reply": None}
    try:
        reply = judge(messages, JUDGE_SCHEMA)
    except DemoAIError as e:
        record["error"] = e.to_dict()
        return 0.0, False, f"the judge failed: {e}", record, True
    text = reply if isinstance(reply, str) else getattr(reply, "text", None)
    if isinstance(reply, dict):
        text = reply.get("text")
    judge_record = reply.get("record") if isinstance(reply, dict) else getattr(reply, "record", None)
    if judge_record:
        record["judge_record"] = judge_record
    record["reply"] = text
    if not isinstance(text, str):
        return 0.0, False, f"the judge returned {type(reply).__name__}, not text", record, True
    verdict = _loads(text.strip())
    errors = ["not JSON"] if verdict is _MISSING else schema_errors(verdict, JUDGE_SCHEMA)
    if errors:
        return (0.0, False, f"the judge answered off-format ({errors[0]}): {text[:300]!r}",
                record, True)
    score, ok = float(verdict["score"]), bool(verdict["pass"])
    if a.threshold is not None:
        ok = ok and score >= a.threshold
    return score, ok, f"judge: {verdict['reason']} (score {score:.3g})", record, False
