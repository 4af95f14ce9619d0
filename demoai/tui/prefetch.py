"""The first page of the history, read in a thread that starts before Textual is imported.

Importing Textual and starting the app take a few hundred milliseconds; reading the first
screenful of commits takes tens. :func:`start` reads them meanwhile, in a daemon thread, so
that the history screen has its rows when it mounts and its first frame shows commits. The
screen never waits for it: when the page is not ready yet it reads on in a worker, and any
error is raised there, where the screen shows errors. This module imports neither Textual
nor the porcelain at import time.
"""
from __future__ import annotations

import shutil
import threading
from typing import Any

__all__ = ["HistoryPrefetch", "start", "FIRST_PAGE"]

FIRST_PAGE = 40
"""Commits read at least (more when the terminal is taller): a screenful, no more."""


class HistoryPrefetch:
    """A :class:`~demoai.porcelain.tui_data.history.HistoryWalker` over ``repo`` and its
    first page of ``n`` commits, read in a thread. :meth:`take` hands them over once."""

    def __init__(self, repo: Any, n: int, *, sessions: bool = True) -> None:
        self.repo = repo
        self.n = n
        self.sessions = sessions
        self._done = threading.Event()
        self._taken = False
        self._result: tuple[Any, list[Any]] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="demoai-history-prefetch", daemon=True)

    def _run(self) -> None:
        try:
            from demoai.porcelain.tui_data.history import HistoryWalker
            walker = HistoryWalker(self.repo, sessions=self.sessions)
            self._result = (walker, walker.next_page(self.n))
        except BaseException as e:            # handed to whoever takes the page
            self._error = e
        finally:
            self._done.set()

    def ready(self) -> bool:
        """Whether the page has been read (or failed) and not taken yet."""
        return self._done.is_set() and not self._taken

    def take(self, timeout: float | None = None) -> tuple[Any, list[Any]] | None:
        """(walker, first page), waiting at most ``timeout`` seconds (None: until read);
        None when it is not ready by then or was taken already. Raises what reading raised."""
        if self._taken or not self._done.wait(timeout):
            return None
        self._taken = True
        if self._error is not None:
            raise self._error
        return self._result


def start(repo: Any, *, sessions: bool = True) -> HistoryPrefetch:
    """Start reading the first screenful of ``repo``'s history (all refs, session refs with
    ``sessions``) in a thread."""
    pre = HistoryPrefetch(repo, max(FIRST_PAGE, shutil.get_terminal_size((160, 48)).lines), sessions=sessions)
    pre._thread.start()
    return pre
