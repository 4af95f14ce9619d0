"""Training and brain scans: the training runs (branches ``train/*``) with the highlighted
run's loss, validation loss and learning-rate curves (textual-plotext; the numbers when it
is not installed) and, for a run trained with ``scan_every``, its own scan under the curve;
the brain scans committed under ``scans/``. A scan is a layer x module heatmap of one
statistic: ``v`` cycles through the statistics, ``s`` through a run's scan steps."""
from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Header, Static

from demoai.tui.screens.loading import Loading, fill_table

__all__ = ["TrainingScreen", "heatmap_text", "curve_widget"]

# viridis, 8 stops: low values dark purple, high values yellow
_RAMP = ("#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39", "#fde725")
_RUN_COLUMNS = ("run", "status", "step", "loss", "val loss")
_SCAN_COLUMNS = ("scan", "rows")


def heatmap_text(g: Any) -> Group:
    """A :class:`~demoai.porcelain.tui_data.records.ScanGrid` as a table of coloured cells, one
    row per layer, one column per module, under a title with the value range as a legend."""
    vals = [v for row in g.grid for v in row if v is not None]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 0.0)
    at = "" if g.step is None else f" at step {g.step}"
    title = Text.assemble((f"{g.path}: {g.value}{at} by layer x module", "bold"), "  (low ")
    for c in _RAMP:
        title.append(" ", style=f"on {c}")
    title.append(f" high: {lo:.4g} .. {hi:.4g})")
    t = Table(show_edge=False, pad_edge=False, padding=(0, 0), box=None)
    t.add_column("layer", justify="right", style="dim")
    for i, m in enumerate(g.modules):
        t.add_column(str(i), justify="center", width=3)
    for layer, row in zip(g.layers, g.grid):
        cells: list[Any] = [f"{layer} "]
        for v in row:
            if v is None:
                cells.append(Text(" · ", style="dim"))
                continue
            k = 0 if hi == lo else min(len(_RAMP) - 1, int((v - lo) / (hi - lo) * len(_RAMP)))
            cells.append(Text("   ", style=f"on {_RAMP[k]}"))
        t.add_row(*cells)
    return Group(title, t)


def _module_legend(g: Any) -> Text:
    out = Text("modules: ", style="dim")
    for i, m in enumerate(g.modules):
        out.append(f"{i}={m}  ")
    if g.other:
        out.append(f"\n{g.other} tensors outside the numbered layers are not drawn", style="dim")
    out.append(f"\nstatistics: {', '.join(g.values)} (v: next)", style="dim")
    if g.steps:
        out.append(f"\nscan steps: {', '.join(map(str, g.steps))}; drawn: {g.step} (s: next)", style="dim")
    return out


def curve_widget() -> Widget:
    """A plot widget: textual-plotext's PlotextPlot, or a Static when it is not installed."""
    try:
        from textual_plotext import PlotextPlot
    except ImportError:
        return Static("install textual-plotext to draw the curves here", id="curve")
    return PlotextPlot(id="curve")


