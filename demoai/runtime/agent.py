"""The agent loop: model call -> tool call -> observation -> ... -> finish, each step
committed to the session's ref as it happens (a crash loses at most the step in flight).

A run starts with a ``run_start`` event that locks every digest and setting (agent text,
system prompt, model weights and chat template, sampling parameters, seed, tools and their
schema, sandbox backend and limits). ``continue_session`` picks up a forked session where
its fork left it: transcript rebuilt from the events, workspace restored from the step's
tree, overrides applied.
"""
from __future__ import annotations

import atexit
import platform
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from demoai import __version__
from demoai.errors import ContextOverflow, DemoAIError, ModelError, SandboxError
from demoai.registry.resolve import load_agent, resolve_model, system_prompt
from demoai.store.sessions.log import (Event, SessionLog, blob_ids, create_session, open_session,
                                    workspace_tree)
from demoai.runtime.tools import (execute, files_changed, observation_text, parse_call,
                                  schema_digest, tool_instructions, tool_schema)
from demoai.store.git.repo import Repository

__all__ = ["run_agent", "continue_session", "transcript", "RunSettings"]

OnEvent = Callable[[str, dict[str, Any]], None] | None
_SAMPLING = ("temperature", "top_p", "top_k", "max_tokens", "repeat_penalty", "min_p", "stop",
             "presence_penalty", "frequency_penalty")
_DEFAULT_PARAMS = {"temperature": 0.0, "max_tokens": 200}


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
        return tool_schema(self.tools)

    def record(self, backend: Any) -> dict[str, Any]:
        model = {k: v for k, v in self.model.items() if k not in ("path", "adapter_path", "api_key")}
        model.update({"chat_template_digest": getattr(backend, "chat_template_digest", None),
                      "n_ctx": getattr(backend, "n_ctx", None)})
        return {"agent": self.agent, "task": self.task, "system": self.system, "tools": self.tools,
                "tool_schema": schema_digest(self.schema()), "params": self.params, "seed": self.seed,
                "max_steps": self.max_steps, "sandbox": self.sandbox, "model": model,
                "prompt": self.prompt, "engine": {"demoai": __version__, "python": platform.python_version(),
                                                  "machine": platform.machine()}}


_BACKENDS: dict[str, Any] = {}


@atexit.register
def _close_backends() -> None:
    """Free loaded models before interpreter teardown (their finalizers need the modules)."""
    while _BACKENDS:
        _, b = _BACKENDS.popitem()
        try:
            b.close()
        except Exception:
            pass


def _backend(spec: dict[str, Any]) -> Any:
    """One loaded model per spec per process (loading is the slow part of a short run)."""
    from demoai.engines.llm import open_backend
    key = repr(sorted(spec.items()))
    if key not in _BACKENDS:
        _BACKENDS[key] = open_backend({k: v for k, v in spec.items() if k != "source"})
    return _BACKENDS[key]


def _sandbox(settings: RunSettings) -> Any:
    from demoai.engines.sandbox import SandboxLimits, open_sandbox
    limits = SandboxLimits.from_dict({k: v for k, v in settings.sandbox.items() if k != "backend"})
    return open_sandbox(settings.sandbox.get("backend"), limits)


def _settings(repo: Repository, agent_path: str, task: str, rev: str, *, sandbox: str | None,
              model: str | None, max_steps: int | None) -> RunSettings:
    agent, src = load_agent(repo, agent_path, rev)
    m = agent.meta
    system, pin = system_prompt(repo, agent, rev)
    tools = list(dict.fromkeys([*m["tools"], "finish"]))
    params = {**_DEFAULT_PARAMS, **{k: v for k, v in m["parameters"].items() if k in _SAMPLING}}
    sb = {"backend": sandbox or m["sandbox"].get("backend", "namespace"),
          **{k: v for k, v in m["sandbox"].items() if k != "backend"}}
    spec = resolve_model(repo, model or m["model"], rev, m.get("backend"), m.get("adapter"))
    return RunSettings(agent={"digest": agent.digest, "text": agent.text, **src}, task=task,
                       system=system, tools=tools, params=params, seed=int(m.get("seed") or 0),
                       max_steps=max_steps or m["max_steps"], sandbox=sb, model=spec, prompt=pin)


