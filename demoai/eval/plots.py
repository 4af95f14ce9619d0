"""PNG plots of evaluation results: arena ratings with their intervals, the win-rate matrix,
and any scores with confidence intervals.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global
backend switch), so it works headless and in threads. Each function writes a PNG of exactly
``size`` pixels (width, height) -- a default grows with the number of rows -- atomically
(a temporary file renamed into place), and returns the path.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from demoai.errors import InvalidArtifact

__all__ = ["plot_ratings", "plot_win_matrix", "plot_metric_intervals"]

_DPI = 100


def _board(lb: Any) -> dict[str, Any]:
    d = lb.to_dict() if hasattr(lb, "to_dict") else lb
    if not isinstance(d, Mapping) or "rows" not in d or "models" not in d:
        raise InvalidArtifact("expected a Leaderboard or its to_dict() form")
    return dict(d)


def _figure(size: tuple[int, int], dpi: int) -> Figure:
    w, h = size
    if w < 100 or h < 100:
        raise InvalidArtifact(f"plot size must be at least 100x100 pixels, got {w}x{h}")
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike[str], dpi: int) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _left_margin(labels: Sequence[str], width: int) -> float:
    """Room for the longest label (about 7 pixels a character at the default font)."""
    longest = max((len(str(s)) for s in labels), default=1)
    return min(0.5, max(0.12, (20 + 7 * longest) / width))


def _interval_plot(labels: Sequence[str], values: Sequence[float], lowers: Sequence[float],
                   uppers: Sequence[float], path: str | os.PathLike[str], *, title: str | None,
                   xlabel: str, size: tuple[int, int] | None, dpi: int, fmt: str) -> Path:
    n = len(labels)
    if n == 0:
        raise InvalidArtifact("nothing to plot: no rows")
    size = size or (800, 110 + 30 * n)
    fig = _figure(size, dpi)
    left = _left_margin(labels, size[0])
    ax = fig.add_axes((left, 60 / size[1], 0.94 - left, 1 - 100 / size[1]))
    v = np.asarray(values, dtype=float)
    lo, hi = np.asarray(lowers, dtype=float), np.asarray(uppers, dtype=float)
    y = np.arange(n)[::-1]                     # first row on top
    err = np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)])
    ax.errorbar(v, y, xerr=np.nan_to_num(err), fmt="o", color="#1f5fa8", ecolor="#7a9cc6",
                elinewidth=2, capsize=4)
    ax.set_yticks(y)
    ax.set_yticklabels([str(s) for s in labels])
    ax.set_ylim(-0.7, n - 0.3)
    for yi, vi, hii in zip(y, v, hi):
        if math.isfinite(vi):
            ax.annotate(fmt.format(vi), (hii if math.isfinite(hii) else vi, yi),
                        xytext=(6, 0), textcoords="offset points", va="center", fontsize=8)
    finite = np.concatenate([v, lo, hi])
    finite = finite[np.isfinite(finite)]
    if finite.size:
        span = max(finite.max() - finite.min(), 1e-9)
        ax.set_xlim(finite.min() - 0.05 * span, finite.max() + 0.15 * span)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path, dpi)


def plot_ratings(leaderboard: Any, path: str | os.PathLike[str], *, title: str | None = None,
                 size: tuple[int, int] | None = None, dpi: int = _DPI) -> Path:
    """Arena ratings, best on top, each with its bootstrap interval as an error bar.
    ``leaderboard`` is a :class:`~demoai.eval.arena.Leaderboard` or its ``to_dict()``."""
    d = _board(leaderboard)
    rows = d["rows"]
    labels = [f"{r['model'] if isinstance(r, Mapping) else r.model}" for r in rows]
    get = (lambda r, k: r[k]) if rows and isinstance(rows[0], Mapping) else getattr
    conf = d.get("confidence", 0.95)
    return _interval_plot(labels, [get(r, "rating") for r in rows],
                          [get(r, "lower") for r in rows], [get(r, "upper") for r in rows],
                          path, title=title or f"Arena ratings ({conf:.0%} bootstrap intervals, "
                                               f"{d.get('battles', '?')} battles)",
                          xlabel="rating (Bradley-Terry, Elo scale)", size=size, dpi=dpi,
                          fmt="{:.0f}")


def plot_win_matrix(leaderboard: Any, path: str | os.PathLike[str], *, predicted: bool = False,
                    title: str | None = None, size: tuple[int, int] | None = None,
                    dpi: int = _DPI) -> Path:
    """Heat map of ``win_rate[row][column]`` (the row model's share of wins against the column
    model, ties half; blank where they never met), or with ``predicted`` the ratings'
    predicted win rates. Models in leaderboard order."""
    d = _board(leaderboard)
    models = list(d["models"])
    key = "predicted_win_rate" if predicted else "win_rate"
    m = np.array([[np.nan if v is None else float(v) for v in r] for r in d[key]], dtype=float)
    n = len(models)
    if n == 0 or m.shape != (n, n):
        raise InvalidArtifact(f"{key} is not a {n}x{n} matrix")
    pad = 55 + 6 * max(len(str(x)) for x in models)
    side = 120 + pad + 50 * n
    size = size or (side + 90, side)
    fig = _figure(size, dpi)
    w, h = size
    ax = fig.add_axes((pad / w, pad / h, 1 - (pad + 130) / w, 1 - (pad + 40) / h))
    im = ax.imshow(np.ma.masked_invalid(m), cmap="RdBu", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n))
    ax.set_xticklabels(models, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n))
    ax.set_yticklabels(models, fontsize=8)
    if n <= 25:
        for i in range(n):
            for j in range(n):
                if i != j and math.isfinite(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(m[i, j] - 0.5) > 0.3 else "black")
    ax.set_xlabel("opponent")
    ax.set_ylabel("model")
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(title or ("Predicted win rate (from ratings)" if predicted else
                           "Win rate (ties count half)"), fontsize=10)
    return _save(fig, path, dpi)


def _metric_row(r: Any) -> tuple[str, float, float, float]:
    if isinstance(r, Mapping):
        label = r.get("label", r.get("model", r.get("name")))
        value = r.get("value", r.get("mean", r.get("rating")))
        return str(label), float(value), float(r["lower"]), float(r["upper"])
    if isinstance(r, (tuple, list)) and len(r) == 2 and hasattr(r[1], "lower"):
        est = r[1]
        return str(r[0]), float(getattr(est, "value")), float(est.lower), float(est.upper)
    if isinstance(r, (tuple, list)) and len(r) == 4:
        return str(r[0]), float(r[1]), float(r[2]), float(r[3])
    raise InvalidArtifact(f"a plotted row needs a label, a value, a lower and an upper bound; "
                          f"got {r!r}")


def plot_metric_intervals(rows: Sequence[Any], path: str | os.PathLike[str], *,
                          title: str | None = None, xlabel: str = "score",
                          size: tuple[int, int] | None = None, dpi: int = _DPI) -> Path:
    """Scores with confidence intervals, one row each, in the given order (first on top).
    A row is ``(label, value, lower, upper)``, ``(label, Estimate)``, or a mapping with
    ``label``/``model``/``name``, ``value``/``mean``/``rating``, ``lower`` and ``upper``."""
    try:
        parsed = [_metric_row(r) for r in rows]
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidArtifact(f"a plotted row is malformed: {e}") from None
    labels, values, lowers, uppers = zip(*parsed) if parsed else ((), (), (), ())
    return _interval_plot(labels, values, lowers, uppers, path, title=title, xlabel=xlabel,
                          size=size, dpi=dpi, fmt="{:.3g}")
