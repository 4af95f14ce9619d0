"""Sanity-suite cases: parsing the ``cases:`` list, running a case (repeats, pass rates,
expected errors, errored vs failed), the report, JUnit XML, and the shipped SmolLM2 suite run
against the real model."""
from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import pytest
import yaml

from demoai.errors import ContextOverflow, InvalidArtifact, ModelError
from demoai.eval.cases import (Generation, backend_generate, parse_cases, run_case,
                               suite_needs)
from demoai.eval.junit import SuiteReport, exit_code, format_report, junit_xml
from demoai.registry.defaults import sample_data_dir

SUITE = sample_data_dir() / "smollm2.suite.yaml"


def one(case: dict, defaults: dict | None = None):
    return parse_cases([case], "t.suite.yaml", defaults)[0]


def scripted(*replies):
    """A generate that answers from ``replies`` in turn (an exception is raised) and logs calls."""
    calls, queue = [], list(replies)

    def generate(messages, params):
        calls.append((messages, params))
        r = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(r, BaseException):
            raise r
        return Generation(r, latency_ms=12.0, prompt_tokens=3, completion_tokens=2,
                          record={"params": params})
    generate.calls = calls
    return generate


# --- parsing ---

def test_parse_merges_defaults_and_builds_messages():
    cases = parse_cases([
        {"name": "a", "system": "Be brief.", "prompt": "Hi", "parameters": {"max_tokens": 8},
         "assert": [{"type": "contains", "value": "x"}]},
        {"messages": [{"role": "user", "content": "1"}, {"role": "assistant", "content": "2"},
                      {"role": "user", "content": "3"}], "repeat": 4, "pass_rate": 0.5},
        {"name": "big", "prompt": "p", "expect_error": "context_overflow"},
    ], "t.suite.yaml", {"temperature": 0, "max_tokens": 48})
    a, b, c = cases
    assert a.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert a.parameters == {"temperature": 0, "max_tokens": 8} and a.assertions[0].type == "contains"
    assert b.name == "case 2" and b.prompt == "3" and (b.repeat, b.pass_rate) == (4, 0.5)
    assert b.parameters == {"temperature": 0, "max_tokens": 48}
    assert c.expect_error == "context_overflow" and c.index == 2
    json.dumps([x.to_dict() for x in cases])


@pytest.mark.parametrize("cases,match", [
    ([], "non-empty list"),
    ({"name": "x"}, "non-empty list"),
    ([{"name": "a", "prompt": "p", "asert": []}], r"cases\[0\] 'a'.*did you mean 'assert'"),
    ([{"prompt": "p", "temperature": 0}], "did you mean 'parameters.temperature'"),
    ([{"prompt": "p", "messages": []}], "not both"),
    ([{"name": "n"}], "either 'prompt' or 'messages'"),
    ([{"messages": [{"role": "bot", "content": "x"}]}], r"messages\[0\]: 'role'"),
    ([{"messages": [{"role": "user", "text": "x"}]}], "did you mean 'content'|unknown key"),
    ([{"system": "s", "messages": [{"role": "system", "content": "x"}]}], "system message"),
    ([{"prompt": "p", "repeat": 0}], "'repeat'"),
    ([{"prompt": "p", "pass_rate": 1.5}], "'pass_rate'"),
    ([{"prompt": "p", "expect_error": "context_overflw"}], "did you mean 'context_overflow'"),
    ([{"prompt": "p", "expect_error": "context_overflow", "assert": [{"type": "is-json"}]}],
     "cannot also have 'assert'"),
    ([{"name": "a", "prompt": "p"}, {"name": "a", "prompt": "q"}], r"cases\[1\] 'a'.*unique"),
    ([{"prompt": "p", "parameters": {"temperature": 5}}], "out of range"),
    ([{"prompt": "p"}, {"name": "second", "prompt": "p", "assert": [{"type": "containz", "value": "x"}]}],
     r"cases\[1\] 'second': assert\[0\].*did you mean 'contains'"),
    (["just text"], "must be a mapping"),
])
def test_bad_cases_are_refused_with_index_and_name(cases, match):
    with pytest.raises(InvalidArtifact, match=match):
        parse_cases(cases, "t.suite.yaml", {"temperature": 0})


def test_bad_suite_defaults_are_refused():
    with pytest.raises(InvalidArtifact, match="did you mean 'parameters.max_tokens'"):
        parse_cases([{"prompt": "p"}], "t.suite.yaml", {"max_token": 3})


