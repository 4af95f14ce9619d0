"""The brain scan during training: per-module weight and gradient statistics every
``scan_every`` steps, and warnings (or a stop) when a run explodes.

At a scan step the loop hands over the trainable (LoRA) parameters twice: after the backward
pass, before clipping (their gradients), and after the optimizer step (their weights). Each
tensor's statistics are :func:`demoai.train.scan.tensor_stats`' (norm, max |w|, mean, std,
near-zero share, NaN and Inf counted) plus its gradient's norm and max; the rows become the
run's ``scan.jsonl`` table. Three signs of trouble are watched:

* NaN or Inf in a weight or a gradient (a loss that turns NaN stops every run anyway);
* a gradient-norm spike: a step's total gradient norm (before clipping) above
  :data:`SPIKE_FACTOR` times the running median of the previous steps' (at least
  :data:`MIN_HISTORY` of them, the last :data:`WINDOW`);
* norm growth: a module's weight norm (its LoRA A and B together, so that B growing from
  zero is not mistaken for an explosion) above ``scan_growth`` times its norm at the
  previous scan. A fresh run is scanned once before its first step (step 0, the
  initialisation): AdamW moves each weight by about the learning rate per step, so a
  learning rate that is far too high shows as growth against the start, while between two
  later scans growth is at most linear.

Each is a warning handed to the progress callback; with ``stop_on_explosion`` the run
stops with :class:`~demoai.errors.TrainingDiverged` (``reason="explosion"``) before the
step's checkpoint is committed, so the run's branch keeps the last good one. The watch
only reads tensors: a watched run trains the same adapter bytes as an unwatched one.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from demoai.errors import TrainingDiverged
from demoai.train.scan import split_name, tensor_stats

__all__ = ["TrainingWatch", "ScanWarning", "SPIKE_FACTOR", "MIN_HISTORY", "WINDOW", "SCAN_FILE",
           "module_of"]

SPIKE_FACTOR = 10.0
"""A step's gradient norm above this many times the running median is a spike."""
MIN_HISTORY = 3
"""Previous steps needed before a spike can be called."""
WINDOW = 50
"""How many previous steps the running median looks at."""
SCAN_FILE = "scan.jsonl"
"""The run's scan table, beside its curve: ``runs/<run>/scan.jsonl``."""


@dataclass
class ScanWarning:
    """One sign of trouble at ``step``: ``kind`` is ``nan``, ``spike`` or ``growth``."""

    step: int
    kind: str
    message: str
    module: str | None = None
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return dict(self.__dict__)


def module_of(name: str) -> str:
    """The module a LoRA parameter belongs to: ``base_model.model.model.layers.3.self_attn.
    q_proj.lora_A.default.weight`` -> ``layers.3.self_attn.q_proj``."""
    head = name.split(".lora_", 1)[0]
    for prefix in ("base_model.model.model.", "base_model.model."):
        if head.startswith(prefix):
            return head[len(prefix):]
    return head


