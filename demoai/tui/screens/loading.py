"""What the hub and training screens share about loading: a ``loaded`` signal, set once the
results of the last reads they asked for are applied and drawn (older reads' results are
dropped), and tables filled with each column as wide as its widest cell.

Why the widths: a :class:`~textual.widgets.DataTable` measures its columns only when its
message queue is idle, and a row drawn before that is cached at the header's widths (cut
cells: ``finish`` for ``finished``). The table's cache is not dropped when it then widens
its columns, so under load such a frame stayed on screen until the cursor moved.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from rich.text import Text
from textual.widgets import DataTable

__all__ = ["Loading", "fill_table"]


def fill_table(table: DataTable, labels: Sequence[str], rows: Iterable[Sequence[str | Text]]) -> None:
    """Replace ``table``'s columns and rows; each column is given the width of its widest cell
    or label, so that the rows are drawn whole from the first frame on. Cells are text, never
    markup (a branch may be called ``[x]``)."""
    cells = [[c if isinstance(c, Text) else Text(str(c)) for c in row] for row in rows]
    table.clear(columns=True)
    for i, label in enumerate(labels):
        table.add_column(label, width=max([Text(label).cell_len, *(row[i].cell_len for row in cells)]))
    table.add_rows(cells)


class Loading:
    """A screen's ``loaded`` signal. Each read is asked for in a slot (``"branches"``,
    ``"run"``): :meth:`ask` on the UI thread returns its token, and the worker hands its
    results to :meth:`landed` (through ``call_from_thread``) with that token. ``loaded`` is
    True once every slot's last read has landed and the screen has been refreshed since."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loaded = False
        self._asked = 0
        self._latest: dict[str, int] = {}
        self._done: dict[str, int] = {}

    def ask(self, slot: str) -> int:
        """A new read in ``slot`` (UI thread): its token; ``loaded`` is False until it lands."""
        self._asked += 1
        self._latest[slot] = self._asked
        self.loaded = False
        return self._asked

    def landed(self, slot: str, token: int, show: Callable[..., Any], *args: Any) -> None:
        """Apply a read's results with ``show(*args)`` (UI thread), unless a later read in the
        same slot was asked for since: then they are dropped."""
        if self._latest.get(slot) != token:
            return
        show(*args)
        self._done[slot] = token
        self.call_after_refresh(self._settle)           # type: ignore[attr-defined]

    def _settle(self) -> None:
        self.loaded = self._done == self._latest
