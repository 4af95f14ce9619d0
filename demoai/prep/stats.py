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
- ``labels``: rows per value of the label column, with each share.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from demoai.prep.dedup import DEFAULT_THRESHOLD, dedup
from demoai.prep.minhash import MinHashParams, ngram_hashes64, normalize_texts

__all__ = ["text_stats", "label_balance", "histograms_png", "STAT_ROWS"]

# The scalar statistics in display order (what a --history table shows).
STAT_ROWS = ("rows", "chars_mean", "chars_p50", "chars_p90", "chars_max", "words_mean",
             "words_p50", "words_p90", "words_max", "vocabulary", "tokens", "distinct_1",
             "distinct_2", "type_token_ratio", "duplicate_rate", "near_duplicate_rate")


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
