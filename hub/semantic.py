"""Search by meaning: one vector per searchable document (prompts, agents, dataset cards)
of every repository, in a LanceDB table under ``<data>/semantic/``, beside the full-text
index of the metadata store.

Vectors are wordllama's shipped static embeddings (256 dimensions, nothing downloaded) of
:func:`semantic_text`: a document's title and text with the YAML keys, template braces and
path punctuation taken out, so that a short query is compared with what the document says
rather than with its syntax. The indexer (hub/indexer.py) replaces a repository's vectors
on every push (one table commit), drops them with the repository, and fills in, once at
start-up, the repositories pushed while no embedding model was installed.

:func:`search` answers the three modes of ``GET /api/v1/search``:

- ``text``: the full-text (FTS5) matches, as before;
- ``semantic``: the nearest documents by cosine similarity, at least
  :data:`MIN_SIMILARITY` similar;
- ``hybrid`` (default): both lists merged by reciprocal-rank fusion (Cormack, Clarke and
  Büttcher, 2009): ``score = sum(1 / (RRF_K + rank))`` over the lists a hit is in.

Private repositories: the vector search is restricted to the repositories the caller may
read *before* the nearest neighbours are taken (a LanceDB prefilter), and every hit of
either list is checked against the hub's access rule again, so a private document can
neither appear nor push a readable one out of the results. Where lancedb or wordllama is
missing the hub keeps full-text search and says so: the answer's ``mode`` is ``text`` and
``notice`` names the reason.
"""
from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from demoai.errors import DemoAIError
from demoai.porcelain.data.search import DocumentIndex, open_document_index, text_embedder

if TYPE_CHECKING:
    from demoai.hub.app import Hub, Principal

__all__ = ["MODES", "MIN_SIMILARITY", "RRF_K", "SemanticIndex", "for_hub", "semantic_text",
           "fuse", "search", "drop"]

MODES = ("hybrid", "semantic", "text")
MIN_SIMILARITY = 0.2    # wordllama cosine: unrelated short texts score about -0.15 .. 0.15
RRF_K = 60              # the constant of reciprocal-rank fusion (as in the paper)
_SNIPPET = 160
log = logging.getLogger("demoai.hub.semantic")

_KEY = re.compile(r"(?m)^[ \t]*-?[ \t]*[A-Za-z_][\w-]*:[ \t]*")
_MARKUP = re.compile(r"[{}\[\]()<>|/\\_.:=\"'`#*~^$@&%+,;!?-]+")


def semantic_text(doc: dict[str, Any]) -> str:
    """What is embedded for a document: its title and text, with YAML keys (``system:``,
    ``template:``), template braces, markup and path punctuation replaced by spaces."""
    text = f"{doc.get('title', '')}\n{doc.get('text', '')}"
    return " ".join(_MARKUP.sub(" ", _KEY.sub(" ", text)).split())


class SemanticIndex:
    """The vector index of one hub (``folder``), opened on first use. When lancedb or the
    embedding model is missing, :attr:`available` is False and :attr:`reason` says why;
    every write is then a no-op and searches fall back to full text."""

    def __init__(self, folder: Path, embed: Callable[[list[str]], Any] | None = None) -> None:
        self.folder = folder
        self._embed = embed
        self._index: DocumentIndex | None = None
        self.reason: str | None = None
        self._lock = threading.Lock()
        self._pending: set[Future] = set()
        self._pending_lock = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None

    def _open(self) -> DocumentIndex | None:
        with self._lock:
            if self._index is None and self.reason is None:
                try:
                    embed = self._embed or text_embedder()
                    embed(["probe"])          # load the model now, not inside a search
                    self._index = open_document_index(self.folder, embed)
                except (DemoAIError, ImportError, OSError) as e:
                    self.reason = f"no embedding model is installed here ({e})"
                    log.warning("semantic search is off: %s", self.reason)
                except Exception as e:   # noqa: BLE001 - the hub keeps full-text search
                    self.reason = f"the semantic index could not be opened ({type(e).__name__}: {e})"
                    log.exception("semantic search is off")
            return self._index

    @property
    def available(self) -> bool:
        """Whether vectors can be made and searched (opens the index on first call)."""
        return self._open() is not None

    def index(self, owner: str, name: str, docs: list[dict[str, Any]], *,
              if_absent: bool = False) -> int:
        """Make ``docs`` the documents of ``owner/name`` (one table commit; ``if_absent``:
        only when it has none yet); the number written, 0 when off."""
        ix = self._open()
        if ix is None:
            return 0
        return ix.replace(f"{owner}/{name}", [{**d, "embed": semantic_text(d)} for d in docs],
                          if_absent=if_absent)

    def index_later(self, owner: str, name: str, docs: list[dict[str, Any]]) -> None:
        """:meth:`index` in this index's own thread, one repository at a time in push order:
        a push is answered without waiting for the embedding model (seconds to load the
        first time); searches wait for what is queued (:meth:`settle`)."""
        with self._pending_lock:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="demoai-semantic")
            fut = self._worker.submit(self._index_quietly, owner, name, docs)
            self._pending.add(fut)
        fut.add_done_callback(self._finished)

    def _index_quietly(self, owner: str, name: str, docs: list[dict[str, Any]]) -> None:
        try:
            self.index(owner, name, docs)
        except Exception:   # noqa: BLE001 - the push already happened; `hub reindex` rebuilds
            log.exception("semantic indexing of %s/%s failed", owner, name)

    def _finished(self, fut: Future) -> None:
        with self._pending_lock:
            self._pending.discard(fut)

    def settle(self, timeout: float = 60.0) -> None:
        """Wait (at most ``timeout`` seconds) for the indexing queued by pushes so far."""
        with self._pending_lock:
            pending = list(self._pending)
        if pending:
            wait(pending, timeout=timeout)

    def drop(self, owner: str, name: str) -> None:
        """Remove the vectors of ``owner/name``."""
        ix = self._open()
        if ix is not None:
            ix.drop(f"{owner}/{name}")

    def indexed(self) -> set[str]:
        """``owner/name`` of every repository holding vectors."""
        self.settle()
        ix = self._open()
        return ix.scopes() if ix is not None else set()

    def vectors(self, owner: str, name: str) -> dict[str, Any]:
        """The stored vector of each document of ``owner/name``, by path."""
        self.settle()
        ix = self._open()
        return ix.vectors(f"{owner}/{name}") if ix is not None else {}

    def nearest(self, query: str, scopes: list[str], k: int,
                min_similarity: float) -> list[dict[str, Any]]:
        """The ``k`` documents of ``scopes`` nearest to ``query``, as hit dicts."""
        ix = self._open()
        if ix is None:
            return []
        out = []
        for h in ix.search(query, k, scopes, min_similarity):
            owner, _, name = h.scope.partition("/")
            out.append({"owner": owner, "name": name, "path": h.path, "kind": h.kind,
                        "title": h.title, "snippet": _snippet(h.text), "similarity": h.similarity})
        return out