def test_suite_needs_names_judge_and_embedder():
    cases = parse_cases([{"prompt": "p", "assert": [{"type": "similar", "value": "x"}]},
                         {"prompt": "q", "assert": [{"type": "not-model-graded", "value": "r"}]}],
                        "t", None)
    assert suite_needs(cases) == {"embed", "judge"} and suite_needs(cases[:1]) == {"embed"}


# --- running ---

def test_passing_case_keeps_output_outcomes_and_record():
    gen = scripted("2 + 3 = 5")
    res = run_case(one({"prompt": "2+3?", "assert": [{"type": "contains", "value": "5"},
                                                     {"type": "latency-ms", "value": 50}]}), gen, seed=7)
    assert res.status == "passed" and res.passed and res.passes == 1
    att = res.attempts[0]
    assert (att.output, att.seed, att.latency_ms, att.prompt_tokens) == ("2 + 3 = 5", 7, 12.0, 3)
    assert [o.passed for o in att.outcomes] == [True, True] and att.record["params"]["seed"] == 7
    assert gen.calls[0][0] == [{"role": "user", "content": "2+3?"}]
    json.dumps(res.to_dict())


def test_failing_case_says_which_assertion_and_shows_the_output():
    res = run_case(one({"name": "n", "prompt": "p", "assert": [{"type": "contains", "value": "5"}]}),
                   scripted("six"))
    assert res.status == "failed" and "contains failed" in res.reason and "'six'" in res.reason


def test_repeats_use_successive_seeds_and_the_pass_rate():
    case = one({"prompt": "p", "parameters": {"temperature": 0.8}, "repeat": 4, "pass_rate": 0.75,
                "assert": [{"type": "icontains", "value": "hello"}]})
    gen = scripted("Hello", "hello!", "bye", "HELLO")
    res = run_case(case, gen, seed=10)
    assert [p["seed"] for _, p in gen.calls] == [10, 11, 12, 13]
    assert res.status == "passed" and res.passes == 3 and res.observed_rate == 0.75
    res = run_case(case, scripted("Hello", "bye", "bye", "HELLO"), seed=10)
    assert res.status == "failed" and "2/4 attempts passed" in res.reason and "seed 11" in res.reason


def test_a_seed_parameter_overrides_the_suite_seed():
    gen = scripted("x")
    run_case(one({"prompt": "p", "parameters": {"seed": 100}, "repeat": 2}), gen, seed=1)
    assert [p["seed"] for _, p in gen.calls] == [100, 101]


def test_unexpected_errors_make_the_case_errored_not_failed():
    case = one({"prompt": "p", "repeat": 3, "pass_rate": 0.3, "assert": [{"type": "contains", "value": "a"}]})
    res = run_case(case, scripted("a", ModelError("backend crashed"), "a"))
    assert res.status == "errored" and res.passes == 2 and "backend crashed" in res.reason
    assert res.attempts[1].error["code"] == "model_error" and res.attempts[1].output is None
    res = run_case(case, scripted(RuntimeError("bug in a wrapper")))
    assert res.status == "errored" and res.attempts[0].error["code"] == "RuntimeError"


def test_expect_error_inverts_the_call():
    case = one({"prompt": "p", "expect_error": "context_overflow"})
    res = run_case(case, scripted(ContextOverflow("prompt is 3000 tokens", prompt_tokens=3000)))
    assert res.status == "passed" and res.attempts[0].error["fields"]["prompt_tokens"] == 3000
    res = run_case(case, scripted("I answered anyway"))
    assert res.status == "failed" and "expected error context_overflow" in res.reason
    res = run_case(case, scripted(ModelError("other trouble")))
    assert res.status == "errored" and "expected context_overflow" in res.reason
    # a parent code accepts its subclasses
    res = run_case(one({"prompt": "p", "expect_error": "model_error"}), scripted(ContextOverflow("x")))
    assert res.status == "passed"


def test_errored_assertion_errors_the_case_and_weight_zero_only_informs():
    res = run_case(one({"prompt": "p", "assert": [{"type": "model-graded", "value": "r"}]}),
                   scripted("x"), judge=lambda m, s: "not json")
    assert res.status == "errored" and "off-format" in res.reason
    res = run_case(one({"prompt": "p", "assert": [{"type": "model-graded", "value": "r"}]}), scripted("x"))
    assert res.status == "errored" and "judge" in res.reason
    res = run_case(one({"prompt": "p", "assert": [
        {"type": "contains", "value": "x", "weight": 3},
        {"type": "contains", "value": "zzz", "weight": 0}]}), scripted("x"))
    assert res.status == "passed" and res.attempts[0].score == 1.0
    res = run_case(one({"prompt": "p", "assert": [
        {"type": "contains", "value": "x", "weight": 3},
        {"type": "contains", "value": "zzz", "weight": 1}]}), scripted("x"))
    assert res.status == "failed" and res.attempts[0].score == pytest.approx(0.75)


