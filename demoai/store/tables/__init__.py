"""Datasets as Lance tables: the store of versions (``store``: folders, files, reads, gc),
writing new versions and deltas (``write``), diffs and merges of versions (``compare``),
hash checks (``verify``), row and cell matching and merging (``diff``), reading and writing
files (``io``), the version record (``ref``) and what Lance's own metadata answers without
reading rows (``lancemeta``).

The names below load on first use (module ``__getattr__``): ``from demoai.store.tables
import TableRef`` imports only :mod:`~demoai.store.tables.ref`, not Lance or pyarrow."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from demoai.store.tables.io import read_file, write_file
    from demoai.store.tables.ref import TableRef
    from demoai.store.tables.store import TableStore

__all__ = ["TableStore", "TableRef", "read_file", "write_file"]

_HOME = {"TableStore": "demoai.store.tables.store", "TableRef": "demoai.store.tables.ref",
         "read_file": "demoai.store.tables.io", "write_file": "demoai.store.tables.io"}


def __getattr__(name: str) -> Any:
    """Load an exported name from its module the first time it is asked for."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
