"""``demoai log``: history, newest first, optionally as a graph."""
from __future__ import annotations

import heapq
from typing import Any

from demoai.store import CommitInfo, Repository

__all__ = ["log", "topo_order", "graph_lines", "graph_step", "decorations"]


def topo_order(repo: Repository, heads: list[str], limit: int | None = None) -> list[CommitInfo]:
    """Commits reachable from ``heads``: every child before its parents, newer first."""
    infos: dict[str, CommitInfo] = {}
    stack = list(heads)
    while stack:
        c = stack.pop()
        if c in infos:
            continue
        infos[c] = repo.commit_info(c)
        stack.extend(infos[c].parents)
    children: dict[str, int] = {c: 0 for c in infos}
    for ci in infos.values():
        for p in ci.parents:
            children[p] += 1
    ready = [(-infos[c].time, c) for c, n in children.items() if n == 0]
    heapq.heapify(ready)
    out: list[CommitInfo] = []
    while ready and (limit is None or len(out) < limit):
        _, c = heapq.heappop(ready)
        out.append(infos[c])
        for p in infos[c].parents:
            children[p] -= 1
            if children[p] == 0:
                heapq.heappush(ready, (-infos[p].time, p))
    return out


def decorations(repo: Repository) -> dict[str, list[str]]:
    """commit id -> names of the branches and tags pointing at it (HEAD first)."""
    out: dict[str, list[str]] = {}
    head = repo.head_commit()
    branch = repo.current_branch()
    if head:
        out.setdefault(head, []).append(f"HEAD -> {branch}" if branch else "HEAD")
    for name, sha in sorted(repo.branches().items()):
        short = name[len("refs/heads/"):]
        if short != branch:
            out.setdefault(sha, []).append(short)
    for name, sha in sorted(repo.tags().items()):
        out.setdefault(sha, []).append("tag: " + name[len("refs/tags/"):])
    return out


def graph_step(lanes: list[str], ci: CommitInfo) -> tuple[list[str], str, list[str]]:
    """One commit of the ASCII graph: the lanes after it, its own prefix (``*`` in its lane)
    and the connector lines (``\\`` where lanes open, ``/`` where they close) below it."""
    lanes = list(lanes)
    if ci.id not in lanes:
        lanes.append(ci.id)
    col = lanes.index(ci.id)
    prefix = " ".join("*" if i == col else "|" for i in range(len(lanes)))
    before = len(lanes)
    if ci.parents:
        first = ci.parents[0]
        if first in lanes and lanes.index(first) != col:
            lanes.pop(col)
        else:
            lanes[col] = first
        for p in ci.parents[1:]:
            if p not in lanes:
                lanes.insert(col + 1, p)
    else:
        lanes.pop(col)
    lanes = list(dict.fromkeys(lanes))      # two children that share a parent: one lane
    if len(lanes) > before:
        links = [" ".join("|" for _ in range(col + 1)) + "\\" + " |" * (len(lanes) - col - 2)]
    elif len(lanes) < before and lanes:
        links = [" ".join("|" for _ in range(len(lanes))) + "/"]
    else:
        links = []
    return lanes, prefix, links


def graph_lines(commits: list[CommitInfo]) -> list[tuple[str, CommitInfo | None]]:
    """ASCII lanes for a topologically ordered commit list: (prefix, commit or None)."""
    lanes: list[str] = []
    rows: list[tuple[str, CommitInfo | None]] = []
    for ci in commits:
        lanes, prefix, links = graph_step(lanes, ci)
        rows.append((prefix, ci))
        rows.extend((link, None) for link in links)
    return rows


def log(repo: Repository, rev: str = "HEAD", *, limit: int | None = None,
        all_refs: bool = False) -> list[dict[str, Any]]:
    """Commits reachable from ``rev`` (or from every branch and tag), newest first, with
    their decorations and lineage command."""
    heads = sorted(set(repo.branches().values()) | set(repo.tags().values())) if all_refs else [repo.resolve(rev)]
    deco = decorations(repo)
    out = []
    for ci in topo_order(repo, heads, limit):
        d = ci.to_dict()
        d["refs"] = deco.get(ci.id, [])
        d["command"] = repo.lineage(ci.id).get("command")
        out.append(d)
    return out
