"""The history screen: the commit graph of every branch, tag and session ref (as ``demoai
log --graph --all``), read a page at a time in a worker; beside it the highlighted commit's
message, author, time, lineage and changed artifacts; a filter by text, author, path, kind;
``c`` checks out the highlighted commit's branch (or the commit, detached), confirmed first."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

if TYPE_CHECKING:
    import demoai.porcelain.tui_data.history as T

__all__ = ["HistoryScreen", "when", "parse_filter", "matches"]

_PAGE = 200
_FIRST = 40        # commits in the first page (more when the screen is taller)
_SUMMARY_WIDTH = 40
_COLUMNS = ("graph", "commit", "summary", "author", "date")


def when(t: int, tz: int = 0) -> str:
    """A commit time in the commit's own time zone, as git shows it."""
    return datetime.fromtimestamp(t, timezone(timedelta(seconds=tz))).strftime("%Y-%m-%d %H:%M")


def parse_filter(text: str) -> dict[str, list[str]]:
    """``word author:NAME path:PREFIX kind:KIND`` -> {"text": [...], "author": [...], ...}."""
    out: dict[str, list[str]] = {"text": [], "author": [], "path": [], "kind": []}
    for tok in text.split():
        key, sep, val = tok.partition(":")
        if sep and key in out and key != "text" and val:
            out[key].append(val.lower())
        else:
            out["text"].append(tok.lower())
    return out


def _append_rows(table: DataTable, rows: list[list[Text]]) -> None:
    """Add ``rows`` at the bottom of ``table``, each column first widened, explicitly, to its
    widest cell so far (the summary stays at its width, cut). The table would measure them only
    when idle, and a row drawn before that stayed cut on screen (see
    :mod:`demoai.tui.widgets.tables`, not imported here: the first frame imports no other
    screen or widget module)."""
    for i, column in enumerate(table.ordered_columns):
        if column.key.value == "summary":
            continue
        widest = max((row[i].cell_len for row in rows), default=0)
        if widest > column.width:
            column.width = widest            # drawn at it by the rows added next
    table.add_rows(rows)


def matches(f: dict[str, list[str]], c: Any, changes: dict[str, tuple[str, str]] | None) -> bool:
    """Whether commit summary ``c`` (with its ``changes`` when path/kind filters need them)
    passes filter ``f``."""
    msg = c.message.lower()
    if any(w not in msg and not c.id.startswith(w) for w in f["text"]):
        return False
    if any(a not in c.author.lower() for a in f["author"]):
        return False
    if f["path"] or f["kind"]:
        ch = changes or {}
        if any(not any(p.lower().startswith(q) for p in ch) for q in f["path"]):
            return False
        if any(not any(k == q for _, k in ch.values()) for q in f["kind"]):
            return False
    return True


