"""The Textual TUI (``demoai tui``): history with the commit graph, typed diffs, dataset rows
a page at a time with a DuckDB query box, agent sessions (timeline, workspace, fork tree,
fork/continue/replay) and evaluations, all read through :mod:`demoai.porcelain`.

``app`` holds the App and its modes; ``screens`` one module per view, each imported when it
is first opened; ``widgets`` the paged row table and the typed-diff renderers; ``prefetch``
reads the first screenful of history in a thread while Textual is imported, so that the
first frame shows commits. Importing this package imports nothing heavy.
"""
__all__ = ["DemoAIApp"]


def __getattr__(name: str):
    """``DemoAIApp``, imported on first use."""
    if name == "DemoAIApp":
        from demoai.tui.app import DemoAIApp
        return DemoAIApp
    raise AttributeError(name)
