"""Line-based text diff and three-way merge for prompts, agents and configs."""
from __future__ import annotations

import difflib

import merge3

__all__ = ["unified_diff", "merge_text", "line_stats"]


def unified_diff(old: str, new: str, old_name: str = "a", new_name: str = "b") -> str:
    """A unified diff of two texts ('' when equal)."""
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=old_name, tofile=new_name))


def line_stats(old: str, new: str) -> tuple[int, int]:
    """(lines added, lines removed) from ``old`` to ``new``."""
    added = removed = 0
    for line in difflib.ndiff(old.splitlines(), new.splitlines()):
        if line.startswith("+ "):
            added += 1
        elif line.startswith("- "):
            removed += 1
    return added, removed


def merge_text(base: str, ours: str, theirs: str, ours_name: str = "ours",
               theirs_name: str = "theirs") -> tuple[str, int]:
    """Three-way merge; returns (text with git-style conflict markers, number of conflicts)."""
    m = merge3.Merge3(base.splitlines(keepends=True), ours.splitlines(keepends=True),
                      theirs.splitlines(keepends=True))
    conflicts = sum(1 for region in m.merge_regions() if region[0] == "conflict")
    lines = m.merge_lines(name_a=ours_name, name_b=theirs_name,
                          start_marker="<<<<<<<", mid_marker="=======", end_marker=">>>>>>>")
    text = "".join(lines)
    return text, conflicts
