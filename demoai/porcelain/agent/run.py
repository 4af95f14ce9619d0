"""``demoai agent run``: run an agent in a new session, or continue a (forked) one.

A run holds its model from a :class:`ModelPool` when given one (a face that runs many
keeps one open and closes it when done; without one the model is loaded for the run and
closed after it), and its tools run in a sandbox; each step is committed as it happens.
:func:`check_run` refuses, at once and cheaply, what the run would refuse later (for faces
that queue runs in the background).

A run ends ``finished`` only when the model calls ``finish``; ``max_steps`` when its step
budget ran out first (the task was not declared done); ``failed`` when an error ended it.
"""
from __future__ import annotations

from typing import Any, Callable

from demoai.engines.llm import ModelPool
from demoai.errors import RefConflict
from demoai.objects.textspec import check_parameters
from demoai.porcelain.agent.results import RunResult
from demoai.registry.resolve import check_model_ref, load_agent
from demoai.runtime import agent as _agent
from demoai.store.git.repo import Repository, check_ref_name
from demoai.store.sessions import SESSION_REF, session_exists

__all__ = ["run_agent", "continue_session", "check_run", "ModelPool", "OnEvent"]

OnEvent = Callable[[str, dict[str, Any]], None] | None
"""Progress callback: ``(kind, data)`` for ``run_start``, ``resume``, ``model_response``
(step, text, timings, invalid: True for a reply that is no tool call), ``error`` (step,
where, message: a reply that was not run, or the model error that ended the run),
``tool_result`` (step, tool, args, result), ``finish`` (step, answer) and ``stopped``
(step, max_steps: the budget ran out without a finish call)."""


def check_run(repo: Repository, agent_path: str, *, rev: str | None = "HEAD", name: str | None = None,
              model: str | None = None, params: dict[str, Any] | None = None) -> str:
    """Refuse now what :func:`run_agent` would refuse (no agent at ``agent_path``, a
    ``model`` (or the agent's own) that names no model, bad sampling ``params``, a session ``name`` that is
    invalid or taken) without loading anything heavy. Returns the session name the run
    will use (``name``, or a fresh one)."""
    agent, _ = load_agent(repo, agent_path, rev)
    check_model_ref(repo, model or agent.meta.get("model"), rev)
    check_parameters(params, "run parameters")
    name = name or _agent.session_name_for(agent_path)
    check_ref_name(name, "session")
    if session_exists(repo, name):
        raise RefConflict(f"a session named {name!r} already exists", ref=SESSION_REF + name,
                          session=name)
    return name


def run_agent(repo: Repository, agent_path: str, *, task: str = "", rev: str | None = "HEAD",
              name: str | None = None, sandbox: str | None = None, model: str | None = None,
              max_steps: int | None = None, seed: int | None = None,
              params: dict[str, Any] | None = None, on_event: OnEvent = None,
              pool: ModelPool | None = None) -> RunResult:
    """Run the agent at ``agent_path`` (an ``*.agent.yaml``) on ``task`` in a new session
    ``name``. ``rev`` None runs the file in the working tree, committed or not (else the
    one at HEAD); a ``rev`` runs the one committed there (else the working-tree file).
    Models are always taken committed (at ``rev``, or HEAD), or embedded (``smollm2``).
    ``sandbox``, ``model``, ``max_steps``, ``seed`` and sampling ``params`` replace the
    agent's own (and are recorded as used). The model is held from ``pool`` (default: loaded for this run)."""
    return RunResult.from_dict(_agent.run_agent(
        repo, agent_path, task=task, rev=rev, name=name, sandbox=sandbox, model=model,
        max_steps=max_steps, seed=seed, params=params, on_event=on_event, pool=pool))


def continue_session(repo: Repository, name: str, *, max_steps: int | None = None,
                     sandbox: str | None = None, on_event: OnEvent = None,
                     pool: ModelPool | None = None) -> RunResult:
    """Continue session ``name`` from its last step, its forks' overrides applied, its
    workspace restored; ``max_steps`` more steps at most (default: the run's own bound)."""
    return RunResult.from_dict(_agent.continue_session(
        repo, name, max_steps=max_steps, sandbox=sandbox, on_event=on_event, pool=pool))
