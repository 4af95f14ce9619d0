"""Porcelain: one module per verb, each a function over a :class:`Repository`.

The CLI, TUI and HTTP services call these; they never print.
"""
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
from demoai.porcelain.merge import abort_merge, merge
from demoai.porcelain.query import commits_table, query
from demoai.porcelain.show import show
from demoai.porcelain.status import status
from demoai.porcelain.remote import remote_add, remote_remove, remotes
from demoai.porcelain.push import push
from demoai.porcelain.fetch import fetch, pull
from demoai.porcelain.clone import clone
from demoai.porcelain.repair import repair
from demoai.porcelain.repository import Repository, open_repository

__all__ = ["init", "add", "rm", "status", "commit", "log", "graph_lines", "topo_order", "show",
           "diff", "branch", "delete_branch", "list_branches", "checkout", "tag", "delete_tag",
           "list_tags", "fork", "merge", "abort_merge", "query", "commits_table", "export",
           "fsck", "gc", "remote_add", "remote_remove", "remotes", "push", "fetch", "pull",
           "clone", "repair", "Repository", "open_repository"]
