"""The hub's JSON read API, search and web pages, against a real hub served by uvicorn on
127.0.0.1, holding repositories pushed with the porcelain.

Pages are rendered by a real headless Chromium (``--dump-dom``) and checked on the DOM it
built; the whole OpenAPI spec is fuzzed with schemathesis (anonymous and with a write
token), asserting that no route answers 5xx.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from demoai import porcelain as P
from demoai.cli.demo_hub import LocalHub
from demoai.store.sessions import log as S
from tests.helpers.skips import unavailable

pytestmark = pytest.mark.timeout(300)

AGENT_YAML = (Path(__file__).resolve().parents[1] / "demoai" / "data" / "files.agent.yaml").read_text()
PROMPT = """\
name: arith
system: Answer with a number. Never emit <script>alert('x')</script> or HTML.
template: |
  Compute carefully: {{question}}
  Answer:
variables: [question]
model: models/tiny.gguf
parameters:
  temperature: 0.0
  max_tokens: 16
"""
SECRET_PROMPT = "name: hidden\ntemplate: 'Say zanzibar about {{thing}}'\n"


# --------------------------------------------------------------------------- the hub
@dataclass
class Served:
    base: str
    tokens: dict[str, str]
    local: dict[str, Any] = field(default_factory=dict)

    def get(self, path: str, token: str | None = None, headers: dict | None = None, **kw: Any) -> httpx.Response:
        """GET ``path``, as the holder of ``token`` (a key of ``tokens``) or anonymously."""
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {self.tokens[token]}"
        return httpx.get(self.base + path, headers=headers, timeout=60, **kw)


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "question": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(n)]


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _build_and_push(root: Path, hub: Served) -> dict[str, Any]:
    """Two commits (dataset, prompt, agent, model), an annotated tag, a session with a
    fork; pushed to ann/demo (first c1 alone, then everything), ann/fuzz, and a second
    small repository to the private ann/secret."""
    work = root / "work"
    repo = P.init(work)
    for d in ("data", "prompts", "agents", "models"):
        (work / d).mkdir()
    rows = _rows(30)
    _write_rows(work / "data/qa.jsonl", rows)
    (work / "prompts/qa.prompt.yaml").write_text(PROMPT)
    (work / "agents/files.agent.yaml").write_text(AGENT_YAML)
    model = bytearray(b"GGUF" + random.Random(1).randbytes(300_000))
    (work / "models/tiny.gguf").write_bytes(bytes(model))
    P.add(repo, [work / "data/qa.jsonl"], key="id")
    P.add(repo, [work / "prompts", work / "agents", work / "models"])
    c1 = P.commit(repo, "Import arithmetic data, prompt, agent and model", command="demoai commit -m import")
    P.push(repo, f"{hub.base}/ann/demo", token=hub.tokens["ann_w"], private=False)
    hub.local["search_after_c1"] = hub.get("/api/v1/search?q=carefully").json()

    rows[3]["answer"] = "six"
    rows = rows[:-1] + [{"id": 100, "question": "What is zebra?", "answer": "animal"}]
    _write_rows(work / "data/qa.jsonl", rows)
    (work / "prompts/qa.prompt.yaml").write_text(PROMPT.replace("Compute carefully", "Compute step by step"))
    model[100_000:165_536] = random.Random(2).randbytes(65_536)
    (work / "models/tiny.gguf").write_bytes(bytes(model))
    P.add(repo, [work / "data/qa.jsonl", work / "prompts", work / "models"])
    c2 = P.commit(repo, "Fix row 3, replace row 29, reword the prompt", command="demoai commit -m edit")
    P.tag(repo, "v1", c1, message="first version")

    agent = repo.artifact_at("HEAD", "agents/files.agent.yaml")
    log = S.create_session(repo, "run1", agent=agent.digest,
                           meta={"name": "run1", "agent": "agents/files.agent.yaml", "task": "Write hello.txt"},
                           start={"task": "Write hello.txt", "agent": {"digest": agent.digest, "path":
                                  "agents/files.agent.yaml", "rev": "HEAD", "commit": c2}})
    log.append("model_response", text='{"tool": "write_file"}', completion_tokens=9)
    log.append("tool_call", tool="write_file", args={"path": "hello.txt", "content": "hello"})
    log.append("tool_result", exit_code=0, stdout="wrote hello.txt", files={"hello.txt": "blake3:0"})
    log.commit_step(workspace=S.workspace_tree(repo, {"hello.txt": b"hello"})[0])
    log.append("tool_call", tool="finish", args={"answer": "done"})
    log.append("run_end", status="finished", reason="finish", answer="done")
    log.commit_step(status="finished")
    log.close()
    S.fork_session(repo, "run1@1", "run1-alt", overrides={"instruction": "write bye.txt"}).close()
    # hash-chained but odd: what a buggy or hostile client could push
    odd = S.create_session(repo, "odd", agent=agent.digest, meta={"name": ["not", "text"]},
                           start={"model": "not-a-dict", "agent": "not-a-dict"})
    odd.append("tool_result", step="abc", t="noon", exit_code=None, files=7)   # step/t cannot be overridden
    odd.append("model_response", timings={"tokens_per_s": "fast"})
    odd.commit_step()
    odd.close()

    P.push(repo, f"{hub.base}/ann/demo", all_refs=True, token=hub.tokens["ann_w"])
    P.push(repo, f"{hub.base}/ann/fuzz", all_refs=True, token=hub.tokens["ann_w"], private=False)
    local = {"c1": c1, "c2": c2, "rows": rows, "branches": repo.branches(), "tags": repo.tags(),
             "sessions": {s.name: s for s in S.list_sessions(repo)}, "log": P.log(repo),
             "preview": P.show(repo, "HEAD:data/qa.jsonl", rows=5)["preview"]}
    repo.close()

    other = P.init(root / "secret")
    (root / "secret/hidden.prompt.yaml").write_text(SECRET_PROMPT)
    P.add(other, [root / "secret/hidden.prompt.yaml"])
    P.commit(other, "hidden prompt")
    P.push(other, f"{hub.base}/ann/secret", token=hub.tokens["ann_w"], private=True)
    other.close()
    return local


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A hub on a free port (uvicorn in a thread) with users ann and bob, and ann's
    repositories pushed to it."""
    root = tmp_path_factory.mktemp("hubpages")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEMOAI_AUTHOR", "Ann Example <ann@example.com>")
        mp.setenv("HOME", str(root / "home"))
        mp.setenv("XDG_CONFIG_HOME", str(root / "home" / ".config"))
        with LocalHub(root / "hubdata") as server:
            meta = server.hub.meta
            meta.add_user("ann")
            meta.add_user("bob")
            tokens = {"ann_w": meta.create_token("ann", "write")[0],
                      "ann_r": meta.create_token("ann", "read")[0],
                      "bob_w": meta.create_token("bob", "write")[0]}
            served = Served(server.url, tokens)
            served.local.update(_build_and_push(root, served))
            yield served


