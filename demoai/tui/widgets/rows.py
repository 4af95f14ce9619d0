"""A table of any number of rows, fetched a page at a time.

Textual's ``DataTable`` holds every cell it shows, which slows down around a million cells.
:class:`RowTable` is a Line API widget instead: its virtual height is the row count, it draws
only the lines on screen, and asks its :class:`RowSource` for the pages those lines fall in,
in a thread worker (a page not yet read is drawn as ``…`` and filled in when it arrives).
At most ``MAX_PAGES`` pages are kept (least recently used first out), so memory stays flat
however far one scrolls.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events, work
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

__all__ = ["RowSource", "RowTable", "PAGE", "MAX_PAGES"]

PAGE = 200        # rows per fetch
MAX_PAGES = 12    # pages kept in memory
_MAX_WIDTH = 40   # a column's width at most
_SEP = " │ "


class RowSource(Protocol):
    """What a RowTable reads: column names, a row count, rows by offset (display text)."""

    columns: list[str]
    total: int

    def fetch(self, offset: int, limit: int) -> list[list[str]]: ...


class RowTable(ScrollView, can_focus=True):
    """Rows of a :class:`RowSource`, a page at a time, with a cursor row."""

    COMPONENT_CLASSES = {"rowtable--header", "rowtable--cursor", "rowtable--odd"}
    DEFAULT_CSS = """
    RowTable { height: 1fr; }
    RowTable > .rowtable--header { text-style: bold; background: $panel; }
    RowTable > .rowtable--cursor { background: $accent 40%; }
    RowTable:focus > .rowtable--cursor { background: $accent; }
    RowTable > .rowtable--odd { background: $surface-lighten-1 30%; }
    """
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "edge(0)", "First row", show=False),
        Binding("end,G", "edge(1)", "Last row", show=False),
        Binding("enter", "select", "Open row", show=False),
    ]

    cursor_row: reactive[int] = reactive(0)

    class RowSelected(Message):
        """Enter on a row: its index and cells."""

        def __init__(self, table: "RowTable", row: int, cells: list[str] | None) -> None:
            super().__init__()
            self.table, self.row, self.cells = table, row, cells

    class Failed(Message):
        """A page could not be read."""

        def __init__(self, error: BaseException) -> None:
            super().__init__()
            self.error = error

    def __init__(self, source: RowSource | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self._source: RowSource | None = None
        self._pages: OrderedDict[int, list[list[str]]] = OrderedDict()
        self._pending: set[int] = set()
        self._gen = 0
        self._widths: list[int] = []
        if source is not None:
            self.set_source(source)

    # -- source ----------------------------------------------------------------
    @property
    def source(self) -> RowSource | None:
        """The rows shown."""
        return self._source

    @property
    def total(self) -> int:
        """How many rows the source has."""
        return self._source.total if self._source is not None else 0

    def set_source(self, source: RowSource | None) -> None:
        """Show ``source`` (from its first row); pages of the previous one are dropped."""
        self._gen += 1
        self._source = source
        self._pages.clear()
        self._pending.clear()
        self._widths = [max(4, min(_MAX_WIDTH, cell_len(c))) for c in (source.columns if source else [])]
        self.cursor_row = 0
        self._resize()
        self.scroll_to(0, 0, animate=False)
        self.refresh()

    def _resize(self) -> None:
        width = sum(self._widths) + len(_SEP) * max(0, len(self._widths) - 1)
        self.virtual_size = Size(width, self.total + 1)

    def page_ready(self, page: int) -> bool:
        """Whether page ``page`` is in memory."""
        return page in self._pages

    def visible_ready(self) -> bool:
        """Whether every row on screen has been read."""
        first = int(self.scroll_offset.y)
        last = min(self.total, first + max(1, self.size.height - 1))
        return all(p in self._pages for p in range(first // PAGE, (max(first, last - 1)) // PAGE + 1)) \
            or self.total == 0

    def cached_pages(self) -> int:
        """Pages held in memory."""
        return len(self._pages)

    def row(self, index: int) -> list[str] | None:
        """The cells of row ``index`` if its page is in memory."""
        page = self._pages.get(index // PAGE)
        if page is None or index % PAGE >= len(page):
            return None
        return page[index % PAGE]

    def _want(self, page: int) -> None:
        if page in self._pages:
            self._pages.move_to_end(page)
            return
        if page in self._pending or self._source is None:
            return
        self._pending.add(page)
        self._load(self._gen, page)

    @work(thread=True, group="rowtable-pages")
    def _load(self, gen: int, page: int) -> None:
        source = self._source
        if source is None or gen != self._gen:
            return
        try:
            rows = source.fetch(page * PAGE, PAGE)
        except Exception as e:      # shown to the user, not raised in a worker
            self.app.call_from_thread(self._failed, gen, page, e)
            return
        self.app.call_from_thread(self._loaded, gen, page, rows)

    def _failed(self, gen: int, page: int, e: BaseException) -> None:
        if gen == self._gen:
            self._pending.discard(page)
            self.post_message(self.Failed(e))

    def _loaded(self, gen: int, page: int, rows: list[list[str]]) -> None:
        if gen != self._gen:
            return
        self._pending.discard(page)
        self._pages[page] = rows
        widened = False
        for r in rows[:50]:
            for i, v in enumerate(r[:len(self._widths)]):
                w = min(_MAX_WIDTH, cell_len(v))
                if w > self._widths[i]:
                    self._widths[i], widened = w, True
        if widened:
            self._resize()
        first = int(self.scroll_offset.y) // PAGE
        while len(self._pages) > MAX_PAGES:
            old = next(iter(self._pages))
            if old in (first, first + 1, page):
                self._pages.move_to_end(old)
                if all(p in (first, first + 1, page) for p in self._pages):
                    break
                continue
            del self._pages[old]
        self.refresh()

    # -- drawing ---------------------------------------------------------------
    def _line(self, cells: list[str], style: Style) -> list[Segment]:
        segs: list[Segment] = []
        for i, w in enumerate(self._widths):
            text = cells[i] if i < len(cells) else ""
            if cell_len(text) > w:
                text = text[:w - 1] + "…"
            segs.append(Segment(text + " " * max(0, w - cell_len(text)), style))
            if i < len(self._widths) - 1:
                segs.append(Segment(_SEP, style))
        return segs

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the widget: the header, or one row (``…`` while being read)."""
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("rowtable--header")
            cols = self._source.columns if self._source else []
            segs = self._line(cols, style)
        else:
            index = scroll_y + y - 1
            if index >= self.total:
                return Strip.blank(width, base)
            cells = self.row(index)
            if cells is None:
                self._want(index // PAGE)
                cells = ["…"]
            style = base
            if index == self.cursor_row:
                style = base + self.get_component_rich_style("rowtable--cursor")
            elif index % 2:
                style = base + self.get_component_rich_style("rowtable--odd")
            segs = self._line(cells, style)
        strip = Strip(segs).crop(scroll_x, scroll_x + width)
        return strip.extend_cell_length(width, style)

    # -- cursor ----------------------------------------------------------------
    def _rows_on_screen(self) -> int:
        return max(1, self.size.height - 1)

    def watch_cursor_row(self, old: int, new: int) -> None:
        top = int(self.scroll_offset.y)
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + self._rows_on_screen():
            self.scroll_to(y=new - self._rows_on_screen() + 1, animate=False)
        self.refresh()

    def action_move(self, delta: int) -> None:
        """Move the cursor ``delta`` rows."""
        if self.total:
            self.cursor_row = max(0, min(self.total - 1, self.cursor_row + delta))

    def action_page(self, direction: int) -> None:
        """One screen up or down."""
        self.action_move(direction * self._rows_on_screen())

    def action_edge(self, end: int) -> None:
        """The first (0) or last (1) row."""
        if self.total:
            self.cursor_row = self.total - 1 if end else 0

    def action_select(self) -> None:
        """Announce the row under the cursor."""
        if self.total:
            self.post_message(self.RowSelected(self, self.cursor_row, self.row(self.cursor_row)))

    def on_click(self, event: events.Click) -> None:
        """A click puts the cursor on the clicked row."""
        if event.y >= 1:
            index = int(self.scroll_offset.y) + event.y - 1
            if index < self.total:
                self.cursor_row = index
