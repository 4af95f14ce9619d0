"""``demoai fork SESSION@STEP [NAME]``: a new session sharing every event up to STEP, with
overrides its continue applies (instruction, system, prompt, model, seed, max_steps,
sampling). The CLI and the HTTP API fork through this one function: the overrides are
checked before anything is written."""
from __future__ import annotations

from typing import Any

from demoai.porcelain.agent.results import SessionFork
from demoai.runtime.fork import fork
from demoai.runtime.settings import fork_overrides
from demoai.store.git.repo import Repository

__all__ = ["fork_session"]


def fork_session(repo: Repository, source: str, new_name: str | None = None, *,
                 step: int | None = None, sets: dict[str, Any] | None = None,
                 instruction: str | None = None, model: str | None = None,
                 prompt: str | None = None) -> SessionFork:
    """Fork ``source`` (``NAME@STEP``, or ``NAME`` with ``step``; default: its last step)
    as ``new_name`` (default: ``NAME-fork-N``). ``sets`` are ``--set key=value`` overrides;
    ``instruction`` is given to the model as the next user message; ``model`` (a model
    path or ``smollm2``) and ``prompt`` (a Prompt path) replace the run's. Bad overrides
    raise InvalidArtifact (unknown keys with a "did you mean") before anything is written."""
    overrides = fork_overrides(sets, instruction=instruction, model=model, prompt=prompt)
    return SessionFork.from_dict(fork(repo, source, new_name, step=step, overrides=overrides))
