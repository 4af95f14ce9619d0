"""Evaluations: the leaderboard of models x suites at a ref (``eval list``), the gate
decisions and arena ratings (with their intervals) committed there, and one result's
per-example table (``eval show``) with filters: failed only (``f``), flipped against another
result (``x``: the paired comparison's pass -> fail and fail -> pass items)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from demoai.porcelain.tui_data.rows import cell_text
from demoai.tui.widgets.rows import RowTable
from demoai.tui.widgets.tables import fill_table

__all__ = ["EvalsScreen", "EvalResultScreen", "ListSource", "MAX_EXAMPLES"]

MAX_EXAMPLES = 100_000     # examples one result view reads


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def score_text(s: dict[str, Any]) -> str:
    """``value [lo, hi]`` of one aggregate score."""
    ci = s.get("ci") or [None, None]
    return f"{_num(s.get('value'))} [{_num(ci[0])}, {_num(ci[1])}]"


@dataclass
class ListSource:
    """Rows already in memory, as a RowTable source."""

    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Row count."""
        return len(self.rows)

    def fetch(self, offset: int, limit: int) -> list[list[str]]:
        """Rows ``offset`` .. ``offset + limit``."""
        return self.rows[offset:offset + limit]


class EvalsScreen(Screen):
    """The leaderboard at a ref: one row per result, each metric with its 95% interval."""

    BINDINGS = [Binding("enter", "open", "Examples", show=False), Binding("t", "change_ref", "Ref")]

    def __init__(self, ref: str = "HEAD") -> None:
        super().__init__()
        self.ref = ref
        self.rows: list[Any] = []
        self.records: Any = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="evals-info")
        yield DataTable(id="leaderboard", cursor_type="row")
        with VerticalScroll(id="records-pane"):
            yield Static("", id="records")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "Evaluations"
        self._load()

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        from demoai.porcelain import evaluate
        import demoai.porcelain.tui_data.records as T
        try:
            rows = evaluate.list_evals(self.app.repo, self.ref)
            records = T.eval_records(self.app.repo, self.ref)
        except Exception as e:
            self.app.call_from_thread(self.query_one("#evals-info", Static).update, Text(str(e), style="red"))
            return
        self.app.call_from_thread(self._show, rows)
        self.app.call_from_thread(self._show_records, records)

    def _show_records(self, rec: Any) -> None:
        self.records = rec
        parts: list[Any] = []
        if rec.gates:
            g = Table(title="gate decisions", title_justify="left", show_edge=False)
            for c in ("outcome", "metric", "effect [CI]", "margin", "p", "flips", "path"):
                g.add_column(c)
            colors = {"pass": "green", "fail": "red", "inconclusive": "yellow"}
            for d in rec.gates:
                test = d.get("test") or {}
                ci = test.get("ci") or [test.get("lower"), test.get("upper")]
                eff = test.get("effect", test.get("delta"))
                flips = ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in d["flips"].items())
                g.add_row(Text(d["outcome"], style=colors.get(d["outcome"], "")), d["metric"],
                          f"{_num(eff)} [{_num(ci[0] if ci else None)}, {_num(ci[1] if ci and len(ci) > 1 else None)}]",
                          _num(d.get("margin")), _num(test.get("p_value", test.get("p"))), flips or "-", d["path"])
            parts.append(g)
        for a in rec.arenas:
            t = Table(title=f"arena {a['name']} ({(a.get('counts') or {}).get('battles', 0)} battles): "
                      "ratings with 95% intervals", title_justify="left", show_edge=False)
            for c in ("rank", "model", "rating [95% CI]", "wins", "losses", "ties"):
                t.add_column(c)
            for r in a["rows"]:
                t.add_row(str(r.get("rank")), str(r.get("model")),
                          f"{r.get('rating', 0):.0f} [{r.get('lower', 0):.0f}, {r.get('upper', 0):.0f}]",
                          str(r.get("wins")), str(r.get("losses")), str(r.get("ties")))
            parts.append(t)
        from rich.console import Group
        self.query_one("#records", Static).update(Group(*parts) if parts else
                                                  Text("no gate decisions or arenas at this ref", style="dim"))

    def _show(self, rows: list[Any]) -> None:
        self.rows = rows
        metrics: list[str] = []
        for r in rows:
            metrics += [m for m in r.scores if m not in metrics]
        t = self.query_one("#leaderboard", DataTable)
        fill_table(t, ["suite", "model", *[f"{m} [95% CI]" for m in metrics], "examples", "errored", "path"],
                   [(r.suite, r.model, *[score_text(r.scores[m]) if m in r.scores else "-" for m in metrics],
                     str(r.counts.get("examples", "")), str(r.counts.get("errored", 0)), r.path) for r in rows])
        self.query_one("#evals-info", Static).update(
            f"{len(rows)} results at {self.ref}" + ("" if rows else " — run `demoai eval run SUITE` to add one"))
        t.focus()

    @on(DataTable.RowSelected, "#leaderboard")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        """The highlighted result's examples."""
        t = self.query_one("#leaderboard", DataTable)
        if 0 <= t.cursor_row < len(self.rows):
            self.app.open_eval(f"{self.ref}:{self.rows[t.cursor_row].path}")

    def action_change_ref(self) -> None:
        """The leaderboard at another ref."""
        from demoai.tui.screens.modals import AskScreen

        def done(ref: str | None) -> None:
            if ref:
                self.ref = ref.strip()
                self._load()
        self.app.push_screen(AskScreen("Leaderboard at which ref?", "HEAD~1, v1"), done)


