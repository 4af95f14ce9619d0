"""``demoai tui``: the terminal UI (history, typed diffs, datasets, sessions, evaluations,
training and scans, hub)."""
from __future__ import annotations

import click

from demoai.cli.common import handle_errors, open_repo, out

__all__ = ["tui"]

VIEWS = ("history", "artifacts", "sessions", "evals", "training", "hub")


@click.command("tui")
@click.option("--view", type=click.Choice(VIEWS), default="history", show_default=True,
              help="The view to start in.")
@click.option("--screenshot", "screenshot", type=click.Path(dir_okay=False), metavar="FILE",
              help="Draw the view headless into an SVG FILE once it has loaded, then exit.")
@click.option("--size", default="160x48", show_default=True, metavar="COLSxROWS",
              help="Terminal size for --screenshot.")
@handle_errors
def tui(view: str, screenshot: str | None, size: str) -> None:
    """Browse history, diffs, datasets, sessions and evals in the terminal.

    \b
    Keyboard first: the footer shows the keys, ? lists them all, ctrl+p opens the command
    palette, q quits. Read-only unless an action that writes (fork, continue, replay,
    checkout, push, fetch) is confirmed.
    Example:
      demoai tui
      demoai tui --view sessions
      demoai tui --screenshot history.svg
    """
    repo = open_repo()                  # not a repository: the usual error, before any drawing
    prefetch = None
    if view == "history":               # read the first commits while Textual is imported
        from demoai.tui.prefetch import start
        prefetch = start(repo)
    from demoai.tui.app import DemoAIApp
    app = DemoAIApp(repo, mode=view, screenshot=screenshot, prefetch=prefetch)
    if screenshot:
        try:
            cols, rows = (int(x) for x in size.lower().split("x"))
        except ValueError:
            raise click.BadParameter(f"{size!r} is not COLSxROWS", param_hint="--size") from None
        app.run(headless=True, size=(cols, rows))
        out.print(f"wrote {screenshot}", markup=False)
        return
    app.run()
