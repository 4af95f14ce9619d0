"""The hub view: every branch here and on a remote (the hub's refs, or the remote-tracking
refs when the hub cannot be reached) with commits ahead and behind; push the highlighted
branch and fetch, each confirmed first and run through the porcelain in a worker, with a
progress bar and the outcome in the log below."""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, ProgressBar, RichLog, Static

from demoai.tui.screens.loading import Loading, fill_table
from demoai.tui.screens.modals import AskScreen, ConfirmScreen

__all__ = ["HubScreen"]

_STATE = {"up to date": "green", "ahead": "cyan", "behind": "yellow", "diverged": "red",
          "local only": "dim", "remote only": "magenta", "fetch to compare": "yellow"}
_COLUMNS = ("branch", "here", "on the hub", "ahead", "behind", "state")


class HubScreen(Loading, Screen):
    """Branches vs a remote (ahead/behind); ``p`` push, ``f`` fetch, ``o`` another remote.
    ``loaded``: the last read of the branches is on screen."""

    BINDINGS = [
        Binding("p", "push", "Push branch"),
        Binding("f", "fetch", "Fetch"),
        Binding("o", "change_remote", "Remote"),
        Binding("g", "reload", "Refresh"),
    ]

    def __init__(self, remote: str | None = None) -> None:
        super().__init__()
        self.remote = remote
        self.status: Any = None
        self.busy = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading remotes…", id="hub-info")
        yield DataTable(id="branches", cursor_type="row")
        yield ProgressBar(id="hub-progress", show_eta=False)
        yield RichLog(id="hub-log", max_lines=500, markup=False, wrap=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Hub"
        self.query_one("#branches", DataTable).add_columns(*_COLUMNS)
        self.query_one("#hub-progress").display = False        # shown from the first push or fetch on
        self._load()

    def _load(self) -> None:
        """Read the branches (in a worker); ``loaded`` is False until they are drawn."""
        self._read(self.ask("branches"))

    @work(thread=True, exclusive=True, group="hub")
    def _read(self, token: int) -> None:
        import demoai.porcelain.tui_data.hub as T
        from demoai.porcelain import remote as R
        repo = self.app.repo
        try:
            names = R.remotes(repo)
            if self.remote is None:
                if not names:
                    self.app.call_from_thread(self.landed, "branches", token, self._info, Text(
                        "no remote: add one with `demoai remote add origin http://HOST:PORT/OWNER/NAME`", style="yellow"))
                    return
                self.remote = "origin" if "origin" in names else sorted(names)[0]
            status = T.hub_status(repo, self.remote)
        except Exception as e:
            self.app.call_from_thread(self.landed, "branches", token, self._failed, e)
            return
        self.app.call_from_thread(self.landed, "branches", token, self._show, status)

    def _info(self, text: str | Text) -> None:
        self.query_one("#hub-info", Static).update(text)

    def _failed(self, e: BaseException) -> None:
        self._info(Text(f"{self.remote}: {e}", style="red"))
        self.app.show_error(e)

    def _show(self, status: Any) -> None:
        self.status = status
        info = Text.assemble((status.remote, "bold"), f" {status.url} · {len(status.branches)} branches · ")
        if status.source == "hub":
            info.append("the hub's refs, read just now", style="green")
        else:
            info.append("remote-tracking refs of the last fetch/push", style="yellow")
            if status.error:
                info.append(f" (the hub did not answer: {status.error})", style="dim")
        self._info(info)
        t = self.query_one("#branches", DataTable)
        fill_table(t, _COLUMNS, [(b.branch, (b.local or "-")[:12], (b.remote or "-")[:12],
                                  "-" if b.ahead is None else str(b.ahead), "-" if b.behind is None else str(b.behind),
                                  Text(b.state, style=_STATE.get(b.state, ""))) for b in status.branches])
        t.focus()

    def selected_branch(self) -> str | None:
        """The highlighted branch's name."""
        t = self.query_one("#branches", DataTable)
        if self.status is None or not 0 <= t.cursor_row < len(self.status.branches):
            return None
        return self.status.branches[t.cursor_row].branch

    def action_reload(self) -> None:
        """Ask the hub again."""
        self._load()

    def action_change_remote(self) -> None:
        """Compare with another remote (a name or a URL)."""
        def done(name: str | None) -> None:
            if name and name.strip():
                self.remote = name.strip()
                self._load()
        self.app.push_screen(AskScreen("Which remote (a name or a hub URL)?", "origin", self.remote or ""), done)

    # -- writes (confirmed) ------------------------------------------------------------
    def log_line(self, text: str | Text) -> None:
        """A line in the log."""
        self.query_one("#hub-log", RichLog).write(text)

    def _progress(self, phase: str, done: int, total: int) -> None:
        bar = self.query_one("#hub-progress", ProgressBar)
        bar.update(total=max(total, 1), progress=done)
        if done == total:
            self.log_line(f"  {phase}: {done:,}/{total:,}")

    def action_push(self) -> None:
        """Push the highlighted branch to the remote (confirmed first)."""
        branch = self.selected_branch()
        if branch is None or self.busy or self.remote is None:
            return
        remote = self.remote
        self.app.push_screen(ConfirmScreen(f"Push {branch} to {remote}? (moves the hub's branch {branch})"),
                             lambda yes: yes and self._push(remote, branch))

    @work(thread=True, exclusive=True, group="hub-action")
    def _push(self, remote: str, branch: str) -> None:
        from demoai.porcelain.push import push
        self._start(f"pushing {branch} to {remote}…")
        try:
            r = push(self.app.repo, remote, [branch], progress=self._progress_cb)
        except Exception as e:
            self._fail(e)
            return
        moved = ", ".join(f"{u['ref']} {(u.get('old') or '-')[:8]} -> {u['new'][:8]}" for u in r.get("updated", []))
        sent = (r.get("stats") or {}).get("bytes_sent", 0)
        self._finish(Text(f"pushed {branch}: {moved or 'already up to date'} · {sent:,} bytes sent", style="green"))

    def action_fetch(self) -> None:
        """Fetch everything the remote shares (confirmed first: it moves remote-tracking refs)."""
        if self.busy or self.remote is None:
            return
        remote = self.remote
        self.app.push_screen(ConfirmScreen(f"Fetch from {remote}? (updates refs/remotes/{remote}/*, tags, sessions)"),
                             lambda yes: yes and self._fetch(remote))

    @work(thread=True, exclusive=True, group="hub-action")
    def _fetch(self, remote: str) -> None:
        from demoai.porcelain.fetch import fetch
        self._start(f"fetching from {remote}…")
        try:
            r = fetch(self.app.repo, remote, progress=self._progress_cb)
        except Exception as e:
            self._fail(e)
            return
        got = (r.get("stats") or {}).get("bytes_received", 0)
        self._finish(Text(f"fetched from {remote}: {len(r.get('updated', []))} refs moved, "
                          f"{len(r.get('kept', []))} kept · {got:,} bytes received", style="green"))

    def _progress_cb(self, phase: str, done: int, total: int) -> None:
        self.app.call_from_thread(self._progress, phase, done, total)

    def _start(self, line: str) -> None:
        self.busy = True
        self.app.call_from_thread(self._show_progress)
        self.app.call_from_thread(self.log_line, line)

    def _show_progress(self) -> None:
        bar = self.query_one("#hub-progress", ProgressBar)
        bar.update(total=None, progress=0)
        bar.display = True

    def _finish(self, line: Text) -> None:
        self.busy = False
        self.app.call_from_thread(self.log_line, line)
        self.app.call_from_thread(self.app.notify, str(line))
        self.app.call_from_thread(self._load)

    def _fail(self, e: BaseException) -> None:
        self.busy = False
        self.app.call_from_thread(self.log_line, Text(f"error: {e}", style="red"))
        self.app.call_from_thread(self.app.show_error, e)

    @on(DataTable.RowSelected, "#branches")
    def _selected(self, event: DataTable.RowSelected) -> None:
        branch = self.selected_branch()
        if branch and self.status is not None:
            b = self.status.branches[event.cursor_row]
            if b.local and b.remote and b.ahead is not None:
                self.app.open_diff(b.local, against=b.remote)