# --------------------------------------------------------------------------- JSON API
def test_repository_list_and_detail_match_the_pushed_repository(hub):
    local = hub.local
    listed = {r["full_name"]: r for r in hub.get("/api/v1/repos").json()}
    assert {"ann/demo", "ann/fuzz"} <= set(listed) and "ann/secret" not in listed
    assert listed["ann/demo"]["private"] is False

    d = hub.get("/api/v1/repos/ann/demo").json()
    assert d["default_branch"] == "main" and d["head"] == "refs/heads/main"
    assert d["head_commit"] == local["c2"]
    assert {b["ref"]: b["commit"] for b in d["branches"]} == local["branches"]
    assert {t["ref"]: t["commit"] for t in d["tags"]} == local["tags"] == {"refs/tags/v1": local["c1"]}
    sessions = {s["name"]: s for s in d["sessions"]}
    assert set(sessions) == {"run1", "run1-alt", "odd"}
    assert sessions["run1"]["steps"] == 2 and sessions["run1"]["status"] == "finished"
    assert sessions["run1"]["commit"] == local["sessions"]["run1"].commit
    assert sessions["run1-alt"]["parent"]["session"] == "run1" and sessions["run1-alt"]["parent"]["step"] == 1


def test_history_and_typed_commit_diff(hub):
    local = hub.local
    log = hub.get("/api/v1/repos/ann/demo/commits?ref=main&limit=10").json()
    assert [c["id"] for c in log["commits"]] == [c["id"] for c in local["log"]] == [local["c2"], local["c1"]]
    newest = log["commits"][0]
    assert newest["parents"] == [local["c1"]] and newest["author"] == "Ann Example <ann@example.com>"
    assert newest["summary"] == "Fix row 3, replace row 29, reword the prompt" and "HEAD -> main" in newest["refs"]
    assert hub.get("/api/v1/repos/ann/demo/commits?ref=v1").json()["commits"][0]["id"] == local["c1"]
    assert len(hub.get("/api/v1/repos/ann/demo/commits?limit=1").json()["commits"]) == 1

    c = hub.get(f"/api/v1/repos/ann/demo/commits/{local['c2'][:10]}").json()
    assert c["commit"]["id"] == local["c2"] and c["parent"] == local["c1"]
    assert c["lineage"]["command"] == "demoai commit -m edit"
    changes = {ch["path"]: ch for ch in c["changes"]}
    assert set(changes) == {"data/qa.jsonl", "prompts/qa.prompt.yaml", "models/tiny.gguf"}
    ds = changes["data/qa.jsonl"]
    assert (ds["added"], ds["removed"], ds["modified"], ds["key"]) == (1, 1, 1, "id")
    assert ds["samples"]["added"] == [{"id": 100, "question": "What is zebra?", "answer": "animal"}]
    assert ds["samples"]["removed"][0]["id"] == 29
    mod = ds["samples"]["modified"][0]
    assert (mod["key"], mod["before"]["answer"], mod["after"]["answer"], mod["changed"]) == (3, "6", "six", ["answer"])
    pr = changes["prompts/qa.prompt.yaml"]
    assert "-  Compute carefully: {{question}}" in pr["text"] and "+  Compute step by step: {{question}}" in pr["text"]
    assert (pr["added"], pr["removed"]) == (1, 1)
    m = changes["models/tiny.gguf"]
    assert m["size"] == [300_004, 300_004] and 0 < m["changed_share"] < 0.6

    root = hub.get(f"/api/v1/repos/ann/demo/commits/{local['c1']}").json()
    assert root["parent"] is None and {ch["status"] for ch in root["changes"]} == {"added"}
    assert len(root["changes"]) == 4


