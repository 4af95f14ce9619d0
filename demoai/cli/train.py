"""``demoai train``: LoRA fine-tuning as commits (lora, resume, doctor, plot, list, show,
compare)."""
from __future__ import annotations

from typing import Any

import click

from demoai.cli.common import err, esc, handle_errors, json_option, open_repo, out, print_json
from demoai.porcelain import train as T

__all__ = ["train_group", "StepLine", "print_run_comparison"]


def _n(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def _dur(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class StepLine:
    """The live progress line of a run on stderr (a terminal only): step, loss, learning
    rate, tokens/s and ETA; phases (loading, tokenizing, committing) as status text."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.enabled = enabled and err.is_terminal
        self.warn = enabled
        self.label, self.task, self.progress = label, None, None
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                                     console=err.get(), transient=True)

    def __enter__(self) -> "StepLine":
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def phase(self, text: str) -> None:
        """Show what the run is doing between steps."""
        if self.progress is None:
            return
        if self.task is None:
            self.task = self.progress.add_task(self.label, total=None, stats=text)
        self.progress.update(self.task, stats=text)

    def __call__(self, s: T.StepInfo) -> None:
        if self.warn:
            for w in s.warnings:
                (self.progress.console if self.progress is not None else err).print(
                    f"[yellow]warning:[/yellow] {esc(w)}")
        if self.progress is None:
            return
        stats = (f"loss {s.loss:.4f}" + (f" val {s.val_loss:.4f}" if s.val_loss is not None else "")
                 + f"  lr {s.lr:.2e}  {s.tokens_per_s:,.0f} tok/s  ETA {_dur(s.eta_s)}")
        if self.task is None:
            self.task = self.progress.add_task(self.label, total=s.total, stats=stats)
        self.progress.update(self.task, completed=s.step, total=s.total, stats=stats)


@click.group("train")
def train_group() -> None:
    """Fine-tune LoRA adapters; every run is a chain of commits on train/RUN.

    \b
    Example:
        demoai train doctor lora.train.yaml
        demoai train lora lora.train.yaml --name first
        demoai train plot first -o loss.png
    """


def _print_result(r: T.RunResult, verb: str) -> None:
    out.print(f"{verb} run [bold]{esc(r.name)}[/bold]: {r.steps} steps, loss {_n(r.final_loss)}"
              + (f", validation loss {_n(r.val_loss)}" if r.val_loss is not None else ""))
    out.print(f"speed: {r.tokens_per_s:,.0f} tokens/s ({r.tokens:,} tokens in {r.train_s:.1f} s "
              f"of training, {r.wall_s:.1f} s in all)", markup=False)
    out.print(f"adapter {r.adapter_path} ({r.adapter_digest[:19]}) committed as {r.commit[:12]} "
              f"on branch train/{r.name}", markup=False)
    out.print(f"serve it: --model BASE --adapter {r.adapter_path} at train/{r.name}", markup=False)
    if r.scan_path:
        out.print(f"scan: {r.scan_path} ({len(r.warnings)} warning{'s' if len(r.warnings) != 1 else ''})",
                  markup=False)
    for w in r.warnings[:10]:
        out.print(f"[yellow]warning:[/yellow] {esc(w)}")


@train_group.command("lora")
@click.argument("config")
@click.option("--name", help="The run's name (its branch is train/NAME; default: the config's "
              "name and the first free number).")
@json_option
@handle_errors
def train_lora(config: str, name: str | None, as_json: bool) -> None:
    """Train the LoRA that CONFIG (a *.train.yaml) describes, committing as it goes.

    The run starts from HEAD and commits on its own branch train/RUN: a checkpoint every
    save_every steps, then the adapter with its lineage. HEAD and the working tree are not
    touched. A killed run continues with `demoai train resume RUN`.
    """
    repo = open_repo()
    with StepLine(f"train {config}", enabled=not as_json) as line:
        res = T.train_lora(repo, config, name=name, on_step=line, on_phase=line.phase)
    if as_json:
        print_json(res.to_dict())
        return
    _print_result(res, "trained")


@train_group.command("resume")
@click.argument("run")
@json_option
@handle_errors
def train_resume(run: str, as_json: bool) -> None:
    """Continue RUN from its last committed checkpoint, to the same adapter."""
    repo = open_repo()
    with StepLine(f"resume {run}", enabled=not as_json) as line:
        res = T.resume(repo, run, on_step=line, on_phase=line.phase)
    if as_json:
        print_json(res.to_dict())
        return
    _print_result(res, f"resumed (from step {res.resumed_from})")


@train_group.command("doctor")
@click.argument("config")
@json_option
@handle_errors
def train_doctor(config: str, as_json: bool) -> None:
    """Check CONFIG before training: data, template, lengths, labels, base model.

    Exits 1 when a check fails.
    """
    repo = open_repo()
    rep = T.doctor(repo, config)
    if as_json:
        print_json(rep.to_dict())
    else:
        from rich.table import Table
        t = Table(title=f"train doctor · {config}", title_justify="left", show_edge=False)
        t.add_column("check")
        t.add_column("result")
        t.add_column("detail")
        style = {"ok": "green", "warn": "yellow", "fail": "red", "skipped": "dim"}
        for c in rep.checks:
            t.add_row(esc(c.name), f"[{style[c.status]}]{c.status}[/]", esc(c.detail))
        out.print(t)
        if rep.facts.get("chat_template"):
            out.print(f"chat template {rep.facts['chat_template'][:23]} (pinned in the run)", markup=False)
    if not rep.ok:
        raise SystemExit(1)


@train_group.command("plot")
@click.argument("runs", nargs=-1, required=True)
@click.option("-o", "--output", default=None,
              help="The PNG file to write (default loss.png, or scans.png with --scans).")
@click.option("--scans", is_flag=True,
              help="Plot the run's recorded scans (scan_every): per-layer norms over the steps "
                   "and a layer x module heatmap of the last scan.")
@json_option
@handle_errors
def train_plot(runs: tuple[str, ...], output: str | None, scans: bool, as_json: bool) -> None:
    """Draw the loss curves of RUNS overlaid in one PNG, or one run's scans (--scans).

    RUNS are run names (see `demoai train list`); --scans takes exactly one."""
    repo = open_repo()
    if scans:
        if len(runs) != 1:
            raise click.UsageError("--scans plots one run's scans: give exactly one RUN")
        path = T.plot_scans(repo, runs[0], output or "scans.png")
        if as_json:
            print_json({"output": str(path), "runs": list(runs), "scans": True})
            return
        out.print(f"wrote {path} (scans of {runs[0]})", markup=False)
        return
    path = T.plot(repo, list(runs), output or "loss.png")
    if as_json:
        print_json({"output": str(path), "runs": list(runs)})
        return
    out.print(f"wrote {path} ({len(runs)} run{'s' if len(runs) != 1 else ''})", markup=False)


@train_group.command("list")
@json_option
@handle_errors
def train_list(as_json: bool) -> None:
    """List training runs: status, steps, losses, speed."""
    repo = open_repo()
    runs = T.runs(repo)
    if as_json:
        print_json([{k: v for k, v in r.to_dict().items() if k != "lineage"} for r in runs])
        return
    if not runs:
        out.print("no training runs yet (start one with `demoai train lora CONFIG`)", markup=False)
        return
    from rich.table import Table
    t = Table(show_edge=False)
    for c in ("run", "status", "step", "loss", "val loss", "tokens/s", "base", "config"):
        t.add_column(c, justify="right" if c in ("step", "loss", "val loss", "tokens/s") else "left")
    for r in runs:
        t.add_row(esc(r.name), r.status, f"{r.step}/{r.total}", _n(r.loss), _n(r.val_loss),
                  _n(r.tokens_per_s, 5), esc(r.base), esc(r.config))
    out.print(t)


@train_group.command("show")
@click.argument("run")
@click.option("--steps", "-n", type=click.IntRange(min=0), default=10, show_default=True,
              help="Show the last N steps of the curve.")
@json_option
@handle_errors
def train_show(run: str, steps: int, as_json: bool) -> None:
    """Show RUN: its lineage (what trained it), the end of its curve, its commits."""
    repo = open_repo()
    view = T.show_run(repo, run)
    if as_json:
        print_json(view.to_dict())
        return
    i = view.info
    lin = i.lineage
    p, inputs = lin.get("parameters") or {}, lin.get("inputs") or {}
    env = lin.get("environment") or {}
    pk = env.get("packages") or {}
    host = env.get("host") or {}
    pairs = [("run", f"{i.name} (branch train/{i.name})"), ("status", i.status),
             ("step", f"{i.step}/{i.total}"), ("loss", _n(i.loss)), ("validation loss", _n(i.val_loss)),
             ("adapter", i.adapter or "-"), ("config", f"{i.config} {inputs.get('config', '')[:19]}"),
             ("base", f"{i.base} {inputs.get('base_model', '')[:19]}"),
             ("dataset", f"{i.dataset} {inputs.get('dataset', '')[:19]}"),
             ("chat template", inputs.get("chat_template", "-")[:27]),
             ("code", inputs.get("code", "-")[:27]), ("seed", p.get("seed")),
             ("examples", f"{p.get('examples', '-')} train, {p.get('val_examples', '-')} validation, "
                          f"{p.get('truncated', 0)} cut, {p.get('dropped', 0)} dropped"),
             ("speed", f"{_n(i.tokens_per_s, 5)} tokens/s, wall {_dur(i.wall_s)}, "
                       f"{p.get('threads', '-')} thread(s) on {p.get('device', '-')}"),
             ("versions", ", ".join(f"{k} {pk[k]}" for k in ("torch", "transformers", "peft") if k in pk)),
             ("hardware", f"{host.get('cpu', '-')}, {host.get('cpus', '-')} CPUs")]
    width = max(len(k) for k, _ in pairs) + 1
    for k, v in pairs:
        out.print(f"{k + ':':<{width}} {v}", markup=False)
    if view.curve and steps:
        from rich.table import Table
        t = Table(title="curve", title_justify="left", show_edge=False)
        for c in ("step", "loss", "val loss", "lr", "grad norm", "tokens"):
            t.add_column(c, justify="right")
        for r in view.curve[-steps:]:
            t.add_row(str(r["step"]), _n(r.get("loss")), _n(r.get("val_loss")), _n(r.get("lr"), 3),
                      _n(r.get("grad_norm"), 3), str(r.get("tokens", "")))
        out.print(t)
    out.print(f"commits ({len(view.commits)}):", markup=False)
    for c in view.commits:
        out.print(f"  {c['commit'][:12]} {c['message']}", markup=False)


def print_run_comparison(c: T.RunComparison) -> None:
    """Two runs side by side: final numbers, differing settings and inputs, config diff."""
    from rich.table import Table
    t = Table(title=f"train/{esc(c.a.name)} vs train/{esc(c.b.name)}", title_justify="left",
              show_edge=False)
    for col in ("", c.a.name, c.b.name, "change"):
        t.add_column(esc(col), justify="left" if not col or col == "change" else "right")
    for k, (va, vb) in c.finals.items():
        change = f"{vb - va:+.4g}" if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else ""
        t.add_row(f"final {k.replace('_', ' ')}", esc(_n(va)), esc(_n(vb)), change)
    for k, (va, vb) in c.settings.items():
        t.add_row(esc(k), esc(_n(va)), esc(_n(vb)), "")
    for k, (va, vb) in c.inputs.items():
        t.add_row(f"input {esc(k)}", esc(str(va or "-")[:19]), esc(str(vb or "-")[:19]), "")
    out.print(t)
    if not c.settings:
        out.print("same settings", markup=False)
    for line in c.config_diff.splitlines():
        out.print(line, markup=False,
                  style="green" if line.startswith("+") else "red" if line.startswith("-") else None)


@train_group.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@json_option
@handle_errors
def train_compare(run_a: str, run_b: str, as_json: bool) -> None:
    """Compare two runs: config differences and final losses (as `demoai diff` does).

    RUN_A and RUN_B are run names, train/NAME branches or runs/NAME folders."""
    c = T.compare_runs(open_repo(), run_a, run_b)
    if as_json:
        print_json(c.to_dict())
        return
    print_run_comparison(c)
