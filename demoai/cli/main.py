"""The ``demoai`` command group; command modules attach themselves to it.

Errors are typed ``DemoAIError``s turned into one line by ``demoai.cli.common`` (exit 1);
``DEMOAI_DEBUG=1`` shows the traceback instead. With ``--json`` on the command line, errors
are one JSON line on stderr instead, ``{"error": {"code", "message", "fields"}}``: typed
errors with exit status 1, usage errors (a bad option or argument) with code ``usage_error``
and exit status 2, as click gives them.
"""
from __future__ import annotations

from typing import Any

import click

import demoai
from demoai.cli.common import error_json

__all__ = ["main", "DemoAIGroup", "LazyCommands", "quiet_libraries"]

_JSON_META = "demoai.json"


def _asks_json(args: list[str]) -> bool:
    """``--json`` among the options (not after a ``--`` that ends them)."""
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def _as_json_usage(e: click.ClickException) -> None:
    """Make ``e`` show itself as one JSON line on stderr (click still exits with its code)."""
    if getattr(e, "_demoai_json", False):
        return
    fields: dict[str, Any] = {}
    ctx = getattr(e, "ctx", None)
    if ctx is not None:
        fields["usage"] = ctx.get_usage()
        fields["command"] = ctx.command_path
    param = getattr(e, "param", None)
    if param is not None and getattr(param, "name", None):
        fields["param"] = param.name
    code = "usage_error" if isinstance(e, click.UsageError) else "click_error"

    def show(file: Any = None) -> None:
        click.echo(error_json(code, e.format_message(), fields), err=True)

    e.show = show  # type: ignore[method-assign]
    e._demoai_json = True  # type: ignore[attr-defined]


class LazyCommands(dict):
    """A group's ``name -> command`` table whose commands may be imported on first use, so
    that ``demoai tui`` does not import every other command's module (and what they import).

    ``lazy(name, "module:attr")`` registers a command by where it lives. Looking up a name
    imports only what that name needs; any full listing (``--help``, iteration,
    ``items()``) imports every command first."""

    def lazy(self, name: str, target: str) -> None:
        """Register command ``name`` as ``"package.module:attribute"``, imported on use."""
        dict.__setitem__(self, name, target)

    def load_all(self) -> None:
        """Import every lazy command."""
        for name in list(dict.keys(self)):
            self._resolve(name)

    def _resolve(self, name: str) -> Any:
        v = dict.__getitem__(self, name)
        if isinstance(v, str):
            import importlib
            mod, _, attr = v.partition(":")
            v = getattr(importlib.import_module(mod), attr)
            dict.__setitem__(self, name, v)
        return v

    def __getitem__(self, name: str) -> Any:
        return self._resolve(name)

    def get(self, name: str, default: Any = None) -> Any:
        """The command ``name`` (imported if need be) or ``default``."""
        return self[name] if name in self else default

    def __iter__(self) -> Any:
        self.load_all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self.load_all()
        return dict.__len__(self)

    def keys(self) -> Any:
        """Every command name."""
        self.load_all()
        return dict.keys(self)

    def values(self) -> Any:
        """Every command."""
        self.load_all()
        return dict.values(self)

    def items(self) -> Any:
        """Every ``(name, command)``."""
        self.load_all()
        return dict.items(self)


class DemoAIGroup(click.Group):
    """A click group whose usage errors become JSON when ``--json`` is on the command line.

    The flag is read from the raw arguments, since a usage error stops parsing before the
    command's own ``--json`` is known."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands(self.commands)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        """Parse the group's own options; remember whether ``--json`` was asked for."""
        wants = _asks_json(list(args)) if parent is None else bool(parent.meta.get(_JSON_META))
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as e:
            if wants:
                _as_json_usage(e)
            raise
        ctx.meta[_JSON_META] = wants
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; its usage errors become JSON under ``--json``."""
        try:
            return super().invoke(ctx)
        except click.ClickException as e:
            if ctx.meta.get(_JSON_META):
                _as_json_usage(e)
            raise

    def group(self, *args: Any, **kwargs: Any) -> Any:
        """Sub-groups made here are DemoAIGroups too."""
        kwargs.setdefault("cls", DemoAIGroup)
        return super().group(*args, **kwargs)


@click.group(cls=DemoAIGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(demoai.__version__, prog_name="demoai", help="Show the version and exit.")
def main() -> None:
    """DemoAI: git for the AI workflow (datasets, prompts, models, evals, agents).

    \b
    Every artifact is a typed object in a git commit DAG: add and commit it, then diff,
    branch, merge, fork, query and share it through a hub. Read commands take --json
    (errors too, as one JSON line on stderr). `demoai COMMAND --help` for each command.
    Example:
      demoai init && demoai add data/train.jsonl --key id && demoai commit -m "Import"
      demoai log --oneline
      demoai demo                 # the whole tour on the embedded data and model
    """
    quiet_libraries()


def quiet_libraries() -> None:
    """Keep the engines' own deprecation and advice warnings (torch, transformers, peft)
    out of the terminal: they speak of those libraries' internals, not of what the user
    asked; ``PYTHONWARNINGS`` or ``DEMOAI_DEBUG=1`` shows them again."""
    import os
    import warnings
    if os.environ.get("DEMOAI_DEBUG") or os.environ.get("PYTHONWARNINGS"):
        return
    for module in ("torch", "transformers", "peft", "accelerate", "datasets", "huggingface_hub"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
        warnings.filterwarnings("ignore", category=UserWarning, module=module)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
