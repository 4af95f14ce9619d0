"""Agent sessions: the fork tree of every session, the highlighted session's timeline step by
step (model calls, tool calls, observations), the workspace files after the highlighted step
and a file's text; actions fork (at the step, with an instruction), continue and replay
(recorded / reexecute), each confirmed and run through the porcelain in a worker, with its
progress and verdict in the log below."""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, RichLog, Static, Tree

from demoai.tui.screens.modals import AskScreen, ConfirmScreen
from demoai.tui.widgets.tables import fill_table

__all__ = ["SessionsScreen"]

_TIMELINE = ("step", "event", "summary")
_WORKSPACE = ("workspace file", "bytes")
_STATUS = {"finished": "green", "running": "cyan", "max_steps": "red", "failed": "red",
           "interrupted": "yellow", "unreadable": "magenta"}


class SessionsScreen(Screen):
    """Sessions and their fork tree; a session's timeline and workspace; fork/continue/replay."""

    BINDINGS = [
        Binding("f", "fork", "Fork at step"),
        Binding("c", "continue_run", "Continue"),
        Binding("r", "replay('recorded')", "Replay"),
        Binding("R", "replay('reexecute')", "Re-execute"),
        Binding("F5", "reload", "Reload", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.session: str | None = None
        self.events: list[tuple[int, str, str]] = []     # (step, type, summary) per table row
        self.files: list[str] = []
        self.busy = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield Tree("sessions", id="session-tree")
            with Vertical(id="session-main"):
                yield Static("", id="session-info")
                yield DataTable(id="timeline", cursor_type="row")
                with Horizontal(id="workspace-row"):
                    yield DataTable(id="workspace", cursor_type="row")
                    with VerticalScroll(id="file-pane"):
                        yield Static("", id="file-view")
        yield RichLog(id="action-log", max_lines=500, markup=False, wrap=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Sessions"
        fill_table(self.query_one("#timeline", DataTable), _TIMELINE, [])
        fill_table(self.query_one("#workspace", DataTable), _WORKSPACE, [])
        tree = self.query_one("#session-tree", Tree)
        tree.show_root = False
        self._load_list()

    # -- reading ---------------------------------------------------------------
    @work(thread=True, exclusive=True, group="sessions")
    def _load_list(self, select: str | None = None) -> None:
        from demoai.porcelain import browse
        sessions = browse.session_list(self.app.repo)
        self.app.call_from_thread(self._show_list, sessions, select)

    def _show_list(self, sessions: list[Any], select: str | None) -> None:
        tree = self.query_one("#session-tree", Tree)
        tree.clear()
        names = {s.name for s in sessions}
        children: dict[str | None, list[Any]] = {}
        for s in sorted(sessions, key=lambda s: s.name):
            parent = s.forked_from if s.forked_from in names else None
            children.setdefault(parent, []).append(s)

        def add(node: Any, parent: str | None) -> None:
            for s in children.get(parent, []):
                at = f" @{s.parent.get('step')}" if s.forked_from else ""
                label = Text.assemble(s.name, (f" {s.status}", _STATUS.get(s.status, "dim")),
                                      (f" {s.steps} steps{at}", "dim"))
                child = node.add(label, data=s.name, expand=True)
                if children.get(s.name):
                    add(child, s.name)
                else:
                    child.allow_expand = False
        add(tree.root, None)
        tree.root.expand_all()
        if not sessions:
            self.query_one("#session-info", Static).update("no sessions in this repository")
            return
        target = select or self.session or sessions[0].name
        self._select_node(target)
        tree.focus()

    def _select_node(self, name: str) -> None:
        tree = self.query_one("#session-tree", Tree)
        for line in range(tree.last_line + 1):
            node = tree.get_node_at_line(line)
            if node is not None and node.data == name:
                tree.move_cursor(node)
                break
        self.open_session(name)

    @on(Tree.NodeHighlighted, "#session-tree")
    def _tree_highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node.data and event.node.data != self.session:
            self.open_session(event.node.data)

    def open_session(self, name: str) -> None:
        """Show session ``name``'s timeline."""
        self.session = name
        self._load_timeline(name)

    @work(thread=True, exclusive=True, group="timeline")
    def _load_timeline(self, name: str) -> None:
        from demoai.porcelain import browse
        try:
            tl = browse.session_timeline(self.app.repo, name)
        except Exception as e:
            self.app.call_from_thread(self.query_one("#session-info", Static).update,
                                      Text(f"{name}: {e}", style="red"))
            return
        self.app.call_from_thread(self._show_timeline, tl)

    def _show_timeline(self, tl: Any) -> None:
        s = tl.session
        info = Text.assemble((s.name, "bold"), " · ", (s.status, _STATUS.get(s.status, "")),
                             f" · {s.steps} steps · {tl.events} events")
        if s.forked_from:
            info.append(f" · forked from {s.forked_from} at step {s.parent.get('step')}", style="cyan")
        if tl.forks:
            info.append(f" · forks: {', '.join(tl.forks)}", style="cyan")
        if tl.truncated:
            info.append(" · (first events only)", style="dim")
        self.query_one("#session-info", Static).update(info)
        t = self.query_one("#timeline", DataTable)
        self.events = [(st.step, e.type, e.summary) for st in tl.steps for e in st.events]
        fill_table(t, _TIMELINE, [(str(step), kind, summary) for step, kind, summary in self.events])
        if self.events:
            t.move_cursor(row=len(self.events) - 1)
        self._load_workspace(s.name, self.events[-1][0] if self.events else 0)

    def selected_step(self) -> int:
        """The step of the highlighted event (the last step when none is)."""
        t = self.query_one("#timeline", DataTable)
        if 0 <= t.cursor_row < len(self.events):
            return self.events[t.cursor_row][0]
        return self.events[-1][0] if self.events else 0

    @on(DataTable.RowHighlighted, "#timeline")
    def _step_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.session and 0 <= event.cursor_row < len(self.events):
            self._load_workspace(self.session, self.events[event.cursor_row][0])

    @work(thread=True, exclusive=True, group="workspace")
    def _load_workspace(self, name: str, step: int) -> None:
        from demoai.porcelain import agent
        try:
            st = agent.session_step(self.app.repo, f"{name}@{step}")
            files = dict(st.workspace)
        except Exception as e:
            files = {}
            self.app.call_from_thread(self.query_one("#file-view", Static).update, f"workspace: {e}")
        self.app.call_from_thread(self._show_workspace, name, step, files)

    def _show_workspace(self, name: str, step: int, files: dict[str, int]) -> None:
        t = self.query_one("#workspace", DataTable)
        self.files = list(files)
        self.workspace_step = step
        fill_table(t, _WORKSPACE, [(p, f"{n:,}") for p, n in files.items()])
        self.query_one("#file-view", Static).update(
            Text(f"workspace after step {step}: {len(files)} files (enter on a file shows it)", style="dim"))

    @on(DataTable.RowSelected, "#workspace")
    def _file_selected(self, event: DataTable.RowSelected) -> None:
        if self.session and 0 <= event.cursor_row < len(self.files):
            self._show_file(self.session, self.workspace_step, self.files[event.cursor_row])

    @work(thread=True, exclusive=True, group="file")
    def _show_file(self, name: str, step: int, path: str) -> None:
        from demoai.porcelain import agent
        data = agent.workspace_files(self.app.repo, f"{name}@{step}").get(path, b"")
        try:
            text = data[:65536].decode()
        except UnicodeDecodeError:
            text = f"({len(data):,} bytes of binary data)"
        self.app.call_from_thread(self.query_one("#file-view", Static).update,
                                  Text.assemble((f"{path} @ step {step}\n", "bold"), text))

    def action_reload(self) -> None:
        """Read the sessions again."""
        self._load_list()

    # -- actions (they write: confirmed first) ------------------------------------
    def log_line(self, text: str | Text) -> None:
        """A line in the action log."""
        self.query_one("#action-log", RichLog).write(text)

    def action_fork(self) -> None:
        """Fork the session at the highlighted step, with an instruction."""
        if not self.session or self.busy:
            return
        name, step = self.session, self.selected_step()

        def asked(instruction: str | None) -> None:
            if instruction is None:
                return
            self.app.push_screen(ConfirmScreen(f"Fork {name} at step {step}"
                                               + (f" with the instruction {instruction!r}" if instruction else "")
                                               + "? (writes a new session)"),
                                 lambda yes: yes and self._fork(name, step, instruction or None))
        self.app.push_screen(AskScreen(f"Fork {name} at step {step}: instruction for the model (may be empty)",
                                       "Write bye.txt instead"), asked)

    @work(thread=True, exclusive=True, group="action")
    def _fork(self, name: str, step: int, instruction: str | None) -> None:
        from demoai.porcelain import agent
        self._busy(True, f"forking {name} at step {step}…")
        try:
            f = agent.fork_session(self.app.repo, f"{name}@{step}", instruction=instruction)
        except Exception as e:
            self._done_error(e)
            return
        self._busy(False, Text(f"forked {name}@{step} as {f.session} (continue it with c)", style="green"))
        self.app.call_from_thread(self._load_list, f.session)

    def action_continue_run(self) -> None:
        """Continue the session from its last step (runs the model; confirmed first)."""
        if not self.session or self.busy:
            return
        name = self.session
        self.app.push_screen(ConfirmScreen(f"Continue {name} from its last step? (runs the model and the tools, "
                                           "commits each step)"), lambda yes: yes and self._continue(name))

    @work(thread=True, exclusive=True, group="action")
    def _continue(self, name: str) -> None:
        from demoai.porcelain import agent
        self._busy(True, f"continuing {name}…")

        def on_event(kind: str, data: dict[str, Any]) -> None:
            step = data.get("step", "")
            detail = data.get("tool") or data.get("answer") or data.get("message") or ""
            self.app.call_from_thread(self.log_line, f"  step {step}: {kind} {str(detail)[:100]}")
        try:
            r = agent.continue_session(self.app.repo, name, on_event=on_event)
        except Exception as e:
            self._done_error(e)
            return
        self._busy(False, Text(f"{r.session}: {r.status} after {r.steps} steps"
                               + (f" — {r.answer}" if r.answer else ""),
                               style="green" if r.status == "finished" else "red"))
        self.app.call_from_thread(self._load_list, name)

    def action_replay(self, mode: str) -> None:
        """Replay the session: ``recorded`` (verify the hash chain, nothing runs) or
        ``reexecute`` (the recorded tool calls again in a fresh sandbox; confirmed first)."""
        if not self.session or self.busy:
            return
        name = self.session
        if mode == "recorded":
            self._replay(name, mode)
            return
        self.app.push_screen(ConfirmScreen(f"Re-execute the tool calls of {name} in a fresh sandbox?"),
                             lambda yes: yes and self._replay(name, mode))

    @work(thread=True, exclusive=True, group="action")
    def _replay(self, name: str, mode: str) -> None:
        from demoai.porcelain import agent
        self._busy(True, f"replaying {name} ({mode})…")

        def on_step(d: dict[str, Any]) -> None:
            self.app.call_from_thread(self.log_line, f"  step {d.get('step')}: {d.get('tool', '')} "
                                                f"{'same' if d.get('same') else 'DIFFERENT'}")
        try:
            r = agent.replay(self.app.repo, name, mode, on_step=on_step if mode == "reexecute" else None)
        except Exception as e:
            self._done_error(e)
            return
        if mode == "recorded":
            ok = r.verified
            verdict = (f"{name}: hash chain {'verified' if ok else 'BROKEN'} · {r.events} events, "
                       f"{r.steps} steps re-walked in {r.seconds:.2f} s")
        else:
            ok = r.identical
            fd = r.first_divergence
            verdict = (f"{name}: {r.steps_replayed} steps re-executed · "
                       + ("identical observations" if ok else
                          f"first divergence at step {fd.step} ({fd.tool}: {', '.join(fd.fields)})" if fd else "diverged"))
        self._busy(False, Text(verdict, style="green" if ok else "red"))

    def _busy(self, busy: bool, line: str | Text) -> None:
        self.busy = busy
        self.app.call_from_thread(self.log_line, line)
        if not busy:
            self.app.call_from_thread(self.app.notify, str(line))

    def _done_error(self, e: BaseException) -> None:
        self.busy = False
        self.app.call_from_thread(self.log_line, Text(f"error: {e}", style="red"))
        self.app.call_from_thread(self.app.show_error, e)
