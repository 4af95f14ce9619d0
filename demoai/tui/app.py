"""The DemoAI terminal UI: an :class:`~textual.app.App` with six modes (history, artifacts,
sessions, evaluations, training and scans, hub) and the screens they open (typed diffs,
dataset rows, eval examples).

Everything is read through :mod:`demoai.porcelain`, in workers, so the UI never waits on
I/O; the porcelain is imported after the first screen is drawn. Read-only unless an action
that writes (fork, continue, replay, checkout, push, fetch) is confirmed.
"""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.screen import Screen

if TYPE_CHECKING:
    from demoai.porcelain import Repository

__all__ = ["DemoAIApp", "ViewCommands"]


def _history() -> Screen:
    from demoai.tui.screens.history import HistoryScreen
    return HistoryScreen()


def _artifacts() -> Screen:
    from demoai.tui.screens.dataset import TreeScreen
    return TreeScreen()


def _sessions() -> Screen:
    from demoai.tui.screens.sessions import SessionsScreen
    return SessionsScreen()


def _evals() -> Screen:
    from demoai.tui.screens.evals import EvalsScreen
    return EvalsScreen()


def _training() -> Screen:
    from demoai.tui.screens.training import TrainingScreen
    return TrainingScreen()


def _hub() -> Screen:
    from demoai.tui.screens.hub import HubScreen
    return HubScreen()


class ViewCommands(Provider):
    """Command palette entries: the views, and opening any dataset or eval result at HEAD."""

    async def startup(self) -> None:
        """Read the artifacts at HEAD once (in a thread) for the dataset and eval entries."""
        import asyncio
        app = self.app
        assert isinstance(app, DemoAIApp)

        def entries() -> list[tuple[str, str]]:
            from demoai.porcelain import browse
            try:
                return [(e.path, e.kind) for e in browse.tree(app.repo).entries
                        if e.kind in ("dataset", "eval")]
            except Exception:
                return []
        self.entries = await asyncio.to_thread(entries)

    def _commands(self) -> Iterable[tuple[str, Any, str]]:
        app = self.app
        assert isinstance(app, DemoAIApp)
        for mode, title in (("history", "History"), ("artifacts", "Artifacts"),
                            ("sessions", "Sessions"), ("evals", "Evaluations"),
                            ("training", "Training"), ("hub", "Hub")):
            yield f"View: {title}", (lambda m=mode: app.switch_mode(m)), f"switch to the {title.lower()} view"
        for path, kind in getattr(self, "entries", []):
            if kind == "dataset":
                yield f"Open dataset {path}", (lambda p=path: app.open_dataset(p, None)), "rows, schema, query"
            else:
                yield f"Open eval result {path}", (lambda p=path: app.open_eval(f"HEAD:{p}")), "per-example table"

    async def discover(self) -> Hits:
        """Every command, before anything is typed."""
        for name, cb, help_ in self._commands():
            yield Hit(1.0, name, cb, help=help_)

    async def search(self, query: str) -> Hits:
        """Commands whose name matches ``query`` (fuzzy)."""
        matcher = self.matcher(query)
        for name, cb, help_ in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), cb, help=help_)


