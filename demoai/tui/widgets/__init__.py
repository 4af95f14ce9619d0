"""The TUI's own widgets: the paged row table and the typed-diff renderers."""
__all__: list[str] = []
