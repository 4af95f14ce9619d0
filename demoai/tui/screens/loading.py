"""What the hub and training screens share about loading: a ``loaded`` signal, set once the
results of the last reads they asked for are applied and drawn (older reads' results are
dropped). Their tables are filled with :func:`~demoai.tui.widgets.tables.fill_table` (each
column as wide as its widest cell: see that module for why), re-exported here.
"""
from __future__ import annotations

from typing import Any, Callable

from demoai.tui.widgets.tables import fill_table

__all__ = ["Loading", "fill_table"]


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