def test_latency_falls_back_to_wall_time():
    def slow(messages, params):
        time.sleep(0.05)
        return Generation("ok")
    res = run_case(one({"prompt": "p", "assert": [{"type": "latency-ms", "value": 10}]}), slow)
    assert res.status == "failed" and res.attempts[0].latency_ms >= 50


# --- reports ---

def three_cases() -> list:
    return [run_case(one({"name": "good", "prompt": "p", "assert": [{"type": "contains", "value": "a"}]}), scripted("a")),
            run_case(one({"name": "bad", "prompt": "p", "assert": [{"type": "equals", "value": "b"}]}), scripted("a\x1b[31m <&>")),
            run_case(one({"name": "broken", "prompt": "p"}), scripted(ModelError("boom")))]


def test_exit_codes():
    good, bad, broken = three_cases()
    assert SuiteReport("s", cases=[good]).exit_code == 0
    assert SuiteReport("s", cases=[good, bad]).exit_code == 1
    assert SuiteReport("s", cases=[good, bad, broken]).exit_code == 2
    assert SuiteReport("s", error={"code": "invalid_artifact", "message": "bad yaml"}).exit_code == 2
    assert exit_code([SuiteReport("a", cases=[good]), SuiteReport("b", cases=[bad])]) == 1
    assert SuiteReport("s", cases=[good, bad, broken]).totals == {
        "cases": 3, "passed": 1, "failed": 1, "errored": 1, "suite_errors": 0}


# A structural schema of the common JUnit layout (after Jenkins' junit-10.xsd): element order,
# required attributes and types.
JUNIT_XSD = """<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" elementFormDefault="qualified">
  <xs:complexType name="detail"><xs:simpleContent><xs:extension base="xs:string">
    <xs:attribute name="message" type="xs:string"/><xs:attribute name="type" type="xs:string"/>
  </xs:extension></xs:simpleContent></xs:complexType>
  <xs:element name="testsuites"><xs:complexType>
    <xs:sequence><xs:element ref="testsuite" minOccurs="0" maxOccurs="unbounded"/></xs:sequence>
    <xs:attribute name="name" type="xs:string"/><xs:attribute name="time" type="xs:decimal"/>
    <xs:attribute name="tests" type="xs:nonNegativeInteger"/>
    <xs:attribute name="failures" type="xs:nonNegativeInteger"/>
    <xs:attribute name="errors" type="xs:nonNegativeInteger"/>
  </xs:complexType></xs:element>
  <xs:element name="testsuite"><xs:complexType><xs:sequence>
      <xs:element name="properties" minOccurs="0"><xs:complexType><xs:sequence>
        <xs:element name="property" maxOccurs="unbounded"><xs:complexType>
          <xs:attribute name="name" type="xs:string" use="required"/>
          <xs:attribute name="value" type="xs:string" use="required"/>
        </xs:complexType></xs:element></xs:sequence></xs:complexType></xs:element>
      <xs:element name="testcase" minOccurs="0" maxOccurs="unbounded"><xs:complexType><xs:sequence>
        <xs:element name="skipped" minOccurs="0" type="detail"/>
        <xs:element name="error" minOccurs="0" maxOccurs="unbounded" type="detail"/>
        <xs:element name="failure" minOccurs="0" maxOccurs="unbounded" type="detail"/>
        <xs:element name="system-out" minOccurs="0" maxOccurs="unbounded" type="xs:string"/>
        <xs:element name="system-err" minOccurs="0" maxOccurs="unbounded" type="xs:string"/>
        </xs:sequence>
        <xs:attribute name="name" type="xs:string" use="required"/>
        <xs:attribute name="classname" type="xs:string"/><xs:attribute name="time" type="xs:decimal"/>
        <xs:attribute name="file" type="xs:string"/>
      </xs:complexType></xs:element>
      <xs:element name="system-out" minOccurs="0" type="xs:string"/>
      <xs:element name="system-err" minOccurs="0" type="xs:string"/>
    </xs:sequence>
    <xs:attribute name="name" type="xs:string" use="required"/>
    <xs:attribute name="tests" type="xs:nonNegativeInteger" use="required"/>
    <xs:attribute name="failures" type="xs:nonNegativeInteger"/>
    <xs:attribute name="errors" type="xs:nonNegativeInteger"/>
    <xs:attribute name="skipped" type="xs:nonNegativeInteger"/>
    <xs:attribute name="time" type="xs:decimal"/><xs:attribute name="timestamp" type="xs:dateTime"/>
    <xs:attribute name="id" type="xs:string"/><xs:attribute name="file" type="xs:string"/>
  </xs:complexType></xs:element>
</xs:schema>"""


