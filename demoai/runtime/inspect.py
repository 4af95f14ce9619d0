"""What the runtime's events mean to a reader: one summary line per event, the timeline
rows (step, type, id, time, summary) every face shows, and an event's fields as readable
``(name, text)`` pairs (``demoai agent show``).

Everything here is text for people: values are written as plain text or JSON, never as
Python reprs, a missing count is left out rather than written ``None``, and a summary is
shortened at a word boundary, with an ellipsis, never cut mid-word.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from demoai.runtime.tools import TOOL_ARGS
from demoai.store.sessions.events import Event

__all__ = ["event_summary", "event_fields", "EventLine", "timeline_rows", "shorten", "one_line",
           "STATUS_TEXT"]

SUMMARY_CHARS = 160

# What each session status means, for people.
STATUS_TEXT = {
    "finished": "the model called finish",
    "max_steps": "stopped at max_steps without a finish call: the task was not declared done",
    "failed": "an error ended the run",
    "interrupted": "the run was interrupted",
    "running": "a run is appending to it",
    "forked": "forked, not continued yet",
}


@dataclass(frozen=True)
class EventLine:
    """One row of a session's timeline: an event and what it was, in one line."""

    step: int
    type: str
    id: str
    t: float | None
    summary: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"step": self.step, "type": self.type, "id": self.id, "t": self.t, "summary": self.summary}


def timeline_rows(events: list[Event]) -> list[EventLine]:
    """The timeline rows of ``events`` (``demoai agent log``, the server, the hub)."""
    return [EventLine(e.step, e.type, "blake3:" + e.id, e.body.get("t"), event_summary(e))
            for e in events]


def one_line(text: Any) -> str:
    """``text`` on one line: each run of whitespace holding a line break becomes `` | ``."""
    s = str(text if text is not None else "")
    return re.sub(r"[ \t]*[\r\n]+\s*", " | ", s.strip())


def shorten(text: str, limit: int = SUMMARY_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def event_summary(e: Event) -> str:
    """One line saying what an event was (any event, including ones of an unexpected shape
    received from elsewhere)."""
    try:
        return shorten(one_line(_summary(e)), SUMMARY_CHARS + 60)
    except (AttributeError, TypeError, ValueError, KeyError):
        return shorten(json.dumps(e.body, sort_keys=True, default=str), 200)


def _model_name(m: dict[str, Any]) -> str:
    src = m.get("source") or {}
    if src.get("builtin"):
        return str(src["builtin"])
    return str(src.get("path") or m.get("model") or m.get("backend") or "model")


def _ordered(tool: Any, args: dict[str, Any]) -> list[tuple[str, Any]]:
    """A tool's arguments in the order the tool declares them (recorded sorted)."""
    order = list(TOOL_ARGS.get(str(tool), {}))
    return sorted(args.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order), kv[0]))


def _args_text(tool: Any, args: Any) -> str:
    if not isinstance(args, dict):
        return json.dumps(args, ensure_ascii=False, default=str)
    return " ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in _ordered(tool, args))


def _kv(d: Any) -> str:
    if not isinstance(d, dict):
        return json.dumps(d, ensure_ascii=False, default=str)
    return ", ".join(f"{k}={_scalar(v)}" for k, v in d.items())


def _scalar(v: Any) -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    return json.dumps(v, ensure_ascii=False, default=str)


def _tokens(b: dict[str, Any]) -> str:
    n = b.get("completion_tokens")
    rate = (b.get("timings") or {}).get("tokens_per_s")
    out = f"{n} token{'' if n == 1 else 's'}" if isinstance(n, int) else ""
    if rate:
        out += f" at {rate:.1f} tok/s"
    return out


