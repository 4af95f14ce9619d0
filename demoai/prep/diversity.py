"""Embedding diversity of a text column, where an embedding model is installed.

Over a seeded sample of at most ``sample`` rows (numpy's ``default_rng(seed)``, drawn without
replacement, in row order), each text is embedded (default: wordllama's shipped model, see
:func:`demoai.engines.embed.wordllama_embedder`) and L2-normalized; with ``S`` the cosine
similarity matrix and the pairs ``i < j``:

- ``mean_distance``: the mean cosine distance ``1 - S[i, j]`` over the pairs (0: every row
  means the same; about 1: unrelated rows);
- ``near_pairs``: the share of pairs with ``S[i, j] >= threshold`` (semantic near-duplicates);
- ``groups``: the connected components of the graph whose edges are those pairs (rows that
  say the same thing count once), and ``groups / rows`` as ``group_ratio``.

A zero vector (an embedder's answer to an empty text) has similarity 0 with every row.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np

from demoai.errors import InvalidArtifact

__all__ = ["embedding_diversity", "default_embedder", "embedder_available", "EMBEDDER",
           "DEFAULT_SAMPLE", "DEFAULT_COSINE"]

EMBEDDER = "wordllama:l2_supercat_256"
DEFAULT_SAMPLE = 2000
DEFAULT_COSINE = 0.9


@functools.lru_cache(maxsize=1)
def default_embedder() -> Callable[[list[str]], Any]:
    """wordllama's shipped model as ``embed(texts) -> (n, d) array``, loaded once per
    process; BackendUnavailable when wordllama is not installed."""
    from demoai.engines.embed import wordllama_embedder
    return wordllama_embedder()


def embedder_available() -> bool:
    """Whether the default embedding model's package is installed (nothing is loaded)."""
    import importlib.util
    try:
        return importlib.util.find_spec("wordllama") is not None
    except (ImportError, ValueError):
        return False


def _components(adj: np.ndarray) -> int:
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components
    return int(connected_components(csr_matrix(adj), directed=False)[0])


def embedding_diversity(texts: Sequence[str | None], embed: Callable[[list[str]], Any], *,
                        sample: int = DEFAULT_SAMPLE, seed: int = 0,
                        threshold: float = DEFAULT_COSINE, batch: int = 1024
                        ) -> dict[str, Any]:
    """``rows`` (the sample size), ``mean_distance``, ``near_pairs``, ``groups`` and
    ``group_ratio`` of ``texts`` (see the module docstring); None values below two rows."""
    if not 0.0 < threshold <= 1.0:
        raise InvalidArtifact(f"stats: cosine threshold must be in (0, 1], not {threshold!r}")
    n = len(texts)
    idx = np.arange(n)
    if n > sample:
        idx = np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
    chosen = [texts[i] or "" for i in idx.tolist()]
    out: dict[str, Any] = {"rows": len(chosen), "mean_distance": None, "near_pairs": None,
                           "groups": None, "group_ratio": None, "threshold": threshold}
    if len(chosen) < 2:
        return out
    parts = [np.asarray(embed(chosen[i:i + batch]), dtype=np.float64)
             for i in range(0, len(chosen), batch)]
    vec = np.concatenate(parts)
    if vec.ndim != 2 or len(vec) != len(chosen):
        raise InvalidArtifact(f"stats: the embedder returned shape {vec.shape} for "
                              f"{len(chosen)} texts")
    norm = np.linalg.norm(vec, axis=1, keepdims=True)
    vec = vec / np.where(norm == 0, 1.0, norm)
    sim = vec @ vec.T
    iu = np.triu_indices(len(chosen), k=1)
    pair = sim[iu]
    close = pair >= threshold
    adj = np.zeros(sim.shape, dtype=bool)
    adj[iu[0][close], iu[1][close]] = True
    out["mean_distance"] = float(1.0 - pair.mean())
    out["near_pairs"] = float(close.mean())
    out["groups"] = _components(adj)
    out["group_ratio"] = out["groups"] / len(chosen)
    return out
