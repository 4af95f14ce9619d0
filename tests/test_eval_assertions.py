"""Assertions of sanity-suite cases: every type passing and failing, the not- forms, bad specs,
``similar`` with wordllama's shipped model and ``model-graded`` with SmolLM2 as the judge."""
from __future__ import annotations

import json

import numpy as np
import pytest

from demoai.errors import BackendUnavailable, InvalidArtifact, ModelError
from demoai.eval.assertions import (
    ASSERTION_TYPES, JUDGE_SCHEMA, Assertion, default_embedder, evaluate, find_json,
    judge_messages, parse_assertion,
)


def ok(spec: dict, output: str, **kw) -> bool:
    out = evaluate(spec, output, **kw)
    assert not out.errored, out.reason
    return out.passed


# (spec, an output that passes, an output that fails) for every deterministic type
CASES = [
    ({"type": "equals", "value": "5"}, "5", "5 "),
    ({"type": "equals", "value": 5}, "5", "five"),
    ({"type": "equals", "value": {"a": 1, "b": [2]}}, '{"b": [2], "a": 1}', '{"a": 1}'),
    ({"type": "contains", "value": "Tokyo"}, "It is Tokyo.", "It is tokyo."),
    ({"type": "icontains", "value": "Tokyo"}, "It is TOKYO.", "It is Kyoto."),
    ({"type": "contains-any", "value": ["red", "blue"]}, "a blue sky", "a Red sky"),
    ({"type": "contains-all", "value": ["red", "blue"]}, "red and blue", "red only"),
    ({"type": "icontains-any", "value": ["red", "blue"]}, "BLUE", "green"),
    ({"type": "icontains-all", "value": ["red", "blue"]}, "RED, Blue", "RED, green"),
    ({"type": "starts-with", "value": "```python"}, "```python\nx", "Here:\n```python"),
    ({"type": "regex", "value": r"^\d+$"}, "42", "42 apples"),
    ({"type": "is-json"}, ' {"a": 1}\n', '```json\n{"a": 1}\n```'),
    ({"type": "is-json", "value": {"type": "array"}}, "[1, 2]", '{"a": 1}'),
    ({"type": "contains-json"}, 'Sure: {"a": 1} done', "no braces {here"),
    ({"type": "contains-json", "value": {"required": ["ok"]}},
     'x {"no": 1} then ```{"ok": true}```', '{"no": 1}'),
    ({"type": "json-schema", "value": {"type": "object", "properties": {"age": {"type": "integer"}},
                                       "required": ["age"]}},
     'The answer: {"age": 3}', '{"age": "3"}'),
    ({"type": "max-length", "value": 5}, "12345", "123456"),
    ({"type": "python", "value": "output.upper() == output"}, "ABC", "AbC"),
]


@pytest.mark.parametrize("spec,good,bad", CASES, ids=[f"{c[0]['type']}-{i}" for i, c in enumerate(CASES)])
def test_each_type_passes_fails_and_negates(spec, good, bad):
    assert ok(spec, good) and not ok(spec, bad)
    neg = dict(spec, type="not-" + spec["type"])
    assert not ok(neg, good) and ok(neg, bad)
    plain, negated = evaluate(spec, good), evaluate(neg, good)
    assert (plain.type, negated.type) == (spec["type"], "not-" + spec["type"])
    assert plain.score == 1.0 and negated.score == 0.0


def test_every_type_is_covered_by_a_test():
    covered = {c[0]["type"] for c in CASES} | {"latency-ms", "similar", "model-graded"}
    assert covered == set(ASSERTION_TYPES)


def test_latency_needs_a_measurement_and_stays_errored_when_negated():
    spec = {"type": "latency-ms", "value": 100}
    assert ok(spec, "x", latency_ms=99.5) and not ok(spec, "x", latency_ms=100.5)
    for s in (spec, {"type": "not-latency-ms", "value": 100}):
        out = evaluate(s, "x")
        assert out.errored and not out.passed and "latency" in out.reason


def test_find_json_finds_each_outermost_value():
    assert find_json('a {"x": [1, {"y": 2}]} b [3] c {bad') == [{"x": [1, {"y": 2}]}, [3]]
    assert find_json("none here") == []


# --- python ---

def test_python_function_body_scores_and_threshold():
    body = "words = output.split()\nreturn len(words) / 10"
    assert evaluate({"type": "python", "value": body}, "one two three four five six").passed
    low = evaluate({"type": "python", "value": body}, "one two")
    assert not low.passed and low.score == pytest.approx(0.2)
    assert evaluate({"type": "python", "value": body, "threshold": 0.2}, "one two").passed
    assert not evaluate({"type": "not-python", "value": body, "threshold": 0.2}, "one two").passed


