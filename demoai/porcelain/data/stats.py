"""``demoai data stats``: a dataset version's quality and diversity report, stored with the
version at ``PATH.prep/stats.parquet`` (one row per figure, with the dataset digest and the
parameters), reused while the version and parameters are unchanged, and read back over the
commits by :func:`stats_history`.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from demoai.errors import InvalidArtifact, PathNotFound, RefNotFound
from demoai.porcelain.data.prepare import (
    DEFAULT_THRESHOLD, Source, changes_of, check_worktree, joined_texts, load_source, rel_path,
    sidecar_path, text_columns, write_commit,
)
from demoai.store import Repository
from demoai.store.kinds import load_table

__all__ = ["StatsReport", "stats", "stats_history"]


# ---- stats --------------------------------------------------------------------------------

@dataclass
class StatsReport:
    """The statistics of one dataset version (:func:`demoai.prep.stats.quality_report`):
    ``source`` is ``stored`` (read from the report committed with the version) or
    ``computed``; ``saved`` the commit that stored it (None when nothing was committed:
    ``up_to_date`` when the stored report already held it); ``plots`` the PNG files drawn."""

    path: str
    commit: str
    columns: list[str]
    label: str | None
    stats: dict[str, Any]
    plots: list[str] = field(default_factory=list)
    message: str = ""
    digest: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    source: str = "computed"
    saved: str | None = None
    up_to_date: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


def _stats_params(src: Source, column: Any, label: str | None, near: bool, language: bool,
                  diversity: bool) -> dict[str, Any]:
    """What fixes a report besides the rows: a stored report is reused only when these match."""
    from demoai.prep.diversity import DEFAULT_COSINE, DEFAULT_SAMPLE, EMBEDDER, \
        embedder_available
    from demoai.prep.language import detector_name
    cols = text_columns(src.table, column, src.art.key, "stats")
    if label is None and "label" in src.table.column_names:
        label = "label"
    if label is not None and label not in src.table.column_names:
        raise InvalidArtifact(f"stats: no label column {label!r} (columns: "
                              f"{src.table.column_names})", column=label, reason="missing")
    return {"columns": cols, "label": label, "near": near, "near_threshold": DEFAULT_THRESHOLD,
            "language": (detector_name() if language else False),
            "embedding": ((EMBEDDER if embedder_available() else None) if diversity else False),
            "seed": 0, "language_sample": 10_000, "embedding_sample": DEFAULT_SAMPLE,
            "cosine": DEFAULT_COSINE}


def _compute_stats(src: Source, params: dict[str, Any]
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from demoai.prep.diversity import default_embedder
    from demoai.prep.language import language_detector
    from demoai.prep.stats import quality_report
    label = params["label"]
    st, arrays = quality_report(
        joined_texts(src.table, params["columns"], "stats"),
        src.table.column(label) if label else None, near=params["near"],
        detector=language_detector() if params["language"] else None,
        embed=default_embedder() if params["embedding"] else None,
        language_sample=params["language_sample"], embedding_sample=params["embedding_sample"],
        cosine=params["cosine"], seed=params["seed"])
    if params["language"] is False:
        st["language_note"] = "not measured (turned off)"
    if params["embedding"] is False:
        st["embedding_note"] = "not measured (turned off)"
    return st, arrays


def _stored_reports(repo: Repository, rel: str, start: str, first: bool = False
                    ) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(commit, report, meta) of each version of ``rel``'s stored report, newest first,
    from ``start`` back (only the one at ``start`` with ``first``)."""
    side = sidecar_path(rel, "stats.parquet")
    from demoai.prep.stats import report_from_table
    commits = [start] if first else changes_of(repo, side, start)
    for c in commits:
        try:
            art = repo.artifact_at(c, side)
        except (PathNotFound, RefNotFound):
            return
        st, meta = report_from_table(load_table(repo, art))
        yield c, st, meta


def _find_report(repo: Repository, src: Source, params: dict[str, Any], start: str,
                 first: bool = False) -> dict[str, Any] | None:
    key = json.dumps(params, sort_keys=True)
    for _c, st, meta in _stored_reports(repo, src.path, start, first):
        if meta.get("digest") == src.art.digest and \
                json.dumps(meta.get("params"), sort_keys=True) == key:
            return st
    return None


def _plots(rep: StatsReport, src: Source, plot_dir: str | os.PathLike,
           arrays: dict[str, np.ndarray] | None) -> None:
    from demoai.prep.stats import histograms_png, length_arrays
    if arrays is None:
        arrays = length_arrays(joined_texts(src.table, rep.columns, "stats"))
    d = Path(plot_dir)
    d.mkdir(parents=True, exist_ok=True)
    for name, png in histograms_png(arrays, src.path, rep.stats.get("labels")).items():
        (d / name).write_bytes(png)
        rep.plots.append(str(d / name))