def run_agent(repo: Repository, agent_path: str, *, task: str = "", rev: str = "HEAD",
              name: str | None = None, sandbox: str | None = None, model: str | None = None,
              max_steps: int | None = None, seed: int | None = None,
              params: dict[str, Any] | None = None, on_event: OnEvent = None) -> dict[str, Any]:
    """Run the agent at ``agent_path`` on ``task`` in a new session; returns its summary.
    ``seed`` and sampling ``params`` replace the agent's own (and are recorded as used)."""
    s = _settings(repo, agent_path, task, rev, sandbox=sandbox, model=model, max_steps=max_steps)
    s.params.update(params or {})
    if seed is not None:
        s.seed = seed
    backend = _backend(s.model)
    stem = agent_path.rsplit("/", 1)[-1].split(".")[0]
    name = name or f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    meta = {"name": name, "agent": s.agent["path"], "task": task[:200], "model": s.model.get("digest"),
            "sandbox": s.sandbox["backend"]}
    with _sandbox(s) as sb:
        log = create_session(repo, name, agent=s.agent["digest"], meta=meta, start=s.record(backend))
        if on_event:
            on_event("run_start", {"session": name})
        messages = [{"role": "system", "content": _system_text(s)},
                    {"role": "user", "content": task or "Do your job."}]
        return _loop(repo, log, backend, sb, s, [], messages, {}, on_event)


def _system_text(s: RunSettings) -> str:
    return (s.system.strip() + "\n\n" + tool_instructions(s.tools)).strip()


def transcript(events: list[Event]) -> tuple[list[dict], list[dict]]:
    """(messages the model has seen, messages due at the next request) from events."""
    sent: list[dict] = []
    pending: list[dict] = []
    for e in events:
        b = e.body
        if e.type == "model_request":
            sent.extend(b.get("messages", []))
            pending = []
        elif e.type == "model_response":
            sent.append({"role": "assistant", "content": b.get("text", "")})
        elif e.type == "tool_result":
            pending = [{"role": "user", "content": observation_text(b.get("tool", "?"), b)}]
        elif e.type == "error" and b.get("where") == "tool_call":
            pending = [{"role": "user", "content": f"Error: {b.get('message')}"}]
        elif e.type == "fork" and b.get("overrides", {}).get("instruction"):
            pending.append({"role": "user", "content": b["overrides"]["instruction"]})
    return sent, pending


def continue_session(repo: Repository, name: str, *, max_steps: int | None = None,
                     sandbox: str | None = None, on_event: OnEvent = None) -> dict[str, Any]:
    """Continue a (forked) session from its last step, applying its fork's overrides."""
    log = open_session(repo, name, writable=True)
    try:
        events = log.events()
        start = next(e.body for e in events if e.type == "run_start")
        s = RunSettings(agent=start["agent"], task=start["task"], system=start["system"],
                        tools=start["tools"], params=dict(start["params"]), seed=start["seed"],
                        max_steps=start["max_steps"], sandbox=dict(start["sandbox"]),
                        model=dict(start["model"]), prompt=start.get("prompt"))
        for e in events:
            if e.type in ("fork", "resume"):
                o = e.body.get("overrides", {})
                s.params.update({k: v for k, v in o.items() if k in _SAMPLING})
                s.seed = int(o.get("seed", s.seed))
                s.max_steps = int(o.get("max_steps", s.max_steps))
                if o.get("system"):
                    s.system = o["system"]
                if o.get("prompt"):
                    agent_art = _agent_from(start)
                    s.system, s.prompt = system_prompt(repo, agent_art, "HEAD", o["prompt"])
                if o.get("model_ref"):
                    s.model = {"ref": o["model_ref"]}
        if max_steps:
            s.max_steps = log.steps + max_steps
        if sandbox:
            s.sandbox["backend"] = sandbox
        s.model = _respec(repo, s.model, start)
        backend = _backend(s.model)
        sent, pending = transcript(events)
        if sent and sent[0]["role"] == "system":
            sent[0] = {"role": "system", "content": _system_text(s)}
        with _sandbox(s) as sb:
            files = log.workspace_at()
            if files:
                sb.put_files(files)
            ids = blob_ids(files)             # already stored: they came from the step's tree
            log.append("resume", settings=s.record(backend), restored_files=len(files))
            if on_event:
                on_event("resume", {"session": name, "step": log.steps})
            return _loop(repo, log, backend, sb, s, sent, pending, ids, on_event)
    finally:
        log.close()


def _agent_from(start: dict[str, Any]) -> Any:
    from demoai.objects import Agent
    return Agent.from_text(start["agent"]["text"], "agent")


