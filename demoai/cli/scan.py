"""``demoai scan``: the brain scan (weights, adapter updates, diffs, activations)."""
from __future__ import annotations

from typing import Any

import click

from demoai.cli.common import esc, handle_errors, json_option, open_repo, out, print_json
from demoai.porcelain import scan as SC

__all__ = ["scan_group"]


@click.group("scan")
def scan_group() -> None:
    """Statistics of model weights and activations, committed beside the model."""


def _g(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def _print(run: SC.ScanRun, cols: tuple[str, ...], limit: int) -> None:
    from rich.table import Table
    t = Table(show_edge=False, pad_edge=False)
    for c in cols:
        t.add_column(c, justify="left" if c in ("name", "module") else "right")
    for r in run.rows[:limit]:
        t.add_row(*[esc(_g(r.get(c))) for c in cols])
    out.print(t)
    if len(run.rows) > limit:
        out.print(f"... {len(run.rows) - limit} more rows (--limit, or --json)")
    bad = sum((r.get("nan") or 0) + (r.get("inf") or 0) for r in run.rows)
    if any("nan" in r for r in run.rows):
        out.print(f"NaN/Inf values: {bad}" + ("  [red]check the weights[/red]" if bad else ""))
    where = (f"committed {run.path} in {run.commit[:12]}" if run.commit else
             f"{run.path} unchanged at HEAD" if run.path else "not committed")
    out.print(f"{len(run.rows)} rows in {run.seconds:.2f} s; {esc(where)}")
    for p in run.plots:
        out.print(f"wrote {esc(p)}")


@scan_group.command("weights")
@click.argument("model")
@click.option("--rev", default="HEAD", show_default=True, help="The revision models are read at.")
@click.option("--plot", "plot_dir", default=None, help="Folder for PNG heatmaps (layer x module).")
@click.option("--no-commit", is_flag=True, help="Do not commit the table.")
@click.option("--limit", default=40, show_default=True, help="Rows to print.")
@json_option
@handle_errors
def scan_weights(model: str, rev: str, plot_dir: str | None, no_commit: bool, limit: int,
                 as_json: bool) -> None:
    """Per-tensor statistics of MODEL or MODEL+ADAPTER (the adapter's B·A update)."""
    run = SC.scan_weights(open_repo(), model, rev=rev, plot_dir=plot_dir, save=not no_commit)
    if as_json:
        print_json(run.to_dict())
        return
    cols = ("name", "shape", "norm", "max_abs", "mean", "std", "near_zero", "nan", "inf")
    if run.kind == "adapter":
        cols = ("name", "shape", "norm", "max_abs", "base_norm", "ratio")
    _print(run, cols, limit)


@scan_group.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--rev", default="HEAD", show_default=True, help="The revision models are read at.")
@click.option("--plot", "plot_dir", default=None, help="Folder for a PNG heatmap of the change.")
@click.option("--limit", default=40, show_default=True, help="Rows to print.")
@json_option
@handle_errors
def scan_diff(a: str, b: str, rev: str, plot_dir: str | None, limit: int, as_json: bool) -> None:
    """Per-tensor change from model A to model B, relative to A."""
    run = SC.scan_diff(open_repo(), a, b, rev=rev, plot_dir=plot_dir)
    if as_json:
        print_json(run.to_dict())
        return
    run.rows.sort(key=lambda r: -(r.get("ratio") or 0))
    _print(run, ("name", "shape", "norm", "base_norm", "ratio", "max_abs"), limit)


@scan_group.command("activations")
@click.argument("model")
@click.option("--prompts", "prompts_file", required=True, type=click.Path(),
              help="Probe prompts: one per line, or a .jsonl with prompt/text.")
@click.option("--top", "top_k", default=5, show_default=True, help="Top units to list per layer.")
@click.option("--threads", default=1, show_default=True, help="Torch CPU threads.")
@click.option("--rev", default="HEAD", show_default=True, help="The revision the model is read at.")
@click.option("--no-commit", is_flag=True, help="Do not commit the table.")
@json_option
@handle_errors
def scan_activations(model: str, prompts_file: str, top_k: int, threads: int, rev: str,
                     no_commit: bool, as_json: bool) -> None:
    """Per-layer MLP activation statistics of MODEL on probe prompts."""
    prompts = SC.read_prompts(prompts_file)
    run = SC.scan_activations(open_repo(), model, prompts, rev=rev, top_k=top_k, threads=threads,
                              save=not no_commit)
    if as_json:
        print_json(run.to_dict())
        return
    _print(run, ("layer", "mean", "std", "max_abs", "dead_share", "top_units"), 200)