def test_tree_and_typed_artifacts(hub):
    local = hub.local
    tree = hub.get("/api/v1/repos/ann/demo/tree").json()
    assert tree["commit"] == local["c2"]
    assert {e["path"]: e["kind"] for e in tree["entries"]} == {
        "agents/files.agent.yaml": "agent", "data/qa.jsonl": "dataset",
        "models/tiny.gguf": "model", "prompts/qa.prompt.yaml": "prompt"}

    p = hub.get("/api/v1/repos/ann/demo/artifacts/prompts/qa.prompt.yaml").json()
    assert p["kind"] == "prompt" and p["prompt"]["variables"] == ["question"]
    assert p["prompt"]["template"] == "Compute step by step: {{question}}\nAnswer:\n"
    # rendered with the first row of the dataset that has the prompt's variables as columns
    assert p["prompt"]["rendered_example"] == "Compute step by step: What is 0+0?\nAnswer:\n"
    assert p["prompt"]["example_source"] == {"path": "data/qa.jsonl", "row": 0}
    assert p["prompt"]["parameters"] == {"temperature": 0.0, "max_tokens": 16}
    assert p["last_change"]["commit"]["id"] == local["c2"]
    assert p["last_change"]["lineage"]["command"] == "demoai commit -m edit"
    old = hub.get("/api/v1/repos/ann/demo/artifacts/prompts/qa.prompt.yaml?ref=v1").json()
    assert "Compute carefully" in old["prompt"]["template"] and old["last_change"]["commit"]["id"] == local["c1"]

    a = hub.get("/api/v1/repos/ann/demo/artifacts/agents/files.agent.yaml").json()
    assert a["agent"]["fields"]["name"] == "file-keeper" and a["agent"]["fields"]["max_steps"] == 4
    assert a["agent"]["tools"] == ["write_file", "shell", "python", "read_file", "finish"]
    assert {s["name"] for s in a["sessions"]} == {"run1", "run1-alt", "odd"}
    assert a["last_change"]["commit"]["id"] == local["c1"]      # unchanged by the second commit

    d = hub.get("/api/v1/repos/ann/demo/artifacts/data/qa.jsonl?rows=5").json()["dataset"]
    assert d["rows"] == 30 and d["key"] == "id" and [f["name"] for f in d["columns"]] == ["id", "question", "answer"]
    # the first rows in stored order, as `demoai show` prints them
    assert d["preview"] == local["preview"] and len(d["preview"]) == 5
    by_id = {r["id"]: r for r in local["rows"]}
    assert all(by_id[r["id"]] == r for r in d["preview"])

    m = hub.get("/api/v1/repos/ann/demo/artifacts/models/tiny.gguf").json()
    assert m["format"] == "gguf" and m["files"][0]["path"] == "tiny.gguf" and m["files"][0]["size"] == 300_004

    missing = hub.get("/api/v1/repos/ann/demo/artifacts/nope.jsonl")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "path_not_found"
    assert hub.get("/api/v1/repos/ann/demo/tree?ref=no-such-branch").status_code == 404


