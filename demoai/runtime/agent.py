"""The agent loop: model call -> tool call -> observation -> ... -> finish, each step
committed to the session's ref as it happens (a crash loses at most the step in flight).

A run starts with a ``run_start`` event that locks every digest and setting (agent text,
system prompt, model weights and chat template, sampling parameters, seed, tools and their
schema, sandbox backend and limits). ``continue_session`` picks up a forked session where
its fork left it: transcript rebuilt from the events, workspace restored from the step's
tree, overrides applied.

A run ends ``finished`` only when the model calls ``finish``; one whose step budget runs
out first ends ``max_steps`` (the task was not declared done), one an error stops ends
``failed``. A reply that is no valid tool call (cut at ``max_tokens``) is recorded with its
usage, nothing is run, and the model is told why at the next step.
"""
from __future__ import annotations

from typing import Any, Callable

from demoai.engines.llm import ModelPool, use_model
from demoai.errors import ContextOverflow, DemoAIError, ModelError, SandboxError
from demoai.objects.textspec import check_parameters
from demoai.runtime.settings import (RunSettings, apply_overrides, settings_for_agent,
                                     settings_from_start)
from demoai.runtime.tools import (execute, files_changed, observation_text, parse_call,
                                  schema_digest, tool_instructions)
from demoai.store.git.repo import Repository
from demoai.store.sessions.events import Event
from demoai.store.sessions.log import (SessionLog, create_session, new_session_name,
                                       open_session)
from demoai.store.sessions.steps import blob_ids, workspace_tree

__all__ = ["run_agent", "continue_session", "transcript", "session_name_for", "RunSettings",
           "FINISHED", "STOPPED", "invalid_reply_message"]

OnEvent = Callable[[str, dict[str, Any]], None] | None

FINISHED = "finished"   # the model called finish
STOPPED = "max_steps"   # the step budget ran out without a finish call
# A run's status: FINISHED, STOPPED, "failed" (an error ended it), "interrupted".


def _sandbox(settings: RunSettings) -> Any:
    from demoai.engines.sandbox import SandboxLimits, open_sandbox
    limits = SandboxLimits.from_dict({k: v for k, v in settings.sandbox.items() if k != "backend"})
    return open_sandbox(settings.sandbox.get("backend"), limits)


def session_name_for(agent_path: str) -> str:
    """A fresh session name for a run of the agent at ``agent_path`` (its file stem, the
    time and a random suffix)."""
    return new_session_name(agent_path.rsplit("/", 1)[-1].split(".")[0])


def run_agent(repo: Repository, agent_path: str, *, task: str = "", rev: str | None = "HEAD",
              name: str | None = None, sandbox: str | None = None, model: str | None = None,
              max_steps: int | None = None, seed: int | None = None,
              params: dict[str, Any] | None = None, on_event: OnEvent = None,
              pool: ModelPool | None = None) -> dict[str, Any]:
    """Run the agent at ``agent_path`` on ``task`` in a new session; returns its summary.
    ``seed`` and sampling ``params`` replace the agent's own (and are recorded as used).
    The model is held from ``pool`` for the run (without one: loaded for the run alone)."""
    s = settings_for_agent(repo, agent_path, task, rev, sandbox=sandbox, model=model, max_steps=max_steps)
    s.params.update(check_parameters(params, "run parameters"))
    if seed is not None:
        s.seed = seed
    name = name or session_name_for(agent_path)
    meta = {"name": name, "agent": s.agent["path"], "task": task[:200], "model": s.model.get("digest"),
            "sandbox": s.sandbox["backend"]}
    with use_model(s.model, pool) as backend, _sandbox(s) as sb:
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
            pending = [{"role": "user", "content": b.get("feedback") or f"Error: {b.get('message')}"}]
        elif e.type == "fork" and b.get("overrides", {}).get("instruction"):
            pending.append({"role": "user", "content": b["overrides"]["instruction"]})
    return sent, pending


def continue_session(repo: Repository, name: str, *, max_steps: int | None = None,
                     sandbox: str | None = None, on_event: OnEvent = None,
                     pool: ModelPool | None = None) -> dict[str, Any]:
    """Continue a (forked) session from its last step, applying its fork's overrides
    (the model held from ``pool``, as in :func:`run_agent`)."""
    log = open_session(repo, name, writable=True)
    try:
        events = log.events()
        start = next(e.body for e in events if e.type == "run_start")
        s = apply_overrides(repo, settings_from_start(start), start,
                            [e.body.get("overrides", {}) for e in events if e.type in ("fork", "resume")])
        if max_steps:
            s.max_steps = log.steps + max_steps
        if sandbox:
            s.sandbox["backend"] = sandbox
        sent, pending = transcript(events)
        if sent and sent[0]["role"] == "system":
            sent[0] = {"role": "system", "content": _system_text(s)}
        with use_model(s.model, pool) as backend, _sandbox(s) as sb:
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