def test_python_sees_context_and_modules_and_may_return_a_verdict():
    spec = {"type": "python", "value": "re.search(r'\\d', output) is not None and "
                                       "context['latency_ms'] < 50 and math.isfinite(1.0)"}
    assert evaluate(spec, "a1", latency_ms=10).passed
    assert not evaluate(spec, "a1", latency_ms=60).passed
    verdict = {"type": "python", "value": "return {'pass': False, 'score': 0.9, 'reason': 'nope'}"}
    out = evaluate(verdict, "x")
    assert not out.passed and out.reason == "nope" and out.score == 0.9


@pytest.mark.parametrize("source,why", [
    ("open('/etc/passwd').read() != ''", "open"),
    ("__import__('os').getcwd() == ''", "_"),
    ("().__class__.__mro__ is None", "_"),
    ("import os\nreturn True", "import"),
])
def test_python_namespace_refuses_files_imports_and_dunders(source, why):
    if why == "open":  # not a syntax problem: open is simply not there
        out = evaluate({"type": "python", "value": source}, "x")
        assert out.errored and "NameError" in out.reason
    else:
        with pytest.raises(InvalidArtifact, match=why):
            parse_assertion({"type": "python", "value": source})


def test_python_errors_are_errored_never_failed():
    for source, what in (("1 / 0 > 1", "ZeroDivisionError"), ("'text'", "str"), ("3", "outside")):
        for t in ("python", "not-python"):
            out = evaluate({"type": t, "value": source}, "x")
            assert out.errored and not out.passed and what in out.reason


# --- bad specs ---

@pytest.mark.parametrize("spec,match", [
    ({"type": "contians", "value": "x"}, "did you mean 'contains'"),
    ({"type": "not-icontain", "value": "x"}, "did you mean 'not-icontains'"),
    ({"type": "contains", "valeu": "x"}, "did you mean 'value'"),
    ({"value": "x"}, "'type' is required"),
    ({"type": "contains"}, "non-empty text"),
    ({"type": "regex", "value": "(unclosed"}, "bad regular expression"),
    ({"type": "contains-any", "value": "red"}, "list of strings"),
    ({"type": "json-schema", "value": {"type": "nonsense"}}, "not a valid JSON schema"),
    ({"type": "json-schema"}, "JSON schema"),
    ({"type": "max-length", "value": -1}, ">= 0"),
    ({"type": "max-length", "value": 2.5}, "integer"),
    ({"type": "latency-ms", "value": "fast"}, "milliseconds"),
    ({"type": "contains", "value": "x", "threshold": 0.5}, "threshold' applies only"),
    ({"type": "similar", "value": "x", "threshold": 1.5}, "from 0 to 1"),
    ({"type": "contains", "value": "x", "weight": -1}, "weight"),
    ({"type": "python", "value": "def ("}, "not a Python expression"),
    ({"type": "similar", "value": []}, "reference text"),
    ({"type": "model-graded", "value": ""}, "non-empty"),
    ("contains", "must be a mapping"),
])
def test_bad_specs_are_refused_clearly(spec, match):
    with pytest.raises(InvalidArtifact, match=match):
        parse_assertion(spec, "cases[0]: assert[0]")


def test_parsed_spec_round_trips():
    a = parse_assertion({"type": "not-similar", "value": "x", "threshold": 0.5, "weight": 2})
    assert a == Assertion("similar", "x", True, 0.5, 2.0) and a.name == "not-similar"
    assert parse_assertion(a.to_dict()) == a
    assert evaluate({"type": "contains", "value": 5, "weight": 3}, "5").weight == 3.0


# --- similar ---