def _summary(e: Event) -> str:
    b = e.body
    t = e.type
    if t == "run_start":
        m = b.get("model") or {}
        model = " ".join(x for x in (_model_name(m), str(m.get("digest") or "")[:19]) if x)
        return (f"task: {shorten(one_line(b.get('task') or '(none)'), 80)}; model {model}; "
                f"at most {b.get('max_steps')} steps")
    if t == "model_request":
        p = b.get("params") or {}
        return ", ".join(x for x in (f"{b.get('n_messages')} messages",
                                     f"seed {p['seed']}" if "seed" in p else "",
                                     f"max_tokens {p['max_tokens']}" if "max_tokens" in p else "") if x)
    if t == "model_response":
        head = _tokens(b)
        if b.get("invalid"):
            why = "cut at max_tokens" if b.get("finish_reason") == "length" else "invalid"
            head = f"{head}, {why}, not a tool call" if head else f"{why}, not a tool call"
        return f"{head}: {one_line(b.get('text', ''))}" if head else one_line(b.get("text", ""))
    if t == "tool_call":
        return f"{b.get('tool')} {_args_text(b.get('tool'), b.get('args'))}"
    if t == "tool_result":
        extra = f" [{b.get('limit') or 'timeout'}]" if b.get("limit") or b.get("timed_out") else ""
        out = one_line(b.get("stdout") or b.get("stderr") or "") or "(no output)"
        files = f" files: {', '.join(b.get('files') or {})}" if b.get("files") else ""
        return f"exit {b.get('exit_code')}{extra} {shorten(out, 120)}{files}"
    if t == "fork":
        f = b.get("from", {})
        o = b.get("overrides") or {}
        return f"forked from {f.get('session')}@{f.get('step')}" + (f" with {_kv(o)}" if o else "")
    if t == "run_end":
        status = b.get("status")
        if b.get("reason") == "max_steps":      # also older sessions, recorded "finished"
            return f"stopped at max_steps ({b.get('steps')} steps) without a finish call"
        if b.get("reason") == "finish":
            return f"{status}: the model called finish" + (f" with answer {json.dumps(b.get('answer'), ensure_ascii=False)}"
                                                         if b.get("answer") is not None else "")
        return f"{status} ({b.get('reason')})"
    if t == "error":
        return f"{b.get('where')}: {b.get('message')}"
    if t == "resume":
        return f"continued with {b.get('restored_files')} workspace file(s) restored"
    return _kv({k: v for k, v in b.items() if k not in ("type", "step", "t")})


# --- fields: one event in full --------------------------------------------------------------
_FINISH = {"stop": "stop (the reply ended)", "length": "length (cut at max_tokens)"}


def event_fields(e: Event) -> list[tuple[str, str]]:
    """The event's content as ``(name, text)`` pairs, in reading order: every value whole
    (texts may span lines), numbers and flags as words, nested records flattened."""
    b = dict(e.body)
    for k in ("type", "step", "t"):
        b.pop(k, None)
    try:
        fn = _FIELDS.get(e.type)
        rows = fn(b) if fn else []
    except (AttributeError, TypeError, ValueError, KeyError):
        rows = []
        b = dict(e.body)
    if not rows and b:
        rows = [(k, _text(v)) for k, v in b.items()]
    return [(k, v) for k, v in rows if v not in ("", None)]


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None:
        return ""
    if isinstance(v, (int, float)):
        return f"{v:g}" if isinstance(v, float) else str(v)
    if isinstance(v, dict):
        return _kv(v)
    if isinstance(v, list):
        return ", ".join(_text(x) for x in v)
    return json.dumps(v, ensure_ascii=False, default=str)


def _run_start(b: dict) -> list[tuple[str, str]]:
    m, a, sb = b.get("model") or {}, b.get("agent") or {}, dict(b.get("sandbox") or {})
    where = (f"committed in {str(a['commit'])[:12]}" if a.get("commit") else
             "from the working tree, not committed" if a.get("worktree") else "")
    eng = b.get("engine") or {}
    backend = ", ".join([str(m.get("backend") or "?"), *(f"{k}={m[k]}" for k in ("threads", "n_ctx") if m.get(k))])
    return [("task", b.get("task") or "(none)"),
            ("agent", " ".join(x for x in (a.get("path"), f"({where})" if where else "", a.get("digest")) if x)),
            ("model", f"{_model_name(m)} {m.get('digest') or ''}".strip()),
            ("backend", backend),
            ("tools", ", ".join(b.get("tools") or [])),
            ("parameters", _kv(b.get("params") or {})),
            ("seed", _text(b.get("seed"))), ("max steps", _text(b.get("max_steps"))),
            ("sandbox", f"{sb.pop('backend', '?')}" + (f" ({_kv(sb)})" if sb else "")),
            ("prompt", _kv(b["prompt"]) if b.get("prompt") else ""),
            ("system", b.get("system") or ""),
            ("engine", ", ".join(f"{k} {v}" for k, v in eng.items()) if isinstance(eng, dict) else _text(eng))]


