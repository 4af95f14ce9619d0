"""Textual TUI for browsing history, diffs, sessions and evals (a later issue)."""