def _f(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass
class TrainingWatch:
    """The scan and the explosion checks of one run (see the module doc). ``rows`` and
    ``grad_norms`` carry what a resumed run had already recorded."""

    every: int | None
    growth: float = 2.0
    stop: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    warnings: list[ScanWarning] = field(default_factory=list)
    _grads: dict[str, tuple[float, float]] = field(default_factory=dict)
    _last: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_meta(cls, meta: dict[str, Any], rows: Iterable[dict[str, Any]] = (),
                  grad_norms: Iterable[float] = ()) -> "TrainingWatch":
        """The watch a config's ``scan_every``, ``scan_growth`` and ``stop_on_explosion``
        ask for, continuing from earlier ``rows`` and per-step ``grad_norms``."""
        w = cls(meta.get("scan_every"), float(meta.get("scan_growth") or 2.0),
                bool(meta.get("stop_on_explosion")), list(rows),
                [g for g in grad_norms if g is not None and math.isfinite(g)])
        if w.rows:
            last = max(r["step"] for r in w.rows)
            w._last = w._module_norms([r for r in w.rows if r["step"] == last])
        return w

    def begin(self, named: Iterable[tuple[str, Any]]) -> None:
        """Scan the initial weights as step 0 (a fresh run only: a resumed one already has
        its scans)."""
        if self.every and not self.rows:
            self._scan(0, named)

    def due(self, step: int) -> bool:
        """Whether optimizer step ``step`` (1-based) is a scan step."""
        return bool(self.every) and step % self.every == 0

    def record_grads(self, named: Iterable[tuple[str, Any]]) -> None:
        """Take the gradients' norms and max |g| (call after backward, before clipping)."""
        self._grads = {}
        for name, p in named:
            if p.grad is None:
                continue
            g = p.grad.detach().float().cpu().numpy().reshape(-1)
            fin = g[np.isfinite(g)]
            norm = float(np.sqrt(np.dot(fin, fin))) if fin.size else 0.0
            self._grads[name] = (norm if fin.size == g.size else math.inf,
                                 float(np.abs(fin).max()) if fin.size else 0.0)

    def after_step(self, step: int, grad_norm: float, named: Iterable[tuple[str, Any]] | None) -> list[ScanWarning]:
        """Check step ``step`` (its total gradient norm before clipping; ``named``: the
        trainable parameters when it is a scan step, else None). Returns this step's
        warnings; raises :class:`TrainingDiverged` when one is found and ``stop`` is set."""
        new: list[ScanWarning] = []
        if math.isfinite(grad_norm):
            hist = self.grad_norms[-WINDOW:]
            if len(hist) >= MIN_HISTORY:
                med = statistics.median(hist)
                if med > 0 and grad_norm > SPIKE_FACTOR * med:
                    new.append(ScanWarning(step, "spike", f"step {step}: gradient norm {grad_norm:.4g} "
                                           f"is {grad_norm / med:.1f}x the running median {med:.4g}",
                                           value=grad_norm))
            self.grad_norms.append(grad_norm)
        if named is not None:
            new += self._scan(step, named)
        self.warnings += new
        if new and self.stop:
            raise TrainingDiverged(f"training stopped at step {step} on explosion: "
                                   + "; ".join(w.message for w in new[:3])
                                   + (f" (and {len(new) - 3} more)" if len(new) > 3 else ""),
                                   reason="explosion", step=step,
                                   warnings=[w.to_dict() for w in new])
        return new

    def _scan(self, step: int, named: Iterable[tuple[str, Any]]) -> list[ScanWarning]:
        rows = []
        for name, p in named:
            s = tensor_stats(name, p.detach().float().cpu().numpy())
            gnorm, gmax = self._grads.get(name, (None, None))
            module = module_of(name)
            layer, _ = split_name(module)
            rows.append({"id": f"{step}:{module}.{'A' if '.lora_A' in name else 'B'}", "step": step,
                         "module": module, "layer": layer,
                         "matrix": "A" if ".lora_A" in name else "B", "shape": "x".join(map(str, s.shape)),
                         "norm": s.norm, "max_abs": s.max_abs, "mean": s.mean, "std": s.std,
                         "near_zero": s.near_zero, "nan": s.nan, "inf": s.inf,
                         "grad_norm": None if gnorm is None else _f(gnorm),
                         "grad_max_abs": gmax, "grad_finite": gnorm is None or math.isfinite(gnorm)})
        self._grads = {}
        out = []
        bad = [r for r in rows if r["nan"] or r["inf"] or not r["grad_finite"]]
        for r in bad[:5]:
            what = f"{r['nan']} NaN and {r['inf']} Inf" if r["nan"] or r["inf"] else "a non-finite gradient"
            out.append(ScanWarning(step, "nan", f"step {step}: {r['module']} lora_{r['matrix']} has {what}",
                                   module=r["module"]))
        norms = self._module_norms(rows)
        grown = sorted(((n / self._last[m], m, n) for m, n in norms.items()
                        if self._last.get(m) and n > self.growth * self._last[m]), reverse=True)
        for factor, m, n in grown[:5]:
            out.append(ScanWarning(step, "growth", f"step {step}: {m} weight norm {n:.4g} grew "
                                   f"{factor:.1f}x since the previous scan (limit {self.growth:g}x)",
                                   module=m, value=factor))
        if len(grown) > 5:
            out.append(ScanWarning(step, "growth", f"step {step}: {len(grown) - 5} more modules grew "
                                   f"beyond {self.growth:g}x"))
        self._last = norms
        self.rows += rows
        return out

    @staticmethod
    def _module_norms(rows: list[dict[str, Any]]) -> dict[str, float]:
        acc: dict[str, float] = {}
        for r in rows:
            acc[r["module"]] = acc.get(r["module"], 0.0) + (r["norm"] or 0.0) ** 2
        return {m: math.sqrt(v) for m, v in acc.items()}
