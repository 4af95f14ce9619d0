"""Semantic search with LanceDB over wordllama embeddings (cosine similarity).

Rows of a dataset (:func:`open_index`): a text column's embeddings in a LanceDB table, built
once per dataset version and kept in a cache folder named by the dataset path, the columns
and the embedder, one sub-folder per version (by digest; the :data:`KEEP_VERSIONS` most
recently used are kept). An unchanged version is opened as it is; a new one embeds only
the texts the version used before did not hold (a 1% edit embeds about 1% of the rows).

    index = open_index(cache_dir, "data/train.jsonl", digest, ["text"], keys, texts, embed)
    hits = index.search(embed(["query"])[0], k=5)

The table holds ``key`` (the row's key), ``row`` (its position in the version), ``text``
and ``vector`` (L2-normalized float32). Search is exact (flat) below
:data:`ANN_MIN_ROWS` rows and an IVF-PQ index above.

Range search for semantic dedup (:meth:`RowIndex.neighbours`): every indexed row within a
cosine similarity of each query. An exact index answers it with blocked matrix products over
its vectors (memory bounded by the block, not N x N); an ANN index with LanceDB's batched
k-nearest-neighbour queries (refined by the stored vectors), asking again with twice the k
for the queries whose k-th hit still clears the threshold. :class:`FlatIndex` answers the
same call over vectors held in memory. Similarities are recomputed in float64 from the
stored vectors, so a pair found from either side has one value.

Documents in scopes (:class:`DocumentIndex`): one vector per document (a hub's prompts,
agents and dataset cards, a scope per repository) in one LanceDB table; a scope's documents
are replaced in one table commit (``merge_insert``), dropped with the scope, and searched
with a filter on the scopes the caller may see applied *before* the nearest-neighbour
search, so a document outside them can never take a result slot or leak.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import uuid
from datetime import timedelta
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

from demoai.errors import BackendUnavailable, InvalidArtifact

__all__ = ["default_embedder", "embed_texts", "SearchHit", "RowIndex", "open_index",
           "index_dir", "DocumentIndex", "DocumentHit", "ANN_MIN_ROWS", "KEEP_VERSIONS",
           "EMBEDDER_NAME", "FlatIndex", "flat_neighbours"]

ANN_MIN_ROWS = 100_000
KEEP_VERSIONS = 4       # dataset versions whose row index a cache folder keeps
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


def _exact_sims(queries: np.ndarray, qi: np.ndarray, vectors: np.ndarray,
                rows: np.ndarray) -> np.ndarray:
    """float64 cosine of query ``qi[k]`` and vector ``rows[k]`` (both L2-normalized)."""
    out = np.empty(len(qi))
    for s in range(0, len(qi), 65536):
        a = queries[qi[s:s + 65536]].astype(np.float64)
        b = vectors[rows[s:s + 65536]].astype(np.float64)
        out[s:s + 65536] = np.einsum("ij,ij->i", a, b)
    return out


_EMPTY_HITS = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))
_SLACK = 1e-4           # candidates a little below the threshold, then checked in float64


def flat_neighbours(queries: np.ndarray, vectors: np.ndarray, min_similarity: float,
                    progress: Callable[[str, int, int], None] | None = None,
                    query_rows: np.ndarray | None = None,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact range search: (query index, row, cosine) for every row of ``vectors`` whose
    cosine with a query is >= ``min_similarity`` (both L2-normalized), in blocks of queries
    whose similarity matrix stays under 64 MiB. ``query_rows``: the row of ``vectors`` each
    query is (-1: none), ascending; a pair of two query rows is then reported once, from
    the earlier row (a block compares its queries with the rows from its first one on, and
    with the rows before that which are no query)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if not len(q) or not len(v):
        return _EMPTY_HITS
    is_query = np.zeros(len(v), dtype=bool)
    if query_rows is not None:
        query_rows = np.asarray(query_rows, dtype=np.int64)
        if np.any(query_rows < 0) or np.any(np.diff(query_rows) <= 0):
            query_rows = None
        else:
            is_query[query_rows] = True
    others = np.flatnonzero(~is_query)
    block = max(1, min(4096, (1 << 24) // len(v)))
    qi, rows = [], []
    for s in range(0, len(q), block):
        qb = q[s:s + block]
        first = int(query_rows[s]) if query_rows is not None else 0
        lo = others[others < first]
        i, j = np.nonzero(qb @ v[first:].T >= min_similarity - _SLACK)
        j = j + first
        if query_rows is not None:          # query rows at or before the query: found there
            later = ~is_query[j] | (j > query_rows[s + i])
            i, j = i[later], j[later]
        qi.append(i + s)
        rows.append(j)
        if len(lo):
            i, j = np.nonzero(qb @ v[lo].T >= min_similarity - _SLACK)
            qi.append(i + s)
            rows.append(lo[j])
        if progress:
            progress("semantic", min(s + block, len(q)), len(q))
    qi_a, rows_a = np.concatenate(qi).astype(np.int64), np.concatenate(rows).astype(np.int64)
    sims = _exact_sims(q, qi_a, v, rows_a)
    ok = sims >= min_similarity
    return qi_a[ok], rows_a[ok], sims[ok]


class FlatIndex:
    """Vectors held in memory (L2-normalized here), searched exactly like a small
    :class:`RowIndex`."""

    ann = False

    def __init__(self, vectors: np.ndarray) -> None:
        v = np.asarray(vectors, dtype=np.float32)
        norm = np.linalg.norm(v, axis=1, keepdims=True) if v.size else np.ones((len(v), 1))
        self._vec = v / np.where(norm == 0, 1, norm)
        self.rows = len(v)

    def vectors(self) -> np.ndarray:
        """The (rows, d) normalized vectors."""
        return self._vec

    def neighbours(self, queries: np.ndarray, min_similarity: float, *, k: int = 16,
                   progress: Callable[[str, int, int], None] | None = None,
                   query_rows: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query index, row, cosine) of every row with cosine >= ``min_similarity``
        (``query_rows``: see :func:`flat_neighbours`)."""
        return flat_neighbours(queries, self._vec, min_similarity, progress, query_rows)


