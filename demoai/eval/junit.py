"""Reports of sanity-suite runs: the :class:`SuiteReport`, its exit code, a pytest-like text
report and JUnit XML for CI systems.

Exit codes (for ``demoai eval test``): 0 when every case of every suite passed, 1 when a case
failed, 2 when anything errored (a case whose check could not be made, or a suite that could
not be loaded); an error outranks a failure.

The XML follows the common JUnit layout CI systems read (Jenkins' ``junit-10.xsd``, GitLab,
GitHub test reporters): ``<testsuites>`` holding one ``<testsuite>`` per suite and one
``<testcase>`` per case, with ``<failure>`` or ``<error>`` and the outputs in
``<system-out>``. Characters XML 1.0 cannot carry are written as ``\\xNN`` escapes.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any
from xml.etree import ElementTree as ET

from demoai.eval.cases import CaseResult

__all__ = ["SuiteReport", "junit_xml", "format_report", "exit_code", "totals"]

_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_RULE = 72


@dataclass
class SuiteReport:
    """One suite's run: its ``name`` and ``path``, the case results, the wall time, where it
    ran (``properties``: model, seed, backend...) and a suite-level ``error``
    (``{code, message}``) when the suite could not be loaded or run at all."""

    name: str
    path: str | None = None
    cases: list[CaseResult] = field(default_factory=list)
    duration_s: float = 0.0
    timestamp: str | None = None  # ISO 8601, local time, no zone (as JUnit consumers expect)
    properties: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None

    @property
    def totals(self) -> dict[str, int]:
        """Counts of cases: ``cases``, ``passed``, ``failed``, ``errored``."""
        return totals([self])

    @property
    def exit_code(self) -> int:
        """0 all passed, 1 a case failed, 2 an error (a case errored or the suite could not run)."""
        return exit_code([self])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, with totals and the exit code."""
        d = asdict(self)
        d.update(totals=self.totals, exit_code=self.exit_code)
        return d


def totals(reports: list[SuiteReport]) -> dict[str, int]:
    """Counts of cases over ``reports``: ``cases``, ``passed``, ``failed``, ``errored``, and
    ``suite_errors`` (suites that could not run)."""
    cases = [c for r in reports for c in r.cases]
    return {"cases": len(cases),
            "passed": sum(c.status == "passed" for c in cases),
            "failed": sum(c.status == "failed" for c in cases),
            "errored": sum(c.status == "errored" for c in cases),
            "suite_errors": sum(r.error is not None for r in reports)}


def exit_code(reports: list[SuiteReport]) -> int:
    """The exit code of a run over ``reports``: 2 on any error, else 1 on any failure, else 0."""
    t = totals(reports)
    return 2 if t["errored"] or t["suite_errors"] else 1 if t["failed"] else 0


def _clean(text: str) -> str:
    return _BAD_XML.sub(lambda m: f"\\x{ord(m.group(0)):02x}" if ord(m.group(0)) < 256
                        else f"\\u{ord(m.group(0)):04x}", text)


def _case_detail(c: CaseResult) -> str:
    """What went wrong, attempt by attempt (the body of a failure or an error)."""
    lines = [c.reason]
    for a in c.attempts:
        if a.passed:
            continue
        head = f"attempt {a.index + 1} (seed {a.seed})"
        if a.error is not None:
            lines.append(f"{head}: {a.error['code']}: {a.error['message']}")
        for o in a.outcomes:
            if not o.passed:
                state = "ERRORED" if o.errored else "FAILED"
                lines.append(f"{head}: {state} {o.type}: {o.reason}")
        if a.error is None and not a.outcomes:
            lines.append(f"{head}: {a.reason}")
    return "\n".join(lines)


def _case_output(c: CaseResult) -> str:
    parts = []
    for a in c.attempts:
        shown = a.output if a.output is not None else f"<no output: {a.error['code'] if a.error else '?'}>"
        lat = f", {a.latency_ms:.0f} ms" if a.latency_ms is not None else ""
        parts.append(f"--- attempt {a.index + 1} (seed {a.seed}{lat}) ---\n{shown}")
    return "\n".join(parts)


