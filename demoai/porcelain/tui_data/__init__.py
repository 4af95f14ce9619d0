"""What the terminal UI reads, lazily: history in pages with graph lanes, the artifacts a
commit changed, dataset rows or query results a page at a time, ahead/behind against a hub,
brain-scan grids and eval records.

The TUI must paint at once on a repository of tens of thousands of commits and scroll a
million-row table in bounded memory, so nothing here reads a whole history or a whole table.
One module per seam:

- :mod:`.history`: :class:`HistoryWalker` walks every branch, tag (and optionally session)
  ref newest first, as ``log --all`` does by date, one page per call, and draws ``log
  --graph`` lanes as it goes; :func:`changed_paths` and :func:`commit_pane` describe one
  commit from manifests alone;
- :mod:`.rows`: :func:`cell_text` (a cell as display text), :class:`DatasetPager` (one
  dataset version, rows by offset from Lance), :class:`QueryPager` (a DuckDB result, paged),
  :func:`row_last_change` (the commit that last changed one row, by key);
- :mod:`.hub`: :func:`hub_status` and :func:`ahead_behind` (branches here vs a remote);
- :mod:`.records`: :func:`scan_grid` (a brain scan, or a training run's scan at one step,
  as a layer x module grid; :func:`run_scan` finds a run's) and :func:`eval_records` (gate decisions, arenas).

The names are importable from this package too; each submodule is imported on first use,
so reading the history does not import what the dataset view needs.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["HistoryRow", "HistoryWalker", "changed_paths", "commit_pane", "CommitPane", "cell_text",
           "DatasetPager", "QueryPager", "MAX_CELL", "RowChange", "row_last_change", "BranchSync",
           "HubStatus", "ahead_behind", "hub_status", "ScanGrid", "SCAN_VALUES", "scan_grid",
           "run_scan", "EvalRecords", "eval_records"]

_WHERE = {
    **dict.fromkeys(("HistoryRow", "HistoryWalker", "changed_paths", "commit_pane", "CommitPane"), "history"),
    **dict.fromkeys(("cell_text", "DatasetPager", "QueryPager", "MAX_CELL", "RowChange", "row_last_change"),
                    "rows"),
    **dict.fromkeys(("BranchSync", "HubStatus", "ahead_behind", "hub_status"), "hub"),
    **dict.fromkeys(("ScanGrid", "SCAN_VALUES", "scan_grid", "run_scan", "EvalRecords", "eval_records"),
                    "records"),
}


def __getattr__(name: str) -> Any:
    """The public names of the submodules, each imported on first use."""
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
