"""Quality and diversity statistics of a text column, and their histograms as PNG.

Definitions (words are those of the normalized text, as MinHash and contamination see them:
lower case, punctuation as spaces, split on whitespace):

- ``chars``/``words``: per-row lengths (characters of the raw text; words), summarized by
  mean, min, median, 90th percentile and max;
- ``vocabulary``: distinct words over the column; ``tokens``: words in all;
- ``distinct_1``/``distinct_2``: distinct unigrams / bigrams over all unigrams / bigrams of
  the column (Li et al. 2016, corpus level);
- ``type_token_ratio``: the mean over non-empty rows of the row's distinct words over its
  words (the corpus-level ratio is ``distinct_1``);
- ``duplicate_rate``: rows whose normalized text equals an earlier row's, over rows;
- ``near_duplicate_rate``: rows MinHash-LSH dedup (word 5-grams, Jaccard >= threshold)
  drops after the exact duplicates, over rows;
- ``labels``: rows per value of the label column, with each share;
- ``languages`` (where a detector is installed, :mod:`demoai.prep.language`): rows and share
  per detected language over a seeded sample, with ``language_top``/``language_top_share``
  and ``language_count``; else ``language_note`` says why it was not measured;
- ``embedding_*`` (where an embedding model is installed, :mod:`demoai.prep.diversity`):
  mean pairwise cosine distance, share of near-duplicate pairs by cosine and the number of
  groups of such pairs over a seeded sample; else ``embedding_note``.

:func:`report_table` turns a report into a small table (one row per statistic, keyed by
``statistic``, so a diff of two stored reports pairs the figures) and :func:`report_from_table`
back; :func:`history_png` draws how the figures moved over versions.
"""
from __future__ import annotations

import io
import json
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from demoai.prep.dedup import DEFAULT_THRESHOLD, dedup
from demoai.prep.minhash import MinHashParams, ngram_hashes64, normalize_texts

__all__ = ["text_stats", "quality_report", "label_balance", "histograms_png", "history_png",
           "report_table", "report_from_table", "length_arrays", "STAT_ROWS", "NOT_MEASURED"]

# The scalar statistics in display order (what a --history table shows).
STAT_ROWS = ("rows", "chars_mean", "chars_p50", "chars_p90", "chars_max", "words_mean",
             "words_p50", "words_p90", "words_max", "vocabulary", "tokens", "distinct_1",
             "distinct_2", "type_token_ratio", "duplicate_rate", "near_duplicate_rate",
             "language_count", "language_top_share", "embedding_distance_mean",
             "embedding_near_pairs", "embedding_groups")
NOT_MEASURED = {"language": "not measured (no detector installed)",
                "embedding": "not measured (no embedding model installed)"}
_INTS = {"rows", "empty_rows", "vocabulary", "tokens", "language_count", "language_sample",
         "embedding_sample", "embedding_groups"}
_REPORT_SCHEMA = pa.schema([("statistic", pa.string()), ("value", pa.float64()),
                            ("text", pa.string())])


def _summary(prefix: str, x: np.ndarray) -> dict[str, float]:
    if not len(x):
        return {f"{prefix}_{k}": 0.0 for k in ("mean", "min", "p50", "p90", "max")}
    return {f"{prefix}_mean": float(x.mean()), f"{prefix}_min": float(x.min()),
            f"{prefix}_p50": float(np.percentile(x, 50)),
            f"{prefix}_p90": float(np.percentile(x, 90)), f"{prefix}_max": float(x.max())}


def label_balance(labels: pa.Array | pa.ChunkedArray) -> list[dict[str, Any]]:
    """Rows and share per label value (nulls as ``null``), most frequent first."""
    vc = pc.value_counts(labels).to_pylist()
    total = sum(d["counts"] for d in vc) or 1
    out = [{"label": "null" if d["values"] is None else str(d["values"]), "rows": d["counts"],
            "share": d["counts"] / total} for d in vc]
    return sorted(out, key=lambda d: (-d["rows"], d["label"]))