def _loop(repo: Repository, log: SessionLog, backend: Any, sb: Any, s: RunSettings,
          sent: list[dict], pending: list[dict], ids: dict[str, str], on_event: OnEvent) -> dict[str, Any]:
    schema = s.schema()
    sdig = schema_digest(schema)
    messages = list(sent)
    status, answer = STOPPED, None

    def emit(kind: str, **data: Any) -> None:
        if on_event:
            on_event(kind, data)

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
                    emit("error", step=step, where="model", message=str(e))
                    break
                # A reply that is no tool call (cut off at max_tokens): recorded with its
                # usage, nothing run, and the model told why so that it can try again.
                message, feedback = invalid_reply_message(e, params.get("max_tokens"))
                log.append("model_response", text=e.text, finish_reason=getattr(e, "finish_reason", None),
                           invalid=True, **_usage(e.fields))
                log.append("error", where="tool_call", code=e.code, message=message, feedback=feedback)
                messages.append({"role": "assistant", "content": e.text})
                pending = [{"role": "user", "content": feedback}]
                log.commit_step(message=f"step {step}: invalid model output")
                emit("model_response", step=step, text=e.text, timings=e.fields.get("timings") or {},
                     invalid=True)
                emit("error", step=step, where="tool_call", message=message)
                continue
            log.append("model_response", text=res.text, finish_reason=res.finish_reason,
                       prompt_tokens=res.prompt_tokens, completion_tokens=res.completion_tokens,
                       timings=res.timings, record=res.record)
            messages.append({"role": "assistant", "content": res.text})
            emit("model_response", step=step, text=res.text, timings=res.timings, invalid=False)
            try:
                tool, args = parse_call(res.text, s.tools)
            except ValueError as e:
                message = f"{e}; nothing was run: reply with exactly one JSON tool call"
                log.append("error", where="tool_call", message=message)
                pending = [{"role": "user", "content": f"Error: {message}"}]
                log.commit_step(message=f"step {step}: invalid tool call")
                emit("error", step=step, where="tool_call", message=message)
                continue
            log.append("tool_call", tool=tool, args=args)
            if tool == "finish":
                answer = args["answer"]
                status = FINISHED
                log.append("run_end", status=FINISHED, reason="finish", answer=answer)
                log.commit_step(status=FINISHED, message=f"step {step}: finish")
                emit("finish", step=step, answer=answer)
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
            emit("tool_result", step=step, tool=tool, args=args, result=obs)
        else:
            # The step budget ran out before the model called finish: the task was not
            # declared done, so the run did not finish (its own status, not "finished").
            log.append("run_end", status=STOPPED, reason="max_steps", steps=log.steps, same_step=True)
            log.commit_step(status=STOPPED, same_step=True, message="end: max steps, no finish")
            emit("stopped", step=log.steps, max_steps=s.max_steps)
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
    return {"session": info.name, "steps": info.steps, "status": status, "answer": answer,
            "head": info.head, "commit": info.commit}


def _usage(fields: dict[str, Any]) -> dict[str, Any]:
    """The usage a failed call's ModelError carries (what a model_response records)."""
    return {k: fields[k] for k in ("prompt_tokens", "completion_tokens", "timings", "record")
            if fields.get(k) is not None}


def invalid_reply_message(e: ModelError, max_tokens: int | None) -> tuple[str, str]:
    """(what a reply that is no tool call is recorded as, what the model is told). The
    model's words carry no numbers: a small model tends to copy them into its next call."""
    if getattr(e, "cut", False) or getattr(e, "finish_reason", None) == "length":
        n = e.fields.get("completion_tokens") or max_tokens
        return (f"the reply stopped at the max_tokens limit ({n} tokens) before the JSON tool call "
                "was complete, so nothing was run",
                "Error: your reply was cut off before its JSON was complete, so nothing was run. "
                "Reply with one short, complete tool call.")
    return (f"{e}; nothing was run",
            "Error: your reply was not a valid tool call, so nothing was run. Reply with exactly "
            "one JSON tool call.")