class RowIndex:
    """An open LanceDB table of row embeddings; ``built`` says whether this call made it,
    ``embedded`` how many distinct texts it embedded (the others came from the version
    indexed before), ``ann`` whether it has an approximate (IVF-PQ) vector index."""

    def __init__(self, table: Any, rows: int, built: bool, where: Path, embedded: int = 0,
                 ann: bool = False, vectors: np.ndarray | None = None) -> None:
        self.table, self.rows, self.built, self.path = table, rows, built, where
        self.embedded, self.ann = embedded, ann
        self._vec = vectors

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

    def vectors(self) -> np.ndarray:
        """The (rows, d) L2-normalized float32 vectors, in row order (read once)."""
        if self._vec is None:
            got = self.table.search().select(["row", "vector"]).limit(None).to_arrow()
            col = got.column("vector").combine_chunks()
            dim = col.type.list_size
            mat = col.values.to_numpy(zero_copy_only=False).reshape(len(col), dim)
            vec = np.zeros((self.rows, dim), dtype=np.float32)
            vec[got.column("row").to_numpy()] = mat
            self._vec = vec
        return self._vec

    def neighbours(self, queries: np.ndarray, min_similarity: float, *, k: int = 16,
                   progress: Callable[[str, int, int], None] | None = None,
                   query_rows: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query index, row, cosine) of the indexed rows whose cosine with each of
        ``queries`` (L2-normalized) is >= ``min_similarity``: all of them on an exact index
        (``query_rows``: see :func:`flat_neighbours`); on an ANN index, those its
        k-nearest-neighbour queries find, k doubling for the queries whose k-th hit still
        clears the threshold."""
        if k < 1:
            raise InvalidArtifact(f"search: k must be at least 1, not {k}")
        q = np.asarray(queries, dtype=np.float32)
        if not self.ann:
            return flat_neighbours(q, self.vectors(), min_similarity, progress, query_rows)
        vec = self.vectors()
        todo = np.arange(len(q))
        qi, rows = [], []
        while len(todo):
            kk = min(k, self.rows)
            got = (self.table.search([x for x in q[todo]]).metric("cosine").limit(kk)
                   .nprobes(_ANN_NPROBES).refine_factor(_ANN_REFINE)
                   .select(["row", "_distance"]).to_arrow())
            if len(todo) == 1 and "query_index" not in got.column_names:
                got = got.append_column("query_index", pa.array(np.zeros(got.num_rows,
                                                                         dtype=np.int32)))
            gi = got.column("query_index").to_numpy().astype(np.int64)
            gr = got.column("row").to_numpy().astype(np.int64)
            close = 1.0 - got.column("_distance").to_numpy() >= min_similarity - _ANN_SLACK
            qi.append(todo[gi[close]])
            rows.append(gr[close])
            hits = np.bincount(gi[close], minlength=len(todo))
            if progress:
                progress("semantic", len(q) - int((hits >= kk).sum()), len(q))
            if kk >= self.rows:
                break
            todo, k = todo[hits >= kk], 2 * k
        if not qi:
            return _EMPTY_HITS
        qi_a, rows_a = np.concatenate(qi), np.concatenate(rows)
        code = np.unique(qi_a * max(self.rows, 1) + rows_a)     # a query asked again repeats
        qi_a, rows_a = code // max(self.rows, 1), code % max(self.rows, 1)
        sims = _exact_sims(q, qi_a, vec, rows_a)
        ok = sims >= min_similarity
        return qi_a[ok], rows_a[ok], sims[ok]


_ANN_NPROBES = 40       # IVF partitions searched per query (of ~sqrt(rows))
_ANN_REFINE = 4         # PQ candidates re-ranked by their stored vectors, per hit asked
_ANN_SLACK = 0.02       # refined distances are exact but float32: keep near misses to check


def _version_dir(where: Path, digest: str) -> Path:
    return where / hashlib.blake2b(digest.encode(), digest_size=10).hexdigest()


def _versions(where: Path) -> list[Path]:
    """The built versions under ``where``, most recently used first."""
    if not where.is_dir():
        return []
    got = [d for d in where.iterdir() if d.is_dir() and (d / "ready.json").is_file()]
    return sorted(got, key=lambda d: (d / "ready.json").stat().st_mtime_ns, reverse=True)


def _known_vectors(lancedb: Any, where: Path) -> tuple[dict[str, int], np.ndarray]:
    """(text -> row, vectors) of the most recently used version: rows whose text did not
    change need no new embedding (same folder, same embedder)."""
    for ver in _versions(where)[:1]:
        try:
            got = lancedb.connect(str(ver)).open_table(_TABLE).search().select(
                ["text", "vector"]).limit(None).to_arrow()
        except Exception:   # noqa: BLE001 - a damaged cache is rebuilt, never trusted
            break
        vec = got.column("vector").combine_chunks()
        mat = vec.values.to_numpy(zero_copy_only=False).reshape(len(vec), -1) if len(vec) else None
        if mat is not None:
            return {t: i for i, t in enumerate(got.column("text").to_pylist())}, mat
    return {}, np.zeros((0, 0), dtype=np.float32)


def _prune(where: Path, keep: int) -> None:
    for old in _versions(where)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    for legacy in (where / "rows.lance", where / "ready.json"):   # the one-version layout
        if legacy.is_dir():
            shutil.rmtree(legacy, ignore_errors=True)
        elif legacy.exists():
            legacy.unlink()


def open_index(cache: Path, path: str, digest: str, columns: Sequence[str],
               keys: Sequence[str], texts: Sequence[str],
               embed: Callable[[list[str]], Any] | None = None,
               progress: Callable[[str, int, int], None] | None = None,
               ann_min_rows: int | None = None) -> RowIndex:
    """The index of ``path`` at the version ``digest``: opened from ``cache`` when it was
    built for that digest (the :data:`KEEP_VERSIONS` most recently used versions are kept),
    else built there from ``keys`` and ``texts`` (atomically: into a temp folder renamed
    into place), embedding only the texts the previously used version did not hold. A build
    of at least ``ann_min_rows`` rows (default :data:`ANN_MIN_ROWS`) gets an IVF-PQ index."""
    lancedb = _lancedb()
    ann_min = ANN_MIN_ROWS if ann_min_rows is None else ann_min_rows
    where = index_dir(cache, path, columns)
    ver = _version_dir(where, digest)
    done = ver / "ready.json"
    if done.exists():
        meta = json.loads(done.read_text())
        if meta.get("digest") == digest:
            os.utime(done)          # most recently used: pruned last
            db = lancedb.connect(str(ver))
            return RowIndex(db.open_table(_TABLE), meta["rows"], False, ver,
                            ann=bool(meta.get("ann", meta["rows"] >= ANN_MIN_ROWS)))
    known, mat = _known_vectors(lancedb, where)
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    if missing:
        embed = embed or default_embedder()
    if progress:
        progress("embed", 0, len(missing))
    fresh = embed_texts(embed, missing) if missing else np.zeros((0, 0), dtype=np.float32)
    if known and len(fresh) and fresh.shape[1] != mat.shape[1]:   # another model: start over
        known, missing = {}, list(dict.fromkeys(texts))
        fresh = embed_texts(embed, missing)
    if progress:
        progress("embed", len(missing), len(missing))
    dim = fresh.shape[1] if len(fresh) else (mat.shape[1] if mat.size else 1)
    new = {t: i for i, t in enumerate(missing)}
    vec = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        vec[i] = fresh[new[t]] if t in new else mat[known[t]]
    # A folder of this build's own: two processes building the same index never share one.
    tmp = where / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    data = pa.table({"key": pa.array(list(keys), pa.string()),
                     "row": pa.array(np.arange(len(texts)), pa.int64()),
                     "text": pa.array(list(texts), pa.string()),
                     "vector": pa.FixedSizeListArray.from_arrays(
                         pa.array(vec.reshape(-1), pa.float32()), dim)})
    db = lancedb.connect(str(tmp))
    tbl = db.create_table(_TABLE, data=data)
    ann = len(texts) >= ann_min
    if ann:
        from lancedb.index import IvfPq
        tbl.create_index("vector", config=IvfPq(distance_type="cosine"))
    (tmp / "ready.json").write_text(json.dumps({"rows": len(texts), "digest": digest,
                                                "path": path, "columns": list(columns),
                                                "embedded": len(missing), "ann": ann}))
    _swap_in(tmp, ver)
    _prune(where, KEEP_VERSIONS)
    db = lancedb.connect(str(ver))
    return RowIndex(db.open_table(_TABLE), len(texts), True, ver, len(missing), ann, vec)


def _swap_in(tmp: Path, where: Path) -> None:
    """Move the finished build ``tmp`` to ``where``. The old folder is renamed aside first,
    so no reader sees a half-removed index; when another process put its own build there in
    between, that one (of the same version: both read the same digest) is kept."""
    old = where.with_name(f".old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        if where.exists():
            where.rename(old)
        tmp.rename(where)
    except OSError:
        if not (where / "ready.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------- documents
_DOCS = "documents"
_DOC_TEXT = 4000        # characters of a document kept beside its vector (for snippets)
_OPTIMIZE_EVERY = 32    # table commits between compactions (old versions are dropped then)


def _sql(value: str) -> str:
    """A SQL string literal (LanceDB filters are SQL)."""
    return "'" + value.replace("'", "''") + "'"


@dataclass
class DocumentHit:
    """A document found: its scope, path, kind, title, stored text, cosine similarity and
    position in the ranking (1 = nearest)."""

    scope: str
    path: str
    kind: str
    title: str
    text: str
    similarity: float
    rank: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


class DocumentIndex:
    """One vector per document in the LanceDB table ``documents`` under ``folder``, grouped
    by ``scope``; thread-safe (writes are serialized, reads run beside them).

    ``embed`` maps texts to an (n, d) array (default: wordllama's shipped model, loaded on
    first use). The embedder's name and dimension are kept beside the table: a table made
    by another embedder is dropped and rebuilt by the next writes (:meth:`scopes` is then
    empty, so a caller knows what to index again)."""

    def __init__(self, folder: str | os.PathLike, embed: Callable[[list[str]], Any] | None = None,
                 embedder: str = EMBEDDER_NAME) -> None:
        self.folder = Path(folder)
        self.embedder = embedder
        self._embed = embed
        self._lancedb = _lancedb()
        self._write = threading.Lock()
        self._table: Any = None
        self._writes = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        self._db = self._lancedb.connect(str(self.folder))
        meta = self._meta()
        if meta.get("embedder") not in (None, embedder) and _DOCS in self._tables():
            self._db.drop_table(_DOCS)
        elif _DOCS in self._tables():
            self._table = self._db.open_table(_DOCS)

    # -- internals
    def _tables(self) -> list[str]:
        got = self._db.list_tables() if hasattr(self._db, "list_tables") else self._db.table_names()
        return list(getattr(got, "tables", got))

    def _meta(self) -> dict[str, Any]:
        try:
            return json.loads((self.folder / "index.json").read_text())
        except (OSError, ValueError):
            return {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalized embeddings of ``texts`` (loads the embedder on first use)."""
        if self._embed is None:
            self._embed = default_embedder()
        return embed_texts(self._embed, texts)

    def _create(self, data: pa.Table) -> Any:
        mode = "overwrite" if _DOCS in self._tables() else "create"   # no "will be created" warning
        tbl = self._db.create_table(_DOCS, data=data, mode=mode)
        (self.folder / "index.json").write_text(json.dumps(
            {"embedder": self.embedder, "dim": data.schema.field("vector").type.list_size}))
        return tbl

    # -- writes
    def replace(self, scope: str, docs: Sequence[dict[str, Any]], *,
                if_absent: bool = False) -> int:
        """Make ``docs`` (``path``, ``kind``, ``title``, ``text``, optionally ``embed``:
        the text to embed, default ``text``) the documents of ``scope``, in one table
        commit; returns how many. An empty list drops the scope. ``if_absent``: only when
        the scope holds no documents yet (checked under the write lock), else 0."""
        if not docs and not if_absent:
            self.drop(scope)
            return 0
        if not docs:
            return 0
        vec = self.embed([str(d.get("embed") or d["text"]) for d in docs])
        data = pa.table({
            "id": pa.array([f"{scope}\x00{d['path']}" for d in docs], pa.string()),
            "scope": pa.array([scope] * len(docs), pa.string()),
            "path": pa.array([str(d["path"]) for d in docs], pa.string()),
            "kind": pa.array([str(d.get("kind", "")) for d in docs], pa.string()),
            "title": pa.array([str(d.get("title", "")) for d in docs], pa.string()),
            "text": pa.array([str(d["text"])[:_DOC_TEXT] for d in docs], pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1), pa.float32()),
                                                        vec.shape[1])})
        with self._write:
            if if_absent and self._table is not None and self._table.count_rows(
                    f"scope = {_sql(scope)}"):
                return 0
            if self._table is None:
                self._table = self._create(data)
            else:
                (self._table.merge_insert("id").when_matched_update_all()
                 .when_not_matched_insert_all()
                 .when_not_matched_by_source_delete(f"scope = {_sql(scope)}").execute(data))
                self._maintain()
        return len(docs)

    def drop(self, scope: str) -> None:
        """Remove every document of ``scope``."""
        with self._write:
            if self._table is not None:
                self._table.delete(f"scope = {_sql(scope)}")
                self._maintain()

    def _maintain(self) -> None:
        # Each write is a new table version; compact now and then and let old versions go
        # (readers that started on one keep it: only versions older than a minute are dropped).
        self._writes += 1
        if self._writes % _OPTIMIZE_EVERY == 0:
            self._table.optimize(cleanup_older_than=timedelta(minutes=1))

    # -- reads
    def scopes(self) -> set[str]:
        """The scopes that hold documents."""
        if self._table is None:
            return set()
        got = self._table.search().select(["scope"]).limit(None).to_arrow()
        return set(got.column("scope").to_pylist())

    def count(self, scope: str | None = None) -> int:
        """Documents in ``scope`` (all scopes: None)."""
        if self._table is None:
            return 0
        return int(self._table.count_rows(None if scope is None else f"scope = {_sql(scope)}"))

    def vectors(self, scope: str) -> dict[str, np.ndarray]:
        """The stored vector of each document of ``scope``, by path."""
        if self._table is None:
            return {}
        got = (self._table.search().where(f"scope = {_sql(scope)}").select(["path", "vector"])
               .limit(None).to_arrow())
        return {p: np.asarray(v, dtype=np.float32) for p, v in
                zip(got.column("path").to_pylist(), got.column("vector").to_pylist())}

    def search(self, query: str, k: int = 10, scopes: Sequence[str] | None = None,
               min_similarity: float | None = None) -> list[DocumentHit]:
        """The ``k`` documents nearest to ``query`` (cosine), most similar first, among
        ``scopes`` only (None: every scope), at least ``min_similarity`` similar."""
        if k < 1:
            raise InvalidArtifact(f"search: k must be at least 1, not {k}")
        if self._table is None or (scopes is not None and not scopes) or not query.strip():
            return []
        qv = self.embed([query])[0]
        q = self._table.search(qv).metric("cosine")
        if scopes is not None:
            q = q.where(f"scope IN ({', '.join(_sql(s) for s in sorted(set(scopes)))})",
                        prefilter=True)
        got = q.select(["scope", "path", "kind", "title", "text", "_distance"]).limit(k).to_arrow()
        hits = []
        for r in got.to_pylist():
            sim = 1.0 - float(r["_distance"])
            if min_similarity is not None and sim < min_similarity:
                continue
            hits.append(DocumentHit(r["scope"], r["path"], r["kind"], r["title"], r["text"],
                                    sim, len(hits) + 1))
        return hits
