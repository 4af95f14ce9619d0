"""What a run depends on (:class:`RunSettings`), how it is made from an agent at a revision
or from a recorded ``run_start`` event, and the overrides a fork may carry: which exist,
how they are checked (once, before anything is written) and how a continue applies them.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any

from demoai import __version__
from demoai.errors import IntegrityError, InvalidArtifact
from demoai.objects import Agent
from demoai.objects.textspec import check_keys, check_parameters
from demoai.registry.resolve import load_agent, resolve_model, system_prompt
from demoai.runtime.tools import schema_digest, tool_schema
from demoai.store.git.repo import Repository

from demoai.objects.textspec import SAMPLING_KEYS

__all__ = ["RunSettings", "SAMPLING_KEYS", "OVERRIDE_KEYS", "SEED_MAX", "MAX_STEPS",
           "DEFAULT_PARAMS", "settings_for_agent", "settings_from_start", "apply_overrides",
           "fork_overrides", "check_overrides", "agent_from_start"]

SEED_MAX = 2**32 - 1            # llama.cpp takes 32-bit seeds
MAX_STEPS = 10_000
DEFAULT_PARAMS: dict[str, Any] = {"temperature": 0.0, "max_tokens": 200}
# What a fork may change besides sampling parameters (``replay`` marks a live replay's fork).
TEXT_OVERRIDES = ("instruction", "system", "prompt", "model_ref", "replay")
OVERRIDE_KEYS = (*TEXT_OVERRIDES, "seed", "max_steps", *SAMPLING_KEYS)


@dataclass
class RunSettings:
    """Everything a run depends on, as recorded in its ``run_start`` event."""

    agent: dict[str, Any]
    task: str
    system: str
    tools: list[str]
    params: dict[str, Any]
    seed: int
    max_steps: int
    sandbox: dict[str, Any]
    model: dict[str, Any]            # backend spec (local paths included; recorded without them)
    prompt: dict | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        """The JSON schema of a tool call (it constrains every model reply)."""
        return tool_schema(self.tools)

    def record(self, backend: Any) -> dict[str, Any]:
        """The ``run_start`` record: every setting and digest, local paths left out."""
        model = {k: v for k, v in self.model.items() if k not in ("path", "adapter_path", "api_key")}
        model.update({"chat_template_digest": getattr(backend, "chat_template_digest", None),
                      "n_ctx": getattr(backend, "n_ctx", None)})
        return {"agent": self.agent, "task": self.task, "system": self.system, "tools": self.tools,
                "tool_schema": schema_digest(self.schema()), "params": self.params, "seed": self.seed,
                "max_steps": self.max_steps, "sandbox": self.sandbox, "model": model,
                "prompt": self.prompt, "engine": {"demoai": __version__, "python": platform.python_version(),
                                                  "machine": platform.machine()}}


def _sampling(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k in SAMPLING_KEYS}


def settings_for_agent(repo: Repository, agent_path: str, task: str, rev: str | None, *,
                       sandbox: str | None, model: str | None, max_steps: int | None) -> RunSettings:
    """The settings of a new run of the agent at ``agent_path`` (at ``rev``), its model
    resolved to local, verified weights."""
    agent, src = load_agent(repo, agent_path, rev)
    m = agent.meta
    system, pin = system_prompt(repo, agent, rev)
    tools = list(dict.fromkeys([*m["tools"], "finish"]))
    params = {**DEFAULT_PARAMS, **_sampling(m["parameters"])}
    sb = {"backend": sandbox or m["sandbox"].get("backend", "namespace"),
          **{k: v for k, v in m["sandbox"].items() if k != "backend"}}
    spec = resolve_model(repo, model or m["model"], rev, m.get("backend"), m.get("adapter"))
    return RunSettings(agent={"digest": agent.digest, "text": agent.text, **src}, task=task,
                       system=system, tools=tools, params=params, seed=int(m.get("seed") or 0),
                       max_steps=max_steps or m["max_steps"], sandbox=sb, model=spec, prompt=pin)


def settings_from_start(start: dict[str, Any]) -> RunSettings:
    """The settings a recorded ``run_start`` event holds (the model as recorded: see
    :func:`apply_overrides` for a loadable spec)."""
    return RunSettings(agent=start["agent"], task=start["task"], system=start["system"],
                       tools=start["tools"], params=dict(start["params"]), seed=start["seed"],
                       max_steps=start["max_steps"], sandbox=dict(start["sandbox"]),
                       model=dict(start["model"]), prompt=start.get("prompt"))


def agent_from_start(start: dict[str, Any]) -> Agent:
    """The Agent a ``run_start`` event recorded (its text is pinned by digest)."""
    return Agent.from_text(start["agent"]["text"], "agent")


def apply_overrides(repo: Repository, s: RunSettings, start: dict[str, Any],
                    overrides: list[dict[str, Any]]) -> RunSettings:
    """Apply the overrides of a session's forks and resumes, in order, then resolve the
    model to a loadable spec (checked against the recorded digest)."""
    for o in overrides:
        s.params.update(_sampling(o))
        s.seed = int(o.get("seed", s.seed))
        s.max_steps = int(o.get("max_steps", s.max_steps))
        if o.get("system"):
            s.system = o["system"]
        if o.get("prompt"):
            s.system, s.prompt = system_prompt(repo, agent_from_start(start), "HEAD", o["prompt"])
        if o.get("model_ref"):
            s.model = {"ref": o["model_ref"]}
    s.model = _respec(repo, s.model, start)
    return s


def _respec(repo: Repository, model: dict[str, Any], start: dict[str, Any]) -> dict[str, Any]:
    """Local backend spec for a recorded model (re-resolved from its source, checked
    against the recorded digest) or for a ``model_ref`` override."""
    agent = agent_from_start(start)
    if "ref" in model:
        return resolve_model(repo, model["ref"], "HEAD", agent.meta.get("backend"), agent.meta.get("adapter"))
    src = model.get("source") or {}
    ref = "smollm2" if src.get("builtin") else src.get("path") or agent.meta["model"]
    if model.get("backend") == "openai":
        return {k: v for k, v in model.items() if k not in ("chat_template_digest", "n_ctx")}
    spec = resolve_model(repo, ref, src.get("rev") or "HEAD", agent.meta.get("backend"), agent.meta.get("adapter"))
    if model.get("digest") and spec.get("digest") != model["digest"]:
        raise IntegrityError(f"the session ran model {model['digest'][:19]}, but {ref} is now "
                             f"{str(spec.get('digest'))[:19]}; fork with --model to change it")
    return spec


def fork_overrides(sets: dict[str, Any] | None = None, *, instruction: str | None = None,
                   model: str | None = None, prompt: str | None = None) -> dict[str, Any]:
    """The overrides a fork records: ``sets`` (``--set key=value``) plus the named ones
    (``model`` is recorded as ``model_ref``), checked with :func:`check_overrides`."""
    o = dict(sets or {})
    if instruction is not None:
        o["instruction"] = instruction
    if model is not None:
        o["model_ref"] = model
    if prompt is not None:
        o["prompt"] = prompt
    return check_overrides(o)


def check_overrides(o: dict[str, Any]) -> dict[str, Any]:
    """Refuse overrides a continue could not apply: unknown keys (with a "did you mean"),
    a seed or step count out of range, text that is not text, sampling parameters of the
    wrong type or range. Returns them unchanged."""
    check_keys(o, OVERRIDE_KEYS, "fork overrides")
    for key, lo, hi in (("seed", 0, SEED_MAX), ("max_steps", 1, MAX_STEPS)):
        v = o.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi):
            raise InvalidArtifact(f"override {key} must be an integer in [{lo}, {hi}], got {v!r}", key=key)
    for key in TEXT_OVERRIDES:
        if key in o and not isinstance(o[key], str):
            raise InvalidArtifact(f"override {key} must be text, got {o[key]!r}", key=key)
    check_parameters(_sampling(o), "fork overrides")
    return dict(o)
