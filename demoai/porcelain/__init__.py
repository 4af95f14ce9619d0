"""Porcelain: one module per verb, each a function over a :class:`Repository`; the only
door through which faces (CLI, TUI, HTTP services) reach the library. Verbs return typed
results and never print.

- repository verbs (this package's modules): init, add, commit, status, diff, log, show,
  branch, checkout, merge, tag, fork, query, export, fsck, repair, gc, remotes, push,
  fetch, pull, clone;
- :mod:`.agent`: agents and sessions (run, continue, fork, list, timeline, step, replay, diff);
- :mod:`.browse`: what the hub pages and the TUI show (tree, history, artifact detail,
  preview rows, commit detail, session timeline);
- :mod:`.hosting`: what a hub needs to host repositories and answer the sync protocol;
- :mod:`.evaluate`: evaluations, sanity suites, regression gates and arenas.

The agent, browse and hosting names load on first use, so a plain ``demoai status`` does
not import the agent runtime or Lance.
"""
import importlib
from importlib.util import find_spec
from typing import Any
from demoai.porcelain.add import add, rm
from demoai.porcelain.branch import (branch, delete_branch, delete_tag, fork, list_branches,
                                     list_tags, tag)
from demoai.porcelain.checkout import checkout
from demoai.porcelain.commit import commit
from demoai.porcelain.diff import diff
from demoai.porcelain.export import export
from demoai.porcelain.fsck import fsck
from demoai.porcelain.gc import gc
from demoai.porcelain.init import init
from demoai.porcelain.log import graph_lines, log, topo_order
from demoai.porcelain.merge import abort_merge, merge, merge_conflicts
from demoai.porcelain.query import commits_table, query
from demoai.porcelain.show import show
from demoai.porcelain.status import status
from demoai.porcelain.remote import remote_add, remote_remove, remotes
from demoai.porcelain.push import push
from demoai.porcelain.fetch import fetch, pull
from demoai.porcelain.clone import clone
from demoai.porcelain.repair import repair
from demoai.porcelain.restore import RestoreResult, restore
from demoai.porcelain.repository import Repository, open_repository
from demoai.objects import KINDS

__all__ = ["init", "add", "rm", "status", "commit", "log", "graph_lines", "topo_order", "show",
           "diff", "branch", "delete_branch", "list_branches", "checkout", "tag", "delete_tag",
           "list_tags", "fork", "merge", "abort_merge", "query", "commits_table", "export",
           "fsck", "gc", "remote_add", "remote_remove", "remotes", "push", "fetch", "pull",
           "clone", "repair", "restore", "RestoreResult", "merge_conflicts", "Repository",
           "open_repository", "KINDS", "agent", "browse", "hosting", "evaluate"]

_LAZY_MODULES = ("agent", "browse", "hosting", "evaluate")


def __getattr__(name: str) -> Any:
    """``porcelain.agent``/``browse``/``hosting``/``evaluate`` and the names they export, loaded lazily."""
    if name in _LAZY_MODULES:
        return importlib.import_module(f"demoai.porcelain.{name}")
    if find_spec(f"demoai.porcelain.{name}") is not None:   # any other verb module
        return importlib.import_module(f"demoai.porcelain.{name}")
    for mod in _LAZY_MODULES:
        m = importlib.import_module(f"demoai.porcelain.{mod}")
        if name in getattr(m, "__all__", ()):
            return getattr(m, name)
    raise AttributeError(f"module 'demoai.porcelain' has no attribute {name!r}")
