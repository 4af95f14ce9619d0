"""Training verbs for the faces: ``train lora`` (train a LoRA, every save interval and the
final adapter a commit on branch ``train/<run>``), ``train resume``, ``train doctor``
(pre-flight checks), ``train plot`` (loss curves as PNG), ``train list``, ``train show`` and
``train compare`` (two runs: their configs' differences and final losses, what ``demoai
diff train/A train/B`` shows too).

The run never touches HEAD, the index or the working tree: it commits on its own branch,
which ``checkout``, ``diff``, ``merge`` and ``push`` treat like any other.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from demoai.errors import InvalidArtifact, RefNotFound
from demoai.store.git.repo import Repository
from demoai.train.config import load_config
from demoai.train.doctor import Check, DoctorReport
from demoai.train.doctor import doctor as _doctor
from demoai.train.lora import StepInfo
from demoai.train.plot import plot_curves, scan_rows
from demoai.train.plot import plot_scans as _plot_scans
from demoai.train.run import (RUN_PREFIX, RUNS_DIR, RunInfo, RunResult, list_runs, resume_run,
                              run_curve, run_info, train_run)

__all__ = ["train_lora", "resume", "doctor", "plot", "plot_scans", "runs", "show_run", "RunView", "RunResult",
           "RunInfo", "StepInfo", "DoctorReport", "Check", "OnStep", "OnPhase", "run_name",
           "compare_runs", "RunComparison", "looks_like_run"]

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


def plot_scans(repo: Repository, run: str, out: str | Path) -> Path:
    """Draw the scans run ``run`` recorded (``scan_every``) to the PNG ``out``: per-layer LoRA
    weight and gradient norms over the steps, and a layer x module heatmap of the last scan.
    ``PathNotFound`` when the run recorded no scans."""
    return _plot_scans(scan_rows(repo, run), out, title=f"scans of run {run.removeprefix('train/')}")


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


def looks_like_run(spec: str) -> bool:
    """Whether ``spec`` is written as a run (``train/NAME``, ``refs/heads/train/NAME`` or
    the run folder ``runs/NAME``); cheap, nothing is read."""
    return spec.startswith(("train/", RUN_PREFIX, f"{RUNS_DIR}/"))


def run_name(repo: Repository, spec: str) -> str | None:
    """The run ``spec`` names (``train/NAME``, ``refs/heads/train/NAME``, ``runs/NAME`` or a
    path inside it), None when no run branch of that name exists."""
    spec = spec.strip().rstrip("/")
    if spec.startswith(f"{RUNS_DIR}/"):
        name = spec[len(RUNS_DIR) + 1:].split("/", 1)[0]
    elif spec.startswith((RUN_PREFIX, "train/")):
        name = spec.removeprefix(RUN_PREFIX).removeprefix("train/")
    else:
        return None
    try:
        return run_info(repo, name).name
    except (RefNotFound, InvalidArtifact):
        return None


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@dataclass
class RunComparison:
    """Two runs side by side: the settings that differ (``key -> [a, b]``, from the checked
    configs with their defaults), the inputs whose digests differ, the final numbers
    (loss, validation loss, steps, tokens/s, wall time) and the configs' text diff."""

    a: RunInfo
    b: RunInfo
    settings: dict[str, list[Any]]
    inputs: dict[str, list[Any]]
    finals: dict[str, list[Any]]
    config_diff: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"a": self.a.name, "b": self.b.name, "commits": [self.a.commit, self.b.commit],
                "settings": self.settings, "inputs": self.inputs, "finals": self.finals,
                "config_diff": self.config_diff}

    def diff_entry(self) -> dict[str, Any]:
        """The comparison as one ``demoai diff`` entry (kind ``run``; ``text`` holds the
        final numbers, the settings and the configs' unified diff)."""
        lines = [f"final {k}: {_fmt(va)} -> {_fmt(vb)}" + _delta(va, vb)
                 for k, (va, vb) in self.finals.items()]
        lines += [f"setting {k}: {_fmt(va)} -> {_fmt(vb)}" for k, (va, vb) in self.settings.items()]
        lines += [f"input {k}: {str(va)[:19]} -> {str(vb)[:19]}" for k, (va, vb) in self.inputs.items()]
        if not self.settings:
            lines.append("same settings")
        body = "\n".join(lines) + ("\n" + self.config_diff if self.config_diff else "")
        added = sum(1 for x in self.config_diff.splitlines() if x.startswith("+") and not x.startswith("+++"))
        removed = sum(1 for x in self.config_diff.splitlines() if x.startswith("-") and not x.startswith("---"))
        return {"path": f"train/{self.a.name}..train/{self.b.name}", "kind": "run",
                "status": "modified", "added": added, "removed": removed,
                "modified": len(self.settings), **self.to_dict(), "text": body}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _delta(a: Any, b: Any) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return f" ({b - a:+.4g})"
    return ""


def compare_runs(repo: Repository, a: str, b: str) -> RunComparison:
    """Compare runs ``a`` and ``b`` (names, ``train/NAME`` or ``runs/NAME``): settings and
    inputs that differ, final losses and speed, and the configs' text diff."""
    infos = []
    for spec in (a, b):
        name = run_name(repo, spec) if looks_like_run(spec) else None
        infos.append(run_info(repo, name or spec))
    ia, ib = infos
    cfgs = [load_config(repo, i.config, i.commit)[0] for i in infos]
    ma, mb = (_flat({k: v for k, v in c.meta.items() if k != "variables"}) for c in cfgs)
    settings = {k: [ma.get(k), mb.get(k)] for k in sorted(set(ma) | set(mb)) if ma.get(k) != mb.get(k)}
    la, lb = ((i.lineage.get("inputs") or {}) for i in infos)
    inputs = {k: [la.get(k), lb.get(k)] for k in sorted(set(la) | set(lb))
              if k not in ("config",) and not k.startswith(f"{RUNS_DIR}/") and la.get(k) != lb.get(k)}
    pa, pb = ((i.lineage.get("parameters") or {}) for i in infos)
    finals = {"loss": [ia.loss, ib.loss], "val_loss": [ia.val_loss, ib.val_loss],
              "steps": [ia.step, ib.step], "tokens_per_s": [ia.tokens_per_s, ib.tokens_per_s],
              "wall_s": [ia.wall_s, ib.wall_s], "status": [ia.status, ib.status]}
    if pa.get("warning_count") or pb.get("warning_count"):
        finals["scan_warnings"] = [pa.get("warning_count", 0), pb.get("warning_count", 0)]
    text = "".join(difflib.unified_diff(
        cfgs[0].text.splitlines(keepends=True), cfgs[1].text.splitlines(keepends=True),
        f"train/{ia.name}:{ia.config}", f"train/{ib.name}:{ib.config}"))
    return RunComparison(ia, ib, settings, inputs, finals, text.rstrip("\n"))