def _model_request(b: dict) -> list[tuple[str, str]]:
    rows = [("parameters", _kv(b.get("params") or {})),
            ("context", f"{b.get('n_messages')} messages in all")]
    for m in b.get("messages") or []:
        rows.append((f"new {m.get('role', 'message')} message", m.get("content") or "(empty)"))
    rows.append(("schema", str(b.get("schema") or "")))
    return rows


def _model_response(b: dict) -> list[tuple[str, str]]:
    tm = b.get("timings") or {}
    rec = b.get("record") or {}
    tokens = ", ".join(f"{k} {b[f'{k}_tokens']}" for k in ("prompt", "completion")
                       if isinstance(b.get(f"{k}_tokens"), int))
    speed = ""
    if tm:
        speed = (f"{tm.get('tokens_per_s', 0):.1f} tokens/s; first token after {tm.get('ttft_s', 0):.2f} s, "
                 f"{tm.get('total_s', 0):.2f} s in all")
    settings = rec.get("settings") or {}
    backend = " ".join(x for x in (rec.get("backend"), _kv(settings) if settings else "") if x)
    return [("text", b.get("text") or "(empty)"),
            ("valid tool call", "no: nothing was run" if b.get("invalid") else ""),
            ("finish", _FINISH.get(b.get("finish_reason"), _text(b.get("finish_reason")))),
            ("tokens", tokens), ("speed", speed), ("backend", backend)]


def _shown(v: Any) -> str:
    """A text value as written; JSON-quoted when blank or edged with spaces (so that what
    is there can be seen)."""
    if isinstance(v, str) and (not v.strip() or v != v.strip(" \t")):
        return json.dumps(v, ensure_ascii=False)
    return _text(v)


def _output(v: Any) -> str:
    s = v if isinstance(v, str) else ""
    if not s:
        return ""
    return s.rstrip("\n") if s.strip() else json.dumps(s)


def _tool_call(b: dict) -> list[tuple[str, str]]:
    args = b.get("args") or {}
    return [("tool", str(b.get("tool")))] + [(str(k), _shown(v)) for k, v in _ordered(b.get("tool"), args)]


def _tool_result(b: dict) -> list[tuple[str, str]]:
    files = b.get("files") or {}
    limit = b.get("limit") or ("timeout" if b.get("timed_out") else "")
    return [("exit code", _text(b.get("exit_code"))),
            ("stopped by", f"sandbox limit: {limit}" if limit else ""),
            ("stdout", _output(b.get("stdout"))), ("stderr", _output(b.get("stderr"))),
            ("output", "cut to the sandbox's bound" if b.get("truncated") else ""),
            ("error", _text(b.get("error"))),
            ("duration", f"{b['duration_s']:.2f} s" if isinstance(b.get("duration_s"), (int, float)) else ""),
            ("files changed", ", ".join(f"{p} ({'deleted' if v is None else 'written'})"
                                        for p, v in files.items()))]


def _fork(b: dict) -> list[tuple[str, str]]:
    f = b.get("from") or {}
    rows = [("from", f"{f.get('session')}@{f.get('step')} (commit {str(f.get('commit', ''))[:12]})")]
    return rows + [(f"override {k}", _text(v)) for k, v in (b.get("overrides") or {}).items()]


def _run_end(b: dict) -> list[tuple[str, str]]:
    return [("status", f"{b.get('status')}: {STATUS_TEXT.get(str(b.get('status')), '')}".rstrip(": ")),
            ("reason", _text(b.get("reason"))), ("answer", _text(b.get("answer"))),
            ("steps", _text(b.get("steps")))]


def _error(b: dict) -> list[tuple[str, str]]:
    return [("where", _text(b.get("where"))), ("code", _text(b.get("code"))),
            ("message", _text(b.get("message"))), ("told the model", _text(b.get("feedback")))]


def _resume(b: dict) -> list[tuple[str, str]]:
    return [("restored files", _text(b.get("restored_files")))]


_FIELDS = {"run_start": _run_start, "model_request": _model_request, "model_response": _model_response,
           "tool_call": _tool_call, "tool_result": _tool_result, "fork": _fork, "run_end": _run_end,
           "error": _error, "resume": _resume}
