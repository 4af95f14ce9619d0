"""Findings of the hub's security audit, each checked against a real hub process on 127.0.0.1.

1. No existence oracle: for every route and every caller but the owner, someone else's
   private repository answers exactly as a missing one (status and body, names aside).
2. Unfinished table-file uploads are capped per user (``Limits.max_staged``) and per
   declared size; stale ones expire. Refusals are 413 and store nothing.
3. JSON bodies are bounded by ``MAX_JSON`` (413), binary protocol bodies by ``MAX_BODY``.
4. A ref update naming a tree or a blob is a clear ``ProtocolError``, not "missing".

The hubs are separate processes (:class:`tests.helpers.hub.HubServer`); the staging cap is
configured through the ``DEMOAI_HUB_*`` environment the hub process inherits.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import blake3
import httpx
import pytest

from demoai import errors as E
from demoai import porcelain as P
from demoai.hub.app import MAX_JSON, Hub, Limits
from demoai.http.hub import HttpEndpoint
from demoai.store.git.repo import Repository
from demoai.store.transfer import FRAME_BYTES, encode_git_frame
from tests.helpers.hub import HubServer, make_user

pytestmark = pytest.mark.timeout(180)

PROMPT = "name: qa\ntemplate: |\n  Question: {{question}}\n  Answer:\n"
SHA = "a" * 40
CID = "c" * 64
TABLE = "0" * 32


# ----------------------------------------------------------------------------- fixtures

def _start(tmp: Path, env: dict[str, str] | None = None) -> HubServer:
    server = HubServer(tmp / "data")
    server.tokens = {"alice": make_user(server.data, "alice"), "bob": make_user(server.data, "bob")}
    with pytest.MonkeyPatch.context() as mp:     # the hub process inherits os.environ
        for k, v in (env or {}).items():
            mp.setenv(k, v)
        server.start()
    return server


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """A hub with the default limits: users alice and bob."""
    server = _start(tmp_path_factory.mktemp("sechub"))
    yield server
    server.stop()


CAP = 64 << 10
TTL = 3600


@pytest.fixture(scope="module")
def caphub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """A hub that lets each user keep 64 KiB of unfinished uploads for an hour."""
    server = _start(tmp_path_factory.mktemp("caphub"),
                    {"DEMOAI_HUB_MAX_STAGED": "64K", "DEMOAI_HUB_STAGED_TTL": str(TTL)})
    yield server
    server.stop()


def http(hub: HubServer, token: str = "") -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=hub.url, headers=headers, timeout=60)


def create(hub: HubServer, owner: str, name: str, private: bool = True) -> None:
    with http(hub, hub.tokens[owner]["write"]) as c:
        r = c.post("/api/v1/repos", json={"name": name, "private": private})
        assert r.status_code == 201, r.text


def push_prompt(hub: HubServer, root: Path, owner: str, name: str, private: bool) -> tuple[Repository, str]:
    repo = P.init(root)
    (root / "p.prompt.yaml").write_text(PROMPT)
    P.add(repo, [root / "p.prompt.yaml"])
    head = P.commit(repo, "one")
    P.push(repo, hub.repo_url(owner, name), token=hub.tokens[owner]["write"], private=private)
    return repo, head


# ----------------------------------------------------------------------------- 1. oracle

# (method, path under /api/v1/repos/O/N or a page path, JSON body or raw bytes, is a write)
PROTOCOL = [
    ("GET", "/refs", None, False),
    ("POST", "/needs", {"wants": [], "haves": []}, False),
    ("POST", "/git/missing", {"ids": [SHA]}, False),
    ("POST", "/chunks/missing", {"ids": [CID]}, False),
    ("POST", "/files/missing", {"files": [[TABLE, "data/x.lance", CID]]}, False),
    ("POST", "/git/get", {"ids": []}, False),
    ("POST", "/chunks/get", {"ids": []}, False),
    ("POST", "/files/read", {"table_id": TABLE, "rel": "data/x.lance", "digest": CID}, False),
    ("POST", "/git/put", encode_git_frame([]), True),
    ("POST", "/chunks/put", b"", True),
    ("GET", f"/uploads/{CID}", None, True),
    ("PUT", f"/uploads/{CID}?offset=0", b"x", True),
    ("POST", f"/uploads/{CID}/finish", {"table_id": TABLE, "rel": "data/x.lance"}, True),
    ("POST", "/refs", {"updates": [{"ref": "refs/heads/x", "old": None, "new": None}]}, True),
]
READ_API = ["", "/commits", "/tree", "/sessions", f"/commits/{SHA}", "/artifacts/p.prompt.yaml"]
ROUTES = ([(m, "/api/v1/repos/{o}/{n}" + p, b, w) for m, p, b, w in PROTOCOL]
          + [("GET", "/api/v1/repos/{o}/{n}" + p, None, False) for p in READ_API]
          + [("GET", "/{o}/{n}", None, False)])


def call(c: httpx.Client, method: str, path: str, body: Any, owner: str, name: str) -> tuple[int, str]:
    """One request; the status and the body with the repository's names masked."""
    url = path.format(o=owner, n=name)
    if isinstance(body, bytes):
        r = c.request(method, url, content=body, headers={"Content-Type": "application/octet-stream"})
    elif body is not None:
        r = c.request(method, url, json=body)
    else:
        r = c.request(method, url, headers={"Accept": "text/html"} if not url.startswith("/api/") else {})
    text = r.text.replace(f"{owner}/{name}", "OWNER/NAME").replace(name, "NAME").replace(owner, "OWNER")
    return r.status_code, text