def test_session_timeline(hub):
    local = hub.local
    assert {s["name"] for s in hub.get("/api/v1/repos/ann/demo/sessions").json()} == {"run1", "run1-alt", "odd"}
    t = hub.get("/api/v1/repos/ann/demo/sessions/run1").json()
    assert t["session"]["steps"] == 2 and t["events"] == 6 and t["forks"] == ["run1-alt"]
    assert [st["step"] for st in t["steps"]] == [0, 1, 2]
    assert [e["type"] for e in t["steps"][1]["events"]] == ["model_response", "tool_call", "tool_result"]
    assert t["steps"][2]["commit"] == local["sessions"]["run1"].commit
    assert "write_file" in t["steps"][1]["events"][1]["summary"]
    assert t["workspace"] == [{"path": "hello.txt", "size": 5}]
    assert t["agent_source"] == {"path": "agents/files.agent.yaml", "commit": local["c2"]}
    # a step commit is a commit like any other: its diff is the session manifest's
    step2 = hub.get(f"/api/v1/repos/ann/demo/commits/{t['steps'][2]['commit']}").json()
    assert step2["parent"] == t["steps"][1]["commit"]
    assert [(c["path"], c["status"], c["session_status"], c["steps"]) for c in step2["changes"]] == [
        ("session", "modified", ["running", "finished"], [1, 2])]
    fork = hub.get("/api/v1/repos/ann/demo/sessions/run1-alt").json()
    assert fork["session"]["parent"]["step"] == 1 and fork["steps"][-1]["events"][-1]["type"] == "fork"
    assert hub.get("/api/v1/repos/ann/demo/sessions/nope").status_code == 404
    odd = hub.get("/api/v1/repos/ann/demo/sessions/odd")
    assert odd.status_code == 200, odd.text
    assert [[e["type"] for e in st["events"]] for st in odd.json()["steps"]] == [
        ["run_start"], ["tool_result", "model_response"]]
    ev = odd.json()["steps"][1]["events"][0]
    assert isinstance(ev["t"], float)
    assert ev["summary"].startswith("{") and '"files": 7' in ev["summary"]   # shown raw, no crash
    assert httpx.get(hub.base + "/ann/demo/sessions/odd", timeout=30).status_code == 200


