"""``demoai data search``: the rows of a dataset nearest in meaning to a query (wordllama
embeddings in a LanceDB index kept under ``.demoai/cache/search``, rebuilt when the
dataset's digest changes; :mod:`demoai.prep.search`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from demoai.errors import InvalidArtifact
from demoai.porcelain.data.prepare import joined_texts, load_source, text_columns
from demoai.prep.search import default_embedder, embed_texts, open_index
from demoai.store import Repository

__all__ = ["SearchResult", "search"]


@dataclass
class SearchResult:
    """The hits (key, row, text, cosine similarity), most similar first, and whether the
    index was built by this call (``built``) or reused."""

    path: str
    commit: str
    digest: str
    query: str
    columns: list[str]
    built: bool
    rows: int
    hits: list[dict[str, Any]] = field(default_factory=list)

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
                        index.rows, [h.to_dict() for h in hits])