def fake_embed(texts: list[str]) -> np.ndarray:
    """Bag of letters: texts with the same letters point the same way."""
    return np.array([[t.lower().count(c) for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts],
                    dtype=float)


def test_similar_uses_the_best_reference_and_threshold():
    spec = {"type": "similar", "value": ["zzz", "listen"], "threshold": 0.99}
    out = evaluate(spec, "silent", embed=fake_embed)
    assert out.passed and out.score == pytest.approx(1.0) and "listen" in out.reason
    assert not evaluate({"type": "similar", "value": "abc"}, "xyz", embed=fake_embed).passed
    assert evaluate({"type": "not-similar", "value": "abc"}, "xyz", embed=fake_embed).passed


def test_similar_with_a_broken_embedder_is_errored():
    out = evaluate({"type": "similar", "value": "a"}, "b", embed=lambda texts: np.zeros((1, 3)))
    assert out.errored and "shape" in out.reason


def test_similar_with_wordllama_shipped_model():
    embed = default_embedder()  # must load offline, from the wheel's own files
    assert np.asarray(embed(["hello"])).shape == (1, 256)
    spec = {"type": "similar", "value": "Paris is the capital of France."}
    close = evaluate(spec, "The capital of France is Paris.")
    far = evaluate(spec, "I like to eat bananas for breakfast.")
    assert close.passed and close.score > 0.9
    assert not far.passed and far.score < 0.5


def test_missing_embedder_is_a_typed_error(monkeypatch):
    import sys
    default_embedder.cache_clear()
    monkeypatch.setitem(sys.modules, "wordllama", None)
    try:
        with pytest.raises(BackendUnavailable, match="wordllama"):
            evaluate({"type": "similar", "value": "a"}, "b")
    finally:
        default_embedder.cache_clear()


# --- model-graded ---

def make_judge(reply):
    calls = []

    def judge(messages, schema):
        calls.append((messages, schema))
        return reply(messages) if callable(reply) else reply
    judge.calls = calls
    return judge


def test_model_graded_asks_with_the_rubric_and_schema_and_keeps_the_call():
    judge = make_judge(json.dumps({"pass": True, "score": 0.8, "reason": "names Tokyo"}))
    out = evaluate({"type": "model-graded", "value": "Names Tokyo."}, "Tokyo.", judge=judge,
                   prompt="Capital of Japan?")
    assert out.passed and out.score == 0.8 and "names Tokyo" in out.reason
    messages, schema = judge.calls[0]
    assert schema == JUDGE_SCHEMA and messages == judge_messages("Names Tokyo.", "Tokyo.", "Capital of Japan?")
    assert "Names Tokyo." in messages[-1]["content"] and "Capital of Japan?" in messages[-1]["content"]
    assert out.record["messages"] == messages and out.record["reply"] is not None
    # the record replays: the same messages and schema give the same verdict
    again = make_judge(out.record["reply"])
    assert evaluate({"type": "model-graded", "value": "Names Tokyo."}, "Tokyo.", judge=again,
                    prompt="Capital of Japan?").to_dict() == out.to_dict()


def test_model_graded_threshold_and_negation():
    judge = make_judge('{"pass": true, "score": 0.4, "reason": "weak"}')
    assert evaluate({"type": "model-graded", "value": "r"}, "x", judge=judge).passed
    assert not evaluate({"type": "model-graded", "value": "r", "threshold": 0.5}, "x", judge=judge).passed
    assert not evaluate({"type": "not-model-graded", "value": "r"}, "x", judge=judge).passed


@pytest.mark.parametrize("reply", [
    "Sure! The output is great.",
    '{"pass": "yes", "score": 1, "reason": "x"}',
    '{"pass": true, "score": 7, "reason": "x"}',
    '{"pass": true}',
    None,
])
def test_off_format_judge_is_errored_with_the_raw_text(reply):
    judge = make_judge(reply)
    for t in ("model-graded", "not-model-graded"):
        out = evaluate({"type": t, "value": "rubric"}, "x", judge=judge)
        assert out.errored and not out.passed, out
        assert out.record["reply"] == reply
        if reply is not None:
            assert "off-format" in out.reason and reply[:20] in out.reason


def test_judge_failure_and_missing_judge():
    def failing(messages, schema):
        raise ModelError("judge server down")
    out = evaluate({"type": "model-graded", "value": "r"}, "x", judge=failing)
    assert out.errored and "judge server down" in out.reason and out.record["error"]["code"] == "model_error"
    with pytest.raises(BackendUnavailable, match="judge"):
        evaluate({"type": "model-graded", "value": "r"}, "x")


@pytest.fixture(scope="module")
def smollm2():
    from demoai.engines.llm.llamacpp import LlamaCppBackend
    from demoai.registry.defaults import default_gguf_path
    backend = LlamaCppBackend(default_gguf_path(), threads=1)
    yield backend
    backend.close()


def test_model_graded_with_smollm2_as_a_constrained_judge(smollm2):
    from demoai.eval.cases import backend_judge
    out = evaluate({"type": "model-graded", "value": "The output names Tokyo as the capital."},
                   "The capital of Japan is Tokyo.", judge=backend_judge(smollm2),
                   prompt="What is the capital of Japan?")
    # whatever the 135M judge decides, its reply is on-format and its call is recorded
    assert not out.errored, out.reason
    verdict = json.loads(out.record["reply"])
    assert out.passed == verdict["pass"] and out.score == verdict["score"]
    assert out.record["judge_record"]["json_schema"] is not None
    assert out.record["judge_record"]["params"]["temperature"] == 0.0
    # a reply cut before its JSON closed comes back as raw text: errored, not a verdict
    cut = evaluate({"type": "model-graded", "value": "r"}, "x",
                   judge=backend_judge(smollm2, {"max_tokens": 3}))
    assert cut.errored and "off-format" in cut.reason