class TrainingScreen(Loading, Screen):
    """Training runs with their curves; brain scans as heatmaps. ``loaded``: the runs and scans
    and the run or scan opened last are on screen."""

    BINDINGS = [Binding("v", "next_value", "Scan statistic"), Binding("s", "next_step", "Scan step"),
                Binding("g", "reload", "Refresh")]

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[Any] = []
        self.scans: list[str] = []
        self.curve: list[dict[str, Any]] = []
        self.run_name: str | None = None
        self.grid: Any = None
        self.scan_of_run: str | None = None     # the run whose scan ``grid`` is, if any

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="training-lists"):
                yield Static("training runs", classes="pane-title")
                yield DataTable(id="runs", cursor_type="row")
                yield Static("brain scans", classes="pane-title")
                yield DataTable(id="scans", cursor_type="row")
            with Vertical(id="training-main"):
                yield Static("", id="run-info")
                yield curve_widget()
                with VerticalScroll(id="heatmap-pane"):
                    yield Static("", id="heatmap")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Training and scans"
        self.query_one("#runs", DataTable).add_columns(*_RUN_COLUMNS)
        self.query_one("#scans", DataTable).add_columns(*_SCAN_COLUMNS)
        self.query_one("#heatmap-pane").display = False
        self._load()

    def _load(self) -> None:
        """Read the runs and scans (in a worker); ``loaded`` is False until they are drawn."""
        self._read(self.ask("lists"))

    @work(thread=True, exclusive=True, group="training")
    def _read(self, token: int) -> None:
        from demoai.porcelain import browse
        repo = self.app.repo
        runs: list[Any] = []
        note = ""
        try:
            from demoai.porcelain import train
            runs = train.runs(repo)
        except Exception as e:           # training not installed or a run unreadable: scans still show
            note = f"training runs: {e}"
        try:
            scans = [(e.path, e.summary) for e in browse.tree(repo).entries
                     if e.path.startswith("scans/") and e.kind == "dataset"]
        except Exception as e:
            scans, note = [], f"{note} scans: {e}"
        self.app.call_from_thread(self.landed, "lists", token, self._show, runs, scans, note)

    def _show(self, runs: list[Any], scans: list[tuple[str, Any]], note: str) -> None:
        self.runs, self.scans = runs, [p for p, _ in scans]
        t = self.query_one("#runs", DataTable)
        fill_table(t, _RUN_COLUMNS, [(r.name, r.status, f"{r.step}/{r.total}", _num(r.loss), _num(r.val_loss))
                                     for r in runs])
        s = self.query_one("#scans", DataTable)
        from demoai.porcelain.tui_data.rows import cell_text
        fill_table(s, _SCAN_COLUMNS, [(p.removeprefix("scans/"), cell_text(summary)) for p, summary in scans])
        if note:
            self.query_one("#run-info", Static).update(Text(note, style="yellow"))
        elif not runs and not scans:
            self.query_one("#run-info", Static).update(
                "no training runs (`demoai train lora CONFIG`) and no scans (`demoai scan weights MODEL`)")
        if runs:
            t.focus()
            self.open_run(runs[0].name)
        elif scans:
            s.focus()
            self.open_scan(self.scans[0])

    # -- runs ------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#runs")
    def _run_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.has_focus and 0 <= event.cursor_row < len(self.runs):
            self.open_run(self.runs[event.cursor_row].name)

    def open_run(self, name: str) -> None:
        """Show run ``name``'s curves."""
        self.run_name = name
        self._load_run(name, self.ask("shown"))

    @work(thread=True, exclusive=True, group="run")
    def _load_run(self, name: str, token: int) -> None:
        import demoai.porcelain.tui_data.records as T
        try:
            from demoai.porcelain import train
            view = train.show_run(self.app.repo, name)
        except Exception as e:
            self.app.call_from_thread(self.landed, "shown", token, self.query_one("#run-info", Static).update,
                                      Text(f"{name}: {e}", style="red"))
            return
        try:
            grid, why = T.run_scan(self.app.repo, name), None
        except Exception as e:              # the curve still shows; the pane says why no scan
            grid, why = None, Text(f"scan of {name}: {e}", style="red")
        self.app.call_from_thread(self.landed, "shown", token, self._show_run, view, grid, why)

    def _show_run(self, view: Any, grid: Any = None, why: Text | None = None) -> None:
        if why is not None:
            self.query_one("#heatmap", Static).update(why)
        i = view.info
        self.curve = list(view.curve)
        self.query_one("#curve").display = True
        if grid is not None:              # the run's own scan, under its curve
            self._show_scan(grid, run=i.name)
        else:
            self.grid, self.scan_of_run = None, None
            self.query_one("#heatmap-pane").display = False
        self.query_one("#run-info", Static).update(Text.assemble(
            (i.name, "bold"), f" · {i.status} · step {i.step}/{i.total} · loss {_num(i.loss)} · val loss "
            f"{_num(i.val_loss)} · base {i.base} · data {i.dataset} · {len(view.commits)} commits"))
        self.draw_curve()

    def draw_curve(self) -> None:
        """Loss and validation loss on the left axis, learning rate on the right."""
        w = self.query_one("#curve")
        rows = self.curve
        series = {k: [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
                  for k in ("loss", "val_loss", "lr")}
        plt = getattr(w, "plt", None)
        if plt is None:                    # no plotext: numbers instead of a plot
            assert isinstance(w, Static)
            w.update("\n".join(f"{k}: " + " ".join(f"{v:.3g}" for _, v in pts[-20:]) for k, pts in series.items() if pts))
            return
        plt.clear_figure()
        plt.title(f"{self.run_name}: loss and learning rate by step")
        for k, color in (("loss", "cyan"), ("val_loss", "orange")):
            if series[k]:
                plt.plot([s for s, _ in series[k]], [v for _, v in series[k]], label=k, color=color, marker="braille")
        if series["lr"]:
            plt.plot([s for s, _ in series["lr"]], [v for _, v in series["lr"]], label="lr", color="green",
                     yside="right", marker="braille")
        plt.xlabel("step")
        w.refresh()

    # -- scans -----------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#scans")
    def _scan_highlighted(self, event: DataTable.RowHighlighted) -> None:
        # rows are highlighted as they are added too: only the table in use opens its row
        if event.data_table.has_focus and 0 <= event.cursor_row < len(self.scans):
            self.open_scan(self.scans[event.cursor_row])

    def open_scan(self, path: str, value: str | None = None) -> None:
        """Show the scan at ``path`` (at HEAD) as a heatmap of ``value``."""
        self._scan(path, value)

    def _scan(self, path: str, value: str | None, run: str | None = None, step: int | None = None) -> None:
        self._load_scan(path, value, run, step, self.ask("shown"))

    @work(thread=True, exclusive=True, group="scan")
    def _load_scan(self, path: str, value: str | None, run: str | None, step: int | None, token: int) -> None:
        import demoai.porcelain.tui_data.records as T
        try:
            g = (T.run_scan(self.app.repo, run, value, step) if run is not None
                 else T.scan_grid(self.app.repo, path, None, value))
        except Exception as e:
            self.app.call_from_thread(self.landed, "shown", token, self.query_one("#heatmap", Static).update,
                                      Text(f"{path}: {e}", style="red"))
            return
        self.app.call_from_thread(self.landed, "shown", token, self._show_scan, g, run)

    def _show_scan(self, g: Any, run: str | None = None) -> None:
        if g is None:
            return
        self.grid, self.scan_of_run = g, run
        self.query_one("#curve").display = run is not None
        self.query_one("#heatmap-pane").display = True
        at = "" if g.step is None else f" · step {g.step} of scans at {', '.join(map(str, g.steps))}"
        if run is None:
            self.query_one("#run-info", Static).update(Text.assemble(
                (g.path, "bold"), f" · {len(g.layers)} layers x {len(g.modules)} modules · {g.value}{at}"))
        self.query_one("#heatmap", Static).update(Group(heatmap_text(g), _module_legend(g)))

    @on(DataTable.RowSelected, "#runs")
    def _run_selected(self, event: DataTable.RowSelected) -> None:
        if 0 <= event.cursor_row < len(self.runs):
            self.open_run(self.runs[event.cursor_row].name)

    @on(DataTable.RowSelected, "#scans")
    def _scan_selected(self, event: DataTable.RowSelected) -> None:
        if 0 <= event.cursor_row < len(self.scans):
            self.open_scan(self.scans[event.cursor_row])

    def action_next_value(self) -> None:
        """The next statistic of the scan shown."""
        g = self.grid
        if g is not None and g.values:
            nxt = g.values[(g.values.index(g.value) + 1) % len(g.values)] if g.value in g.values else g.values[0]
            self._scan(g.path, nxt, self.scan_of_run, g.step)

    def action_next_step(self) -> None:
        """The next scan step of a training run's scan (after the last: the first)."""
        g = self.grid
        if g is not None and g.steps and self.scan_of_run is not None:
            nxt = g.steps[(g.steps.index(g.step) + 1) % len(g.steps)] if g.step in g.steps else g.steps[-1]
            self._scan(g.path, g.value, self.scan_of_run, nxt)

    def action_reload(self) -> None:
        """Read the runs and scans again."""
        self._load()


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
