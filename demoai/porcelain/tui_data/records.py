"""Records the evaluation and training views draw: a brain scan as a layer x module grid
(:func:`scan_grid`) and the gate decisions and arenas at a ref (:func:`eval_records`)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from demoai.errors import InvalidArtifact, PathNotFound
from demoai.objects import decode_manifest
from demoai.porcelain.browse import clean, resolve_ref
from demoai.store import Repository, normalize_path

__all__ = ["ScanGrid", "SCAN_VALUES", "scan_grid", "run_scan", "EvalRecords", "eval_records"]


@dataclass(frozen=True)
class ScanGrid:
    """A brain scan as a layer x module grid of one statistic (None where no tensor is).
    For a training run's scan, ``step`` is the scan step drawn and ``steps`` all of them."""

    path: str
    value: str
    values: list[str]
    layers: list[int]
    modules: list[str]
    grid: list[list[float | None]]
    other: int                       # tensors outside the numbered layers
    step: int | None = None
    steps: list[int] = field(default_factory=list)


SCAN_VALUES = ("norm", "ratio", "max_abs", "std", "mean", "near_zero", "base_norm", "grad_norm", "grad_max_abs")

# ``layers.3.self_attn.q_proj`` / ``blk.3.attn_q.weight`` -> (3, ``self_attn.q_proj``)
_LAYER = re.compile(r"(?:^|\.)(?:blk|layers|h|block|blocks)\.(\d+)\.(.+)$")


def _column(r: dict[str, Any]) -> str:
    """A row's grid column: its module without the layer prefix (``demoai scan`` rows already
    are), with the LoRA matrix (``A``/``B``) of a training scan."""
    module = str(r["module"])
    m = _LAYER.search(module)
    if m:
        module = m.group(2)
    return f"{module}.{r['matrix']}" if r.get("matrix") else module


def scan_grid(repo: Repository, path: str, ref: str | None = None, value: str | None = None,
              step: int | None = None) -> ScanGrid:
    """The scan dataset at ``path`` as a grid of ``value`` (default ``ratio`` for adapter
    and diff scans, else ``norm``): ``scans/*.parquet`` written by ``demoai scan``, or a
    training run's ``runs/RUN/scan.jsonl`` (``ref`` ``train/RUN``), drawn at ``step`` (default
    its last scan). PathNotFound when ``path`` is not at ``ref``; InvalidArtifact when it is
    not a scan or has no such statistic or step."""
    from demoai.store.kinds import load_table
    name, cid = resolve_ref(repo, ref)
    path = normalize_path(path)
    raw = repo.tree_entries(cid).get(path)
    if raw is None:
        raise PathNotFound(f"{path} is not in {name}", path=path, ref=name)
    rows = load_table(repo, decode_manifest(raw, path)).to_pylist()
    if not rows or "layer" not in rows[0] or "module" not in rows[0]:
        raise InvalidArtifact(f"{path} is not a scan (no layer and module columns)", path=path)
    steps = sorted({int(r["step"]) for r in rows if r.get("step") is not None})
    if steps:
        if step is None:
            step = steps[-1]
        if step not in steps:
            raise InvalidArtifact(f"{path} has no scan at step {step} (it has {', '.join(map(str, steps))})",
                                  path=path)
        rows = [r for r in rows if r.get("step") == step]
    else:
        step = None
    have = [v for v in SCAN_VALUES if any(isinstance(r.get(v), (int, float)) and not isinstance(r.get(v), bool)
                                          for r in rows)]
    if value is None:
        value = "ratio" if "ratio" in have else "norm" if "norm" in have else (have or ["norm"])[0]
    if value not in have:
        raise InvalidArtifact(f"{path} has no {value!r} values (it has {', '.join(have)})", path=path)
    numbered = [r for r in rows if r.get("layer") is not None and isinstance(r.get(value), (int, float))]
    layers = sorted({int(r["layer"]) for r in numbered})
    modules = sorted({_column(r) for r in numbered})
    grid: list[list[float | None]] = [[None] * len(modules) for _ in layers]
    li, mi = {x: i for i, x in enumerate(layers)}, {x: i for i, x in enumerate(modules)}
    for r in numbered:
        grid[li[int(r["layer"])]][mi[_column(r)]] = float(r[value])
    return ScanGrid(path, value, have, layers, modules, grid, len(rows) - len(numbered), step, steps)


def run_scan(repo: Repository, run: str, value: str | None = None, step: int | None = None) -> ScanGrid | None:
    """Training run ``run``'s own scan (``runs/RUN/scan.jsonl`` at the tip of ``train/RUN``,
    written with ``scan_every``) as a :func:`scan_grid`; None when the run was not scanned.
    RefNotFound when there is no such run."""
    from demoai.train.run import RUNS_DIR, run_ref
    from demoai.train.watch import SCAN_FILE
    name = run.removeprefix("refs/heads/").removeprefix("train/")
    ref = run_ref(name)
    path = f"{RUNS_DIR}/{name}/{SCAN_FILE}"
    if path not in repo.tree_entries(repo.resolve(ref)):
        return None
    return scan_grid(repo, path, ref, value, step)


@dataclass(frozen=True)
class EvalRecords:
    """The gate decisions and arenas in the tree at a ref (manifests only)."""

    ref: str
    gates: list[dict[str, Any]]
    arenas: list[dict[str, Any]]


def eval_records(repo: Repository, ref: str | None = None) -> EvalRecords:
    """Every ``*.gate.json`` (outcome, metric, test, flips) and ``*.arena.json`` (ratings
    with intervals) at ``ref``."""
    name, cid = resolve_ref(repo, ref)
    gates, arenas = [], []
    for path, raw in sorted(repo.tree_entries(cid).items()):
        if not path.endswith((".gate.json", ".arena.json")):
            continue
        try:
            art = decode_manifest(raw, path)
        except Exception:
            continue
        if art.kind == "gate":
            gates.append({"path": path, "metric": art.metric, "outcome": art.outcome, "margin": art.margin,
                          "alpha": art.alpha, "test": clean(art.test), "refs": clean(art.refs),
                          "flips": {k: len(v) for k, v in (art.flips or {}).items() if isinstance(v, list)}})
        elif art.kind == "arena":
            arenas.append({"path": path, "name": art.name, "judge": clean(art.judge), "counts": clean(art.counts),
                           "rows": clean((art.leaderboard or {}).get("rows", []))})
    return EvalRecords(name, gates, arenas)
