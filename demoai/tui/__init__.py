"""The Textual TUI (a face, a later issue): it will browse history, diffs, datasets, sessions
and evaluations through :mod:`demoai.porcelain` (``browse`` and ``agent``) only."""
