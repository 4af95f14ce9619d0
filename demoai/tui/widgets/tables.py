"""Filling a :class:`~textual.widgets.DataTable` so that its rows are drawn whole from the
first frame on.

A DataTable measures its auto-width columns only when its message queue is idle, and a row
drawn before that is cached at the header's widths (cut cells: ``finish`` for
``finished``). The cache is not dropped when the table then widens its columns, so under
load such a frame stayed on screen until the cursor moved. :func:`fill_table` gives every
column its width up front, from its widest cell.

(The history screen appends pages of rows to columns that stay; it widens them itself, in
its own module, so that nothing else of the TUI is imported before its first frame.)
"""
from __future__ import annotations

from typing import Iterable, Sequence

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

__all__ = ["cell", "cell_width", "fill_table"]


def cell(value: object) -> Text:
    """``value`` as a table cell: a :class:`~rich.text.Text` as it is (its styles kept),
    anything else as its plain text, never read as markup (a branch may be called ``[x]``)."""
    return value if isinstance(value, Text) else Text(str(value))


def cell_width(text: Text) -> int:
    """The cells ``text`` takes in a table: its widest line."""
    return max((cell_len(line) for line in text.plain.splitlines()), default=0)


def fill_table(table: DataTable, labels: Sequence[str | Text], rows: Iterable[Sequence[object]]) -> None:
    """Replace ``table``'s columns and rows; each column is given the width of its widest cell
    or label, so that the rows are drawn whole from the first frame on. Cells are text, never
    markup; a :class:`~rich.text.Text` cell keeps its styles. The cursor goes back to the
    first row (move it after, where a screen keeps it elsewhere)."""
    heads = [cell(label) for label in labels]
    cells = [[cell(c) for c in row] for row in rows]
    table.clear(columns=True)
    for i, head in enumerate(heads):
        table.add_column(head, width=max([cell_width(head), *(cell_width(row[i]) for row in cells if i < len(row))]))
    table.add_rows(cells)
