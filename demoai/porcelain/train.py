"""Training verbs for the faces: ``train lora`` (train a LoRA, every save interval and the
final adapter a commit on branch ``train/<run>``), ``train resume``, ``train doctor``
(pre-flight checks), ``train plot`` (loss curves as PNG), ``train list`` and ``train show``.

The run never touches HEAD, the index or the working tree: it commits on its own branch,
which ``checkout``, ``diff``, ``merge`` and ``push`` treat like any other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from demoai.store.git.repo import Repository
from demoai.train.doctor import Check, DoctorReport
from demoai.train.doctor import doctor as _doctor
from demoai.train.lora import StepInfo
from demoai.train.plot import plot_curves
from demoai.train.run import (RunInfo, RunResult, list_runs, resume_run, run_curve, run_info,
                              train_run)

__all__ = ["train_lora", "resume", "doctor", "plot", "runs", "show_run", "RunView", "RunResult",
           "RunInfo", "StepInfo", "DoctorReport", "Check", "OnStep", "OnPhase"]

OnStep = Callable[[StepInfo], None] | None
"""Called after every optimizer step (step, loss, lr, tokens/s, ETA); may raise to stop."""
OnPhase = Callable[[str], None] | None
"""Called with a sentence when the run enters a phase (loading, tokenizing, committing)."""


def train_lora(repo: Repository, config: str, *, name: str | None = None, on_step: OnStep = None,
               on_phase: OnPhase = None) -> RunResult:
    """Train the LoRA the ``*.train.yaml`` at ``config`` describes (see
    :func:`demoai.train.run.train_run`)."""
    return train_run(repo, config, name=name, on_step=on_step, on_phase=on_phase)


def resume(repo: Repository, run: str, *, on_step: OnStep = None, on_phase: OnPhase = None) -> RunResult:
    """Continue run ``run`` from its last committed checkpoint."""
    return resume_run(repo, run, on_step=on_step, on_phase=on_phase)


def doctor(repo: Repository, config: str) -> DoctorReport:
    """The pre-flight checks of a training config."""
    return _doctor(repo, config)


def plot(repo: Repository, run_names: list[str], out: str | Path) -> Path:
    """Overlay the loss curves of ``run_names`` in the PNG ``out``."""
    return plot_curves({run_info(repo, r).name: run_curve(repo, r) for r in run_names}, out)


def runs(repo: Repository) -> list[RunInfo]:
    """Every training run, by name."""
    return list_runs(repo)


@dataclass
class RunView:
    """A run, its curve rows and its commits (newest first)."""

    info: RunInfo
    curve: list[dict[str, Any]] = field(default_factory=list)
    commits: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {**self.info.to_dict(), "curve": self.curve, "commits": self.commits}


def show_run(repo: Repository, run: str) -> RunView:
    """Run ``run``: what its branch's tip records, the curve, and its commits back to the
    one it started from."""
    info = run_info(repo, run)
    start = (info.lineage.get("parameters") or {}).get("start")
    commits, cur = [], info.commit
    while cur and cur != start:
        c = repo.commit_info(cur)
        commits.append({"commit": c.id, "message": c.summary})
        cur = c.parents[0] if c.parents else None
    return RunView(info, run_curve(repo, run), commits)
