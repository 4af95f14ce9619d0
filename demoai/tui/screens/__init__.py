"""The TUI's screens: history, diff, dataset (and the artifact tree), sessions, evals, modals."""
__all__: list[str] = []