def junit_xml(reports: list[SuiteReport]) -> str:
    """JUnit XML for ``reports``: one ``<testsuite>`` per suite, one ``<testcase>`` per case
    (``classname`` is the suite's name), a suite that could not run as one errored
    ``<testcase name="(suite)">``. Returns the document as text, XML declaration included."""
    t = totals(reports)
    root = ET.Element("testsuites", {
        "name": "demoai eval test", "tests": str(t["cases"] + t["suite_errors"]),
        "failures": str(t["failed"]), "errors": str(t["errored"] + t["suite_errors"]),
        "time": f"{sum(r.duration_s for r in reports):.3f}"})
    for n, r in enumerate(reports):
        rt = r.totals
        attrs = {"name": _clean(r.name), "tests": str(rt["cases"] + rt["suite_errors"]),
                 "failures": str(rt["failed"]), "errors": str(rt["errored"] + rt["suite_errors"]),
                 "skipped": "0", "time": f"{r.duration_s:.3f}", "id": str(n)}
        if r.timestamp:
            attrs["timestamp"] = r.timestamp
        if r.path:
            attrs["file"] = _clean(r.path)
        suite = ET.SubElement(root, "testsuite", attrs)
        if r.properties:
            props = ET.SubElement(suite, "properties")
            for k, v in sorted(r.properties.items()):
                ET.SubElement(props, "property", {"name": _clean(str(k)), "value": _clean(str(v))})
        if r.error is not None:
            case = ET.SubElement(suite, "testcase", {"name": "(suite)", "classname": _clean(r.name),
                                                     "time": "0.000"})
            err = ET.SubElement(case, "error", {"message": _clean(str(r.error.get("message", ""))),
                                                "type": _clean(str(r.error.get("code", "error")))})
            err.text = _clean(str(r.error.get("message", "")))
        for c in r.cases:
            attrs = {"name": _clean(c.name), "classname": _clean(r.name), "time": f"{c.duration_s:.3f}"}
            if r.path:
                attrs["file"] = _clean(r.path)
            case = ET.SubElement(suite, "testcase", attrs)
            if c.status != "passed":
                tag = "error" if c.status == "errored" else "failure"
                kind = next((a.error["code"] for a in c.attempts if a.error and not a.passed), None)
                el = ET.SubElement(case, tag, {
                    "message": _clean(c.reason.splitlines()[0] if c.reason else c.status),
                    "type": _clean(kind or ("AssertionError" if tag == "failure" else "error"))})
                el.text = _clean(_case_detail(c))
            out = ET.SubElement(case, "system-out")
            out.text = _clean(_case_output(c))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _banner(title: str, fill: str = "=") -> str:
    title = f" {title} "
    left = max(3, (_RULE - len(title)) // 2)
    return fill * left + title + fill * max(3, _RULE - left - len(title))


def format_report(reports: list[SuiteReport], *, verbose: bool = False) -> str:
    """A pytest-like text report: a line per suite with one mark per case (``.`` passed,
    ``F`` failed, ``E`` errored), or a line per case when ``verbose``; then the failures and
    errors with their reasons and outputs; then the totals line."""
    marks = {"passed": ".", "failed": "F", "errored": "E"}
    t = totals(reports)
    lines = [_banner("demoai eval test"),
             f"{len(reports)} suite{'s' * (len(reports) != 1)}, {t['cases']} case{'s' * (t['cases'] != 1)}", ""]
    for r in reports:
        where = r.path or r.name
        if r.error is not None:
            lines.append(f"{where} E (suite could not run)")
            continue
        if verbose:
            for c in r.cases:
                lines.append(f"{where}::{c.name} {c.status.upper()} ({c.duration_s:.2f}s)")
        else:
            lines.append(f"{where} " + "".join(marks[c.status] for c in r.cases)
                         + f"  [{len(r.cases)} case{'s' * (len(r.cases) != 1)}, {r.duration_s:.1f}s]")
    for status, title in (("errored", "ERRORS"), ("failed", "FAILURES")):
        bad = [(r, c) for r in reports for c in r.cases if c.status == status]
        broken = [r for r in reports if r.error is not None] if status == "errored" else []
        if not bad and not broken:
            continue
        lines += ["", _banner(title)]
        for r in broken:
            lines += [_banner(f"{r.name} (suite)", "_"),
                      f"{r.error.get('code', 'error')}: {r.error.get('message', '')}", ""]
        for r, c in bad:
            lines += [_banner(f"{r.name}::{c.name}", "_"), _case_detail(c), _case_output(c), ""]
    parts = [f"{t[k]} {label}" for k, label in (("failed", "failed"), ("passed", "passed"),
                                                 ("errored", "errored")) if t[k]]
    if t["suite_errors"]:
        parts.append(f"{t['suite_errors']} suite error{'s' * (t['suite_errors'] != 1)}")
    lines += ["", _banner(f"{', '.join(parts) or 'no cases'} in "
                          f"{sum(r.duration_s for r in reports):.2f}s")]
    return "\n".join(lines) + "\n"
