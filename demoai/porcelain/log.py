"""``demoai log``: history, newest first, optionally as a graph."""
from __future__ import annotations

import heapq
from typing import Any

from demoai.store import CommitInfo, Repository

__all__ = ["log", "topo_order", "graph_lines", "decorations"]


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


def graph_lines(commits: list[CommitInfo]) -> list[tuple[str, CommitInfo | None]]:
    """ASCII lanes for a topologically ordered commit list: (prefix, commit or None)."""
    lanes: list[str] = []
    rows: list[tuple[str, CommitInfo | None]] = []
    for ci in commits:
        if ci.id not in lanes:
            lanes.append(ci.id)
        col = lanes.index(ci.id)
        rows.append((" ".join("*" if i == col else "|" for i in range(len(lanes))), ci))
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
        # collapse duplicate lanes (two children that share a parent)
        dedup: list[str] = []
        for lane in lanes:
            if lane not in dedup:
                dedup.append(lane)
        lanes = dedup
        if len(lanes) > before:
            rows.append((" ".join("|" for _ in range(col + 1)) + "\\" + " |" * (len(lanes) - col - 2), None))
        elif len(lanes) < before and lanes:
            rows.append((" ".join("|" for _ in range(len(lanes))) + "/", None))
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