def test_junit_xml_parses_validates_and_carries_each_case():
    good, bad, broken = three_cases()
    reports = [SuiteReport("sanity", "suites/a.suite.yaml", [good, bad, broken], 1.5,
                           "2025-01-02T03:04:05", {"model": "smollm2", "seed": 0}),
               SuiteReport("unloadable", "suites/b.suite.yaml",
                           error={"code": "invalid_artifact", "message": "unknown key 'casse'"})]
    text = junit_xml(reports)
    root = ET.fromstring(text.encode())
    assert (root.tag, root.get("tests"), root.get("failures"), root.get("errors")) == ("testsuites", "4", "1", "2")
    s1, s2 = root.findall("testsuite")
    assert (s1.get("name"), s1.get("tests"), s1.get("failures"), s1.get("errors")) == ("sanity", "3", "1", "1")
    assert {p.get("name"): p.get("value") for p in s1.iter("property")} == {"model": "smollm2", "seed": "0"}
    cases = {c.get("name"): c for c in s1.findall("testcase")}
    assert cases["good"].find("failure") is None and cases["good"].find("error") is None
    assert cases["good"].find("system-out").text.endswith("\na")
    fail = cases["bad"].find("failure")
    assert "equals failed" in fail.get("message") and fail.get("type") == "AssertionError"
    assert "\\x1b[31m <&>" in cases["bad"].find("system-out").text  # control char escaped, rest kept
    err = cases["broken"].find("error")
    assert err.get("type") == "model_error" and "boom" in err.text
    assert s2.find("testcase").get("name") == "(suite)" and "casse" in s2.find("testcase/error").get("message")
    from lxml import etree
    schema = etree.XMLSchema(etree.fromstring(JUNIT_XSD.encode()))
    doc = etree.fromstring(text.encode())
    assert schema.validate(doc), schema.error_log


def test_text_report_is_pytest_like():
    good, bad, broken = three_cases()
    text = format_report([SuiteReport("sanity", "a.suite.yaml", [good, bad, broken], 2.0)])
    assert "a.suite.yaml .FE" in text and "1 failed, 1 passed, 1 errored in 2.00s" in text
    assert "FAILURES" in text and "sanity::bad" in text and "ERRORS" in text and "boom" in text
    verbose = format_report([SuiteReport("sanity", "a.suite.yaml", [good], 0.1)], verbose=True)
    assert "a.suite.yaml::good PASSED" in verbose and "1 passed" in verbose and "FAILURES" not in verbose


# --- the shipped suite against the real SmolLM2 ---

def test_shipped_suite_is_valid_and_overflows_the_context():
    doc = yaml.safe_load(SUITE.read_text())
    cases = parse_cases(doc["cases"], str(SUITE), doc["parameters"])
    assert 8 <= len(cases) <= 15 and suite_needs(cases) == set()
    overflow = [c for c in cases if c.expect_error == "context_overflow"]
    assert len(overflow) == 1
    from demoai.engines.llm.llamacpp import LlamaCppBackend
    from demoai.registry.defaults import default_gguf_path
    with LlamaCppBackend(default_gguf_path(), threads=1) as b:
        assert b.count_tokens(overflow[0].messages) > b.n_ctx == 2048


def test_shipped_suite_passes_with_smollm2_on_one_thread():
    from demoai.engines.llm.llamacpp import LlamaCppBackend
    from demoai.registry.defaults import default_gguf_path
    doc = yaml.safe_load(SUITE.read_text())
    start = time.perf_counter()
    cases = parse_cases(doc["cases"], str(SUITE), doc["parameters"])
    with LlamaCppBackend(default_gguf_path(), threads=1) as backend:
        generate = backend_generate(backend)
        results = [run_case(c, generate, seed=doc["seed"]) for c in cases]
    report = SuiteReport(doc["name"], str(SUITE), results, time.perf_counter() - start)
    assert report.exit_code == 0, format_report([report])
    assert report.duration_s <= 60
    assert all(a.record.get("backend") == "llamacpp" for c in results for a in c.attempts
               if a.output is not None)
    assert ET.fromstring(junit_xml([report]).encode()).get("failures") == "0"
