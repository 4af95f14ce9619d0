"""Modal screens: the key-binding help, a yes/no confirmation before anything is written,
and a one-line question (a ref to diff against, a fork's instruction)."""
from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

__all__ = ["HelpScreen", "ConfirmScreen", "AskScreen"]


class HelpScreen(ModalScreen[None]):
    """Every key binding of the screen below and of the app, in one table."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, bindings: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.rows = bindings

    def compose(self) -> ComposeResult:
        t = Table(title="Keys", show_edge=False, expand=True)
        t.add_column("key", style="bold")
        t.add_column("action")
        t.add_column("where", style="dim")
        for key, desc, where in self.rows:
            t.add_row(key, desc, where)
        with VerticalScroll(id="help-box", classes="modal-box"):
            yield Static(t, id="help-table")
            yield Label("ctrl+p: command palette · esc: close", classes="hint")

    def action_dismiss(self) -> None:
        """Close the help."""
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """Yes (y, enter on Yes) or no (n, escape) before an action that writes."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box"):
            yield Label(self.question, id="question")
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", variant="primary", id="yes")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        """Answer the question."""
        self.dismiss(yes)


class AskScreen(ModalScreen["str | None"]):
    """One line of text (enter) or nothing (escape)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, placeholder: str = "", value: str = "") -> None:
        super().__init__()
        self.question, self.placeholder, self.value = question, placeholder, value

    def compose(self) -> ComposeResult:
        with Vertical(classes="modal-box"):
            yield Label(self.question)
            yield Input(value=self.value, placeholder=self.placeholder, id="answer")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        """Close without an answer."""
        self.dismiss(None)
