"""What every face of the ``demoai`` command shares: consoles, the error-to-message table,
JSON output and progress bars."""
from __future__ import annotations

import atexit
import functools
import json
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

import click

from demoai import errors as E

if TYPE_CHECKING:
    from demoai.porcelain import Repository

__all__ = ["print_rows", "short", "print_stat", "out", "err", "esc", "ERROR_HINTS", "handle_errors", "open_repo", "print_json",
           "Bars", "json_option", "human_bytes", "cell", "print_fields", "error_json", "JSON_FLAG"]


class _LazyConsole:
    """A rich Console made on first use, so a command that prints only JSON never imports
    rich's console machinery (a few tens of ms of every short command)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    def get(self) -> Any:
        """The real ``rich.console.Console``."""
        if self._console is None:
            from rich.console import Console
            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


def esc(text: str) -> str:
    """Escape rich markup in ``text`` (rich is imported on first use)."""
    from rich.markup import escape
    return escape(text)


out = _LazyConsole(highlight=False, soft_wrap=True)
err = _LazyConsole(stderr=True, highlight=False, soft_wrap=True)

# One table from error type to the hint printed after its message (most specific first).
ERROR_HINTS: list[tuple[type[E.DemoAIError], str]] = [
    (E.NotARepository, "run `demoai init` first"),
    (E.MergeConflict, "resolve the files, `demoai add` them and `demoai commit`, or `demoai merge --abort`"),
    (E.DirtyWorkingTree, ""),
    (E.LockTimeout, "another demoai process is working in this repository"),
    (E.RefConflict, ""),
    (E.RefNotFound, "see `demoai branch` and `demoai log`"),
    (E.IntegrityError, "run `demoai fsck` to list damaged objects"),
    (E.UnknownKind, ""),
    (E.InvalidArtifact, "the repository was not changed"),
    (E.DemoAIError, ""),
]


def _hint(e: E.DemoAIError) -> str:
    for cls, hint in ERROR_HINTS:
        if isinstance(e, cls):
            return hint
    return ""


JSON_FLAG = "as_json"   # the parameter ``json_option`` adds; handle_errors reads it


def error_json(code: str, message: str, fields: dict[str, Any] | None = None) -> str:
    """The one JSON line an error becomes under ``--json``:
    ``{"error": {"code", "message", "fields"}}``."""
    return json.dumps({"error": {"code": code, "message": message, "fields": fields or {}}},
                      default=str, ensure_ascii=False)


def _wants_json(kw: dict[str, Any]) -> bool:
    if kw.get(JSON_FLAG):
        return True
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.params.get(JSON_FLAG))


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a DemoAIError into one red line on stderr and exit status 1; with ``--json``
    (whichever side of ``json_option`` this decorator sits), into one JSON line on stderr
    (:func:`error_json`), same status."""
    @functools.wraps(fn)
    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except E.DemoAIError as e:
            if os.environ.get("DEMOAI_DEBUG"):
                raise
            if _wants_json(kw):
                d = e.to_dict()
                click.echo(error_json(d["code"], d["message"], d["fields"]), err=True)
                sys.exit(1)
            hint = _hint(e)
            err.print(f"[red]error:[/red] {esc(e.message)}" + (f" [dim]({esc(hint)})[/dim]" if hint else ""),
                      markup=True, highlight=False)
            if isinstance(e, E.MergeConflict):
                for c in getattr(e, "conflicts", []):
                    err.print(f"  conflict: {c['path']}: {c['reason']}", markup=False)
            sys.exit(1)
    return wrapper


def open_repo() -> "Repository":
    """The repository holding the current directory, closed at exit."""
    from demoai.porcelain import open_repository
    repo = open_repository()
    # Close the repository's open pack files before interpreter shutdown, when their
    # finalizers would otherwise run without imports and print "Exception ignored" noise.
    atexit.register(repo.close)
    return repo


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON (what ``--json`` gives)."""
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


class Bars:
    """Rich progress bars keyed by a label; a callback for porcelain progress."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and err.is_terminal
        self.progress: Any = None
        if self.enabled:
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                       TimeRemainingColumn, TransferSpeedColumn)
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     DownloadColumn(), TransferSpeedColumn(),
                                     TimeRemainingColumn(), console=err.get(), transient=True)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "Bars":
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.progress.stop()

    def __call__(self, label: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if label not in self.tasks:
            self.tasks[label] = self.progress.add_task(label, total=total)
        self.progress.update(self.tasks[label], completed=done, total=total)


json_option = click.option("--json", JSON_FLAG, is_flag=True,
                           help="Print JSON for tools (an error: one JSON line on stderr).")

# The names the command modules used before these were public.
_repo, _json, _Bars = open_repo, print_json, Bars

def human_bytes(n: int | float | None) -> str:
    """A byte count for people: ``512 B``, ``1.5 KB``, ``12.3 MB``, ``2.04 GB`` (powers of 1000)."""
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(n)} B"
            return f"{n:.3g} {unit}" if abs(n) < 100 else f"{n:.0f} {unit}"
        n /= 1000
    return f"{n:.0f} TB"  # pragma: no cover (the loop returns)


def cell(v: Any) -> str:
    """A value as a table cell: JSON for lists and maps, ``null`` for a missing value, dates
    in ISO form; never a Python repr."""
    if v is None:
        return "null"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, bytes):
        return f"<{human_bytes(len(v))} binary>"
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, default=_json_default, ensure_ascii=False, separators=(", ", ": "))
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def _json_default(v: Any) -> Any:
    if isinstance(v, bytes):
        return f"<{human_bytes(len(v))} binary>"
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def print_rows(rows: list[dict[str, Any]]) -> None:
    """Rows as a table (cells cut to 60 characters; see :func:`cell`)."""
    if not rows:
        return
    from rich.table import Table

    t = Table(*(esc(str(k)) for k in rows[0].keys()), show_lines=False)
    for r in rows:
        t.add_row(*(esc(short(cell(v))) for v in r.values()))
    out.print(t)


def print_fields(pairs: list[tuple[str, Any]], indent: str = "") -> None:
    """``key: value`` lines, keys padded to one column (values through :func:`cell`)."""
    if not pairs:
        return
    width = max(len(k) for k, _ in pairs) + 1
    for k, v in pairs:
        out.print(f"{indent}{k + ':':<{width}} {cell(v)}", markup=False, highlight=False)


def short(v: Any, n: int = 60) -> str:
    """``v`` as text, cut to ``n`` characters with an ellipsis."""
    s = str(v)
    return s if len(s) <= n else s[: n - 1] + "…"

def print_stat(changes: list[dict[str, Any]]) -> None:
    """One line per changed artifact: status, kind, path, +added -removed ~modified."""
    for d in changes:
        unit = ("bytes" if d["kind"] in ("model", "adapter")
                else "lines" if d["kind"] in ("prompt", "agent", "suite", "train", "run") else "rows")
        mod = f" ~{d['modified']}" if d.get("modified") else ""
        out.print(f" {d['status']:>8} {d['kind']:<8} {esc(d['path'])}  [green]+{d['added']}[/green] "
                  f"[red]-{d['removed']}[/red]{mod} {unit}")
