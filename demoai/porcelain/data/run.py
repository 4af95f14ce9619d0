"""``demoai data run STEPS.yaml``: the preparation verbs as a sequence of steps
(:mod:`demoai.prep.steps`), the whole file checked before the first step runs, each step
committed in turn.
"""
from __future__ import annotations

import os
from typing import Callable

from demoai.errors import DemoAIError, InvalidArtifact
from demoai.porcelain.data.prepare import (
    StepResult, clean, contamination, dedup, rel_path, sidecar_path, split,
)
from demoai.porcelain.data.stats import stats
from demoai.prep.steps import Step, check_plan, load_steps
from demoai.store import Repository

__all__ = ["run_steps"]

Progress = Callable[[str, int, int], None] | None


def _source_of(repo: Repository, path: str, rev: str) -> tuple[str, str]:
    c = repo.resolve(rev)
    return c, repo.artifact_at(c, rel_path(repo, path)).digest


def _run_one(repo: Repository, step: Step, progress: Progress) -> StepResult:
    from demoai.porcelain.data import generate
    p = dict(step.params)
    path = p.pop("path")
    for k in ("against", "templates", "blocklist"):
        if isinstance(p.get(k), str):
            p[k] = [p[k]]
    if step.verb == "clean":
        rules = p.pop("rules")
        return clean(repo, path, rules if isinstance(rules, list) else [rules],
                     progress=progress, **p)
    if step.verb == "dedup":
        return dedup(repo, path, progress=progress, **p)
    if step.verb == "split":
        if isinstance(p.get("names"), str):
            p["names"] = p["names"].split(",")
        return split(repo, path, p.pop("ratios"), **p)
    if step.verb == "contamination":
        rep = contamination(repo, path, p.pop("against"), progress=progress, **p)
        if rep.removed is not None:
            rep.removed.summary["hits"] = len(rep.hits)
            return rep.removed
        return StepResult("contamination", rep.path, rep.commit, "", rep.rows, rep.rows,
                          up_to_date=True, summary={"contaminated": rep.contaminated})
    if step.verb == "stats":
        plot = p.pop("plot", None)
        st = stats(repo, path, save=True, plot_dir=plot, **p)
        return StepResult("stats", st.path, st.commit, st.digest, st.stats.get("rows", 0),
                          st.stats.get("rows", 0), commit=st.saved, up_to_date=st.saved is None,
                          outputs=[sidecar_path(st.path, "stats.parquet")] if st.saved else [],
                          summary={"source": st.source, "stats": st.stats, "note": st.note})
    commit_id, digest = _source_of(repo, path, p.get("rev", "HEAD"))
    if step.verb == "augment":
        a = generate.augment(repo, path, progress=progress, **p)
        return StepResult("augment", a.path, commit_id, digest, a.made + a.rejected, a.made,
                          commit=a.commit, up_to_date=a.up_to_date, outputs=a.outputs,
                          summary={"source": a.source, "method": a.method,
                                   "rejected": a.rejected, "reasons": a.reasons})
    r = generate.self_instruct(repo, path, p.pop("out"), progress=progress, **p)
    return StepResult("self-instruct", r.path, commit_id, digest, r.calls, r.kept,
                      commit=r.commit, up_to_date=r.up_to_date, outputs=r.outputs,
                      summary={"model": r.model, "rejected": r.rejected, "reasons": r.reasons})


def run_steps(repo: Repository, steps_file: str | os.PathLike, *, progress: Progress = None,
              on_step: Callable[[Step, StepResult], None] | None = None) -> list[StepResult]:
    """Run the steps of a step file (:mod:`demoai.prep.steps`) in order, each committed in
    turn. The whole file is checked before the first step runs (verbs, parameters and
    their values, the datasets and columns each step reads); a failing step stops the run
    (the steps before it stay committed) and its error names the step."""
    steps = load_steps(steps_file)
    check_plan(repo, steps, lambda p: rel_path(repo, p))
    out = []
    for s in steps:
        try:
            r = _run_one(repo, s, progress)
        except DemoAIError as e:
            e.message = f"step {s.number} ({s.verb}): {e.message}"
            e.args = (e.message,)
            raise
        except TypeError as e:
            raise InvalidArtifact(f"step {s.number} ({s.verb}): {e}", step=s.number) from None
        out.append(r)
        if on_step is not None:
            on_step(s, r)
    return out