def test_search_follows_pushes_and_finds_prompts_by_a_template_word(hub):
    # after the first push the old wording was indexed; the second push replaced it
    first = hub.local["search_after_c1"]["hits"]
    assert [(h["name"], h["path"]) for h in first] == [("demo", "prompts/qa.prompt.yaml")]
    assert hub.get("/api/v1/search?q=carefully").json()["hits"] == []
    hits = hub.get("/api/v1/search?q=Compute").json()["hits"]
    assert {(h["owner"], h["name"], h["path"], h["kind"]) for h in hits} == {
        ("ann", "demo", "prompts/qa.prompt.yaml", "prompt"), ("ann", "fuzz", "prompts/qa.prompt.yaml", "prompt")}
    assert "[Compute]" in hits[0]["snippet"] and hits[0]["title"] == "arith"
    agents = hub.get("/api/v1/search?q=workspace").json()["hits"]
    assert {h["path"] for h in agents} == {"agents/files.agent.yaml"}
    # FTS operators in the query are plain words, not syntax errors
    assert hub.get('/api/v1/search?q=" OR NEAR(').status_code == 200


def test_private_repository_is_invisible_to_others(hub):
    for route in ("", "/commits", "/tree", "/sessions", "/artifacts/hidden.prompt.yaml", "/refs"):
        for who in (None, "bob_w"):
            r = hub.get(f"/api/v1/repos/ann/secret{route}", who)
            assert r.status_code == 404, (route, who, r.text)
        assert hub.get(f"/api/v1/repos/ann/secret{route}", "ann_r").status_code == 200, route
    for who in (None, "bob_w"):
        assert "ann/secret" not in {r["full_name"] for r in hub.get("/api/v1/repos", who).json()}
        assert hub.get("/api/v1/search?q=zanzibar", who).json()["hits"] == []
    assert "ann/secret" in {r["full_name"] for r in hub.get("/api/v1/repos", "ann_r").json()}
    assert [h["name"] for h in hub.get("/api/v1/search?q=zanzibar", "ann_r").json()["hits"]] == ["secret"]
    assert hub.get("/api/v1/repos", token=None, headers={"Authorization": "Bearer nope"}).status_code == 401

    # pages: anonymous and bob (logged in by cookie) get the 404 page; ann sees it
    anon = httpx.get(hub.base + "/ann/secret", timeout=30)
    assert anon.status_code == 404 and "text/html" in anon.headers["content-type"]
    assert "404" in anon.text and "hidden" not in anon.text
    as_bob = {"demoai_token": hub.tokens["bob_w"]}
    bob = httpx.get(hub.base + "/ann/secret/blob/main/hidden.prompt.yaml", cookies=as_bob, timeout=30)
    assert bob.status_code == 404 and "zanzibar" not in bob.text
    assert "ann/secret" not in httpx.get(hub.base + "/", cookies=as_bob, timeout=30).text


def test_login_sets_a_strict_httponly_cookie_that_opens_private_pages(hub):
    with httpx.Client(base_url=hub.base, timeout=30) as c:
        bad = c.post("/login", data={"token": "dmai_wrong", "next": "/ann/secret"})
        assert bad.status_code == 401 and "unknown or revoked" in bad.text and "demoai_token" not in c.cookies
        r = c.post("/login", data={"token": hub.tokens["ann_r"], "next": "//evil.example/x"})
        assert r.status_code == 303 and r.headers["location"] == "/"      # no open redirect
        cookie = r.headers["set-cookie"].lower()
        assert "demoai_token=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        page = c.get("/ann/secret")
        assert page.status_code == 200 and "hidden.prompt.yaml" in page.text and "ann</span> (read)" in page.text
        blob = c.get("/ann/secret/blob/main/hidden.prompt.yaml")
        assert blob.status_code == 200 and "Say zanzibar about &lt;thing&gt;" in blob.text
        assert c.get("/api/v1/repos/ann/secret").status_code == 200     # the cookie works for the API too
        out = c.get("/logout")
        assert out.status_code == 303 and "demoai_token" not in c.cookies
        assert c.get("/ann/secret").status_code == 404
    bad_cookie = httpx.get(hub.base + "/", cookies={"demoai_token": "dmai_revoked"}, timeout=30)
    assert bad_cookie.status_code == 401 and "Log out" in bad_cookie.text


