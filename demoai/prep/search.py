"""Semantic search over the rows of a dataset: wordllama embeddings of a text column in a
LanceDB table (cosine distance), built once per dataset version and kept in a cache folder
named by the dataset path, the columns and the embedder; it records the dataset digest it
was built from, so a new version rebuilds it and an unchanged one is opened as it is.

    index = open_index(cache_dir, "data/train.jsonl", digest, ["text"], keys, texts, embed)
    hits = index.search(embed(["query"])[0], k=5)

The table holds ``key`` (the row's key), ``row`` (its position in the version), ``text``
and ``vector`` (L2-normalized float32). Search is exact (flat) below
:data:`ANN_MIN_ROWS` rows and an IVF-PQ index above.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

from demoai.errors import BackendUnavailable, InvalidArtifact

__all__ = ["default_embedder", "embed_texts", "SearchHit", "RowIndex", "open_index",
           "index_dir", "ANN_MIN_ROWS", "EMBEDDER_NAME"]

ANN_MIN_ROWS = 100_000
EMBEDDER_NAME = "wordllama:l2_supercat_256"
_TABLE = "rows"
_BATCH = 4096


def default_embedder() -> Callable[[list[str]], Any]:
    """wordllama's shipped model as ``embed(texts) -> (n, d) array`` (no network)."""
    from demoai.engines.embed import wordllama_embedder
    return wordllama_embedder()


def embed_texts(embed: Callable[[list[str]], Any], texts: Sequence[str]) -> np.ndarray:
    """L2-normalized float32 embeddings of ``texts``, computed in batches."""
    parts = []
    for i in range(0, len(texts), _BATCH):
        v = np.asarray(embed(list(texts[i:i + _BATCH])), dtype=np.float32)
        if v.ndim != 2 or len(v) != len(texts[i:i + _BATCH]):
            raise InvalidArtifact(f"search: the embedder returned shape {v.shape} for "
                                  f"{len(texts[i:i + _BATCH])} texts")
        parts.append(v)
    if not parts:
        return np.zeros((0, 1), dtype=np.float32)
    vec = np.concatenate(parts)
    norm = np.linalg.norm(vec, axis=1, keepdims=True)
    return vec / np.where(norm == 0, 1, norm)


@dataclass
class SearchHit:
    """One row found: its key, position, text and cosine similarity to the query."""

    key: str
    row: int
    text: str
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


def index_dir(cache: Path, path: str, columns: Sequence[str],
              embedder: str = EMBEDDER_NAME) -> Path:
    """The folder of the index of dataset ``path`` over ``columns`` by ``embedder``."""
    tag = hashlib.blake2b(json.dumps([path, list(columns), embedder]).encode(),
                          digest_size=10).hexdigest()
    return Path(cache) / "search" / tag


def _lancedb() -> Any:
    try:
        import lancedb
    except ImportError as e:
        raise BackendUnavailable("semantic search needs lancedb: pip install lancedb",
                                 package="lancedb") from e
    return lancedb


class RowIndex:
    """An open LanceDB table of row embeddings; ``built`` says whether this call made it."""

    def __init__(self, table: Any, rows: int, built: bool, where: Path) -> None:
        self.table, self.rows, self.built, self.path = table, rows, built, where

    def search(self, vector: np.ndarray, k: int = 5) -> list[SearchHit]:
        """The ``k`` rows nearest to ``vector`` (cosine), most similar first."""
        if k < 1:
            raise InvalidArtifact(f"search: k must be at least 1, not {k}")
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        n = float(np.linalg.norm(v))
        v = v / n if n else v
        got = (self.table.search(v).metric("cosine").limit(k)
               .select(["key", "row", "text", "_distance"]).to_arrow())
        return [SearchHit(r["key"], int(r["row"]), r["text"], 1.0 - float(r["_distance"]))
                for r in got.to_pylist()]


def open_index(cache: Path, path: str, digest: str, columns: Sequence[str],
               keys: Sequence[str], texts: Sequence[str],
               embed: Callable[[list[str]], Any] | None = None,
               progress: Callable[[str, int, int], None] | None = None) -> RowIndex:
    """The index of ``path`` at the version ``digest``: opened from ``cache`` when it was
    built for that digest, else (re)built there from ``keys`` and ``texts`` (atomically:
    into a temp folder renamed into place)."""
    lancedb = _lancedb()
    where = index_dir(cache, path, columns)
    done = where / "ready.json"
    if done.exists():
        meta = json.loads(done.read_text())
        if meta.get("digest") == digest:
            db = lancedb.connect(str(where))
            return RowIndex(db.open_table(_TABLE), meta["rows"], False, where)
    embed = embed or default_embedder()
    if progress:
        progress("embed", 0, len(texts))
    vec = embed_texts(embed, texts)
    if progress:
        progress("embed", len(texts), len(texts))
    tmp = where.with_name(where.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dim = vec.shape[1] if len(vec) else 1
    data = pa.table({"key": pa.array(list(keys), pa.string()),
                     "row": pa.array(np.arange(len(texts)), pa.int64()),
                     "text": pa.array(list(texts), pa.string()),
                     "vector": pa.FixedSizeListArray.from_arrays(
                         pa.array(vec.reshape(-1), pa.float32()), dim)})
    db = lancedb.connect(str(tmp))
    tbl = db.create_table(_TABLE, data=data)
    if len(texts) >= ANN_MIN_ROWS:
        tbl.create_index(metric="cosine", vector_column_name="vector")
    (tmp / "ready.json").write_text(json.dumps({"rows": len(texts), "digest": digest,
                                                "path": path, "columns": list(columns)}))
    if where.exists():
        shutil.rmtree(where)
    tmp.rename(where)
    db = lancedb.connect(str(where))
    return RowIndex(db.open_table(_TABLE), len(texts), True, where)
