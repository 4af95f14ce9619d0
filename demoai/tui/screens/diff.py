"""The typed diff of a commit against its parent (or any ref): the changed artifacts on the
left, the highlighted one's typed view on the right (rows with changed cells, text diffs,
chunk share, eval deltas with paired tests and flips). Enter on a dataset opens its rows."""
from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, ListItem, ListView, Static

from demoai.tui.widgets.diffview import change_line, render_change

__all__ = ["DiffScreen", "SAMPLE_ROWS"]

SAMPLE_ROWS = 20     # changed rows shown per dataset


class DiffScreen(Screen):
    """``rev`` against its first parent, or against ``against``."""

    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "Back"),
        Binding("enter", "open_dataset", "Open rows", show=False),
        Binding("r", "open_dataset", "Open rows"),
    ]

    def __init__(self, rev: str, against: str | None = None) -> None:
        super().__init__()
        self.rev, self.against = rev, against
        self.changes: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield ListView(id="changes")
            with VerticalScroll(id="change-pane"):
                yield Static("computing the diff…", id="change-view")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"Diff {self.rev[:12]}" + (f" against {self.against}" if self.against else " against its parent")
        self._compute()

    @work(thread=True, exclusive=True)
    def _compute(self) -> None:
        from demoai import porcelain as P
        from demoai.porcelain import browse
        repo = self.app.repo
        try:
            if self.against is None:
                changes = browse.commit_detail(repo, self.rev, sample=SAMPLE_ROWS).changes
            else:
                changes = P.diff(repo, self.against, self.rev, sample=SAMPLE_ROWS)
        except Exception as e:
            self.app.call_from_thread(self.app.show_error, e)
            self.app.call_from_thread(self.query_one("#change-view", Static).update, f"no diff: {e}")
            return
        self.app.call_from_thread(self._show, changes)

    def _show(self, changes: list[dict[str, Any]]) -> None:
        self.changes = changes
        lv = self.query_one("#changes", ListView)
        for d in changes:
            lv.append(ListItem(Label(change_line(d))))
        if not changes:
            self.query_one("#change-view", Static).update("no changes")
            return
        lv.index = 0
        lv.focus()
        self._render_change(0)

    def _render_change(self, i: int) -> None:
        if 0 <= i < len(self.changes):
            self.query_one("#change-view", Static).update(render_change(self.changes[i]))

    @on(ListView.Highlighted, "#changes")
    def _highlighted(self, event: ListView.Highlighted) -> None:
        self._render_change(event.list_view.index or 0)

    @on(ListView.Selected, "#changes")
    def _selected(self, event: ListView.Selected) -> None:
        self.action_open_dataset()

    def current(self) -> dict[str, Any] | None:
        """The highlighted change."""
        i = self.query_one("#changes", ListView).index
        return self.changes[i] if i is not None and 0 <= i < len(self.changes) else None

    def action_open_dataset(self) -> None:
        """The rows of the highlighted dataset, as of this commit."""
        d = self.current()
        if d is not None and d["kind"] == "dataset" and d["status"] != "deleted":
            self.app.open_dataset(d["path"], self.rev)
