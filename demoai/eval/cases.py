"""Cases of a sanity suite: parse the ``cases:`` list, run one case, and keep what happened.

A case is a chat (``system`` + ``prompt``, or ``messages``), decoding ``parameters`` over the
suite's, and either assertions on the output or an ``expect_error`` (an error code from
:mod:`demoai.errors`, e.g. ``context_overflow``: the case passes only when the call fails with
that error or one of its subclasses). ``repeat: N`` runs it N times with sampling seeds
``seed, seed+1, ...`` and ``pass_rate`` is the share of attempts that must pass.

Outcomes are three, as in a test runner: ``passed``; ``failed`` (the model answered and an
assertion, or the pass rate, said no); ``errored`` (the check could not be made: the call raised
an error nobody expected, a judge answered off-format, a ``python`` check raised). An errored
attempt makes its case errored, whatever the other attempts did: errors are never counted as
plain failures.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from demoai.errors import ERROR_CODES, DemoAIError, InvalidArtifact, ModelError
from demoai.eval.assertions import (Assertion, AssertionOutcome, Embedder, Judge, evaluate,
                                    parse_assertion)
from demoai.objects.textspec import check_keys, check_parameters

__all__ = ["Case", "Generation", "Attempt", "CaseResult", "CASE_KEYS", "CASE_STATUSES",
           "Generate", "parse_cases", "run_case", "suite_needs", "backend_generate",
           "backend_judge"]

CASE_KEYS = ("name", "description", "system", "prompt", "messages", "parameters", "repeat",
             "pass_rate", "expect_error", "assert")
CASE_STATUSES = ("passed", "failed", "errored")
_ROLES = ("system", "user", "assistant")
MAX_REPEAT = 1000


@dataclass
class Case:
    """One checked case: its chat, merged parameters, assertions and repeat rule."""

    name: str
    index: int
    messages: list[dict]
    parameters: dict[str, Any] = field(default_factory=dict)
    assertions: list[Assertion] = field(default_factory=list)
    repeat: int = 1
    pass_rate: float = 1.0
    expect_error: str | None = None
    description: str = ""

    @property
    def prompt(self) -> str | None:
        """The last user message (what a judge or a ``python`` check is shown)."""
        users = [m["content"] for m in self.messages if m["role"] == "user"]
        return users[-1] if users else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (assertions as their specs)."""
        d = asdict(self)
        d["assertions"] = [a.to_dict() for a in self.assertions]
        return d


@dataclass
class Generation:
    """What ``generate`` returns for one call: the text, its latency, usage and replay record."""

    text: str
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    record: dict[str, Any] = field(default_factory=dict)


Generate = Callable[[list[dict], dict], Generation]
"""``generate(messages, params) -> Generation``; may raise DemoAIError."""


@dataclass
class Attempt:
    """One run of a case: its seed, the output (None when the call raised), the outcome of each
    assertion, and the error the call raised (expected or not) as ``{code, message, fields}``."""

    index: int
    seed: int
    output: str | None
    passed: bool
    errored: bool = False
    score: float = 0.0
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    outcomes: list[AssertionOutcome] = field(default_factory=list)
    error: dict[str, Any] | None = None
    reason: str = ""
    record: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