def test_an_empty_repository_has_a_page_and_an_answer(hub):
    made = httpx.post(hub.base + "/api/v1/repos", json={"name": "empty", "private": False},
                      headers={"Authorization": f"Bearer {hub.tokens['bob_w']}"}, timeout=30)
    assert made.status_code == 201
    d = hub.get("/api/v1/repos/bob/empty").json()
    assert (d["default_branch"], d["head_commit"], d["branches"], d["sessions"]) == (None, None, [], [])
    assert hub.get("/api/v1/repos/bob/empty/commits").status_code == 404
    page = httpx.get(hub.base + "/bob/empty", timeout=30)
    assert page.status_code == 200 and "This repository is empty" in page.text


def test_page_errors_are_html_and_api_errors_stay_json(hub):
    r = httpx.get(hub.base + "/ann/demo/commit/deadbeef", timeout=30)
    assert r.status_code == 404 and "text/html" in r.headers["content-type"] and "unknown revision" in r.text
    r = httpx.get(hub.base + "/no/such/page/here", headers={"accept": "text/html"}, timeout=30)
    assert r.status_code == 404 and "<h1>404" in r.text
    r = httpx.get(hub.base + "/api/v1/nothing/here", headers={"accept": "text/html"}, timeout=30)
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    assert httpx.get(hub.base + "/api/v1", timeout=30).json() == {"detail": "Not Found"}
    assert httpx.get(hub.base + "/openapi.json", timeout=30).json()["info"]["title"] == "DemoAI hub"
    assert httpx.get(hub.base + "/static/style.css", timeout=30).headers["content-type"].startswith("text/css")


def test_pages_answer_odd_input_without_5xx(hub):
    long = "w" * 900
    for path in ("/ann/demo?ref=%00", "/ann/demo?ref=main~99999999999999999999", "/ann/demo/commit/%00",
                 f"/ann/demo/commit/{long}", "/ann/demo/blob/main", "/ann/demo/blob/main/..%2F..%2Fhub.sqlite3",
                 "/ann/demo/blob/main/data/qa.jsonl?rows=99999999999999999999",
                 "/ann/demo/blob/main/data/qa.jsonl?rows=-1",
                 "/ann/demo/blob/HEAD@%7B1%7D/data/qa.jsonl", "/ann/demo/sessions/..%2Fx", f"/ann/demo/sessions/{long}",
                 "/ann/demo/sessions/run1%00", "/ann/x..y", "/a%00/b", f"/search?q={long}", "/search?q=%22%20OR%20*",
                 "/static/..%2Fhub.sqlite3", "/login?next=https://evil.example", "/ann/demo/blob/v1/models/tiny.gguf"):
        r = httpx.get(hub.base + path, headers={"accept": "text/html"}, timeout=30)
        assert r.status_code < 500 and "text/html" in r.headers.get("content-type", ""), (path, r.status_code)
        assert "SQLite format" not in r.text