class HistoryScreen(Screen):
    """Commits of every ref, newest first, with the graph; enter opens the typed diff."""

    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("enter", "open_diff", "Diff vs parent", show=False),
        Binding("o", "diff_against", "Diff vs ref"),
        Binding("c", "checkout", "Checkout"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.walker: T.HistoryWalker | None = None
        self.rows: list[T.HistoryRow] = []
        self._filter: dict[str, list[str]] | None = None
        self._changes: dict[str, dict[str, tuple[str, str]]] = {}
        self._shown: list[str] = []          # commit id per table row ("" for a connector)
        self._page_lock = threading.Lock()
        self._detail_for: str | None = None   # the commit whose pane is shown or being read

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter: words author:NAME path:PREFIX kind:KIND  (enter; esc clears)",
                    id="filter")
        with Horizontal():
            yield DataTable(id="commits", cursor_type="row", zebra_stripes=False)
            with VerticalScroll(id="commit-pane"):
                yield Static("reading history…", id="commit-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "History"
        t = self.query_one("#commits", DataTable)
        for c in _COLUMNS:
            # a long summary is cut, so that author and date stay in view; the others widen
            # to their widest cell as rows are added (_append_rows)
            t.add_column(c, key=c, width=_SUMMARY_WIDTH if c == "summary" else len(c))
        t.focus()
        pre = getattr(self.app, "prefetch", None)
        got = None
        if pre is not None and pre.ready():
            try:
                got = pre.take(0)
            except Exception:            # read again in the worker, which shows the error
                got = None
        if got is not None:              # read while Textual started: drawn in the first frame
            self.walker, page = got
            self._append(page)
        else:
            self._load_more()

    # -- reading ---------------------------------------------------------------
    def commit_count(self) -> int:
        """Commit rows in the table now."""
        return sum(1 for c in self._shown if c)

    @work(thread=True, exclusive=True, group="history")
    def _load_more(self) -> None:
        import demoai.porcelain.tui_data.history as T   # imported here: the screen paints first
        with self._page_lock:            # pages reach the table in the order they were read
            first = self.walker is None
            pre = getattr(self.app, "prefetch", None) if first else None
            try:
                got = pre.take() if pre is not None else None
            except Exception:            # read again below, where the error is shown
                got = None
            if got is not None:
                self.walker, page = got
                self.app.call_from_thread(self._append, page)
                return
            try:
                if first:
                    self.walker = T.HistoryWalker(self.app.repo, sessions=True)
                if self.walker.done:
                    return
                # the first page fills the screen and no more, so that it shows at once; the next
                # ones are read after it is drawn (or as the cursor nears the end)
                page = self.walker.next_page(max(_FIRST, self.size.height) if first else _PAGE)
                f = self._filter
                if f is not None and (f["path"] or f["kind"]):
                    for r in page:
                        if r.commit is not None and r.commit.id not in self._changes:
                            self._changes[r.commit.id] = T.changed_paths(self.app.repo, r.commit.id)
            except Exception as e:       # the history cannot be read: say why, as the CLI would
                self.walker = None if first else self.walker
                self.app.call_from_thread(self.query_one("#commit-detail", Static).update,
                                          Text(f"cannot read the history: {e}", style="red"))
                self.app.call_from_thread(self.app.show_error, e)
                return
            self.app.call_from_thread(self._append, page)

    def _append(self, page: list[T.HistoryRow]) -> None:
        first = not self.rows
        self.rows.extend(page)
        self._add_rows(page)
        if self._filter is not None and self.commit_count() < 50 and not self.walker.done:
            self._load_more()          # keep searching older commits for matches
        elif first and self.walker is not None and not self.walker.done:
            self.set_timer(0.3, self._load_more)     # the next page, once the first is on screen
        elif self.walker is not None and self.walker.done and not self._shown:
            self.query_one("#commit-detail", Static).update("no commits")

    def _add_rows(self, page: list[T.HistoryRow]) -> None:
        t = self.query_one("#commits", DataTable)
        f = self._filter
        rows: list[list[Text]] = []
        for r in page:
            c = r.commit
            if f is not None:
                if c is None or not matches(f, c, self._changes.get(c.id)):
                    continue
                graph = ""
            else:
                graph = r.graph
            # cells are Text, never str: a message is shown as written, not read as markup
            if c is None:
                rows.append([Text(graph, style="magenta"), *(Text() for _ in range(4))])
                self._shown.append("")
                continue
            summary = Text()                 # as `log --oneline --decorate`: refs, then the message
            if c.refs:
                summary.append(f"({', '.join(c.refs)}) ", style="yellow")
            summary.append(c.summary)
            rows.append([Text(graph, style="magenta"), Text(c.short_id, style="yellow"), summary,
                         Text(c.author.split(" <")[0]), Text(when(c.time, c.tz))])
            self._shown.append(c.id)
        _append_rows(t, rows)
        if self._shown and t.cursor_row == 0 and self._shown[0] and self._detail_for != self._shown[0]:
            self._detail_for = self._shown[0]
            # after the rows are on screen: the pane reads trees and lineage
            self.call_after_refresh(self._show_detail, self._shown[0])

    def selected(self) -> str | None:
        """The highlighted commit's id."""
        t = self.query_one("#commits", DataTable)
        if not self._shown or t.cursor_row >= len(self._shown):
            return None
        return self._shown[t.cursor_row] or None

    @on(DataTable.RowHighlighted, "#commits")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row >= len(self._shown) - 40 and self.walker is not None and not self.walker.done:
            self._load_more()
        cid = self.selected()
        if cid:
            self._detail_for = cid
            self._show_detail(cid)

    @on(DataTable.RowSelected, "#commits")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open_diff()

    @work(thread=True, exclusive=True, group="commit-detail")
    def _show_detail(self, cid: str) -> None:
        import demoai.porcelain.tui_data.history as T
        pane = T.commit_pane(self.app.repo, cid)
        self.app.call_from_thread(self._render_detail, pane)

    def _render_detail(self, pane: T.CommitPane) -> None:
        from demoai.porcelain.tui_data.rows import cell_text
        c, lin = pane.commit, pane.lineage
        head = Text()
        head.append(f"commit {c.id}\n", style="yellow")
        if c.refs:
            head.append(f"refs: {', '.join(c.refs)}\n", style="yellow")
        if len(c.parents) > 1:
            head.append(f"merge: {' '.join(p[:12] for p in c.parents)}\n")
        head.append(f"author: {c.author}\ndate:   {when(c.time, c.tz)}\n\n")
        head.append(c.message.rstrip() + "\n\n", style="bold")
        t = Table(title="lineage", title_justify="left", show_header=False, show_edge=False)
        t.add_column("field", style="dim")
        t.add_column("value")
        env = lin.get("environment") or {}
        host = env.get("host") or {}
        for k, v in (("command", lin.get("command")),
                     ("inputs", ", ".join(f"{k}={cell_text(v)}" for k, v in (lin.get("inputs") or {}).items())),
                     ("parameters", cell_text(lin.get("parameters")) if lin.get("parameters") else ""),
                     ("versions", ", ".join(f"{k} {v}" for k, v in [("demoai", env.get("demoai")),
                                                                    ("python", env.get("python"))] if v)),
                     ("hardware", " · ".join(str(x) for x in (host.get("cpu"), host.get("cpus") and
                                                               f"{host.get('cpus')} cpus") if x)),
                     ("error", lin.get("error"))):
            if v:
                t.add_row(k, str(v))
        ch = Table(title=f"changed artifacts ({len(pane.changes)})", title_justify="left",
                   show_header=False, show_edge=False)
        ch.add_column("status")
        ch.add_column("kind", style="dim")
        ch.add_column("path")
        colors = {"added": "green", "deleted": "red", "modified": "yellow"}
        for p, (status, kind) in pane.changes.items():
            ch.add_row(Text(status, style=colors.get(status, "")), kind, p)
        from rich.console import Group
        if not t.row_count:
            t = Text("lineage: none recorded (a session step records its events instead)"
                     if "session" in {k for _, k in pane.changes.values()} else "lineage: none recorded",
                     style="dim")
        self.query_one("#commit-detail", Static).update(Group(head, t, Text(""), ch))

    # -- actions ---------------------------------------------------------------
    def action_filter(self) -> None:
        """Focus the filter box."""
        self.query_one("#filter", Input).focus()

    @on(Input.Submitted, "#filter")
    def _apply_filter(self, event: Input.Submitted) -> None:
        self.apply_filter(event.value)

    def apply_filter(self, text: str) -> None:
        """Show only the commits matching ``text`` (see :func:`parse_filter`); "" shows all."""
        f = parse_filter(text) if text.strip() else None
        self._filter = f
        t = self.query_one("#commits", DataTable)
        t.clear()
        self._shown = []
        self._detail_for = None
        if f is not None and (f["path"] or f["kind"]):
            self._fill_changes_then_show()
        else:
            self._add_rows(self.rows)
        t.focus()

    @work(thread=True, exclusive=True, group="history")
    def _fill_changes_then_show(self) -> None:
        import demoai.porcelain.tui_data.history as T
        for r in list(self.rows):
            if r.commit is not None and r.commit.id not in self._changes:
                self._changes[r.commit.id] = T.changed_paths(self.app.repo, r.commit.id)
        self.app.call_from_thread(self._refill)

    def _refill(self) -> None:
        self._add_rows(self.rows)
        if self.commit_count() < 50 and self.walker is not None and not self.walker.done:
            self._load_more()

    def action_clear_filter(self) -> None:
        """Show every commit again."""
        self.query_one("#filter", Input).value = ""
        if self._filter is not None:
            self.apply_filter("")

    def action_open_diff(self) -> None:
        """The typed diff of the highlighted commit against its first parent."""
        cid = self.selected()
        if cid:
            self.app.open_diff(cid)

    def action_diff_against(self) -> None:
        """The typed diff of the highlighted commit against a ref asked for."""
        cid = self.selected()
        if not cid:
            return
        from demoai.tui.screens.modals import AskScreen

        def done(ref: str | None) -> None:
            if ref:
                self.app.open_diff(cid, against=ref.strip())
        self.app.push_screen(AskScreen(f"Diff {cid[:12]} against which ref?", "main~1, v1, a commit id"), done)

    def checkout_target(self) -> str | None:
        """What ``c`` checks out: the first branch on the highlighted commit, else the commit."""
        cid = self.selected()
        if not cid:
            return None
        c = next((r.commit for r in self.rows if r.commit is not None and r.commit.id == cid), None)
        for ref in (c.refs if c is not None else []):
            ref = ref.removeprefix("HEAD -> ")
            if ref != "HEAD" and not ref.startswith(("tag: ", "session: ")):
                return ref
        return cid

    def action_checkout(self) -> None:
        """Check out the highlighted commit's branch (or the commit, detached); confirmed first."""
        from demoai.tui.screens.modals import ConfirmScreen
        target = self.checkout_target()
        if target is None:
            return
        what = f"the commit {target[:12]} (detached HEAD)" if target == self.selected() else f"branch {target}"
        self.app.push_screen(ConfirmScreen(f"Check out {what}? (rewrites the working tree's tracked files)"),
                             lambda yes: yes and self._checkout(target))

    @work(thread=True, exclusive=True, group="checkout")
    def _checkout(self, target: str) -> None:
        from demoai.porcelain.checkout import checkout
        try:
            checkout(self.app.repo, target)
        except Exception as e:
            self.app.call_from_thread(self.app.show_error, e)
            return
        self.app.call_from_thread(self.app.notify, f"checked out {target[:40]}")
        self.app.call_from_thread(self.reload)

    def reload(self) -> None:
        """Read the history again from the refs (after a checkout moved HEAD)."""
        self.walker = None
        self.rows = []
        self._shown = []
        self._detail_for = None
        self.query_one("#commits", DataTable).clear()
        self._load_more()
