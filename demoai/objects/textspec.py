"""Prompt and Agent: small YAML documents kept verbatim in the manifest (so they diff and
merge as text) together with their parsed, checked fields."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from demoai.errors import InvalidArtifact
from demoai.objects.base import Artifact, digest_bytes, register
from demoai.objects.text import line_stats, unified_diff

__all__ = ["Prompt", "Agent", "parse_yaml", "check_parameters", "PLACEHOLDER",
           "AGENT_TOOLS", "SANDBOX_BACKENDS", "MODEL_BACKENDS"]

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
AGENT_TOOLS = ("shell", "python", "read_file", "write_file", "finish")
SANDBOX_BACKENDS = ("namespace", "docker")
MODEL_BACKENDS = ("llamacpp", "transformers", "openai", "vllm")

# name -> (type, min, max); sampling parameters both prompts and agents may carry
_PARAMS: dict[str, tuple[type, float | None, float | None]] = {
    "temperature": (float, 0.0, 2.0), "top_p": (float, 0.0, 1.0), "top_k": (int, 0, None),
    "max_tokens": (int, 1, None), "seed": (int, None, None), "repeat_penalty": (float, 0.0, None),
    "min_p": (float, 0.0, 1.0), "presence_penalty": (float, -2.0, 2.0),
    "frequency_penalty": (float, -2.0, 2.0),
}


def parse_yaml(text: str, what: str) -> dict[str, Any]:
    """Parse a YAML mapping, turning syntax errors into :class:`InvalidArtifact`."""
    try:
        import yaml  # ~12 ms: only when a prompt or agent text is parsed

        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InvalidArtifact(f"{what}: malformed YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise InvalidArtifact(f"{what}: expected a YAML mapping at the top level")
    return data


def check_parameters(params: Any, what: str) -> dict[str, Any]:
    """Validate sampling parameters (types and ranges); unknown names are refused."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidArtifact(f"{what}: 'parameters' must be a mapping")
    for name, value in params.items():
        if name == "stop":
            if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value))):
                raise InvalidArtifact(f"{what}: parameter 'stop' must be a string or a list of strings")
            continue
        if name not in _PARAMS:
            raise InvalidArtifact(f"{what}: unknown parameter {name!r} (known: {', '.join(sorted(_PARAMS))}, stop)")
        typ, lo, hi = _PARAMS[name]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if typ is int:
            ok = ok and float(value).is_integer()
        if not ok:
            raise InvalidArtifact(f"{what}: parameter {name!r} must be {typ.__name__}, got {value!r}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise InvalidArtifact(f"{what}: parameter {name!r}={value} is out of range [{lo}, {hi}]")
    return dict(params)


class _TextArtifact(Artifact):
    text: str

    def summary(self) -> str:
        name = self.meta.get("name") if self.meta else None
        return f"{self.kind} {name or ''}".strip() + f" ({len(self.text.splitlines())} lines)"

    @property
    def size(self) -> int:
        return len(self.text.encode())

    @classmethod
    def from_text(cls, text: str, what: str = "") -> "_TextArtifact":
        raise TypeError(f"{cls.__name__} must define from_text")

    def check(self) -> None:
        Artifact.check(self)
        if self.digest != digest_bytes(self.text.encode()):
            raise InvalidArtifact(f"{self.kind}: digest does not match its text")

    @classmethod
    def from_manifest(cls, d: dict[str, Any]) -> "_TextArtifact":
        obj = cls.from_text(d.get("text", ""), cls.kind)
        if d.get("digest") != obj.digest:
            raise InvalidArtifact(f"{cls.kind}: digest does not match its text")
        return obj

    def to_manifest(self) -> dict[str, Any]:
        return {"demoai": 1, "kind": self.kind, "digest": self.digest, "text": self.text,
                "meta": self.meta}

    def diff(self, other: Artifact) -> dict[str, Any]:
        added, removed = line_stats(self.text, other.text)  # type: ignore[attr-defined]
        return {"changed": self.digest != other.digest, "added": added, "removed": removed,
                "text": unified_diff(self.text, other.text)}  # type: ignore[attr-defined]


@register
@dataclass(frozen=True)
class Prompt(_TextArtifact):
    """A prompt template: ``template`` with ``{{variable}}`` placeholders, optional
    ``system`` text, a ``model`` reference and sampling ``parameters``."""

    kind = "prompt"
    text: str = ""

    @classmethod
    def from_text(cls, text: str, what: str = "prompt") -> "Prompt":
        """Parse and check a ``*.prompt.yaml`` document."""
        data = parse_yaml(text, what)
        tpl = data.get("template")
        if not isinstance(tpl, str) or not tpl.strip():
            raise InvalidArtifact(f"{what}: 'template' is required and must be non-empty text")
        used = list(dict.fromkeys(PLACEHOLDER.findall(tpl)))
        declared = data.get("variables", used)
        if not isinstance(declared, list) or not all(isinstance(v, str) for v in declared):
            raise InvalidArtifact(f"{what}: 'variables' must be a list of names")
        if set(declared) != set(used):
            raise InvalidArtifact(f"{what}: variables {sorted(declared)} do not match the template's "
                                  f"placeholders {sorted(used)}")
        if "model" in data and not isinstance(data["model"], str):
            raise InvalidArtifact(f"{what}: 'model' must be a model path or reference")
        params = check_parameters(data.get("parameters"), what)
        meta = {"name": data.get("name"), "template": tpl, "variables": declared,
                "system": data.get("system"), "model": data.get("model"), "parameters": params}
        return cls(digest=digest_bytes(text.encode()), text=text, meta=meta)

    def render(self, **variables: Any) -> str:
        """Fill the template; a missing variable is an error, not an empty string."""
        missing = [v for v in self.meta["variables"] if v not in variables]
        if missing:
            raise InvalidArtifact(f"prompt: missing variables {missing}")
        return PLACEHOLDER.sub(lambda m: str(variables[m.group(1)]), self.meta["template"])


@register
@dataclass(frozen=True)
class Agent(_TextArtifact):
    """An agent definition (``*.agent.yaml``): system prompt or prompt reference, model
    reference, allowed tools, sandbox backend and limits, sampling parameters, seed,
    maximum steps."""

    kind = "agent"
    text: str = ""

    @classmethod
    def from_text(cls, text: str, what: str = "agent") -> "Agent":
        """Parse and check an ``*.agent.yaml`` document."""
        data = parse_yaml(text, what)
        if not isinstance(data.get("system"), str) and not isinstance(data.get("prompt"), str):
            raise InvalidArtifact(f"{what}: needs 'system' text or a 'prompt' reference")
        if not isinstance(data.get("model"), str):
            raise InvalidArtifact(f"{what}: 'model' (a model path or reference) is required")
        tools = data.get("tools", ["finish"])
        if not isinstance(tools, list) or any(t not in AGENT_TOOLS for t in tools):
            raise InvalidArtifact(f"{what}: tools must be a list drawn from {list(AGENT_TOOLS)}")
        sandbox = data.get("sandbox", {}) or {}
        if not isinstance(sandbox, dict) or sandbox.get("backend", "namespace") not in SANDBOX_BACKENDS:
            raise InvalidArtifact(f"{what}: sandbox.backend must be one of {list(SANDBOX_BACKENDS)}")
        for lim in ("cpu_seconds", "memory_mb", "pids", "timeout_s"):
            v = sandbox.get(lim)
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0):
                raise InvalidArtifact(f"{what}: sandbox.{lim} must be a positive number")
        max_steps = data.get("max_steps", 10)
        if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
            raise InvalidArtifact(f"{what}: max_steps must be a positive integer")
        params = check_parameters(data.get("parameters"), what)
        backend = data.get("backend") or {}
        if not isinstance(backend, dict) or backend.get("name", "llamacpp") not in MODEL_BACKENDS:
            raise InvalidArtifact(f"{what}: backend must be a mapping with name one of {list(MODEL_BACKENDS)}")
        if data.get("adapter") is not None and not isinstance(data["adapter"], str):
            raise InvalidArtifact(f"{what}: 'adapter' must be an adapter path")
        meta = {"name": data.get("name"), "system": data.get("system"), "prompt": data.get("prompt"),
                "backend": backend, "adapter": data.get("adapter"),
                "model": data["model"], "tools": tools, "sandbox": sandbox, "parameters": params,
                "seed": data.get("seed", params.get("seed", 0)), "max_steps": max_steps}
        return cls(digest=digest_bytes(text.encode()), text=text, meta=meta)
