"""Datasets: the artifacts at a ref (:class:`TreeScreen`), and the rows of one dataset at a
ref (:class:`DatasetScreen`), read a page at a time from Lance through the porcelain, with
its schema, its statistics (``i``: ``data stats``), a DuckDB query box whose result shows in
the same table, and ``l``: the commit that last changed the highlighted row (its typed diff)."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

import demoai.porcelain.tui_data.rows as T
from demoai.tui.widgets.rows import RowTable
from demoai.tui.widgets.tables import fill_table

__all__ = ["DatasetScreen", "TreeScreen"]

_ARTIFACTS = ("path", "kind", "summary", "size")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


class TreeScreen(Screen):
    """Every artifact at a ref; enter opens a dataset's rows, an eval result's examples or
    another artifact's detail."""

    BINDINGS = [Binding("t", "change_ref", "Ref"), Binding("enter", "open", "Open", show=False)]

    def __init__(self, ref: str | None = None) -> None:
        super().__init__()
        self.ref = ref
        self.entries: list = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield DataTable(id="artifacts", cursor_type="row")
            with VerticalScroll(id="artifact-pane"):
                yield Static("", id="artifact-detail")
        yield Footer()

    def on_mount(self) -> None:
        fill_table(self.query_one("#artifacts", DataTable), _ARTIFACTS, [])
        self._load()

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        from demoai.porcelain import browse
        try:
            tree = browse.tree(self.app.repo, self.ref)
        except Exception as e:
            self.app.call_from_thread(self.app.show_error, e)
            return
        self.app.call_from_thread(self._show, tree)

    def _show(self, tree) -> None:
        self.title = f"Artifacts at {tree.ref}"
        self.entries = tree.entries
        t = self.query_one("#artifacts", DataTable)
        fill_table(t, _ARTIFACTS, [(e.path, e.kind, T.cell_text(e.summary), _size(e.size)) for e in tree.entries])
        t.focus()

    @on(DataTable.RowHighlighted, "#artifacts")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if 0 <= event.cursor_row < len(self.entries):
            self._detail(self.entries[event.cursor_row].path)

    @work(thread=True, exclusive=True, group="artifact-detail")
    def _detail(self, path: str) -> None:
        from demoai.porcelain import browse
        try:
            d = browse.artifact_detail(self.app.repo, self.ref, path, rows=0).to_dict()
        except Exception as e:
            d = {"error": str(e)}
        self.app.call_from_thread(self._render_detail, d)

    def _render_detail(self, d: dict) -> None:
        t = Table(show_header=False, show_edge=False)
        t.add_column("field", style="dim")
        t.add_column("value")
        for k, v in d.items():
            if k in ("sessions",):
                v = ", ".join(s.get("name", "") for s in v or [])
            if k == "last_change" and isinstance(v, dict):
                c = v.get("commit") or {}
                v = f"{c.get('short_id', '')} {c.get('summary', '')}"
            if isinstance(v, dict) and k == "dataset":
                v = ", ".join(f"{c.get('name')}: {c.get('type')}" for c in v.get("columns", []))
            t.add_row(k, T.cell_text(v) if not isinstance(v, str) else v[:2000])
        self.query_one("#artifact-detail", Static).update(t)

    @on(DataTable.RowSelected, "#artifacts")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        """Open the highlighted artifact."""
        t = self.query_one("#artifacts", DataTable)
        if not 0 <= t.cursor_row < len(self.entries):
            return
        e = self.entries[t.cursor_row]
        if e.kind == "dataset":
            self.app.open_dataset(e.path, self.ref)
        elif e.kind == "eval":
            self.app.open_eval(f"{self.ref or 'HEAD'}:{e.path}")

    def action_change_ref(self) -> None:
        """Show the artifacts at another ref."""
        from demoai.tui.screens.modals import AskScreen

        def done(ref: str | None) -> None:
            if ref:
                self.ref = ref.strip()
                self._load()
        self.app.push_screen(AskScreen("Show the artifacts at which ref?", "main, v1, HEAD~3"), done)


