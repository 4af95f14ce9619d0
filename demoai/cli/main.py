"""The ``demoai`` command group; command modules attach themselves to it.

Errors are typed ``DemoAIError``s turned into one line by ``demoai.cli.common`` (exit 1);
``DEMOAI_DEBUG=1`` shows the traceback instead.
"""
from __future__ import annotations

import click

import demoai

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(demoai.__version__, prog_name="demoai")
def main() -> None:
    """DemoAI: git for the AI workflow (datasets, prompts, models, adapters, evals, agents)."""
