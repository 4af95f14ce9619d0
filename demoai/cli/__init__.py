"""The ``demoai`` command: one module per noun (``repo``, ``agent``, ``remote``, ``hub``,
``serve``, ``demo``) over ``common`` (error handling, JSON, progress bars). Faces parse,
call porcelain and print."""
from demoai.cli.repo import main

__all__ = ["main"]