class DatasetScreen(Screen):
    """The rows of ``path`` at ``ref``, paged; its schema; a DuckDB query box."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("slash,colon", "query", "Query"),
        Binding("s", "toggle_schema", "Schema"),
        Binding("i", "stats", "Stats"),
        Binding("l", "row_history", "Row's last change"),
    ]

    def __init__(self, path: str, ref: str | None = None) -> None:
        super().__init__()
        self.path, self.ref = path, ref
        self.pager: T.DatasetPager | None = None
        self.result: T.QueryPager | None = None
        self.stats = None
        self.row_change: T.RowChange | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("opening…", id="dataset-info")
        with Horizontal():
            yield RowTable(id="rows")
            with VerticalScroll(id="schema-pane"):
                yield Static("", id="schema")
                yield Static("", id="stats")
        with Vertical(id="query-bar"):
            yield Input(placeholder="SQL (DuckDB): table('PATH', 'REV'), commits — enter runs, esc returns",
                        id="query")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"{self.path} @ {self.ref or 'HEAD'}"
        self._open()

    @work(thread=True, exclusive=True)
    def _open(self) -> None:
        try:
            pager = T.DatasetPager.open(self.app.repo, self.path, self.ref)
        except Exception as e:
            self.app.call_from_thread(self.app.show_error, e)
            self.app.call_from_thread(self.query_one("#dataset-info", Static).update, f"cannot open: {e}")
            return
        self.app.call_from_thread(self._show, pager)

    def _show(self, pager: T.DatasetPager) -> None:
        self.pager = pager
        ref = f"'{pager.ref}'" if pager.ref else ""
        q = self.query_one("#query", Input)
        q.value = f"SELECT * FROM table('{pager.path}', {ref}) LIMIT 1000".replace(", )", ")")
        self._info_dataset()
        t = Table(title="schema", title_justify="left", show_edge=False)
        t.add_column("column")
        t.add_column("type", style="dim")
        for f in pager.schema or [{"name": c} for c in pager.columns]:
            name = f.get("name", "")
            t.add_row(Text(name, style="bold" if name == pager.key else ""), T.cell_text(f.get("type")))
        self.query_one("#schema", Static).update(t)
        rows = self.query_one("#rows", RowTable)
        rows.set_source(pager)
        rows.focus()

    def _info_dataset(self) -> None:
        p = self.pager
        assert p is not None
        self.query_one("#dataset-info", Static).update(Text.assemble(
            (p.path, "bold"), f" @ {p.ref} · ", (f"{p.total:,}", "bold"), " rows · ",
            f"{len(p.columns)} columns · key {p.key or '-'} · {p.format or ''}"))

    def action_query(self) -> None:
        """Focus the query box."""
        self.query_one("#query", Input).focus()

    def action_toggle_schema(self) -> None:
        """Show or hide the schema."""
        pane = self.query_one("#schema-pane")
        pane.display = not pane.display

    @on(Input.Submitted, "#query")
    def _run(self, event: Input.Submitted) -> None:
        self.run_query(event.value)

    @work(thread=True, exclusive=True, group="query")
    def run_query(self, sql: str) -> None:
        """Run ``sql`` (DuckDB, ``demoai query`` semantics) and show its result in the table."""
        self.app.call_from_thread(self.query_one("#dataset-info", Static).update, "running the query…")
        try:
            res = T.QueryPager.run(self.app.repo, sql)
        except Exception as e:
            self.app.call_from_thread(self.app.show_error, e)
            self.app.call_from_thread(self.query_one("#dataset-info", Static).update, Text(f"query failed: {e}", style="red"))
            return
        self.app.call_from_thread(self._show_result, res)

    def _show_result(self, res: T.QueryPager) -> None:
        self.result = res
        self.query_one("#dataset-info", Static).update(Text.assemble(
            ("query result", "bold"), f": {res.total:,} rows · {len(res.columns)} columns  (esc: back to the dataset)"))
        rows = self.query_one("#rows", RowTable)
        rows.set_source(res)
        rows.focus()

    def action_back(self) -> None:
        """From a query result back to the dataset; from the dataset back to where it was opened."""
        rows = self.query_one("#rows", RowTable)
        if self.result is not None and self.pager is not None:
            self.result = None
            rows.set_source(self.pager)
            self._info_dataset()
            rows.focus()
            return
        self.app.pop_screen()

    # -- statistics ---------------------------------------------------------------------
    def action_stats(self) -> None:
        """Text statistics and label balance of this dataset version (``demoai data stats``)."""
        if self.pager is None:
            return
        self.query_one("#schema-pane").display = True
        self.query_one("#stats", Static).update(Text("computing statistics…", style="dim"))
        self._stats(self.pager.path, self.pager.commit)

    @work(thread=True, exclusive=True, group="stats")
    def _stats(self, path: str, commit: str) -> None:
        from demoai.porcelain import data
        try:
            rep = data.stats(self.app.repo, path, rev=commit, near=False)
        except Exception as e:
            self.app.call_from_thread(self.query_one("#stats", Static).update, Text(f"no statistics: {e}", style="red"))
            return
        self.app.call_from_thread(self._show_stats, rep)

    def _show_stats(self, rep) -> None:
        self.stats = rep
        t = Table(title=f"statistics of {', '.join(rep.columns)}", title_justify="left", show_edge=False,
                  show_header=False)
        t.add_column("stat", style="dim")
        t.add_column("value", justify="right")
        labels = []
        for k, v in rep.stats.items():
            if k == "labels":
                labels = v or []
            elif not isinstance(v, (list, dict)):
                t.add_row(k.replace("_", " "), T.cell_text(v))
        for lab in labels:
            t.add_row(f"{rep.label}={T.cell_text(lab.get('label'))}",
                      f"{lab.get('rows', 0):,} ({(lab.get('share') or 0):.0%})")
        self.query_one("#stats", Static).update(t)

    # -- a row's history ------------------------------------------------------------------
    def action_row_history(self) -> None:
        """Open the typed diff of the commit that last changed the highlighted row."""
        p = self.pager
        rows = self.query_one("#rows", RowTable)
        if p is None or self.result is not None or not p.key or p.key not in p.columns:
            self.app.notify("only the rows of a dataset with a key have a history", severity="warning")
            return
        cells = rows.row(rows.cursor_row)
        if cells is None:
            return
        key = cells[p.columns.index(p.key)]
        self.query_one("#dataset-info", Static).update(f"finding the commit that last changed {p.key}={key}…")
        self._row_history(p.path, p.commit, key)

    @work(thread=True, exclusive=True, group="row-history")
    def _row_history(self, path: str, commit: str, key: str) -> None:
        try:
            ch = T.row_last_change(self.app.repo, path, key, commit)
        except Exception as e:
            self.app.call_from_thread(self.app.show_error, e)
            self.app.call_from_thread(self._info_dataset)
            return
        self.app.call_from_thread(self._show_row_change, ch)

    def _show_row_change(self, ch) -> None:
        self.row_change = ch
        self._info_dataset()
        if ch is None:
            self.app.notify("the row's last change is further back than the walk goes", severity="warning")
            return
        self.app.notify(f"{ch.key}: {ch.status} in {ch.commit.short_id} {ch.commit.summary}")
        self.app.open_diff(ch.commit.id)

    @on(RowTable.Failed)
    def _failed(self, event: RowTable.Failed) -> None:
        self.app.show_error(event.error)