class EvalResultScreen(Screen):
    """One result: its pins and scores, and its per-example predictions (``f``: failed only)."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("f", "toggle_failed", "Failed only"),
                Binding("x", "flipped", "Flipped vs…")]

    def __init__(self, spec: str) -> None:
        super().__init__()
        self.spec = spec
        self.failed = False
        self.against: str | None = None          # "flipped against" this result, when set
        self.flips: dict[str, str] = {}          # item -> "pass -> fail" / "fail -> pass"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading…", id="eval-info")
        yield RowTable(id="examples")
        yield Footer()

    def on_mount(self) -> None:
        self.title = self.spec
        self._load()

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        from demoai.porcelain import evaluate
        flips: dict[str, str] = {}
        note = ""
        try:
            view = evaluate.show_eval(self.app.repo, self.spec, examples=MAX_EXAMPLES, failed=self.failed)
            if self.against:
                cmp = evaluate.compare_evals(self.app.repo, self.against, self.spec, rounds=200)
                m = next((m for m in cmp.metrics if m.flips), None)
                if m is not None:
                    note = f"flips of {m.metric} against {self.against}"
                    flips.update({str(i): "pass -> fail" for i in m.flips.get("pass_to_fail", [])})
                    flips.update({str(i): "fail -> pass" for i in m.flips.get("fail_to_pass", [])})
                else:
                    note = f"no pass/fail metric to compare with {self.against}"
        except Exception as e:
            self.app.call_from_thread(self.app.show_error, e)
            if self.against:
                self.against = None
            return
        self.app.call_from_thread(self._show, view, flips, note)

    def _show(self, view: Any, flips: dict[str, str] | None = None, flip_note: str = "") -> None:
        res = view.result
        self.flips = flips or {}
        t = Table(show_edge=False, title=f"{res.suite_name} · {res.model_ref} · {res.counts.get('examples')} examples"
                  + (f", {res.counts['errored']} errored" if res.counts.get("errored") else ""),
                  title_justify="left")
        for c in ("metric", "value [95% CI]", "stderr", "n"):
            t.add_column(c)
        for m, s in res.scores.items():
            t.add_row(m, score_text(s), _num(s.get("stderr")), str(s.get("n", "")))
        note = Text("failed only (f: all)" if self.failed else "all examples (f: failed only)", style="dim")
        examples = view.examples
        if self.against:
            examples = [dict(ex, flip=self.flips[str(ex.get("item"))]) for ex in examples
                        if str(ex.get("item")) in self.flips]
            note.append(f" · {flip_note}: {len(examples)} examples (x: all again)", style="cyan")
        else:
            note.append(" · x: only the examples that flipped against another result", style="dim")
        from rich.console import Group
        self.query_one("#eval-info", Static).update(Group(t, note))
        cols: list[str] = ["flip"] if self.against else []
        for ex in examples:
            cols += [k for k in ex if k not in cols]
        rows = [[cell_text(ex.get(c)) for c in cols] for ex in examples]
        table = self.query_one("#examples", RowTable)
        table.set_source(ListSource(cols, rows))
        table.focus()

    def action_flipped(self) -> None:
        """Only the examples whose pass/fail flipped against another result (asked for);
        pressed again, every example."""
        if self.against:
            self.against = None
            self._load()
            return
        from demoai.tui.screens.modals import AskScreen
        rev, _, path = self.spec.rpartition(":")
        default = f"{rev or 'HEAD'}~1:{path}"

        def done(other: str | None) -> None:
            if other and other.strip():
                self.against = other.strip()
                self._load()
        self.app.push_screen(AskScreen(f"Flipped against which result (REV:PATH)?", default, default), done)

    def action_toggle_failed(self) -> None:
        """Show only the failed examples, or all of them."""
        self.failed = not self.failed
        self._load()