def test_private_and_missing_repositories_answer_alike(hub: HubServer, tmp_path: Path) -> None:
    """For every route (protocol reads and writes, JSON read API, pages) and every caller
    but the owner (anonymous, a bad token, another user's read and write tokens), alice's
    private repository answers with the same status and body as a repository that does
    not exist, under alice or under no user at all. Anonymous writes are 401 and
    authenticated ones 404 whether or not the repository exists; a public repository is
    readable by all and 403 to other users' writes."""
    for name, private in (("secretrepo", True), ("openrepo", False)):
        push_prompt(hub, tmp_path / name, "alice", name, private=private)[0].close()
    t = hub.tokens
    callers = {"anonymous": "", "bad-token": "dmai_not-a-token", "bob-read": t["bob"]["read"],
               "bob-write": t["bob"]["write"]}
    targets = [("alice", "secretrepo"), ("alice", "nosuchrepo"), ("carol", "nosuchrepo")]
    for caller, token in callers.items():
        with http(hub, token) as c:
            for method, path, body, write in ROUTES:
                got = [call(c, method, path, body, o, n) for o, n in targets]
                assert got[0] == got[1] == got[2], (caller, method, path, got)
                status = got[0][0]
                if caller == "bad-token":
                    assert status == 401, (caller, path, got[0])
                elif write and caller == "anonymous":
                    assert status == 401, (caller, path, got[0])
                else:
                    assert status == 404, (caller, path, got[0])
                if path.startswith("/api/"):
                    code = json.loads(got[0][1])["error"]["code"]
                    assert code == {401: "authentication_required", 404: "not_found"}[status]
                # the public repository: its existence is no secret
                s_pub, b_pub = call(c, method, path, body, "alice", "openrepo")
                if caller == "bad-token" or (write and caller == "anonymous"):
                    assert s_pub == 401, (caller, path)
                elif write:
                    assert s_pub == 403, (caller, path)
                else:      # served (a made-up commit id may be a 404 of its own)
                    assert s_pub not in (401, 403) and '"not_found"' not in b_pub, (caller, path, s_pub)
    # the owner: her own private repository is hers (a read token reads, cannot write);
    # her missing one is 404 like anyone's
    with http(hub, t["alice"]["read"]) as c:
        for method, path, body, write in ROUTES:
            s_own, b_own = call(c, method, path, body, "alice", "secretrepo")
            s_none, _ = call(c, method, path, body, "alice", "nosuchrepo")
            assert s_none == 404, path
            if write:
                assert s_own == 403, (path, s_own)
            else:
                assert s_own not in (401, 403) and '"not_found"' not in b_own, (path, s_own)
    assert not (hub.repo_path("alice", "nosuchrepo")).exists()
    assert not (hub.repo_path("carol", "nosuchrepo")).exists()


