"""The agent's tools: their JSON schema (used to constrain the model's output), running a
call inside the sandbox, and normalising observations for replay comparisons."""
from __future__ import annotations

import json
import re
from typing import Any

from demoai.objects.base import digest_bytes

__all__ = ["TOOL_ARGS", "tool_schema", "schema_digest", "tool_instructions", "parse_call",
           "execute", "normalize_observation", "observation_text", "files_changed"]

# Each tool's arguments (string lengths are bounded by the call's max_tokens: a maxLength
# here would unroll into a grammar rule per character).
TOOL_ARGS: dict[str, dict[str, Any]] = {
    "shell": {"cmd": {"type": "string"}},
    "python": {"code": {"type": "string"}},
    "read_file": {"path": {"type": "string"}},
    "write_file": {"path": {"type": "string"}, "content": {"type": "string"}},
    "finish": {"answer": {"type": "string"}},
}
_DESCRIBE = {
    "shell": 'run a shell command in /workspace: {"tool": "shell", "args": {"cmd": "ls -l"}}',
    "python": 'run Python 3 code: {"tool": "python", "args": {"code": "print(1 + 1)"}}',
    "read_file": 'read a file: {"tool": "read_file", "args": {"path": "notes.txt"}}',
    "write_file": 'write a file: {"tool": "write_file", "args": {"path": "a.txt", "content": "hi"}}',
    "finish": 'stop with the final answer: {"tool": "finish", "args": {"answer": "done"}}',
}
OBSERVATION_CHARS = 1200


def tool_schema(tools: list[str]) -> dict[str, Any]:
    """One JSON object naming a tool among ``tools`` and its arguments."""
    variants = []
    for name in tools:
        args = TOOL_ARGS[name]
        variants.append({
            "type": "object",
            "properties": {"tool": {"const": name},
                           "args": {"type": "object", "properties": args, "required": list(args),
                                    "additionalProperties": False}},
            "required": ["tool", "args"], "additionalProperties": False})
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def schema_digest(schema: dict[str, Any]) -> str:
    """The digest of a tool schema, as a run records it."""
    return digest_bytes(json.dumps(schema, sort_keys=True).encode())


def tool_instructions(tools: list[str]) -> str:
    """What the system prompt tells the model about ``tools`` and the reply format."""
    lines = ["Reply with exactly one JSON object that calls one tool. Tools:"]
    lines += [f"- {_DESCRIBE[t]}" for t in tools]
    lines.append("Call finish when the task is done.")
    return "\n".join(lines)


def parse_call(text: str, tools: list[str]) -> tuple[str, dict[str, Any]]:
    """(tool, args) from the model's reply; ValueError says what is wrong."""
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ValueError(f"the reply is not JSON ({e})") from None
    if not isinstance(obj, dict) or obj.get("tool") not in tools:
        raise ValueError(f"the reply names no allowed tool (allowed: {', '.join(tools)})")
    args = obj.get("args")
    want = TOOL_ARGS[obj["tool"]]
    if not isinstance(args, dict) or set(args) != set(want) or not all(isinstance(v, str) for v in args.values()):
        raise ValueError(f"tool {obj['tool']} takes string arguments {sorted(want)}")
    return obj["tool"], args


_WRITE = 'import sys, os\np = sys.argv[1]\nos.makedirs(os.path.dirname(p) or ".", exist_ok=True)\n' \
         'open(p, "wb").write(sys.stdin.buffer.read())\n'


def execute(sandbox: Any, tool: str, args: dict[str, str], timeout_s: float | None = None) -> dict[str, Any]:
    """Run one tool call inside ``sandbox``; every tool, file access included, runs in there,
    so paths resolve in the sandbox's view (a symlink cannot reach the host)."""
    if tool == "shell":
        r = sandbox.run(["sh", "-c", args["cmd"]], timeout_s=timeout_s)
    elif tool == "python":
        r = sandbox.run(["python3", "-c", args["code"]], timeout_s=timeout_s)
    elif tool == "read_file":
        r = sandbox.run(["cat", "--", args["path"]], timeout_s=timeout_s)
    elif tool == "write_file":
        r = sandbox.run(["python3", "-c", _WRITE, args["path"]], stdin=args["content"].encode(),
                        timeout_s=timeout_s)
    else:
        raise ValueError(f"tool {tool!r} does not run in the sandbox")
    return r.to_dict()


def files_changed(before: dict[str, str], after: dict[str, str]) -> dict[str, str | None]:
    """path -> new blob id (added or changed) or None (deleted)."""
    out: dict[str, str | None] = {p: b for p, b in after.items() if before.get(p) != b}
    out.update({p: None for p in before if p not in after})
    return dict(sorted(out.items()))


_TS = re.compile(r"\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?)?"
                 r"|\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2}\b"
                 r"|\b\d{1,2}:\d\d(:\d\d(\.\d+)?)?\b")
_TMP = re.compile(r"/tmp/[A-Za-z0-9_.\-/]+")
_PID = re.compile(r"\bpid[ =:]*\d+", re.I)


def normalize_observation(obs: dict[str, Any]) -> dict[str, Any]:
    """What must match between a recorded and a re-executed tool result: exit code, output
    with timestamps, temp paths and pids masked, and the files changed."""
    def clean(s: str) -> str:
        return _PID.sub("pid <N>", _TMP.sub("<TMP>", _TS.sub("<TIME>", s or "")))
    return {"exit_code": obs.get("exit_code"), "stdout": clean(obs.get("stdout", "")),
            "stderr": clean(obs.get("stderr", "")), "timed_out": bool(obs.get("timed_out")),
            "limit": obs.get("limit"), "files": obs.get("files", {})}


def observation_text(tool: str, obs: dict[str, Any]) -> str:
    """The observation as the model sees it (bounded)."""
    parts = [f"{tool} exit_code={obs.get('exit_code')}"]
    if obs.get("limit") or obs.get("timed_out"):
        parts.append(f"stopped by sandbox limit: {obs.get('limit') or 'timeout'}")
    if obs.get("stdout"):
        parts.append("stdout:\n" + obs["stdout"][:OBSERVATION_CHARS])
    if obs.get("stderr"):
        parts.append("stderr:\n" + obs["stderr"][:OBSERVATION_CHARS // 2])
    if obs.get("files"):
        parts.append("files changed: " + ", ".join(sorted(obs["files"])))
    return "Observation: " + "\n".join(parts)
