"""The runtime calls behind the agent endpoints: start a run (with sampling overrides),
continue a session, fork one with checked overrides, and the guards around them."""
from __future__ import annotations

from typing import Any

from demoai.errors import InvalidArtifact, RefConflict
from demoai.objects.textspec import check_parameters
from demoai.runtime.agent import continue_session, run_agent
from demoai.store.sessions.log import fork_session, list_sessions, session_exists
from demoai.server.follow import manifest_at, tip_of
from demoai.server.runs import RunManager
from demoai.server.schemas import SEED_MAX
from demoai.store.git.repo import Repository, check_ref_name

__all__ = ["run", "resume", "fork", "fork_overrides", "free_name", "idle", "status", "step_commit"]

SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens",
            "presence_penalty", "frequency_penalty", "stop")
TEXT_OVERRIDES = ("instruction", "system", "prompt", "model_ref")


def run(repo: Repository, agent_path: str, *, task: str, rev: str, name: str, sandbox: str | None,
        model: str | None, max_steps: int | None, seed: int | None,
        params: dict[str, Any]) -> dict[str, Any]:
    """``run_agent`` with a seed and sampling parameters that replace the agent's own."""
    return run_agent(repo, agent_path, task=task, rev=rev, name=name, sandbox=sandbox,
                     model=model, max_steps=max_steps, seed=seed, params=params)


def resume(repo: Repository, name: str, max_steps: int | None, sandbox: str | None) -> dict[str, Any]:
    """Continue ``name`` from its last step (its fork's overrides applied)."""
    return continue_session(repo, name, max_steps=max_steps, sandbox=sandbox)


def fork_overrides(sets: dict[str, Any], instruction: str | None, model: str | None,
                   prompt: str | None) -> dict[str, Any]:
    """The overrides a fork records, checked now so that the continue cannot fail on them."""
    o = dict(sets)
    if instruction is not None:
        o["instruction"] = instruction
    if model is not None:
        o["model_ref"] = model
    if prompt is not None:
        o["prompt"] = prompt
    for key, lo, hi in (("seed", 0, SEED_MAX), ("max_steps", 1, 10_000)):
        v = o.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi):
            raise InvalidArtifact(f"override {key} must be an integer in [{lo}, {hi}], got {v!r}", key=key)
    for key in TEXT_OVERRIDES:
        if key in o and not isinstance(o[key], str):
            raise InvalidArtifact(f"override {key} must be text, got {o[key]!r}", key=key)
    check_parameters({k: v for k, v in o.items() if k in SAMPLING}, "fork overrides")
    return o


def free_name(repo: Repository, base: str) -> str:
    """``BASE-1``, ``BASE-2``, ...: the first session name not taken."""
    n = 1
    while session_exists(repo, f"{base}-{n}"):
        n += 1
    return f"{base}-{n}"


def fork(repo: Repository, name: str, step: int | None, new_name: str | None,
         overrides: dict[str, Any]) -> dict[str, Any]:
    """Fork ``name`` at ``step`` (None: the last) as ``new_name`` (None: ``NAME-fork-N``)."""
    new = new_name or free_name(repo, f"{name}-fork")
    check_ref_name(new, "session")
    check_ref_name(name, "session")
    spec = name if step is None else f"{name}@{step}"
    with fork_session(repo, spec, new, overrides=overrides) as log:
        info = log.info().to_dict()
    return {"session": new, "from": info["parent"], "commit": info["commit"],
            "steps": info["steps"], "overrides": overrides}


def status(repo: Repository, runs: RunManager, name: str, manifest_status: str) -> str:
    """A session's status: running when this server writes it; for one its manifest says is
    running, what the session's lock says (another process, or a run that died)."""
    if runs.active(name):
        return "running"
    if manifest_status == "running":
        for s in list_sessions(repo):
            if s.name == name:
                return s.status
    return manifest_status


def idle(repo: Repository, runs: RunManager, *names: str) -> None:
    """Refuse (409) to open sessions being written: opening one repairs its cache, which
    would drop the step in flight."""
    for name in names:
        tip = tip_of(repo, name)
        running = runs.active(name) or (
            tip is not None and status(repo, runs, name, manifest_at(repo, tip).status) == "running")
        if running:
            raise RefConflict(f"session {name!r} is running; try again when it ends", session=name)


def step_commit(repo: Repository, tip: str, step: int) -> str | None:
    """The commit holding the latest state of ``step`` on the chain ending at ``tip``."""
    sha = tip.encode() if tip else None
    while sha is not None:
        steps = manifest_at(repo, sha.decode()).steps
        if steps == step:
            return sha.decode()
        if steps < step:
            return None
        c = repo.git[sha]
        sha = c.parents[0] if c.parents else None
    return None