def stats(repo: Repository, path: str, *, column: str | Sequence[str] | None = None,
          label: str | None = None, rev: str = "HEAD", plot_dir: str | os.PathLike | None = None,
          near: bool = True, language: bool = True, diversity: bool = True,
          save: bool = False, message: str | None = None) -> StatsReport:
    """Quality and diversity statistics of the text ``column`` (default: every text column
    but the key, joined), the balance of ``label`` (default: a ``label`` column), the
    language mix (``language``, where a detector is installed) and the embedding diversity
    (``diversity``, where an embedding model is installed); with ``plot_dir``, PNG
    histograms written there.

    A report stored with this version and these parameters is read instead of computed.
    With ``save``, the report is committed beside the data at ``PATH.prep/stats.parquet``
    (lineage: the dataset's digest) when the version read is the one at HEAD; nothing is
    committed when HEAD already holds it."""
    from demoai.prep.stats import report_table
    src = load_source(repo, path, rev)
    params = _stats_params(src, column, label, near, language, diversity)
    head = repo.head_commit()
    st = _find_report(repo, src, params, head, first=True) if head else None
    up_to_date = st is not None
    for start in dict.fromkeys(c for c in (head, src.commit) if c):
        if st is None:      # a report stored with this version earlier, or after REV
            st = _find_report(repo, src, params, start)
    made = next(iter(changes_of(repo, src.path, src.commit)), src.commit)
    rep = StatsReport(src.path, made, params["columns"], params["label"], st or {},
                      message=repo.commit_info(made).summary, digest=src.art.digest,
                      params=params, source="stored" if st is not None else "computed",
                      up_to_date=up_to_date)
    arrays = None
    if st is None:
        rep.stats, arrays = _compute_stats(src, params)
    if save and not up_to_date:
        try:
            at_head = head is not None and repo.artifact_at(head, src.path).digest == src.art.digest
        except (PathNotFound, RefNotFound):
            at_head = False
        if not at_head:
            rep.note = f"not stored: {src.path} at {rev} is not the version at HEAD"
        else:
            side = sidecar_path(src.path, "stats.parquet")
            check_worktree(repo, [side])
            meta = {"path": src.path, "digest": src.art.digest, "params": params}
            rep.saved = write_commit(
                repo, {side: (report_table(rep.stats, meta), "parquet")},
                message or f"data stats {src.path}: {rep.stats.get('rows')} rows",
                keys={side: "statistic"}, inputs={"source": src.art.digest},
                parameters={"verb": "stats", **params,
                            "source": {"path": src.path, "commit": src.commit,
                                       "digest": src.art.digest}})
            rep.up_to_date = rep.saved is None
    if plot_dir is not None:
        _plots(rep, src, plot_dir, arrays)
    return rep


def stats_history(repo: Repository, path: str, *, column: str | Sequence[str] | None = None,
                  label: str | None = None, rev: str = "HEAD", limit: int = 20,
                  near: bool = True, language: bool = True, diversity: bool = True,
                  plot_dir: str | os.PathLike | None = None) -> list[StatsReport]:
    """The statistics of each version of ``path`` (the commits, first-parent from ``rev``,
    that changed it; newest first, at most ``limit``): the report stored with the version
    when there is one with these parameters (``source`` ``stored``), else computed (not
    committed: ``source`` ``computed``). With ``plot_dir``, ``history.png`` there draws how
    each figure moved."""
    rel = rel_path(repo, path)
    start = repo.resolve(rev)
    stored: dict[tuple[str, str], dict[str, Any]] = {}
    for _c, st, meta in _stored_reports(repo, rel, start):
        stored.setdefault((meta.get("digest"), json.dumps(meta.get("params"), sort_keys=True)),
                          st)
    out = []
    for c in changes_of(repo, rel, start):
        src = load_source(repo, rel, c, rel=rel)
        params = _stats_params(src, column, label, near, language, diversity)
        st = stored.get((src.art.digest, json.dumps(params, sort_keys=True)))
        rep = StatsReport(rel, c, params["columns"], params["label"], st or {},
                          message=repo.commit_info(c).summary, digest=src.art.digest,
                          params=params, source="stored" if st is not None else "computed")
        if st is None:
            rep.stats = _compute_stats(src, params)[0]
        out.append(rep)
        if len(out) >= limit:
            break
    if not out:
        raise PathNotFound(f"no dataset {rel} in the history of {rev}", path=rel)
    if plot_dir is not None:
        from demoai.prep.stats import history_png
        d = Path(plot_dir)
        d.mkdir(parents=True, exist_ok=True)
        png = history_png([r.stats for r in reversed(out)], [r.commit[:8] for r in reversed(out)],
                          f"{rel}: statistics over {len(out)} versions")
        (d / "history.png").write_bytes(png)
        for r in out:
            r.plots.append(str(d / "history.png"))
    return out


