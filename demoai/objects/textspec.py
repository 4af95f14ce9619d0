"""Prompt and Agent: small YAML documents kept verbatim in the manifest (so they diff and
merge as text) together with their parsed, checked fields.

Every key is checked at every level (top level, ``sandbox``, ``backend``, ``parameters``):
an unknown key is refused with :class:`~demoai.errors.InvalidArtifact` and a "did you
mean" suggestion, never ignored, so ``memroy_mb: 16`` cannot quietly run with the default
limits.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

from demoai.errors import InvalidArtifact
from demoai.objects.base import Artifact, digest_bytes, register
from demoai.objects.text import line_stats, unified_diff

__all__ = ["Prompt", "Agent", "TextArtifact", "parse_yaml", "check_parameters", "check_keys", "PLACEHOLDER",
           "SAMPLING_KEYS",
           "AGENT_TOOLS", "SANDBOX_BACKENDS", "MODEL_BACKENDS", "PROMPT_KEYS", "AGENT_KEYS",
           "SANDBOX_LIMITS", "BACKEND_OPTIONS"]

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
AGENT_TOOLS = ("shell", "python", "read_file", "write_file", "finish")
SANDBOX_BACKENDS = ("namespace", "docker")
MODEL_BACKENDS = ("llamacpp", "transformers", "openai", "vllm")
PROMPT_KEYS = ("name", "description", "system", "template", "variables", "model", "parameters")
AGENT_KEYS = ("name", "description", "system", "prompt", "model", "backend", "adapter", "tools",
              "sandbox", "parameters", "seed", "max_steps")
SANDBOX_LIMITS: dict[str, type] = {"cpu_seconds": float, "memory_mb": int, "pids": int,
                                   "timeout_s": float, "output_bytes": int, "disk_mb": int}
"""The limits an agent's ``sandbox:`` may set (``SandboxLimits`` has one field each)."""
# Options an agent's ``backend:`` may set, by backend (what ``open_backend`` accepts, less
# what resolution fills in itself: path, digest, gguf_file, adapter_path, model).
BACKEND_OPTIONS: dict[str, tuple[str, ...]] = {
    "llamacpp": ("threads", "n_ctx", "chat_template", "reuse_prefix"),
    "transformers": ("threads", "n_ctx"),
    "openai": ("base_url", "api_key", "n_ctx", "schema_mode", "timeout", "chat_template_digest"),
    "vllm": ("n_ctx", "gpu_memory_utilization"),
}
# option -> (type, minimum); bool options take True/False only
_OPTION_TYPES: dict[str, tuple[type, float | None]] = {
    "threads": (int, 1), "n_ctx": (int, 1), "chat_template": (str, None),
    "reuse_prefix": (bool, None), "base_url": (str, None), "api_key": (str, None),
    "schema_mode": (str, None), "timeout": (float, 0), "chat_template_digest": (str, None),
    "gpu_memory_utilization": (float, 0),
}
_NO_NETWORK = "the sandbox has no network, and no setting gives it one; remove 'network'"

# name -> (type, min, max); sampling parameters both prompts and agents may carry
_PARAMS: dict[str, tuple[type, float | None, float | None]] = {
    "temperature": (float, 0.0, 2.0), "top_p": (float, 0.0, 1.0), "top_k": (int, 0, None),
    "max_tokens": (int, 1, None), "seed": (int, None, None), "repeat_penalty": (float, 0.0, None),
    "min_p": (float, 0.0, 1.0), "presence_penalty": (float, -2.0, 2.0),
    "frequency_penalty": (float, -2.0, 2.0),
}
SAMPLING_KEYS = (*(k for k in _PARAMS if k != "seed"), "stop")
"""Sampling parameters a run or a fork may set (``seed`` is set on its own)."""


_LOADER: Any = None