def _respec(repo: Repository, model: dict[str, Any], start: dict[str, Any]) -> dict[str, Any]:
    """Local backend spec for a recorded model (re-resolved from its source, checked
    against the recorded digest) or for a ``model_ref`` override."""
    agent = _agent_from(start)
    if "ref" in model:
        return resolve_model(repo, model["ref"], "HEAD", agent.meta.get("backend"), agent.meta.get("adapter"))
    src = model.get("source") or {}
    ref = "smollm2" if src.get("builtin") else src.get("path") or agent.meta["model"]
    if model.get("backend") == "openai":
        return {k: v for k, v in model.items() if k not in ("chat_template_digest", "n_ctx")}
    spec = resolve_model(repo, ref, src.get("rev") or "HEAD", agent.meta.get("backend"), agent.meta.get("adapter"))
    if model.get("digest") and spec.get("digest") != model["digest"]:
        from demoai.errors import IntegrityError
        raise IntegrityError(f"the session ran model {model['digest'][:19]}, but {ref} is now "
                             f"{str(spec.get('digest'))[:19]}; fork with --model to change it")
    return spec


def _loop(repo: Repository, log: SessionLog, backend: Any, sb: Any, s: RunSettings,
          sent: list[dict], pending: list[dict], ids: dict[str, str], on_event: OnEvent) -> dict[str, Any]:
    schema = s.schema()
    sdig = schema_digest(schema)
    messages = list(sent)
    status, answer = "finished", None
    try:
        while log.steps < s.max_steps:
            step = log.steps + 1
            messages += pending
            params = {**s.params, "seed": s.seed + step}
            log.append("model_request", messages=pending, n_messages=len(messages), params=params, schema=sdig)
            pending = []
            try:
                res = backend.chat(messages, params=params, json_schema=schema)
            except ModelError as e:
                if isinstance(e, ContextOverflow) or getattr(e, "text", None) is None:
                    log.append("error", where="model", code=e.code, message=str(e))
                    status = "failed"
                    log.commit_step(status="failed", message=f"step {step}: model error")
                    break
                # Output that broke the schema (cut off at max_tokens): shown to the model.
                log.append("model_response", text=e.text, finish_reason=getattr(e, "finish_reason", None),
                           invalid=True)
                log.append("error", where="tool_call", code=e.code, message=str(e))
                messages.append({"role": "assistant", "content": e.text})
                pending = [{"role": "user", "content": f"Error: {e}"}]
                log.commit_step(message=f"step {step}: invalid model output")
                continue
            log.append("model_response", text=res.text, finish_reason=res.finish_reason,
                       prompt_tokens=res.prompt_tokens, completion_tokens=res.completion_tokens,
                       timings=res.timings, record=res.record)
            messages.append({"role": "assistant", "content": res.text})
            if on_event:
                on_event("model_response", {"step": step, "text": res.text, "timings": res.timings})
            try:
                tool, args = parse_call(res.text, s.tools)
            except ValueError as e:
                log.append("error", where="tool_call", message=str(e))
                pending = [{"role": "user", "content": f"Error: {e}"}]
                log.commit_step(message=f"step {step}: invalid tool call")
                continue
            log.append("tool_call", tool=tool, args=args)
            if tool == "finish":
                answer = args["answer"]
                log.append("run_end", status="finished", reason="finish", answer=answer)
                log.commit_step(status="finished", message=f"step {step}: finish")
                if on_event:
                    on_event("finish", {"step": step, "answer": answer})
                break
            try:
                obs = execute(sb, tool, args, s.sandbox.get("timeout_s"))
                files = sb.export_files()
            except SandboxError as e:
                obs, files = {"exit_code": -1, "stdout": "", "stderr": str(e), "error": e.code}, None
            tree = None
            if files is not None:
                tree, new_ids = workspace_tree(repo, files)
                obs["files"] = files_changed(ids, new_ids)
                ids = new_ids
            log.append("tool_result", tool=tool, **obs)
            pending = [{"role": "user", "content": observation_text(tool, obs)}]
            log.commit_step(workspace=tree if files is not None else None,
                            message=f"step {step}: {tool} -> exit {obs.get('exit_code')}")
            if on_event:
                on_event("tool_result", {"step": step, "tool": tool, "args": args, "result": obs})
        else:
            log.append("run_end", status="finished", reason="max_steps", steps=log.steps, same_step=True)
            log.commit_step(status="finished", same_step=True, message="end: max steps")
    except KeyboardInterrupt:
        same = not log.in_flight
        log.append("run_end", status="interrupted", reason="interrupted", same_step=same)
        log.commit_step(status="interrupted", same_step=same, message="end: interrupted")
        raise
    except Exception as e:           # recorded, then raised: the session says why it stopped
        same = not log.in_flight
        code = e.code if isinstance(e, DemoAIError) else type(e).__name__
        log.append("error", where="runtime", code=code, message=str(e), same_step=same)
        log.commit_step(status="failed", same_step=same, message="end: error")
        raise
    finally:
        log.close()
    info = log.info()
    return {"session": info.name, "steps": info.steps, "status": status if status == "failed" else info.status,
            "answer": answer, "head": info.head, "commit": info.commit}