def text_stats(texts: pa.Array | pa.ChunkedArray, labels: pa.Array | pa.ChunkedArray | None = None,
               *, near_threshold: float = DEFAULT_THRESHOLD, near: bool = True
               ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The statistics of ``texts`` (see the module docstring) and the per-row arrays the
    histograms draw (``chars``, ``words``)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    n = len(texts)
    filled = pc.fill_null(texts, "")
    chars = pc.utf8_length(filled).to_numpy(zero_copy_only=False).astype(np.int64)
    norm = normalize_texts(filled, MinHashParams())
    tokens = pc.utf8_split_whitespace(norm)
    flat = pc.list_flatten(tokens)
    parent = pc.list_parent_indices(tokens).to_numpy(zero_copy_only=False)
    nonempty = pc.greater(pc.binary_length(flat), 0)
    flat = flat.filter(nonempty)
    parent = parent[nonempty.to_numpy(zero_copy_only=False)]
    words = np.bincount(parent, minlength=n).astype(np.int64)
    out: dict[str, Any] = {"rows": n, "empty_rows": int((words == 0).sum())}
    out.update(_summary("chars", chars))
    out.update(_summary("words", words))
    enc = pc.dictionary_encode(flat)
    out["vocabulary"] = len(enc.dictionary)
    out["tokens"] = int(len(flat))
    out["distinct_1"] = out["vocabulary"] / out["tokens"] if out["tokens"] else 0.0
    g2, per2 = ngram_hashes64(filled, 2)
    multi = np.repeat(words >= 2, per2)
    bigrams = g2[multi]
    out["distinct_2"] = len(np.unique(bigrams)) / len(bigrams) if len(bigrams) else 0.0
    ids = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    if len(ids):
        pairs = np.unique(parent.astype(np.int64) * (out["vocabulary"] + 1) + ids)
        types = np.bincount(pairs // (out["vocabulary"] + 1), minlength=n)
        has = words > 0
        out["type_token_ratio"] = float((types[has] / words[has]).mean())
    else:
        out["type_token_ratio"] = 0.0
    if near and n:
        d = dedup(texts, threshold=near_threshold)
        out["duplicate_rate"] = d.stats.get("exact_dropped", 0) / n
        out["near_duplicate_rate"] = d.stats.get("minhash_dropped", 0) / n
    else:
        d = dedup(texts, near=False) if n else None
        out["duplicate_rate"] = (d.stats.get("exact_dropped", 0) / n) if d else 0.0
        out["near_duplicate_rate"] = None
    out["near_threshold"] = near_threshold
    if labels is not None:
        out["labels"] = label_balance(labels)
    return out, {"chars": chars, "words": words}


def length_arrays(texts: pa.Array | pa.ChunkedArray) -> dict[str, np.ndarray]:
    """The per-row lengths the histograms draw: ``chars`` and ``words`` (as
    :func:`text_stats` counts them)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    filled = pc.fill_null(texts, "")
    chars = pc.utf8_length(filled).to_numpy(zero_copy_only=False).astype(np.int64)
    tokens = pc.utf8_split_whitespace(normalize_texts(filled, MinHashParams()))
    flat = pc.list_flatten(tokens)
    parent = pc.list_parent_indices(tokens).to_numpy(zero_copy_only=False)
    parent = parent[pc.greater(pc.binary_length(flat), 0).to_numpy(zero_copy_only=False)]
    return {"chars": chars, "words": np.bincount(parent, minlength=len(texts)).astype(np.int64)}


def quality_report(texts: pa.Array | pa.ChunkedArray,
                   labels: pa.Array | pa.ChunkedArray | None = None, *, near: bool = True,
                   detector: Any = None, embed: Callable[[list[str]], Any] | None = None,
                   language_sample: int = 10_000, embedding_sample: int | None = None,
                   cosine: float | None = None, seed: int = 0
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """:func:`text_stats`, plus the language mix by ``detector``
    (:class:`demoai.prep.language.Detector`) and the embedding diversity by ``embed``; a
    None ``detector`` or ``embed`` leaves a note that the figure was not measured."""
    from demoai.prep.diversity import DEFAULT_COSINE, DEFAULT_SAMPLE, embedding_diversity
    from demoai.prep.language import language_mix
    out, arrays = text_stats(texts, labels, near=near)
    values = (texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts).to_pylist()
    if detector is not None:
        mix, k = language_mix(values, detector, sample=language_sample, seed=seed)
        out.update({"language_detector": detector.name, "language_sample": k,
                    "language_count": len(mix), "languages": mix,
                    "language_top": mix[0]["language"] if mix else None,
                    "language_top_share": mix[0]["share"] if mix else None})
    else:
        out["language_note"] = NOT_MEASURED["language"]
    if embed is not None:
        d = embedding_diversity(values, embed, sample=embedding_sample or DEFAULT_SAMPLE,
                                seed=seed, threshold=cosine or DEFAULT_COSINE)
        out.update({"embedding_sample": d["rows"], "embedding_cosine": d["threshold"],
                    "embedding_distance_mean": d["mean_distance"],
                    "embedding_near_pairs": d["near_pairs"], "embedding_groups": d["groups"],
                    "embedding_group_ratio": d["group_ratio"]})
    else:
        out["embedding_note"] = NOT_MEASURED["embedding"]
    return out, arrays


def report_table(stats: dict[str, Any], meta: dict[str, Any] | None = None) -> pa.Table:
    """A report as a table of (statistic, value, text): numbers in ``value``, words in
    ``text``, label and language counts as ``label:VALUE`` and ``language:CODE`` rows, and
    ``meta`` (the dataset digest, columns, parameters) as ``meta:NAME`` rows of JSON."""
    rows: list[tuple[str, float | None, str | None]] = []
    for k, v in stats.items():
        if k == "labels":
            rows += [(f"label:{d['label']}", float(d["rows"]), None) for d in v or []]
        elif k == "languages":
            rows += [(f"language:{d['language']}", float(d["rows"]), None) for d in v or []]
        elif isinstance(v, bool):
            rows.append((k, float(v), "bool"))
        elif isinstance(v, (int, float)):
            rows.append((k, float(v), None))
        elif v is None or isinstance(v, str):
            rows.append((k, None, v))
        else:
            rows.append((k, None, json.dumps(v, sort_keys=True)))
    for k, v in (meta or {}).items():
        rows.append((f"meta:{k}", None, json.dumps(v, sort_keys=True, default=str)))
    return pa.Table.from_pylist([dict(zip(_REPORT_SCHEMA.names, r)) for r in rows],
                                schema=_REPORT_SCHEMA)


def _shares(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    total = sum(d["rows"] for d in items) or 1
    for d in items:
        d["share"] = d["rows"] / total
    return items


def report_from_table(table: pa.Table) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report and the meta that :func:`report_table` wrote."""
    stats: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    labels: list[dict[str, Any]] = []
    langs: list[dict[str, Any]] = []
    for r in table.to_pylist():
        k, v, t = r["statistic"], r["value"], r["text"]
        if k.startswith("meta:"):
            meta[k[5:]] = json.loads(t) if t is not None else None
        elif k.startswith("label:"):
            labels.append({"label": k[6:], "rows": int(v)})
        elif k.startswith("language:"):
            langs.append({"language": k[9:], "rows": int(v)})
        elif v is not None:
            stats[k] = bool(v) if t == "bool" else (int(v) if k in _INTS else v)
        elif t is not None and t[:1] in "[{":
            stats[k] = json.loads(t)
        else:
            stats[k] = t
    if labels:
        stats["labels"] = _shares(labels)
    if langs:
        stats["languages"] = _shares(langs)
    return stats, meta


def history_png(reports: Sequence[dict[str, Any]], names: Sequence[str], title: str = "",
                keys: Sequence[str] = STAT_ROWS) -> bytes:
    """One small line chart per numeric statistic in ``keys`` over the versions
    ``reports`` (oldest first), the x axis labelled with ``names``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    shown = [k for k in keys if any(isinstance(r.get(k), (int, float)) and
                                    not isinstance(r.get(k), bool) for r in reports)]
    cols = 4
    nrows = max(1, -(-len(shown) // cols))
    fig = Figure(figsize=(3.2 * cols, 2.2 * nrows), tight_layout=True)
    FigureCanvasAgg(fig)
    x = np.arange(len(reports))
    for i, k in enumerate(shown):
        ax = fig.add_subplot(nrows, cols, i + 1)
        y = [r.get(k) if isinstance(r.get(k), (int, float)) else np.nan for r in reports]
        ax.plot(x, np.asarray(y, dtype=float), marker="o", color="#4c72b0")
        ax.set_title(k, fontsize=9)
        ax.set_xticks(x, list(names), fontsize=7, rotation=30)
        ax.tick_params(axis="y", labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def histograms_png(arrays: dict[str, np.ndarray], title: str = "",
                   labels: list[dict[str, Any]] | None = None) -> dict[str, bytes]:
    """PNG bytes per histogram (``chars.png``, ``words.png``, ``labels.png`` when given),
    drawn on matplotlib's Agg canvas (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out: dict[str, bytes] = {}

    def save(fig: Any, name: str) -> None:
        FigureCanvasAgg(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        out[name] = buf.getvalue()

    for name, unit in (("chars", "characters"), ("words", "words")):
        x = arrays.get(name)
        if x is None:
            continue
        fig = Figure(figsize=(6, 3.5), tight_layout=True)
        ax = fig.add_subplot()
        ax.hist(x, bins=min(50, max(1, len(np.unique(x)))), color="#4c72b0")
        ax.set_xlabel(f"{unit} per row")
        ax.set_ylabel("rows")
        ax.set_title(f"{title} {unit}".strip())
        save(fig, f"{name}.png")
    if labels:
        fig = Figure(figsize=(6, 3.5), tight_layout=True)
        ax = fig.add_subplot()
        top = labels[:30]
        ax.bar([d["label"] for d in top], [d["rows"] for d in top], color="#55a868")
        ax.set_ylabel("rows")
        ax.set_title(f"{title} labels".strip())
        ax.tick_params(axis="x", labelrotation=45)
        save(fig, "labels.png")
    return out
