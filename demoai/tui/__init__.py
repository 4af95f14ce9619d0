"""The Textual TUI (``demoai tui``): history with the commit graph, typed diffs, dataset rows
a page at a time with a DuckDB query box, agent sessions (timeline, workspace, fork tree,
fork/continue/replay) and evaluations, all read through :mod:`demoai.porcelain`.

``app`` holds the App and its modes; ``screens`` one module per view; ``widgets`` the paged
row table and the typed-diff renderers. Importing this package imports nothing heavy.
"""
__all__ = ["DemoAIApp"]


def __getattr__(name: str):
    """``DemoAIApp``, imported on first use."""
    if name == "DemoAIApp":
        from demoai.tui.app import DemoAIApp
        return DemoAIApp
    raise AttributeError(name)