def _strict_loader() -> Any:
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (the
    second would otherwise silently win: ``memory_mb: 16`` ... ``memory_mb: 4096``)."""
    global _LOADER
    if _LOADER is None:
        import yaml

        class StrictLoader(yaml.SafeLoader):
            pass

        def mapping(loader: Any, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = loader.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping", node.start_mark,
                            f"duplicate key {key!r}", key_node.start_mark)
                    seen.add(key)
                except TypeError:   # unhashable: the base constructor says so
                    break
            return yaml.SafeLoader.construct_mapping(loader, node, deep)

        StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
        _LOADER = StrictLoader
    return _LOADER


def parse_yaml(text: str, what: str) -> dict[str, Any]:
    """Parse a YAML mapping, turning syntax errors and repeated keys into
    :class:`InvalidArtifact`."""
    try:
        import yaml  # ~12 ms: only when a prompt or agent text is parsed

        data = yaml.load(text, Loader=_strict_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InvalidArtifact(f"{what}: malformed YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise InvalidArtifact(f"{what}: expected a YAML mapping at the top level")
    return data


def check_keys(data: dict[Any, Any], known: Any, what: str, section: str = "", *,
               elsewhere: dict[str, str] | None = None, reasons: dict[str, str] | None = None) -> None:
    """Refuse every key of ``data`` not in ``known`` with one :class:`InvalidArtifact` that
    names each and suggests the closest known key (``difflib``). ``section`` prefixes the
    names (``sandbox.``); ``elsewhere`` maps keys known at another level to their place
    (``{"memory_mb": "sandbox.memory_mb"}``); ``reasons`` gives a key its own message."""
    unknown = [k for k in data if not isinstance(k, str) or k not in known]
    if not unknown:
        return
    prefix = f"{section}." if section else ""
    candidates = {k: prefix + k for k in known}
    for k, place in (elsewhere or {}).items():
        candidates.setdefault(k, place)
    problems, hints = [], {}
    for k in unknown:
        if reasons and k in reasons:
            problems.append(f"'{prefix}{k}': {reasons[k]}")
            continue
        close = difflib.get_close_matches(str(k), list(candidates), n=1, cutoff=0.6)
        if close:
            hints[str(k)] = candidates[close[0]]
        problems.append(f"unknown key '{prefix}{k!s}'" + (f" (did you mean '{candidates[close[0]]}'?)" if close else ""))
    listing = ", ".join(sorted(prefix + k for k in known))
    raise InvalidArtifact(f"{what}: " + "; ".join(problems) + f" (known: {listing})",
                          keys=[prefix + str(k) for k in unknown], suggestions=hints)


def _typed(value: Any, typ: type) -> bool:
    """Whether ``value`` is a ``typ`` (an int counts as a float; a bool as neither)."""
    if typ in (bool, str):
        return isinstance(value, typ)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return ok and (typ is float or float(value).is_integer())


def check_parameters(params: Any, what: str) -> dict[str, Any]:
    """Validate sampling parameters (types and ranges); unknown names are refused."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidArtifact(f"{what}: 'parameters' must be a mapping")
    check_keys(params, (*_PARAMS, "stop"), what, "parameters")
    for name, value in params.items():
        if name == "stop":
            if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value))):
                raise InvalidArtifact(f"{what}: parameter 'stop' must be a string or a list of strings")
            continue
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


TextArtifact = _TextArtifact
"""The base of the text kinds (prompts, agents, suites): a YAML document kept verbatim."""


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
        check_keys(data, PROMPT_KEYS, what, elsewhere={p: f"parameters.{p}" for p in _PARAMS})
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
        elsewhere = {**{k: f"sandbox.{k}" for k in SANDBOX_LIMITS},
                     **{p: f"parameters.{p}" for p in _PARAMS if p != "seed"}}
        check_keys(data, AGENT_KEYS, what, elsewhere=elsewhere, reasons={"network": _NO_NETWORK})
        if not isinstance(data.get("system"), str) and not isinstance(data.get("prompt"), str):
            raise InvalidArtifact(f"{what}: needs 'system' text or a 'prompt' reference")
        if not isinstance(data.get("model"), str):
            raise InvalidArtifact(f"{what}: 'model' (a model path or reference) is required")
        tools = data.get("tools", ["finish"])
        if not isinstance(tools, list) or any(not isinstance(t, str) or t not in AGENT_TOOLS for t in tools):
            bad = next((t for t in tools if t not in AGENT_TOOLS), None) if isinstance(tools, list) else None
            close = difflib.get_close_matches(str(bad), AGENT_TOOLS, n=1) if bad is not None else []
            raise InvalidArtifact(f"{what}: tools must be a list drawn from {list(AGENT_TOOLS)}"
                                  + (f" (unknown {bad!r}; did you mean {close[0]!r}?)" if close else ""))
        sandbox = _check_sandbox(data.get("sandbox"), what)
        max_steps = data.get("max_steps", 10)
        if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
            raise InvalidArtifact(f"{what}: max_steps must be a positive integer")
        if "seed" in data and not _typed(data["seed"], int):
            raise InvalidArtifact(f"{what}: seed must be an integer")
        params = check_parameters(data.get("parameters"), what)
        backend = _check_backend(data.get("backend"), data["model"], data.get("adapter"), what)
        if data.get("adapter") is not None and not isinstance(data["adapter"], str):
            raise InvalidArtifact(f"{what}: 'adapter' must be an adapter path")
        meta = {"name": data.get("name"), "system": data.get("system"), "prompt": data.get("prompt"),
                "backend": backend, "adapter": data.get("adapter"),
                "model": data["model"], "tools": tools, "sandbox": sandbox, "parameters": params,
                "seed": data.get("seed", params.get("seed", 0)), "max_steps": max_steps}
        return cls(digest=digest_bytes(text.encode()), text=text, meta=meta)