def test_porcelain_sees_the_same_errors_for_private_and_missing(hub: HubServer, tmp_path: Path) -> None:
    """Through the client: pushing anonymously is AuthenticationRequired, cloning is
    RemoteNotFound, for someone else's private repository and a missing one alike."""
    repo, _ = push_prompt(hub, tmp_path / "p", "alice", "secret2", private=True)
    try:
        for name in ("secret2", "nosuch2"):
            url = hub.repo_url("alice", name)
            with pytest.raises(E.AuthenticationRequired):
                P.push(repo, url, token="")
            with pytest.raises(E.RemoteNotFound):
                P.clone(url, tmp_path / f"clone-{name}", token="")
            with pytest.raises(E.RemoteNotFound):
                P.clone(url, tmp_path / f"bob-{name}", token=hub.tokens["bob"]["read"])
            ep = HttpEndpoint(url, hub.tokens["bob"]["write"])
            try:
                with pytest.raises(E.RemoteNotFound):
                    ep.put_git(encode_git_frame([]))
                with pytest.raises(E.RemoteNotFound):
                    ep.upload_part(CID, 0, b"x")
            finally:
                ep.close()
    finally:
        repo.close()


# ----------------------------------------------------------------------------- 2. staging

def parts(hub: HubServer, owner: str, name: str) -> dict[str, int]:
    up = hub.repo_path(owner, name) / ".demoai" / "uploads"
    return {p.name: p.stat().st_size for p in up.glob("*.part")} if up.is_dir() else {}


def staged(hub: HubServer, owner: str) -> int:
    """Bytes of unfinished uploads in all of ``owner``'s repositories on ``hub``."""
    return sum(p.stat().st_size for p in (hub.data / "repos" / owner).glob("*/.demoai/uploads/*.part"))


def put(c: httpx.Client, owner: str, name: str, digest: str, offset: int, data: bytes,
        size: int | None = None) -> httpx.Response:
    params = {"offset": offset} if size is None else {"offset": offset, "size": size}
    return c.put(f"/api/v1/repos/{owner}/{name}/uploads/{digest}", params=params, content=data,
                 headers={"Content-Type": "application/octet-stream"})