_HUBS: dict[str, SemanticIndex] = {}
_HUBS_LOCK = threading.Lock()


def for_hub(hub: "Hub") -> SemanticIndex:
    """The semantic index of ``hub`` (one per data folder and process)."""
    key = str(Path(hub.data).resolve())
    with _HUBS_LOCK:
        if key not in _HUBS:
            _HUBS[key] = SemanticIndex(Path(key) / "semantic")
        return _HUBS[key]


def drop(hub: "Hub", owner: str, name: str) -> None:
    """Forget the vectors of a deleted repository."""
    for_hub(hub).drop(owner, name)


def _snippet(text: str) -> str:
    # The stored text starts with the path (already shown beside the hit): skip that line.
    body = text.split("\n", 1)[1] if "\n" in text else text
    line = " ".join(body.split())
    return line if len(line) <= _SNIPPET else line[:_SNIPPET - 1] + "…"


def fuse(lists: dict[str, list[dict[str, Any]]], limit: int, k: int = RRF_K) -> list[dict[str, Any]]:
    """Reciprocal-rank fusion of ranked hit lists (``{"text": [...], "semantic": [...]}``):
    one hit per document, ``score`` the sum of ``1 / (k + rank)`` over the lists holding it,
    ``sources`` those lists, best first (ties: the order of the lists, then rank)."""
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    for source, hits in lists.items():
        for rank, hit in enumerate(hits, 1):
            key = (hit["owner"], hit["name"], hit["path"])
            cur = merged.get(key)
            if cur is None:
                cur = merged[key] = {**hit, "score": 0.0, "sources": [], "rank": hit.get("rank"),
                                     "similarity": hit.get("similarity")}
            else:   # keep the full-text snippet (it marks the words) and add what is new
                for field in ("rank", "similarity"):
                    if cur.get(field) is None and hit.get(field) is not None:
                        cur[field] = hit[field]
            cur["score"] += 1.0 / (k + rank)
            cur["sources"].append(source)
    return sorted(merged.values(), key=lambda h: -h["score"])[:limit]


def search(hub: "Hub", who: "Principal", query: str, limit: int = 50, mode: str = "hybrid",
           min_similarity: float | None = None,
           text_hits: Callable[[int], list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Search the documents ``who`` may read: ``{"query", "mode", "requested", "notice",
    "min_similarity", "hits"}``. ``mode`` is what ran: ``text`` where semantic search is
    unavailable (``notice`` says why). ``text_hits(n)`` gives the readable full-text
    matches, best first (hub/views.py)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    limit = max(1, min(limit, 200))
    floor = MIN_SIMILARITY if min_similarity is None else float(min_similarity)
    ran, notice = mode, None
    sem = for_hub(hub)
    sem.settle()        # vectors of the pushes answered so far
    if mode != "text" and not sem.available:
        ran, notice = "text", sem.reason
    out = {"query": query, "mode": ran, "requested": mode, "notice": notice,
           "min_similarity": floor if ran != "text" else None, "hits": []}
    if not query.strip():
        return out
    lists: dict[str, list[dict[str, Any]]] = {}
    if ran in ("text", "hybrid") and text_hits is not None:
        lists["text"] = text_hits(limit)
    if ran in ("semantic", "hybrid"):
        readable = {r.full_name: r for r in hub.visible_repos(who)}
        try:
            hits = sem.nearest(query, sorted(readable), limit, floor)
        except Exception as e:   # noqa: BLE001 - a damaged vector table: words still work
            log.exception("semantic search failed")
            out.update(mode="text", notice=f"search by meaning failed here ({type(e).__name__})",
                       min_similarity=None)
            if text_hits is not None and "text" not in lists:
                lists["text"] = text_hits(limit)
        else:
            # The prefilter already kept only readable repositories; check each hit again.
            lists["semantic"] = [h for h in hits if f"{h['owner']}/{h['name']}" in readable
                                 and hub.can_read(readable[f"{h['owner']}/{h['name']}"], who)]
    out["hits"] = fuse(lists, limit)
    return out