@dataclass
class CaseResult:
    """How a case went: ``status`` (passed, failed or errored), the attempts, how many passed
    against the ``pass_rate`` asked for, the wall time, and a one-line ``reason``."""

    name: str
    index: int
    status: str
    attempts: list[Attempt]
    passes: int
    pass_rate: float
    duration_s: float
    reason: str = ""
    expect_error: str | None = None
    description: str = ""

    @property
    def passed(self) -> bool:
        """Whether the case passed."""
        return self.status == "passed"

    @property
    def observed_rate(self) -> float:
        """The share of attempts that passed."""
        return self.passes / len(self.attempts) if self.attempts else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, attempts and outcomes included."""
        d = asdict(self)
        d["observed_rate"] = self.observed_rate
        return d


def parse_cases(raw: Any, where: str = "suite", defaults: dict | None = None) -> list[Case]:
    """Check a suite's whole ``cases:`` list; ``defaults`` are the suite's ``parameters``
    (each case's own override them). Raises :class:`InvalidArtifact` naming the case
    (``cases[2] 'adds numbers'``) and the key at fault."""
    if not isinstance(raw, list) or not raw:
        raise InvalidArtifact(f"{where}: 'cases' must be a non-empty list of cases")
    base = check_parameters(defaults, f"{where}: parameters")
    cases, seen = [], {}
    for i, item in enumerate(raw):
        label = f"{where}: cases[{i}]"
        if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]:
            label += f" {item['name']!r}"
        case = _parse_case(item, i, label, base)
        if case.name in seen:
            raise InvalidArtifact(f"{label}: the name is already used by cases[{seen[case.name]}]; "
                                  "case names must be unique", name=case.name)
        seen[case.name] = i
        cases.append(case)
    return cases


def _parse_case(raw: Any, i: int, where: str, base: dict) -> Case:
    if not isinstance(raw, dict):
        raise InvalidArtifact(f"{where}: a case must be a mapping, not {type(raw).__name__}")
    check_keys(raw, CASE_KEYS, where, elsewhere={"asserts": "assert", "assertions": "assert",
                                                 "temperature": "parameters.temperature",
                                                 "max_tokens": "parameters.max_tokens"})
    name = raw.get("name", f"case {i + 1}")
    if not isinstance(name, str) or not name.strip():
        raise InvalidArtifact(f"{where}: 'name' must be non-empty text")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise InvalidArtifact(f"{where}: 'description' must be text")
    messages = _messages(raw, where)
    params = {**base, **check_parameters(raw.get("parameters"), where)}
    repeat = raw.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
        raise InvalidArtifact(f"{where}: 'repeat' must be an integer from 1 to {MAX_REPEAT}, "
                              f"not {repeat!r}")
    rate = raw.get("pass_rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise InvalidArtifact(f"{where}: 'pass_rate' must be a number in (0, 1], not {rate!r}")
    expect = raw.get("expect_error")
    if expect is not None:
        if not isinstance(expect, str) or expect not in ERROR_CODES:
            import difflib
            close = difflib.get_close_matches(str(expect), list(ERROR_CODES), n=1, cutoff=0.6)
            raise InvalidArtifact(f"{where}: 'expect_error' must be an error code such as "
                                  f"context_overflow, not {expect!r}"
                                  + (f" (did you mean {close[0]!r}?)" if close else ""))
        if raw.get("assert"):
            raise InvalidArtifact(f"{where}: a case with 'expect_error' passes on the error "
                                  "alone; it cannot also have 'assert'")
    specs = raw.get("assert") or []
    if not isinstance(specs, list):
        raise InvalidArtifact(f"{where}: 'assert' must be a list of assertions")
    assertions = [parse_assertion(s, f"{where}: assert[{j}]") for j, s in enumerate(specs)]
    return Case(name.strip(), i, messages, params, assertions, repeat, float(rate), expect,
                description)


def _messages(raw: dict, where: str) -> list[dict]:
    has_prompt, has_messages = "prompt" in raw, "messages" in raw
    if has_prompt == has_messages:
        raise InvalidArtifact(f"{where}: give either 'prompt' or 'messages'"
                              + (", not both" if has_prompt else ""))
    system = raw.get("system")
    if system is not None and (not isinstance(system, str) or not system):
        raise InvalidArtifact(f"{where}: 'system' must be non-empty text")
    out = [{"role": "system", "content": system}] if system else []
    if has_prompt:
        prompt = raw["prompt"]
        if not isinstance(prompt, str) or not prompt:
            raise InvalidArtifact(f"{where}: 'prompt' must be non-empty text")
        return out + [{"role": "user", "content": prompt}]
    msgs = raw["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise InvalidArtifact(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    for j, m in enumerate(msgs):
        at = f"{where}: messages[{j}]"
        if not isinstance(m, dict):
            raise InvalidArtifact(f"{at}: a message must be a mapping with 'role' and 'content'")
        check_keys(m, ("role", "content"), at)
        if m.get("role") not in _ROLES:
            raise InvalidArtifact(f"{at}: 'role' must be one of {', '.join(_ROLES)}, "
                                  f"not {m.get('role')!r}")
        if not isinstance(m.get("content"), str):
            raise InvalidArtifact(f"{at}: 'content' must be text")
        if m["role"] == "system" and (j > 0 or system):
            raise InvalidArtifact(f"{at}: a system message may only come first "
                                  "(and not together with 'system')")
    return out + [{"role": m["role"], "content": m["content"]} for m in msgs]


def suite_needs(cases: list[Case]) -> set[str]:
    """What running ``cases`` needs besides the model: ``"embed"`` (a ``similar``
    assertion) and ``"judge"`` (a ``model-graded`` one), so a runner can refuse early."""
    types = {a.type for c in cases for a in c.assertions}
    return ({"embed"} if "similar" in types else set()) | ({"judge"} if "model-graded" in types else set())


def run_case(case: Case, generate: Generate, *, judge: Judge | None = None,
             embed: Embedder | None = None, seed: int = 0) -> CaseResult:
    """Run ``case`` ``repeat`` times (seeds ``seed + i``, or from the case's own ``seed``
    parameter) through ``generate``, check every attempt, and decide the case's status."""
    start = time.perf_counter()
    first = int(case.parameters.get("seed", seed))
    attempts = [_attempt(case, generate, i, first + i, judge, embed) for i in range(case.repeat)]
    passes = sum(a.passed for a in attempts)
    broken = [a for a in attempts if a.errored]
    need = case.pass_rate * len(attempts)
    if broken:
        status = "errored"
        reason = _which(broken[0], len(attempts)) + broken[0].reason
    elif passes + 1e-9 >= need:
        status, reason = "passed", f"{passes}/{len(attempts)} attempts passed"
    else:
        status = "failed"
        bad = next(a for a in attempts if not a.passed)
        reason = (f"{passes}/{len(attempts)} attempts passed, {case.pass_rate:.0%} needed; "
                  if len(attempts) > 1 else "") + _which(bad, len(attempts)) + bad.reason
    return CaseResult(case.name, case.index, status, attempts, passes, case.pass_rate,
                      time.perf_counter() - start, reason, case.expect_error, case.description)


def _which(a: Attempt, n: int) -> str:
    return f"attempt {a.index + 1} (seed {a.seed}): " if n > 1 else ""


def _attempt(case: Case, generate: Generate, i: int, seed: int, judge: Judge | None,
             embed: Embedder | None) -> Attempt:
    params = {**case.parameters, "seed": seed}
    t0 = time.perf_counter()
    try:
        gen = generate([dict(m) for m in case.messages], params)
    except Exception as e:  # noqa: BLE001 - any failure of the call is this attempt's result
        return _failed_call(case, i, seed, e)
    wall_ms = (time.perf_counter() - t0) * 1000
    text = gen if isinstance(gen, str) else getattr(gen, "text", None)
    if not isinstance(text, str):
        return Attempt(i, seed, None, False, True, reason=f"generate returned "
                       f"{type(gen).__name__}, not a Generation")
    latency = getattr(gen, "latency_ms", None)
    latency = wall_ms if latency is None else float(latency)
    att = Attempt(i, seed, text, False, latency_ms=latency,
                  prompt_tokens=getattr(gen, "prompt_tokens", None),
                  completion_tokens=getattr(gen, "completion_tokens", None),
                  record=dict(getattr(gen, "record", None) or {}))
    if case.expect_error:
        att.reason = f"expected error {case.expect_error}, but the model answered {_clip(text)}"
        return att
    for a in case.assertions:
        try:
            out = evaluate(a, text, latency_ms=latency, embed=embed, judge=judge, prompt=case.prompt)
        except DemoAIError as e:  # no judge or no embedder: the check cannot be made
            out = AssertionOutcome(a.name, False, 0.0, str(e), True, {"error": e.to_dict()}, a.weight)
        att.outcomes.append(out)
    counted = [o for o in att.outcomes if o.weight > 0]
    broken = [o for o in att.outcomes if o.errored]
    failing = [o for o in counted if not o.passed and not o.errored]
    total_w = sum(o.weight for o in counted)
    att.score = (sum(o.weight * o.score for o in counted) / total_w) if total_w else 1.0
    att.errored = bool(broken)
    att.passed = not broken and not failing
    if broken:
        att.reason = f"{broken[0].type} errored: {broken[0].reason}"
    elif failing:
        att.reason = "; ".join(f"{o.type} failed: {o.reason}" for o in failing) + \
            f" (output {_clip(text)})"
    return att


def _failed_call(case: Case, i: int, seed: int, e: Exception) -> Attempt:
    if isinstance(e, DemoAIError):
        err = e.to_dict()
    else:
        err = {"code": type(e).__name__, "message": str(e), "fields": {}}
    expected = ERROR_CODES.get(case.expect_error) if case.expect_error else None
    if expected is not None and isinstance(e, expected):
        return Attempt(i, seed, None, True, score=1.0, error=err,
                       reason=f"raised {err['code']} as expected: {err['message']}")
    what = f"expected {case.expect_error}, but " if expected is not None else ""
    return Attempt(i, seed, None, False, True, error=err,
                   reason=f"{what}the call raised {err['code']}: {err['message']}")


def _clip(text: str, n: int = 120) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def backend_generate(backend: Any) -> Generate:
    """A ``generate`` over a model backend (``backend.chat``): latency is the call's
    ``timings["total_s"]``, and the backend's replay record is kept."""
    def generate(messages: list[dict], params: dict) -> Generation:
        r = backend.chat(messages, params=params)
        total = (r.timings or {}).get("total_s")
        return Generation(r.text, None if total is None else total * 1000.0, r.prompt_tokens,
                          r.completion_tokens, dict(r.record or {}))
    return generate


def backend_judge(backend: Any, params: dict | None = None) -> Judge:
    """A ``model-graded`` judge over a model backend, its reply constrained by the JSON schema
    (greedy, 256 tokens unless ``params`` say otherwise). A reply that still fails to parse
    (cut at ``max_tokens``) comes back as its raw text, so the assertion reports it off-format."""
    chosen = {"temperature": 0.0, "max_tokens": 256, **(params or {})}

    def judge(messages: list[dict], schema: dict) -> dict:
        try:
            r = backend.chat(messages, params=chosen, json_schema=schema)
        except ModelError as e:
            if isinstance(getattr(e, "text", None), str):
                return {"text": e.text, "record": e.fields.get("record") or {}}
            raise
        return {"text": r.text, "record": dict(r.record or {})}
    return judge
