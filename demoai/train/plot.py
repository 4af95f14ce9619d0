"""Training runs as pictures (matplotlib's Agg canvas, written as PNG files).

- :func:`plot_curves`: training loss (solid) and validation loss (dashed, markers) of one
  or more runs over steps, overlaid;
- :func:`plot_scans`: the scans a run recorded (``scan_every``): each layer's LoRA weight
  norm and gradient norm over the steps, and a layer x module heatmap of the last scan
  (:func:`scan_rows` reads them from the run's ``scan.jsonl`` table).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from demoai.errors import InvalidArtifact, PathNotFound
from demoai.objects import Dataset, decode_manifest
from demoai.store.git.repo import Repository
from demoai.store.kinds import load_table
from demoai.train.run import RUNS_DIR, run_info
from demoai.train.scan import split_name
from demoai.train.watch import SCAN_FILE

__all__ = ["plot_curves", "plot_scans", "scan_rows", "layer_series", "last_scan_grid"]


def plot_curves(curves: dict[str, list[dict[str, Any]]], out: str | Path, *,
                title: str = "Training loss") -> Path:
    """Draw ``curves`` (run name -> curve rows with ``step``, ``loss``, ``val_loss``) to
    the PNG ``out``; returns its path."""
    if not curves or not any(curves.values()):
        raise InvalidArtifact("no curve to plot: the runs have no committed steps yet")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, rows) in enumerate(curves.items()):
        color = f"C{i % 10}"
        steps = [r["step"] for r in rows if r.get("loss") is not None]
        ax.plot(steps, [r["loss"] for r in rows if r.get("loss") is not None], color=color,
                label=f"{name} train")
        val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
        if val:
            ax.plot([s for s, _ in val], [v for _, v in val], color=color, linestyle="--",
                    marker="o", markersize=3, label=f"{name} validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    out = Path(out)
    if out.parent and not out.parent.is_dir():
        raise InvalidArtifact(f"{out.parent}: no such folder for the plot", path=str(out))
    fig.savefig(str(out), format="png")
    return out


def scan_rows(repo: Repository, run: str) -> list[dict[str, Any]]:
    """The scan rows run ``run`` committed (``runs/RUN/scan.jsonl`` at its branch's tip), by
    step; ``PathNotFound`` when it recorded none (its config had no ``scan_every``)."""
    info = run_info(repo, run)
    rel = f"{RUNS_DIR}/{info.name}/{SCAN_FILE}"
    raw = repo.tree_entries(info.commit).get(rel)
    if raw is None:
        raise PathNotFound(f"run {info.name!r} recorded no scans (set `scan_every: K` in its config "
                           "to scan every K steps)", path=rel, ref=info.ref)
    art = decode_manifest(raw, rel)
    if not isinstance(art, Dataset):
        raise InvalidArtifact(f"{rel} is a {art.kind}, not a scan table", path=rel)
    rows = load_table(repo, art).to_pylist()
    if not rows:
        raise PathNotFound(f"run {info.name!r} has an empty scan table", path=rel, ref=info.ref)
    return sorted(rows, key=lambda r: (r["step"], r["id"]))


def _layer(r: dict[str, Any]) -> int | None:
    layer = r.get("layer")
    return int(layer) if layer is not None else split_name(r["module"])[0]


Series = dict[int, list[float | None]]
Grid = list[list[float | None]]


def layer_series(rows: list[dict[str, Any]], value: str = "norm") -> tuple[list[int], Series]:
    """(steps, layer -> per-step values): each layer's ``value`` (``norm`` or ``grad_norm``)
    as the root of the sum of squares over its modules and LoRA matrices, so a layer's
    number is the norm of all its trainable weights (or gradients) together. A step where
    the layer has no finite value (step 0 has no gradients) is None."""
    steps = sorted({int(r["step"]) for r in rows})
    acc: dict[int, dict[int, float]] = {}
    for r in rows:
        layer, v = _layer(r), r.get(value)
        if layer is None or v is None or not math.isfinite(v):
            continue
        acc.setdefault(layer, {}).setdefault(int(r["step"]), 0.0)
        acc[layer][int(r["step"])] += float(v) ** 2
    return steps, {layer: [math.sqrt(by[s]) if s in by else None for s in steps]
                   for layer, by in sorted(acc.items())}


def last_scan_grid(rows: list[dict[str, Any]], value: str = "norm") -> tuple[int, list[int], list[str], Grid]:
    """(step, layers, modules, grid): the last scan's ``value`` per layer (rows) and module
    (columns, the name without its layer), A and B combined as above."""
    last = max(int(r["step"]) for r in rows)
    cells: dict[tuple[int, str], float] = {}
    for r in rows:
        layer, v = _layer(r), r.get(value)
        if int(r["step"]) != last or layer is None or v is None or not math.isfinite(v):
            continue
        key = (layer, split_name(r["module"])[1])
        cells[key] = cells.get(key, 0.0) + float(v) ** 2
    layers = sorted({k[0] for k in cells})
    modules = sorted({k[1] for k in cells})
    grid = [[math.sqrt(cells[(li, m)]) if (li, m) in cells else None for m in modules] for li in layers]
    return last, layers, modules, grid


def plot_scans(rows: list[dict[str, Any]], out: str | Path, *, title: str = "") -> Path:
    """Draw a run's scan ``rows`` to the PNG ``out``: per-layer LoRA weight norms over the
    steps (and gradient norms, when recorded) on the left, a layer x module heatmap of the
    last scan's weight norms on the right; returns its path."""
    if not rows:
        raise InvalidArtifact("no scan rows to plot")
    steps, norms = layer_series(rows, "norm")
    _, grads = layer_series(rows, "grad_norm")
    last, layers, modules, grid = last_scan_grid(rows, "norm")
    if not norms or not layers:
        raise InvalidArtifact("the scans hold no tensor of a numbered layer to plot")
    out = Path(out)
    if out.parent and not out.parent.is_dir():
        raise InvalidArtifact(f"{out.parent}: no such folder for the plot", path=str(out))
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    has_grads = any(v is not None for vs in grads.values() for v in vs)
    fig = Figure(figsize=(13, 6 if has_grads else 4.5), dpi=100)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(2 if has_grads else 1, 2, width_ratios=[1.4, 1])
    panels = [(fig.add_subplot(gs[0, 0]), norms, "weight norm")]
    if has_grads:
        panels.append((fig.add_subplot(gs[1, 0], sharex=panels[0][0]), grads, "gradient norm"))
    cmap = _colors(len(norms))
    for ax, series, label in panels:
        for i, (layer, vals) in enumerate(series.items()):
            pts = [(s, v) for s, v in zip(steps, vals) if v is not None]
            ax.plot([s for s, _ in pts], [v for _, v in pts], color=cmap[i % len(cmap)], marker="o",
                    markersize=2.5, linewidth=1.2, label=f"layer {layer}")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    panels[-1][0].set_xlabel("step")
    panels[0][0].set_title("per-layer LoRA norms over the scans")
    if len(norms) <= 16:
        panels[0][0].legend(fontsize="x-small", ncol=2)
    hm = fig.add_subplot(gs[:, 1])
    data = np.array([[np.nan if v is None else v for v in row] for row in grid], dtype=float)
    im = hm.imshow(data, aspect="auto", interpolation="nearest", cmap="viridis")
    hm.set_xticks(range(len(modules)), modules, rotation=60, ha="right", fontsize=7)
    hm.set_yticks(range(len(layers)), [str(x) for x in layers], fontsize=7)
    hm.set_xlabel("module")
    hm.set_ylabel("layer")
    hm.set_title(f"weight norm at step {last} (last scan)")
    fig.colorbar(im, ax=hm, label="norm")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(str(out), format="png")
    return out


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps
    cmap = colormaps["viridis" if n > 10 else "tab10"]
    return [cmap(i / max(n - 1, 1)) if n > 10 else cmap(i) for i in range(max(n, 1))]
