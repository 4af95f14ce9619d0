"""Search by meaning: the hub's semantic index (LanceDB, wordllama) against a real hub served
by uvicorn on 127.0.0.1, and `demoai data search` over a dataset's rows.

The hub's vector ranking is checked against a numpy cosine over the same wordllama
embeddings, the stored vectors against a fresh embedding of each document, private
repositories against every mode, and a hub without an embedding model (a ``wordllama``
that cannot be imported, put first on the hub's ``PYTHONPATH``) against its promise to keep
full-text search and say so.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from demoai import porcelain as P
from demoai.hub import indexer, semantic
from demoai.hub.app import Hub
from demoai.porcelain import browse
from demoai.porcelain import data as D
from demoai.porcelain.data.search import open_document_index, text_embedder
from tests.helpers.hub import HubServer, make_user

pytest.importorskip("wordllama")
pytest.importorskip("lancedb")
pytestmark = pytest.mark.timeout(180)

AGENT = (Path(__file__).resolve().parents[1] / "demoai" / "data" / "files.agent.yaml").read_text()
TRANSLATE = """name: translator
description: Turn English text into French.
system: You translate the user's text into French, keeping its tone.
template: "French version of: {{text}}"
"""
POEM = """name: poet
system: You rewrite the user's message as a short poem.
template: "Poem about: {{text}}"
"""
ARITH = """name: arith
system: Answer with a number.
template: "Compute: {{question}}"
"""
ISLANDS = """name: islands
system: You are a guide to Zanzibar and the spice islands of Tanzania.
template: "Tell me about {{place}}"
"""
CAPITALS = [{"id": i, "country": c, "capital": k} for i, (c, k) in enumerate(
    [("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Peru", "Lima")])]
MEANS_TRANSLATE = "convert sentences to another language"   # no word of TRANSLATE
MEANS_ISLANDS = "archipelago near east africa"


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"\w+", text)}


def _repo(root: Path, files: dict[str, str]) -> P.Repository:
    """A repository at ``root`` with ``files`` (``*.jsonl`` added with key ``id``), committed."""
    repo = P.init(root) if not (root / ".demoai").exists() else P.open_repository(root)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
        P.add(repo, [root / rel], key="id" if rel.endswith(".jsonl") else None)
    P.commit(repo, "files")
    return repo


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


class Client:
    def __init__(self, server: HubServer) -> None:
        self.server = server

    def search(self, q: str, who: str | None = None, **params: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.server.tokens[who]['read']}"} if who else {}
        r = httpx.get(f"{self.server.url}/api/v1/search", params={"q": q, **params},
                      headers=headers, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    """A hub with ann/lang (public: two prompts, an agent, a dataset) and ann/secret
    (private: one prompt), users ann and bob."""
    root = tmp_path_factory.mktemp("search")
    server = HubServer(root / "data")
    server.tokens = {"ann": make_user(server.data, "ann"), "bob": make_user(server.data, "bob")}
    server.start()
    lang = _repo(root / "lang", {"prompts/translate.prompt.yaml": TRANSLATE,
                                 "prompts/arith.prompt.yaml": ARITH,
                                 "agents/files.agent.yaml": AGENT,
                                 "data/capitals.jsonl": _jsonl(CAPITALS)})
    P.push(lang, server.repo_url("ann", "lang"), token=server.tokens["ann"]["write"], private=False)
    secret = _repo(root / "secret", {"prompts/islands.prompt.yaml": ISLANDS})
    P.push(secret, server.repo_url("ann", "secret"), token=server.tokens["ann"]["write"], private=True)
    server.local = {"lang": lang}
    yield server
    server.stop()


# ----------------------------------------------------------------------------- the hub

def test_semantic_mode_finds_by_meaning_what_text_search_misses(hub):
    assert not _words(MEANS_TRANSLATE) & _words("prompts/translate.prompt.yaml\n" + TRANSLATE)
    c = Client(hub)
    sem = c.search(MEANS_TRANSLATE, mode="semantic")
    assert (sem["mode"], sem["requested"], sem["notice"]) == ("semantic", "semantic", None)
    top = sem["hits"][0]
    assert (top["owner"], top["name"], top["path"], top["kind"]) == (
        "ann", "lang", "prompts/translate.prompt.yaml", "prompt")
    assert top["sources"] == ["semantic"] and top["rank"] is None
    assert top["similarity"] >= semantic.MIN_SIMILARITY and top["title"] == "translator"
    text = c.search(MEANS_TRANSLATE, mode="text")
    assert text["mode"] == "text" and text["hits"] == []
    hybrid = c.search(MEANS_TRANSLATE)          # the default mode
    assert hybrid["mode"] == "hybrid" and hybrid["hits"][0]["path"] == "prompts/translate.prompt.yaml"
    # a word match is still found by words, and by meaning too: both sources, fused first
    both = c.search("Compute")["hits"]
    assert both[0]["path"] == "prompts/arith.prompt.yaml" and both[0]["sources"] == ["text", "semantic"]
    assert "[Compute]" in both[0]["snippet"] and both[0]["rank"] is not None
    assert both[0]["score"] == pytest.approx(2 / (semantic.RRF_K + 1))
    # unrelated words: nothing passes the similarity floor
    assert c.search("carefully")["hits"] == []
    assert httpx.get(f"{hub.url}/api/v1/search", params={"q": "x", "mode": "fuzzy"}).status_code == 422


def test_vector_ranking_equals_a_numpy_cosine_over_the_same_embeddings(hub):
    docs = [d.to_dict() for d in browse.search_documents(hub.local["lang"])]
    assert {d["kind"] for d in docs} == {"prompt", "agent", "dataset"}
    embed = text_embedder()
    vec = embed([semantic.semantic_text(d) for d in docs])
    # the hub stored exactly these vectors (read from its LanceDB table in this process)
    stored = open_document_index(hub.data / "semantic").vectors("ann/lang")
    assert set(stored) == {d["path"] for d in docs}
    for d, v in zip(docs, vec):
        np.testing.assert_allclose(stored[d["path"]], v, atol=1e-5)
    for query in (MEANS_TRANSLATE, "country capitals", "keep notes in files", "do math"):
        q = embed([query])[0]
        cos = vec @ q / (np.linalg.norm(vec, axis=1) * np.linalg.norm(q))
        want = [docs[i]["path"] for i in np.argsort(-cos, kind="stable")]
        got = Client(hub).search(query, "bob", mode="semantic", min_similarity=-1)["hits"]
        assert [h["path"] for h in got] == want, query      # bob sees ann/lang only
        np.testing.assert_allclose([h["similarity"] for h in got], np.sort(cos)[::-1], atol=1e-4)


def test_dataset_cards_are_found_by_words_and_by_meaning(hub):
    c = Client(hub)
    words = c.search("capital", mode="text")["hits"]
    assert [(h["path"], h["kind"], h["title"]) for h in words] == [
        ("data/capitals.jsonl", "dataset", "capitals.jsonl")]
    assert "[capitals]" in words[0]["snippet"]
    meaning = c.search("country capitals", mode="semantic")["hits"]
    assert (meaning[0]["path"], meaning[0]["kind"]) == ("data/capitals.jsonl", "dataset")
    assert "4 rows" in meaning[0]["snippet"] and "capital (string)" in meaning[0]["snippet"]


def test_private_documents_never_leak_through_the_vector_path(hub):
    c = Client(hub)
    own = c.search(MEANS_ISLANDS, "ann", mode="semantic")["hits"]
    assert (own[0]["name"], own[0]["path"]) == ("secret", "prompts/islands.prompt.yaml")
    # the vector is there (so only the access rule hides it), and the floor is off:
    # every document of every readable repository comes back, none of ann/secret
    assert set(open_document_index(hub.data / "semantic").vectors("ann/secret")) == {
        "prompts/islands.prompt.yaml"}
    public = len(browse.search_documents(hub.local["lang"]))
    for who in (None, "bob"):
        for mode in ("semantic", "hybrid"):
            for q in (MEANS_ISLANDS, "zanzibar", "Tanzania spice islands guide"):
                hits = c.search(q, who, mode=mode, min_similarity=-1, limit=200)["hits"]
                assert {h["name"] for h in hits} == {"lang"}, (who, mode, q)
                assert len(hits) == public
                assert all("Zanzibar" not in h["snippet"] for h in hits)
    page = httpx.get(f"{hub.url}/search", params={"q": "zanzibar", "mode": "semantic"}, timeout=30)
    assert page.status_code == 200 and "islands" not in page.text


def test_reindex_on_push_replaces_the_old_vectors(hub, tmp_path):
    url, token = hub.repo_url("ann", "evolve"), hub.tokens["ann"]["write"]
    repo = _repo(tmp_path / "w", {"prompts/a.prompt.yaml": TRANSLATE, "prompts/b.prompt.yaml": ISLANDS})
    P.push(repo, url, token=token, private=False)
    c = Client(hub)
    assert [h["path"] for h in c.search(MEANS_ISLANDS, mode="semantic")["hits"]
            if h["name"] == "evolve"] == ["prompts/b.prompt.yaml"]
    # v2: a becomes a poem, b is removed, c is added
    P.rm(repo, [tmp_path / "w/prompts/b.prompt.yaml"])
    _repo(tmp_path / "w", {"prompts/a.prompt.yaml": POEM, "prompts/c.prompt.yaml": ARITH})
    P.push(repo, url, token=token)
    # the push is answered before its vectors are written; a search waits for them
    c.search(MEANS_ISLANDS, mode="semantic")
    stored = open_document_index(hub.data / "semantic").vectors("ann/evolve")
    assert set(stored) == {"prompts/a.prompt.yaml", "prompts/c.prompt.yaml"}
    new_a = [d.to_dict() for d in browse.search_documents(P.open_repository(tmp_path / "w"))
             if d.path == "prompts/a.prompt.yaml"][0]
    np.testing.assert_allclose(stored["prompts/a.prompt.yaml"],
                               text_embedder()([semantic.semantic_text(new_a)])[0], atol=1e-5)
    mine = lambda q: [h["path"] for h in c.search(q, mode="semantic", min_similarity=-1,  # noqa: E731
                                                  limit=200)["hits"] if h["name"] == "evolve"]
    assert "prompts/b.prompt.yaml" not in mine(MEANS_ISLANDS)
    assert mine("verses and rhymes")[0] == "prompts/a.prompt.yaml"
    assert c.search("poem", mode="text")["hits"][0]["path"] == "prompts/a.prompt.yaml"


def test_search_page_shows_the_mode_and_both_kinds_of_hits(hub):
    html = httpx.get(f"{hub.url}/search", params={"q": "Compute"}, timeout=30).text
    assert 'data-mode="hybrid"' in html and "<strong>hybrid</strong>" in html
    assert 'data-sources="text semantic"' in html
    assert 'class="badge match-text">words<' in html and 'class="badge match-semantic">meaning<' in html
    sem = httpx.get(f"{hub.url}/search", params={"q": MEANS_TRANSLATE, "mode": "semantic"}, timeout=30).text
    assert 'data-mode="semantic"' in sem and "prompts/translate.prompt.yaml" in sem
    assert 'data-sources="semantic"' in sem and 'value="semantic" selected' in sem
    txt = httpx.get(f"{hub.url}/search", params={"q": MEANS_TRANSLATE, "mode": "text"}, timeout=30).text
    assert 'data-mode="text"' in txt and "prompts/translate.prompt.yaml" not in txt


def test_without_an_embedding_model_the_hub_keeps_text_search_and_says_so(tmp_path, monkeypatch):
    fake = tmp_path / "no-wordllama" / "wordllama"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('wordllama is not installed here')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    server = HubServer(tmp_path / "data")
    server.tokens = {"ann": make_user(server.data, "ann")}
    repo = _repo(tmp_path / "w", {"prompts/translate.prompt.yaml": TRANSLATE})
    with server:
        P.push(repo, server.repo_url("ann", "lang"), token=server.tokens["ann"]["write"], private=False)
        c = Client(server)
        for mode in ("semantic", "hybrid"):
            got = c.search("French", mode=mode)
            assert (got["mode"], got["requested"]) == ("text", mode)
            assert "embedding" in got["notice"] and "wordllama" in got["notice"]
            assert [h["path"] for h in got["hits"]] == ["prompts/translate.prompt.yaml"]
            assert got["hits"][0]["sources"] == ["text"]
        assert c.search(MEANS_TRANSLATE, mode="semantic")["hits"] == []
        page = httpx.get(f"{server.url}/search", params={"q": "French"}, timeout=30).text
        assert 'data-mode="text"' in page and "Search by meaning is off" in page
    assert not (server.data / "semantic" / "documents.lance").exists()
    # with the model back, the start-up backfill gives the repository its vectors
    monkeypatch.delenv("PYTHONPATH")
    with server:
        deadline = time.monotonic() + 60
        while True:
            got = Client(server).search(MEANS_TRANSLATE, mode="semantic")
            if got["hits"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert got["mode"] == "semantic"
        assert [h["path"] for h in got["hits"]] == ["prompts/translate.prompt.yaml"]


def test_deleting_a_repository_drops_its_documents_and_vectors(tmp_path):
    hub = Hub.open(tmp_path / "data")
    docs = [{"path": "prompts/t.prompt.yaml", "kind": "prompt", "title": "translator",
             "text": "prompts/t.prompt.yaml\n" + TRANSLATE}]
    for name in ("one", "two"):
        hub.meta.index_docs("ann", name, docs)
        semantic.for_hub(hub).index("ann", name, docs)
    assert semantic.for_hub(hub).indexed() == {"ann/one", "ann/two"}
    indexer.drop_repo(hub, "ann", "one")
    assert semantic.for_hub(hub).indexed() == {"ann/two"}
    assert {h["name"] for h in hub.meta.search("French")} == {"two"}


# ----------------------------------------------------------------------------- rows

def test_row_search_is_a_lancedb_index_built_once_per_dataset_version(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [{"id": i, "text": t} for i, t in enumerate([
        "What is the capital of France?", "How do I bake bread at home?",
        "Which city is the seat of Japan's government?", "Tips for running a marathon",
        "Name the largest city in Kenya", "How to repair a bicycle tyre"])]
    repo = _repo(tmp_path, {"data/q.jsonl": _jsonl(rows)})
    first = D.search(repo, "data/q.jsonl", "national capital cities", k=6, column="text")
    assert first.built and first.rows == 6 and first.embedded == 6
    assert list((repo.control / "cache" / "search").glob("*/*/rows.lance"))   # a LanceDB table
    embed = text_embedder()
    vec, q = embed([r["text"] for r in rows]), embed(["national capital cities"])[0]
    cos = vec @ q
    assert [h["key"] for h in first.hits] == [str(rows[i]["id"]) for i in np.argsort(-cos, kind="stable")]
    np.testing.assert_allclose([h["similarity"] for h in first.hits], np.sort(cos)[::-1], atol=1e-4)
    again = D.search(repo, "data/q.jsonl", "bread", k=1, column="text")
    assert not again.built and again.hits[0]["key"] == "1"
    rows[1]["text"] = "How do I sharpen a kitchen knife?"
    _repo(tmp_path, {"data/q.jsonl": _jsonl(rows)})
    new = D.search(repo, "data/q.jsonl", "bread", k=6, column="text")
    # a new version: only the changed row is embedded; the others' vectors are reused
    assert new.built and new.digest != first.digest and new.embedded == 1
    assert "bake bread" not in " ".join(h["text"] for h in new.hits)
    vec[1] = embed([rows[1]["text"]])[0]
    cos = vec @ embed(["bread"])[0]
    np.testing.assert_allclose(sorted(h["similarity"] for h in new.hits), np.sort(cos), atol=1e-4)
    # both versions stay cached: going back and forth builds nothing
    old = D.search(repo, "data/q.jsonl", "bread", k=1, column="text", rev="HEAD~1")
    assert not old.built and old.hits[0]["key"] == "1" and "bread" in old.hits[0]["text"]
    assert not D.search(repo, "data/q.jsonl", "bread", k=1, column="text").built
    assert len(list((repo.control / "cache" / "search").glob("*/*/ready.json"))) == 2