def too_large(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 413, (r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] == "request_too_large"
    return err


def test_staged_uploads_are_capped_per_user(caphub: HubServer) -> None:
    """A user's unfinished uploads, over all their repositories, stay under the configured
    cap: a part that would pass it is 413 and nothing of it is stored. Another user has a
    cap of their own; a finished (here: refused) upload frees its bytes."""
    hub = caphub
    create(hub, "alice", "cap1")
    create(hub, "alice", "cap2")
    create(hub, "bob", "cap1")
    d1, d2, d3 = ("1" * 64, "2" * 64, "3" * 64)
    with http(hub, hub.tokens["alice"]["write"]) as a, http(hub, hub.tokens["bob"]["write"]) as b:
        assert put(a, "alice", "cap1", d1, 0, b"\1" * (40 << 10)).json() == {"offset": 40 << 10}
        # a second repository of the same user counts toward the same cap
        err = too_large(put(a, "alice", "cap2", d2, 0, b"\2" * (40 << 10)))
        assert err["fields"]["limit"] == CAP and err["fields"]["staged"] == 40 << 10
        assert parts(hub, "alice", "cap2") == {}
        # up to the cap exactly, then not a byte more
        assert put(a, "alice", "cap1", d1, 40 << 10, b"\1" * (24 << 10)).json() == {"offset": CAP}
        too_large(put(a, "alice", "cap1", d1, CAP, b"\1"))
        assert parts(hub, "alice", "cap1") == {f"{d1}.part": CAP}
        # a part at a stale offset is still the conflict it was (the client resumes)
        assert put(a, "alice", "cap1", d1, 0, b"\1").status_code == 409
        # bob is not limited by alice's uploads
        assert put(b, "bob", "cap1", d3, 0, b"\3" * (40 << 10)).status_code == 200
        # a finish that fails verification drops the part, freeing the bytes
        r = a.post(f"/api/v1/repos/alice/cap1/uploads/{d1}/finish",
                   json={"table_id": TABLE, "rel": "data/x.lance"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "integrity_error"
        assert put(a, "alice", "cap2", d2, 0, b"\2" * (40 << 10)).status_code == 200
        # a whole verified file under the cap installs as ever
        payload = b"table bytes " * 100
        h = blake3.blake3(payload).hexdigest()
        assert put(a, "alice", "cap1", h, 0, payload).status_code == 200
        r = a.post(f"/api/v1/repos/alice/cap1/uploads/{h}/finish",
                   json={"table_id": TABLE, "rel": "data/x.lance"})
        assert r.status_code == 200, r.text
    assert parts(hub, "alice", "cap1") == {}
    assert parts(hub, "alice", "cap2") == {f"{d2}.part": 40 << 10}


def test_declared_upload_size_caps_a_digest(caphub: HubServer) -> None:
    """A part that declares the file's size may not carry bytes past it (413, nothing
    stored); parts within it land as usual."""
    hub = caphub
    create(hub, "alice", "declared")
    d = "4" * 64
    with http(hub, hub.tokens["alice"]["write"]) as a:
        too_large(put(a, "alice", "declared", d, 0, b"x" * 150, size=100))
        assert parts(hub, "alice", "declared") == {}
        assert put(a, "alice", "declared", d, 0, b"x" * 100, size=100).json() == {"offset": 100}
        too_large(put(a, "alice", "declared", d, 100, b"x", size=100))
        assert parts(hub, "alice", "declared") == {f"{d}.part": 100}
        assert put(a, "alice", "declared", d, 0, b"", size=-1).status_code in (400, 422)
    # leave alice's budget as it was for the other tests
    (hub.repo_path("alice", "declared") / ".demoai" / "uploads" / f"{d}.part").unlink()


def test_stale_staged_uploads_expire(caphub: HubServer) -> None:
    """An unfinished upload untouched for longer than the configured time is dropped (and
    no longer counts) the next time its owner uploads; a fresh one is kept."""
    hub = caphub
    create(hub, "alice", "stale")
    old, fresh = "5" * 64, "6" * 64
    with http(hub, hub.tokens["alice"]["write"]) as a:
        room = CAP - staged(hub, "alice")       # whatever the other tests left staged
        assert room >= 16 << 10
        assert put(a, "alice", "stale", old, 0, b"o" * room).status_code == 200
        too_large(put(a, "alice", "stale", fresh, 0, b"f" * 1024))
        part = hub.repo_path("alice", "stale") / ".demoai" / "uploads" / f"{old}.part"
        past = time.time() - 2 * TTL
        os.utime(part, (past, past))
        assert put(a, "alice", "stale", fresh, 0, b"f" * 1024).status_code == 200
        assert not part.exists()
        r = a.get(f"/api/v1/repos/alice/stale/uploads/{old}")
        assert r.json() == {"offset": 0}
    assert parts(hub, "alice", "stale") == {f"{fresh}.part": 1024}
    # the admin's sweep over every user (as a `demoai hub` command would run it)
    part = hub.repo_path("alice", "stale") / ".demoai" / "uploads" / f"{fresh}.part"
    os.utime(part, (past, past))
    assert Hub.open(hub.data, Limits(staged_ttl=TTL)).expire_staged() == 1
    assert parts(hub, "alice", "stale") == {}


def test_push_within_the_staging_cap_still_works(caphub: HubServer, tmp_path: Path) -> None:
    """An honest push of a dataset (table files through staging) works under the cap."""
    hub = caphub
    repo = P.init(tmp_path / "r")
    rows = "".join(json.dumps({"id": i, "text": f"row {i}"}) + "\n" for i in range(200))
    (repo.root / "d.jsonl").write_text(rows)
    P.add(repo, [repo.root / "d.jsonl"], key="id")
    head = P.commit(repo, "data")
    try:
        out = P.push(repo, hub.repo_url("bob", "data"), token=hub.tokens["bob"]["write"])
        assert out["updated"][0]["new"] == head and out["stats"]["files_sent"] > 0
        assert parts(hub, "bob", "data") == {}
    finally:
        repo.close()


# ----------------------------------------------------------------------------- 3. JSON

def padded(n: int) -> bytes:
    """A valid `needs` request of exactly ``n`` bytes (an ignored field pads it)."""
    head, tail = b'{"wants": [], "haves": [], "pad": "', b'"}'
    return head + b"x" * (n - len(head) - len(tail)) + tail


def test_json_bodies_over_max_json_are_refused(hub: HubServer) -> None:
    """A JSON body over MAX_JSON is 413 request_too_large (with a Content-Length or
    streamed without one), for any caller, before the route runs; one at MAX_JSON is
    served. Binary protocol bodies keep the larger MAX_BODY."""
    create(hub, "alice", "jsonlimit", private=False)
    url = "/api/v1/repos/alice/jsonlimit/needs"
    for token in (hub.tokens["alice"]["read"], ""):
        with http(hub, token) as c:
            ok = c.post(url, content=padded(MAX_JSON), headers={"Content-Type": "application/json"})
            assert ok.status_code == 200, ok.text
            err = too_large(c.post(url, content=padded(MAX_JSON + 1),
                                   headers={"Content-Type": "application/json"}))
            assert err["fields"]["limit"] == MAX_JSON

            def stream() -> Iterator[bytes]:
                body = padded(MAX_JSON + (1 << 20))
                for i in range(0, len(body), 1 << 20):
                    yield body[i:i + (1 << 20)]
            too_large(c.post(url, content=stream(), headers={"Content-Type": "application/json"}))
            # any other non-binary body too: a ref update, the login form
            too_large(c.post("/api/v1/repos/alice/jsonlimit/refs", content=b" " * (MAX_JSON + 1),
                             headers={"Content-Type": "application/json"}))
            too_large(c.post("/login", content=b"token=" + b"x" * MAX_JSON,
                             headers={"Content-Type": "application/x-www-form-urlencoded"}))
    with http(hub, hub.tokens["alice"]["write"]) as c:
        # a chunk frame over MAX_JSON (but within FRAME_BYTES + 1 MiB) reaches the route
        assert FRAME_BYTES + 1024 > MAX_JSON
        r = c.post("/api/v1/repos/alice/jsonlimit/chunks/put", content=b"\0" * (FRAME_BYTES + 1024),
                   headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "protocol_error", r.text


# ----------------------------------------------------------------------------- 4. refs

def test_ref_updates_must_name_commits(hub: HubServer, tmp_path: Path) -> None:
    """A branch, session or tag pointing at a tree or a blob the hub holds is refused with
    a ProtocolError that says what the object is; a tag may name an annotated tag of a
    commit, not of a tree. Nothing moves."""
    from dulwich.objects import Commit, Tag, Tree

    repo, head = push_prompt(hub, tmp_path / "p", "alice", "targets", private=True)
    store = repo.git.object_store
    tree = store[head.encode()].tree
    blob = tree
    while store[blob].type_name == b"tree":      # down to the first file
        blob = next(iter(store[blob].iteritems())).sha

    def tag(name: str, target: bytes, cls: type) -> Tag:
        t = Tag()
        t.name, t.object = name.encode(), (cls, target)
        t.tagger, t.tag_time, t.tag_timezone, t.message = b"t <t@x>", 0, 0, b"m\n"
        return t
    tag_tree, tag_commit = tag("tt", tree, Tree), tag("tc", head.encode(), Commit)
    tag_tag_tree = tag("ttt", tag_tree.id, Tag)
    ep = HttpEndpoint(hub.repo_url("alice", "targets"), hub.tokens["alice"]["write"])
    try:
        ep.put_git(encode_git_frame([(t.id.decode(), 4, t.as_raw_string())
                                     for t in (tag_tree, tag_commit, tag_tag_tree)]))
        before = ep.refs()["refs"]
        tree_s, blob_s = tree.decode(), blob.decode()
        cases = [("refs/heads/t", tree_s, "is a tree, not a commit"),
                 ("refs/heads/b", blob_s, "is a blob, not a commit"),
                 ("refs/sessions/s", tree_s, "is a tree, not a commit"),
                 ("refs/tags/t", tree_s, "is a tree, not a commit"),
                 ("refs/tags/tb", blob_s, "is a blob, not a commit"),
                 ("refs/tags/tt", tag_tree.id.decode(), "is an annotated tag of a tree"),
                 ("refs/tags/ttt", tag_tag_tree.id.decode(), "is an annotated tag of a tree"),
                 ("refs/heads/tc", tag_commit.id.decode(), "is a tag, not a commit")]
        for ref, sha, says in cases:
            for updates in ([{"ref": ref, "old": None, "new": sha}],
                            [{"ref": "refs/heads/fine", "old": None, "new": head},
                             {"ref": ref, "old": None, "new": sha}]):
                with pytest.raises(E.ProtocolError) as e:
                    ep.update_refs(updates, force=True)
                assert says in str(e.value) and sha in str(e.value), (ref, str(e.value))
                assert e.value.fields["ref"] == ref
        # and over raw HTTP: 400 protocol_error
        with http(hub, hub.tokens["alice"]["write"]) as c:
            r = c.post("/api/v1/repos/alice/targets/refs",
                       json={"updates": [{"ref": "refs/heads/t", "old": None, "new": tree_s}]})
            assert r.status_code == 400 and r.json()["error"]["code"] == "protocol_error"
            assert r.json()["error"]["fields"]["type"] == "tree"
        assert ep.refs()["refs"] == before
        # what is allowed: a tag naming a commit or an annotated tag of one
        done = ep.update_refs([{"ref": "refs/tags/v1", "old": None, "new": tag_commit.id.decode()},
                               {"ref": "refs/tags/v2", "old": None, "new": head}])
        assert [u["ref"] for u in done] == ["refs/tags/v1", "refs/tags/v2"]
        # an object the hub lacks is still "has not arrived"
        with pytest.raises(E.MissingObject):
            ep.update_refs([{"ref": "refs/heads/m", "old": None, "new": "f" * 40}])
    finally:
        ep.close()
        repo.close()


def test_limits_from_the_environment() -> None:
    """The ``DEMOAI_HUB_*`` variables set the limits (byte counts with K/M/G suffixes);
    a malformed one is a typed error, not a silent default."""
    lim = Limits.from_env({"DEMOAI_HUB_MAX_STAGED": "512M", "DEMOAI_HUB_MAX_JSON": "65536",
                           "DEMOAI_HUB_STAGED_TTL": "60", "DEMOAI_HUB_MAX_BODY": "1GiB"})
    assert lim == Limits(max_body=1 << 30, max_json=65536, max_staged=512 << 20, staged_ttl=60.0)
    assert Limits.from_env({}) == Limits()
    for var, bad in (("DEMOAI_HUB_MAX_STAGED", "lots"), ("DEMOAI_HUB_STAGED_TTL", "soon")):
        with pytest.raises(E.DemoAIError, match=var):
            Limits.from_env({var: bad})


def test_clients_declare_the_file_size_so_parts_past_it_are_refused(caphub: HubServer, tmp_path: Path) -> None:
    """The protocol client sends each file's size with its parts (the hub then caps that
    digest), and the local endpoint applies the same bound."""
    from demoai.http.hub import HttpEndpoint
    from demoai.store.transfer import LocalEndpoint
    hub = caphub
    create(hub, "alice", "sized")
    d = "7" * 64
    ep = HttpEndpoint(hub.repo_url("alice", "sized"), hub.tokens["alice"]["write"])
    try:
        with pytest.raises(E.RequestTooLarge):
            ep.upload_part(d, 0, b"x" * 20, size=10)
        assert ep.upload_offset(d) == 0
        assert ep.upload_part(d, 0, b"x" * 10, size=10) == 10
    finally:
        ep.close()
    (hub.repo_path("alice", "sized") / ".demoai" / "uploads" / f"{d}.part").unlink()
    from demoai.porcelain import init
    local = LocalEndpoint(init(tmp_path / "r"))
    with pytest.raises(E.RequestTooLarge):
        local.upload_part(d, 0, b"x" * 20, size=10)
    assert local.upload_offset(d) == 0
