"""Small helpers the Textual pilot tests share: the text a widget shows, and running an
async pilot test without an async plugin."""
from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

__all__ = ["widget_text", "run_async"]


def widget_text(widget: Any) -> str:
    """The text a Static shows."""
    from rich.console import Console
    content = widget.content
    if isinstance(content, str):
        return content
    c = Console(width=200, record=True, file=open(os.devnull, "w"))
    c.print(content)
    return c.export_text()


def run_async(fn: Any) -> Any:
    """Run an async pilot test to completion (no async plugin needed)."""
    @functools.wraps(fn)
    def run(*a: Any, **kw: Any) -> Any:
        return asyncio.run(fn(*a, **kw))
    return run
