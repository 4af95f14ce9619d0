"""Loss curves as a picture: training loss (solid) and validation loss (dashed, markers)
of one or more runs over steps, overlaid on one matplotlib Agg canvas, written as a PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from demoai.errors import InvalidArtifact

__all__ = ["plot_curves"]


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