class DemoAIApp(App):
    """Browse a DemoAI repository: history, typed diffs, datasets, sessions, evaluations."""

    CSS_PATH = "demoai.tcss"
    TITLE = "DemoAI"
    COMMANDS = App.COMMANDS | {ViewCommands}
    MODES = {"history": _history, "artifacts": _artifacts, "sessions": _sessions, "evals": _evals,
             "training": _training, "hub": _hub}
    DEFAULT_MODE = "history"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("1", "switch_mode('history')", "History"),
        Binding("2", "switch_mode('artifacts')", "Artifacts"),
        Binding("3", "switch_mode('sessions')", "Sessions"),
        Binding("4", "switch_mode('evals')", "Evals"),
        Binding("5", "switch_mode('training')", "Training"),
        Binding("6", "switch_mode('hub')", "Hub"),
    ]

    def __init__(self, repo: "Repository | str | os.PathLike[str] | None" = None, *,
                 mode: str = "history", screenshot: str | None = None, prefetch: Any = None) -> None:
        super().__init__()
        self.start_mode = mode
        self.screenshot_path = screenshot
        self.prefetch = prefetch        # a demoai.tui.prefetch.HistoryPrefetch, for the first frame
        self._repo: Any = None if repo is None or isinstance(repo, (str, os.PathLike)) else repo
        self._path = "." if repo is None else repo if self._repo is None else None
        self._repo_lock = threading.Lock()

    @property
    def repo(self) -> "Repository":
        """The repository, opened on first use (from whichever worker asks first)."""
        with self._repo_lock:
            if self._repo is None:
                from demoai.porcelain import open_repository
                self._repo = open_repository(self._path)
            return self._repo

    def on_mount(self) -> None:
        if self.start_mode != self.DEFAULT_MODE:
            self.switch_mode(self.start_mode)
        if self.screenshot_path:
            self.set_timer(0.2, self._shoot_when_ready)

    def _shoot_when_ready(self) -> None:
        """With ``screenshot``: save the screen as SVG once no worker is busy and the screen
        has what it loads (the history its first commits), then exit; at most ~30 s."""
        busy = [w for w in self.workers if w.is_running]
        loaded = getattr(self.screen, "commit_count", None)
        self._shot_waits = getattr(self, "_shot_waits", 0) + 1
        ready = not busy and not (callable(loaded) and not loaded())
        # ready twice in a row, 0.2 s apart: what the last worker handed over is drawn too
        self._shot_ready = getattr(self, "_shot_ready", 0) + 1 if ready else 0
        if self._shot_ready < 2 and self._shot_waits < 300:
            self.set_timer(0.2 if ready else 0.1, self._shoot_when_ready)
            return
        from pathlib import Path
        p = Path(self.screenshot_path).resolve()
        self.save_screenshot(filename=p.name, path=str(p.parent))
        self.exit()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's own commands plus help."""
        yield from super().get_system_commands(screen)
        yield SystemCommand("Keys", "Every key binding", self.action_help)

    # -- navigation --------------------------------------------------------------
    def open_diff(self, rev: str, against: str | None = None) -> Any:
        """The typed diff of ``rev`` against its first parent or ``against``."""
        from demoai.tui.screens.diff import DiffScreen
        return self.push_screen(DiffScreen(rev, against))

    def open_dataset(self, path: str, ref: str | None) -> Any:
        """The rows of dataset ``path`` at ``ref`` (awaitable: until the screen is shown)."""
        from demoai.tui.screens.dataset import DatasetScreen
        return self.push_screen(DatasetScreen(path, ref))

    def open_eval(self, spec: str) -> Any:
        """An eval result's examples (``REV:PATH``)."""
        from demoai.tui.screens.evals import EvalResultScreen
        return self.push_screen(EvalResultScreen(spec))

    def show_error(self, e: BaseException) -> None:
        """An error as the CLI words it: a notification (errors of the library carry a code)."""
        code = getattr(e, "code", None)
        self.notify(str(e), title=f"error: {code}" if code else "error", severity="error", timeout=8)

    def action_help(self) -> None:
        """Every key binding in force here."""
        from demoai.tui.screens.modals import HelpScreen
        rows, seen = [], set()
        for key, ab in self.active_bindings.items():
            b = ab.binding
            if not b.description or (key, b.description) in seen:
                continue
            seen.add((key, b.description))
            where = "app" if ab.node is self else type(ab.node).__name__.removesuffix("Screen")
            rows.append((self.get_key_display(b), b.description, where))
        rows.append(("ctrl+p", "Command palette", "app"))
        self.push_screen(HelpScreen(sorted(rows, key=lambda r: r[2] != "app")))

    def on_unmount(self) -> None:
        if self._repo is not None and self._path is not None:
            self._repo.close()