def _check_sandbox(sandbox: Any, what: str) -> dict[str, Any]:
    """The agent's ``sandbox:`` mapping, checked: a known backend, known positive limits."""
    sandbox = sandbox or {}
    if not isinstance(sandbox, dict):
        raise InvalidArtifact(f"{what}: 'sandbox' must be a mapping")
    # `network: false` states the default; anything else asks for what no sandbox gives
    no_net = sandbox.get("network", False) is False
    check_keys(sandbox, ("backend", *SANDBOX_LIMITS, *(("network",) if no_net else ())), what,
               "sandbox", reasons={"network": _NO_NETWORK})
    name = sandbox.get("backend", "namespace")
    if name not in SANDBOX_BACKENDS:
        close = difflib.get_close_matches(str(name), SANDBOX_BACKENDS, n=1)
        raise InvalidArtifact(f"{what}: sandbox.backend must be one of {list(SANDBOX_BACKENDS)}"
                              + (f" (did you mean {close[0]!r}?)" if close else ""))
    for lim, typ in SANDBOX_LIMITS.items():
        v = sandbox.get(lim)
        if v is not None and (not _typed(v, typ) or v <= 0):
            kind = "a positive integer" if typ is int else "a positive number"
            raise InvalidArtifact(f"{what}: sandbox.{lim} must be {kind}, got {v!r}")
    return {k: v for k, v in sandbox.items() if k != "network"}   # network: false is the default


def _check_backend(backend: Any, model: str, adapter: Any, what: str) -> dict[str, Any]:
    """The agent's ``backend:`` mapping, checked against the options of the backend it names
    (or, unnamed, the backends the model may get: openai for ``openai:``, else the local two)."""
    backend = backend or {}
    if not isinstance(backend, dict):
        raise InvalidArtifact(f"{what}: backend must be a mapping with name one of {list(MODEL_BACKENDS)}")
    name = backend.get("name")
    if name is not None and name not in MODEL_BACKENDS:
        close = difflib.get_close_matches(str(name), MODEL_BACKENDS, n=1)
        raise InvalidArtifact(f"{what}: backend.name must be one of {list(MODEL_BACKENDS)}"
                              + (f" (did you mean {close[0]!r}?)" if close else ""))
    if name is None:
        names = (["openai"] if model.startswith("openai:") else
                 ["transformers"] if adapter else ["llamacpp", "transformers"])
    else:
        names = [name]
    allowed = dict.fromkeys(o for n in names for o in BACKEND_OPTIONS[n])
    owners: dict[str, list[str]] = {}
    for n in MODEL_BACKENDS:
        for o in BACKEND_OPTIONS[n]:
            if o not in allowed:
                owners.setdefault(o, []).append(n)
    reasons = {o: f"an option of the {'/'.join(ns)} backend, not of {'/'.join(names)} "
                  "(set backend.name)" for o, ns in owners.items()}
    check_keys(backend, ("name", *allowed), what, "backend", reasons=reasons)
    for opt, value in backend.items():
        if opt == "name" or value is None:
            continue
        typ, lo = _OPTION_TYPES[opt]
        if not _typed(value, typ) or (lo is not None and value < lo) or (lo == 0 and value == 0):
            raise InvalidArtifact(f"{what}: backend.{opt} must be {'a positive ' if lo is not None else 'a '}"
                                  f"{typ.__name__}, got {value!r}")
    return backend
