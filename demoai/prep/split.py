"""Deterministic splits by key hash.

Each row gets a number ``u`` in [0, 1) from the BLAKE2b hash of the seed and its key (the
key column's value as text, or, without a key, the row's canonical JSON), and falls in the
split whose cumulative ratio interval holds ``u``. A row's split therefore depends only on
its own key and the seed: rows added later never move existing rows.

Stratified splits (``stratify=COLUMN``) cut every stratum at exact counts instead (largest
remainder of ``ratio * stratum size``), taking rows in ``u`` order: each split holds each
label in proportion. Exactness costs a little stability: when rows are added, only rows next
to a cut within their stratum can move, never more than the count change at that cut.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pyarrow as pa

from demoai.errors import InvalidArtifact

__all__ = ["SplitResult", "split_rows", "parse_ratios", "split_names", "row_units"]


@dataclass
class SplitResult:
    """``assign``: the split index of every row; ``names``: split names; ``counts``: rows
    per split; ``strata``: per stratum value, rows per split (stratified splits only)."""

    assign: np.ndarray
    names: list[str]
    counts: dict[str, int]
    strata: dict[str, dict[str, int]] = field(default_factory=dict)


def parse_ratios(ratios: str | Sequence[float]) -> list[float]:
    """Ratios from ``"0.8,0.1,0.1"`` or a list: two or more positive numbers summing to 1."""
    items = ratios.split(",") if isinstance(ratios, str) else list(ratios)
    try:
        out = [float(x) for x in items]
    except (TypeError, ValueError):
        raise InvalidArtifact(f"split: ratios must be numbers, like 0.8,0.1,0.1, not {ratios!r}",
                              parameter="ratios") from None
    if len(out) < 2 or any(not (r > 0) for r in out) or abs(sum(out) - 1.0) > 1e-6:
        raise InvalidArtifact(f"split: ratios must be two or more positive numbers summing to 1, "
                              f"not {ratios!r}", parameter="ratios")
    return out


def split_names(k: int, names: Sequence[str] | None = None) -> list[str]:
    """The names of ``k`` splits: given ones, else train/test, train/validation/test, or
    split0..split(k-1)."""
    if names:
        names = list(names)
        if len(names) != k or len(set(names)) != k or not all(
                isinstance(n, str) and n.isidentifier() for n in names):
            raise InvalidArtifact(f"split: give {k} distinct names (letters, digits, _), not "
                                  f"{names!r}", parameter="names")
        return names
    return {2: ["train", "test"], 3: ["train", "validation", "test"]}.get(
        k, [f"split{i}" for i in range(k)])


def _texts(table: pa.Table, key: str | None) -> list[str]:
    if key is not None:
        if key not in table.column_names:
            raise InvalidArtifact(f"split: no column {key!r} (columns: {table.column_names})",
                                  column=key, reason="missing")
        col = table.column(key)
        if col.null_count:
            raise InvalidArtifact(f"split: key column {key!r} has nulls", column=key)
        return [json.dumps(v, sort_keys=True, default=str) for v in col.to_pylist()]
    return [json.dumps(r, sort_keys=True, default=str) for r in table.to_pylist()]


def row_units(table: pa.Table, key: str | None, seed: int = 0) -> np.ndarray:
    """The number in [0, 1) of every row (see the module docstring)."""
    salt = f"demoai-split:{int(seed)}:".encode()
    raw = b"".join(hashlib.blake2b(salt + t.encode(), digest_size=8).digest()
                   for t in _texts(table, key))
    h = np.frombuffer(raw, dtype="<u8")
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _exact_counts(n: int, ratios: list[float]) -> np.ndarray:
    want = np.array(ratios) * n
    base = np.floor(want).astype(np.int64)
    rest = n - int(base.sum())
    base[np.argsort(-(want - base), kind="stable")[:rest]] += 1
    return base


def split_rows(table: pa.Table, ratios: str | Sequence[float], *, key: str | None = None,
               stratify: str | None = None, seed: int = 0,
               names: Sequence[str] | None = None) -> SplitResult:
    """Assign every row of ``table`` to a split (see the module docstring)."""
    r = parse_ratios(ratios)
    nm = split_names(len(r), names)
    u = row_units(table, key, seed)
    if stratify is None:
        edges = np.cumsum(r)[:-1]
        assign = np.searchsorted(edges, u, side="right")
        strata: dict[str, dict[str, int]] = {}
    else:
        if stratify not in table.column_names:
            raise InvalidArtifact(f"split: no column {stratify!r} to stratify by (columns: "
                                  f"{table.column_names})", column=stratify, reason="missing")
        labels = [json.dumps(v, default=str) if not isinstance(v, str) else v
                  for v in table.column(stratify).to_pylist()]
        assign = np.zeros(table.num_rows, dtype=np.int64)
        strata = {}
        groups: dict[str, list[int]] = {}
        for i, lab in enumerate(labels):
            groups.setdefault(lab, []).append(i)
        for lab, idx_ in sorted(groups.items()):
            idx = np.array(idx_)
            order = idx[np.argsort(u[idx], kind="stable")]
            counts = _exact_counts(len(idx), r)
            assign[order] = np.repeat(np.arange(len(r)), counts)
            strata[lab] = {nm[k]: int(c) for k, c in enumerate(counts)}
    counts_all = np.bincount(assign, minlength=len(r))
    return SplitResult(assign=assign, names=nm,
                       counts={nm[k]: int(c) for k, c in enumerate(counts_all)}, strata=strata)