# --------------------------------------------------------------------------- Chromium
class Dom(HTMLParser):
    """The elements of a DOM dump with their text content: ``find(id=, cls=, tag=)``."""

    _VOID = {"meta", "link", "br", "img", "input", "hr", "wbr", "source", "col", "area", "base"}

    def __init__(self, html: str) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict, list[str]]] = []
        self.elements: list[tuple[str, dict, str]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self._VOID:
            self.elements.append((tag, dict(attrs), ""))
        else:
            self.stack.append((tag, dict(attrs), []))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            t, attrs, buf = self.stack.pop()
            text = "".join(buf)
            self.elements.append((t, attrs, text))
            if self.stack:
                self.stack[-1][2].append(text)
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.stack:
            self.stack[-1][2].append(data)

    def find(self, *, id: str | None = None, cls: str | None = None, tag: str | None = None) -> list[str]:
        return [text for t, a, text in self.elements
                if (id is None or a.get("id") == id) and (tag is None or t == tag)
                and (cls is None or cls in (a.get("class") or "").split())]


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
    if not os.access(exe, os.X_OK):
        unavailable("no chromium", "DEMOAI_REQUIRE_CHROMIUM")
    return exe


def render(url: str, profile: Path, screenshot: Path | None = None) -> Dom:
    """The DOM headless Chromium built for ``url``."""
    args = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", f"--user-data-dir={profile}"]
    if screenshot is not None:
        subprocess.run([*args, "--window-size=1280,1600", f"--screenshot={screenshot}", url],
                       capture_output=True, timeout=90, check=True)
    out = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0 and "</html>" in out.stdout, out.stderr[-2000:]
    return Dom(out.stdout)


def test_pages_render_in_chromium(hub, tmp_path):
    local = hub.local
    profile = tmp_path / "chromium"
    shot = tmp_path / "repo.png"
    repo = render(f"{hub.base}/ann/demo", profile, shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert repo.find(id="repo-title") == ["ann/demo"]
    assert repo.find(id="clone") == [f"demoai clone {hub.base}/ann/demo"]
    assert "Fix row 3, replace row 29, reword the prompt" in repo.find(cls="msg")
    assert {"run1", "run1-alt"} <= set(repo.find(tag="a"))
    assert "data/qa.jsonl" in repo.find(tag="a") and "v1" in repo.find(tag="a")

    commit = render(f"{hub.base}/ann/demo/commit/{local['c2']}", profile)
    assert commit.find(id="commit-title") == ["Fix row 3, replace row 29, reword the prompt"]
    assert "-  Compute carefully: {{question}}" in commit.find(cls="del", tag="span")
    assert "+  Compute step by step: {{question}}" in commit.find(cls="add", tag="span")
    assert "six" in commit.find(cls="add", tag="td") and "6" in commit.find(cls="del", tag="td")
    assert "What is zebra?" in commit.find(tag="td")
    assert "demoai commit -m edit" in commit.find(cls="command")

    prompt = render(f"{hub.base}/ann/demo/blob/main/prompts/qa.prompt.yaml", profile)
    assert prompt.find(id="artifact-title")[0].startswith("prompts/qa.prompt.yaml")
    assert prompt.find(id="rendered") == ["Compute step by step: What is 0+0?\nAnswer:\n"]
    assert f"demoai clone {hub.base}/ann/demo" in prompt.find(id="snippets")[0]
    assert f"demoai show {local['c2'][:12]}:prompts/qa.prompt.yaml" in prompt.find(id="snippets")[0]
    # the system text holds a <script> tag: shown as text, never turned into an element
    assert any("<script>alert('x')</script>" in t for t in prompt.find(cls="text", tag="pre"))
    assert prompt.find(tag="script") == []

    agent = render(f"{hub.base}/ann/demo/blob/v1/agents/files.agent.yaml", profile)
    assert "demoai agent replay run1 --mode recorded" in agent.find(id="snippets")[0]
    assert "file-keeper" in agent.find(tag="code")

    data = render(f"{hub.base}/ann/demo/blob/main/data/qa.jsonl?rows=5", profile)
    cells = data.find(tag="td")
    shown = [r["question"] for r in local["preview"]]
    assert all(q in cells for q in shown) and len(cells) == 5 * 3 + 3 * 3   # preview rows + schema rows
    assert "What is 29+29?" not in cells and data.find(tag="h2").count("First 5 of 30 rows") == 1

    session = render(f"{hub.base}/ann/demo/sessions/run1", profile)
    assert session.find(id="session-title")[0].startswith("Session run1")
    step1 = session.find(id="step-1")[0]
    assert "tool_call" in step1 and "write_file" in step1 and "exit 0 wrote hello.txt" in step1
    assert "demoai agent replay run1 --mode recorded" in session.find(id="snippets")[0]
    assert "hello.txt" in session.find(tag="code")

    missing = render(f"{hub.base}/ann/secret", profile)
    assert any(t.startswith("404") for t in missing.find(tag="h1"))


# --------------------------------------------------------------------------- schemathesis
_FUZZ_BUDGET_S = 80.0
_REAL_REPO = {"owner": "ann", "name": "fuzz"}


def test_no_route_answers_5xx(hub):
    """Every operation of the OpenAPI spec, protocol routes included, with valid and
    invalid generated input (a few examples each) and the spec's own examples, on
    generated repository names and on a real repository, anonymously and with the
    owner's write token: never a 5xx."""
    schema = schemathesis.openapi.from_url(hub.base + "/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    labels = {op.label for op in ops}
    assert {"GET /api/v1/repos/{owner}/{name}/commits/{sha}", "POST /api/v1/repos/{owner}/{name}/refs",
            "PUT /api/v1/repos/{owner}/{name}/uploads/{digest}", "GET /api/v1/search"} <= labels
    assert not any(label.startswith("GET /{owner}") or label == "GET /" for label in labels)   # pages stay out
    failures: list[str] = []
    calls = 0
    deadline = time.monotonic() + _FUZZ_BUDGET_S
    auth = [{}, {"Authorization": f"Bearer {hub.tokens['ann_w']}"}]
    # Generated names mostly meet 404s; the real repository, and real values for every
    # path parameter, let the generated query and body reach the code behind the lookup.
    real = {**_REAL_REPO, "sha": hub.local["c2"], "path": "data/qa.jsonl", "session": "run1"}
    quick = settings(max_examples=4, deadline=None, derandomize=True, database=None,
                     phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))

    def check(case: Any) -> None:
        nonlocal calls
        for headers in auth:
            resp = case.call(headers=headers, timeout=60)
            calls += 1
            if resp.status_code >= 500:
                body = "" if type(case.body).__name__ == "NotSet" else f" body={case.body!r:.300}"
                failures.append(f"{case.method} {case.formatted_path} query={case.query}{body} "
                                f"auth={bool(headers)} -> {resp.status_code}: {resp.text[:300]}")

    for op in ops:
        if time.monotonic() > deadline:
            pytest.fail(f"fuzzing ran past {_FUZZ_BUDGET_S} s after {calls} calls, at {op.label}")
        names = re.findall(r"\{(\w+)", op.path)
        fixed: list[dict | None] = [None]
        if "owner" in names:
            fixed.append(_REAL_REPO)
            if set(names) - {"owner", "name"} and set(names) <= set(real):
                fixed.append({n: real[n] for n in names})
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            for params in fixed:
                try:
                    given(op.as_strategy(generation_mode=mode, path_parameters=params))(
                        quick(lambda case: check(case)))()
                except Unsatisfiable:   # nothing to make invalid (no parameters left to vary)
                    assert mode is schemathesis.GenerationMode.NEGATIVE, op.label
        for strategy in op.get_strategies_from_examples():   # e.g. refs that exist
            @given(strategy)
            @settings(quick, max_examples=1)
            def example(case: Any) -> None:
                case.path_parameters = {**(case.path_parameters or {}), **{n: real[n] for n in names if n in real}}
                check(case)
            example()
    assert calls > 8 * len(ops)
    assert not failures, "\n".join(failures)
