"""``demoai data search``: the rows of a dataset nearest in meaning to a query (wordllama
embeddings in a LanceDB index kept under ``.demoai/cache/search``, rebuilt when the
dataset's digest changes; :mod:`demoai.prep.search`). ``data dedup --semantic`` reads its
vectors from, and searches, the same per-version index.

For services that search documents by meaning (the hub's prompts, agents and dataset
cards): :func:`text_embedder` (wordllama's shipped model, never downloaded) and
:func:`open_document_index` (a LanceDB table of one vector per document, in scopes)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from demoai.errors import InvalidArtifact
from demoai.porcelain.data.prepare import joined_texts, load_source, text_columns
from demoai.prep.search import (EMBEDDER_NAME, DocumentHit, DocumentIndex, default_embedder,
                                embed_texts, open_index)
from demoai.store import Repository

__all__ = ["SearchResult", "search", "text_embedder", "open_document_index", "DocumentIndex",
           "DocumentHit", "EMBEDDER_NAME"]


def text_embedder() -> Callable[[list[str]], Any]:
    """The default text embedder (wordllama's shipped 256-dim model) as ``embed(texts) ->
    (n, d) L2-normalized float32 array``; ``BackendUnavailable`` where it is not installed."""
    embed = default_embedder()
    return lambda texts: embed_texts(embed, list(texts))


def open_document_index(folder: Any, embed: Callable[[list[str]], Any] | None = None) -> DocumentIndex:
    """The document index kept in ``folder`` (created if missing), embedding with ``embed``
    (default: :func:`text_embedder`, loaded on first use); ``BackendUnavailable`` without
    lancedb."""
    return DocumentIndex(folder, embed)


@dataclass
class SearchResult:
    """The hits (key, row, text, cosine similarity), most similar first, whether the index
    was built by this call (``built``) or reused, and how many distinct texts this call
    embedded (``embedded``: a new version embeds only the texts the last one lacked)."""

    path: str
    commit: str
    digest: str
    query: str
    columns: list[str]
    built: bool
    rows: int
    hits: list[dict[str, Any]] = field(default_factory=list)
    embedded: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


def search(repo: Repository, path: str, query: str, *, k: int = 5,
           column: str | Sequence[str] | None = None, rev: str = "HEAD",
           embed: Callable[[list[str]], Any] | None = None,
           progress: Callable[[str, int, int], None] | None = None) -> SearchResult:
    """The ``k`` rows of ``path`` at ``rev`` whose text ``column`` (default: every text
    column but the key, joined) is nearest to ``query`` by cosine similarity."""
    if not query.strip():
        raise InvalidArtifact("search: the query is empty", reason="query")
    if k < 1:
        raise InvalidArtifact(f"search: k must be at least 1, not {k}", reason="k")
    src = load_source(repo, path, rev)
    cols = text_columns(src.table, column, src.art.key, "search")
    texts = joined_texts(src.table, cols, "search").to_pylist()
    embed = embed or default_embedder()
    index = open_index(repo.control / "cache", src.path, src.art.digest, cols, src.keys, texts,
                       embed, progress)
    qv = embed_texts(embed, [query])[0]
    hits = index.search(qv, k) if index.rows else []
    return SearchResult(src.path, src.commit, src.art.digest, query, cols, index.built,
                        index.rows, [h.to_dict() for h in hits], index.embedded)
