"""The hub on PostgreSQL and S3-compatible storage, beside the embedded SQLite + disk hub.

A real PostgreSQL server (Debian's, started here in a temp folder as a non-root user:
:mod:`tests.helpers.pg`) and an S3-API server (``moto`` in server mode on 127.0.0.1, the
stand-in for S3 or MinIO: :mod:`tests.helpers.s3`) back real hub processes
(:mod:`tests.helpers.hub`), selected as users select them: ``DEMOAI_HUB_DATABASE_URL`` and
``DEMOAI_HUB_OBJECTS``. The module shares one database and bucket prefix (a *cluster*) with
two hub processes behind them, each with its own cache; each test works in repositories of
its own names.

- the round trip (create, push, clone, fetch, search) and the refusal of a stale old value
  run on both backends;
- most of ``tests/test_hub.py``'s protocol tests run again here against a PostgreSQL + S3 hub
  (imported below: same assertions, the module's ``hub`` fixture is that hub);
- two hub processes behind one database and one bucket race for one branch: exactly one
  update wins each time, the other is refused, nothing is lost;
- PostgreSQL or the S3 server stopped mid-push: 503 ``storage_unavailable``, no ref moves,
  and once they are back the retried push completes; objects reach the bucket before a ref
  names them.

Without PostgreSQL (no ``initdb``), psycopg, boto3 or moto the tests skip, and fail when
``DEMOAI_REQUIRE_ALL=1`` (as in CI).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from demoai import errors as E
from demoai import porcelain as P
from demoai.hub.app import Backends, Hub
from demoai.http.hub import HttpEndpoint
from demoai.store.git.repo import Repository
from demoai.store.transfer import LocalEndpoint, transfer
from tests.helpers.hub import HubServer, make_user
from tests.helpers.pg import PostgresServer, find_initdb
from tests.helpers.skips import unavailable
from tests.test_hub import (alice, commit_files, model_bytes, new_repo, text_rows,  # noqa: F401
                            threaded)
# The protocol tests of tests/test_hub.py, run again on the PostgreSQL + S3 hub (``hub`` below).
from tests.test_hub import (  # noqa: F401
    test_access_private_and_public_repositories,
    test_concurrent_pushes_of_one_new_dataset_both_succeed,
    test_concurrent_pushes_to_one_branch_one_wins_none_lost,
    test_corrupted_frames_and_incomplete_ref_updates_are_refused,
    test_fetch_fast_forwards_a_session_that_grew,
    test_incremental_dataset_push_sends_about_the_edit,
    test_incremental_model_push_sends_about_the_edit,
    test_malformed_repository_names_are_refused,
    test_oversized_bodies_and_id_lists_are_refused,
    test_pull_fast_forward_non_fast_forward_and_force,
    test_ref_injection_and_table_path_escapes_are_refused,
)

pytestmark = pytest.mark.timeout(300)

MAIN = "refs/heads/main"
BACKEND_VARS = ("DEMOAI_HUB_DATABASE_URL", "DEMOAI_HUB_OBJECTS", "DEMOAI_HUB_S3_ENDPOINT",
                "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
PROMPT = """name: zanzibar
template: |
  Name the capital city of {{country}}, then say why zanzibar matters.
parameters:
  temperature: 0.0
  max_tokens: 16
"""


# ----------------------------------------------------------------------------- servers

def _require() -> None:
    missing = [m for m in ("psycopg", "boto3", "moto") if importlib.util.find_spec(m) is None]
    if find_initdb() is None:
        missing.insert(0, "PostgreSQL (initdb; Debian: apt-get install postgresql)")
    if missing:
        unavailable(f"the scale-out hub backends need {', '.join(missing)}", "DEMOAI_REQUIRE_ALL")


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the module (each cluster gets its own database)."""
    _require()
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """One moto S3 server for the module (each cluster gets its own prefix)."""
    _require()
    from tests.helpers.s3 import S3Server
    server = S3Server()
    yield server
    server.close()


@contextlib.contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """The backend variables exactly as ``env`` says (others unset), then as they were."""
    saved = {k: os.environ.get(k) for k in BACKEND_VARS}
    for k in BACKEND_VARS:
        os.environ.pop(k, None)
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class BackendHub(HubServer):
    """A hub process configured by ``env`` (the backend variables)."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        super().__init__(data)
        self.env = env

    def start(self) -> "BackendHub":
        with environ(self.env):
            return super().start()


class Cluster:
    """Users alice and bob on one backend, and hub processes started on demand (each with a
    data directory of its own): the embedded default (no ``pg``; one hub), PostgreSQL for
    metadata with repositories on the local disk (``pg`` only; one hub), or PostgreSQL + S3
    (``pg`` and ``s3``: one database and one bucket prefix behind any number of hubs)."""

    def __init__(self, root: Path, pg: PostgresServer | None = None, s3: Any = None) -> None:
        self.root, self.s3 = root, s3
        self.embedded = pg is None
        self.hubs: list[BackendHub] = []
        if pg is None:
            self.env: dict[str, str] = {}
            self.tokens = {u: make_user(root / "hub0", u) for u in ("alice", "bob")}
            return
        self.prefix = "c" + uuid.uuid4().hex[:12]
        self.env = {"DEMOAI_HUB_DATABASE_URL": pg.new_database(self.prefix)}
        if s3 is not None:
            self.env.update({"DEMOAI_HUB_OBJECTS": s3.url(self.prefix), **s3.env})
        with environ(self.env):
            meta = Hub.open(root / "admin").meta
        self.tokens = {}
        for user in ("alice", "bob"):
            meta.add_user(user)
            self.tokens[user] = {"write": meta.create_token(user, "write", "tests")[0],
                                 "read": meta.create_token(user, "read", "tests")[0]}
        meta.close()

    def hub(self) -> BackendHub:
        """A new hub process behind this cluster's backends."""
        server = BackendHub(self.root / f"hub{len(self.hubs)}", self.env)
        server.tokens = self.tokens
        self.hubs.append(server.start())
        return server

    def keys(self, owner: str, name: str) -> list[str]:
        """The bucket's keys of ``owner/name`` (relative to the repository's prefix)."""
        base = f"{self.prefix}/{owner}/{name}/"
        return [k[len(base):] for k in self.s3.keys(base)]

    def close(self) -> None:
        for h in self.hubs:
            h.stop()


@pytest.fixture(scope="module")
def scaled(pg: PostgresServer, s3: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The module's PostgreSQL + S3 cluster: two hub processes, ``one`` and ``two``, behind
    one database and one bucket prefix (each test works in repositories of its own names)."""
    c = Cluster(tmp_path_factory.mktemp("scaled"), pg, s3)
    c.one, c.two = c.hub(), c.hub()
    yield c
    c.close()


@pytest.fixture(scope="module", params=["embedded", "postgresql", "postgresql+s3"])
def backend_hub(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """One hub per backend for the tests that must pass on all: the embedded default,
    PostgreSQL with repositories on the local disk, PostgreSQL + S3 (the module's cluster)."""
    if request.param == "postgresql+s3":
        c = request.getfixturevalue("scaled")
        c.one.cluster = c
        yield c.one
        return
    pg = request.getfixturevalue("pg") if request.param == "postgresql" else None
    c = Cluster(tmp_path_factory.mktemp(request.param), pg)
    server = c.hub()
    server.cluster = c
    yield server
    c.close()


@pytest.fixture(scope="module")
def hub(scaled: Cluster) -> HubServer:
    """The PostgreSQL + S3 hub that the tests imported from tests/test_hub.py run against."""
    return scaled.one


def _url(hub: HubServer, name: str) -> str:
    return hub.repo_url("alice", name)


def _digests(repo: Repository, commit: str) -> dict[str, str]:
    return {p: a.digest for p, a in repo.artifacts(commit).items()}


# ----------------------------------------------------------------------------- both backends

def test_push_clone_fetch_and_search_on_both_backends(backend_hub: HubServer, tmp_path: Path) -> None:
    """Create a repository, push a prompt, a dataset and a model, clone it (fsck clean,
    identical digests), push a second commit and fetch it, and find the prompt by a word of
    its text through the hub's search."""
    token = backend_hub.tokens["alice"]["write"]
    src = new_repo(tmp_path / "src", backend_hub, "trip")
    c1 = commit_files(src, {"prompts/z.prompt.yaml": PROMPT, "d.jsonl": text_rows(300, seed=5),
                            "m.gguf": model_bytes(1 << 20, seed=6)}, "one", key="id")
    pushed = P.push(src, "origin", token=token)
    assert pushed["updated"] == [{"ref": MAIN, "old": None, "new": c1}]

    P.clone(_url(backend_hub, "trip"), tmp_path / "dst", token=token)
    with Repository(tmp_path / "dst") as dst:
        assert dst.head_commit() == c1
        assert _digests(dst, c1) == _digests(src, c1)
        assert P.fsck(dst)["ok"]
        c2 = commit_files(src, {"d.jsonl": text_rows(310, seed=5)}, "two", key="id")
        P.push(src, "origin", token=token)
        fetched = P.fetch(dst, "origin", token=token)
        assert {"ref": "refs/remotes/origin/main", "old": c1, "new": c2} in fetched["updated"] or \
            dst.ref_value("refs/remotes/origin/main") == c2
        assert _digests(dst, c2) == _digests(src, c2)
    src.close()

    r = httpx.get(f"{backend_hub.url}/api/v1/search", params={"q": "zanzibar", "mode": "text"},
                  headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    hits = [(h["owner"], h["name"], h["path"]) for h in r.json()["hits"]]
    assert ("alice", "trip", "prompts/z.prompt.yaml") in hits

    cluster = backend_hub.cluster
    if cluster.s3 is not None:
        keys = cluster.keys("alice", "trip")
        assert {k.split("/", 1)[0] for k in keys} == {"git", "chunks", "files"}, keys
        outbox = backend_hub.data / "s3" / "alice" / "trip" / "outbox"
        assert not [p for p in outbox.iterdir() if not p.name.startswith(".")]


def test_stale_old_values_are_refused_on_both_backends(backend_hub: HubServer, tmp_path: Path) -> None:
    """A ref update whose old value is not the hub's is RefConflict (nothing moves); one
    that is not a fast-forward is NonFastForward; the right old value moves the ref."""
    token = backend_hub.tokens["alice"]["write"]
    src = new_repo(tmp_path / "src", backend_hub, "stale")
    c1 = commit_files(src, {"a.prompt.yaml": PROMPT}, "one")
    P.push(src, "origin", token=token)
    c2 = commit_files(src, {"b.prompt.yaml": PROMPT.replace("zanzibar", "b")}, "two")
    side = commit_files(src, {"c.prompt.yaml": PROMPT.replace("zanzibar", "c")}, "three")
    ep = HttpEndpoint(_url(backend_hub, "stale"), token)
    try:
        transfer(LocalEndpoint(src), ep, [side], [c1])
        for bad_old in (c2, None, "f" * 40):
            with pytest.raises(E.RefConflict):
                ep.update_refs([{"ref": MAIN, "old": bad_old, "new": c2}])
        assert ep.refs()["refs"] == {MAIN: c1}
        # all or none: a good update beside a stale one moves nothing
        with pytest.raises(E.RefConflict):
            ep.update_refs([{"ref": "refs/heads/new", "old": None, "new": c2},
                            {"ref": MAIN, "old": c2, "new": side}])
        assert ep.refs()["refs"] == {MAIN: c1}
        assert ep.update_refs([{"ref": MAIN, "old": c1, "new": side}]) == [
            {"ref": MAIN, "old": c1, "new": side}]
        with pytest.raises(E.NonFastForward):               # c2 does not contain side
            ep.update_refs([{"ref": MAIN, "old": side, "new": c2}])
        assert ep.refs()["refs"] == {MAIN: side}
    finally:
        ep.close()
        src.close()


# ----------------------------------------------------------------------------- scale-out only

def test_refs_come_from_the_database_and_objects_from_the_bucket(scaled: Cluster, tmp_path: Path) -> None:
    """A second hub process with an empty cache serves a clone identical to the source
    (objects from the bucket); a hub whose cache holds a stale ref still answers the
    database's; a hub whose cache was wiped (with or without its bookkeeping, stopped or
    running) refills it from the bucket."""
    one, two = scaled.one, scaled.two
    token = scaled.tokens["alice"]["write"]
    src = new_repo(tmp_path / "src", one, "truth")
    c1 = commit_files(src, {"d.jsonl": text_rows(500, seed=8), "m.gguf": model_bytes(1 << 20, seed=9)},
                      "one", key="id")
    c2 = commit_files(src, {"p.prompt.yaml": PROMPT}, "two")
    P.push(src, "origin", token=token)

    P.clone(_url(two, "truth"), tmp_path / "via-two", token=token)
    with Repository(tmp_path / "via-two") as b:
        assert b.head_commit() == c2 and _digests(b, c1) == _digests(src, c1)
        assert P.fsck(b)["ok"]
    assert (two.repo_path("alice", "truth") / ".demoai").is_dir()     # its cache filled

    # a stale ref in one's cache is never what the hub answers
    with Repository(one.repo_path("alice", "truth")) as cache:
        cache.set_ref(MAIN, c1, c2, "test: a stale cache")
    ep = HttpEndpoint(_url(one, "truth"), token)
    try:
        assert ep.refs()["refs"] == {MAIN: c2}
    finally:
        ep.close()

    # a wiped cache (and its bookkeeping) is filled again from the bucket
    one.stop()
    shutil.rmtree(one.data / "repos")
    shutil.rmtree(one.data / "s3")
    one.start()
    P.clone(_url(one, "truth"), tmp_path / "via-one", token=token)
    with Repository(tmp_path / "via-one") as a:
        assert a.head_commit() == c2 and _digests(a, c1) == _digests(src, c1)
        assert P.fsck(a)["ok"]
    # the cache alone wiped under a running hub (its record of applied keys kept): refilled
    shutil.rmtree(one.repo_path("alice", "truth"))
    P.clone(_url(one, "truth"), tmp_path / "again", token=token)
    with Repository(tmp_path / "again") as a:
        assert a.head_commit() == c2 and P.fsck(a)["ok"]
    src.close()


def test_two_hub_processes_race_for_one_branch_without_lost_updates(scaled: Cluster, tmp_path: Path) -> None:
    """Two hub processes behind one database and one bucket. Each round, two clients send
    different commits on the same base, one through each hub, then move main at the same
    instant: exactly one wins, the other is refused (RefConflict or NonFastForward), and
    main is the winner's commit on both hubs. Then, with the whole push racing, the loser
    merges and pushes: the history holds both commits."""
    hubs = [scaled.one, scaled.two]
    token = scaled.tokens["alice"]["write"]
    a = new_repo(tmp_path / "a", hubs[0], "race-2p")
    base = commit_files(a, {"p.prompt.yaml": PROMPT}, "base")
    P.push(a, "origin", token=token)
    a.close()
    eps = [HttpEndpoint(_url(h, "race-2p"), token) for h in hubs]
    clients: list[Repository] = []
    try:
        tip = base
        for round_ in range(4):
            tips = []
            for i, h in enumerate(hubs):      # client i clones main and sends through hub i
                where = tmp_path / f"r{round_}-{i}"
                P.clone(_url(h, "race-2p"), where, token=token)
                with Repository(where) as c:
                    assert c.head_commit() == tip
                    tips.append(commit_files(c, {f"r{round_}-{i}.prompt.yaml": PROMPT.replace(
                        "zanzibar", f"r{round_}x{i}")}, f"round {round_} client {i}"))
                    transfer(LocalEndpoint(c), eps[i], [tips[i]], [tip])
            gate = threading.Barrier(2, timeout=30)

            def move(i: int) -> Any:
                gate.wait()
                return eps[i].update_refs([{"ref": MAIN, "old": tip, "new": tips[i]}])
            runs = [threaded(move, 0), threaded(move, 1)]
            for t, _ in runs:
                t.join(timeout=120)
                assert not t.is_alive()
            won = [i for i, (_, out) in enumerate(runs) if "result" in out]
            assert len(won) == 1, [out for _, out in runs]
            lost = runs[1 - won[0]][1]["error"]
            assert isinstance(lost, (E.RefConflict, E.NonFastForward)), lost
            tip = tips[won[0]]
            assert [ep.refs()["refs"][MAIN] for ep in eps] == [tip, tip]

        for i, h in enumerate(hubs):
            P.clone(_url(h, "race-2p"), tmp_path / f"c{i}", token=token)
            clients.append(Repository(tmp_path / f"c{i}"))
        # whole pushes racing through the two hubs; the loser merges and pushes again
        cb = commit_files(clients[0], {"b.prompt.yaml": PROMPT.replace("zanzibar", "bee")}, "b")
        cc = commit_files(clients[1], {"m.gguf": model_bytes(1 << 20, seed=77)}, "c")
        gate = threading.Barrier(2, timeout=30)

        def push(c: Repository) -> dict:
            gate.wait()
            return P.push(c, "origin", token=token)
        runs = [threaded(push, clients[0]), threaded(push, clients[1])]
        for t, _ in runs:
            t.join(timeout=120)
            assert not t.is_alive()
        won = [i for i, (_, out) in enumerate(runs) if "result" in out]
        assert len(won) == 1, [out for _, out in runs]
        assert isinstance(runs[1 - won[0]][1]["error"], (E.NonFastForward, E.RefConflict))
        loser = clients[1 - won[0]]
        assert P.pull(loser, "origin", token=token)["merge"]["status"] == "merged"
        P.push(loser, "origin", token=token)
        final = eps[won[0]].refs()["refs"][MAIN]
        assert final == loser.head_commit() == eps[1 - won[0]].refs()["refs"][MAIN]
        P.clone(_url(hubs[won[0]], "race-2p"), tmp_path / "check", token=token)
        with Repository(tmp_path / "check") as chk:
            history = {ci.id for ci in chk.walk(final)}
            assert {cb, cc, base} <= history
            assert P.fsck(chk)["ok"]
    finally:
        for ep in eps:
            ep.close()
        for c in clients:
            c.close()


def _storage_error(err: BaseException, service: str) -> bool:
    """Whether a client saw the hub's 503 ``storage_unavailable`` naming ``service``."""
    return isinstance(err, E.StorageUnavailable) and err.fields.get("service") == service


def _stop_once(stop: Any, stage: str) -> Any:
    """A push progress callback that calls ``stop()`` the first time ``stage`` has made
    progress (mid-push), and only once."""
    done = threading.Event()

    def progress(st: str, n: int, total: int) -> None:
        if st == stage and n > 0 and not done.is_set():
            done.set()
            stop()
    progress.fired = done
    return progress


@pytest.mark.parametrize("service", ["postgresql", "s3"])
def test_backend_stopped_mid_push_answers_503_and_the_retried_push_completes(
        scaled: Cluster, pg: PostgresServer, s3: Any, service: str, tmp_path: Path) -> None:
    """PostgreSQL or the S3 server stops while a push is sending chunks: the push fails with
    the hub's 503 ``storage_unavailable``, the raw answer is a 503 with Retry-After, and no
    ref moved. Once the server is back, the same push completes, and a second hub process
    with an empty cache serves a clone identical to the source."""
    one, two = scaled.one, scaled.two
    token = scaled.tokens["alice"]["write"]
    name = f"fault-{service}"
    src = new_repo(tmp_path / "src", one, name)
    head = commit_files(src, {"d.jsonl": text_rows(2000, seed=11), "m.gguf": model_bytes(3 << 20, seed=12)},
                        "big", key="id")
    server = pg if service == "postgresql" else s3
    progress = _stop_once(server.stop, "chunks")
    try:
        with pytest.raises(E.DemoAIError) as failed:
            P.push(src, "origin", token=token, progress=progress)
        assert progress.fired.is_set()
        assert _storage_error(failed.value, service), repr(failed.value)
        r = httpx.post(f"{one.url}/api/v1/repos/alice/{name}/chunks/missing", json={"ids": ["a" * 64]},
                       headers={"Authorization": f"Bearer {token}"}, timeout=60)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "storage_unavailable"
        assert r.headers.get("retry-after")
    finally:
        server.start()
    ep = HttpEndpoint(_url(one, name), token)
    try:
        assert ep.refs()["refs"] == {}                   # nothing half-visible
    finally:
        ep.close()
    again = P.push(src, "origin", token=token)
    assert again["updated"] == [{"ref": MAIN, "old": None, "new": head}]
    P.clone(_url(two, name), tmp_path / "dst", token=token)
    with Repository(tmp_path / "dst") as dst:
        assert dst.head_commit() == head and _digests(dst, head) == _digests(src, head)
        assert P.fsck(dst)["ok"]
    src.close()


def test_objects_reach_the_bucket_before_a_ref_names_them(scaled: Cluster, s3: Any, tmp_path: Path) -> None:
    """Git objects arrive while the S3 server is down: the hub keeps them (its cache and
    outbox) but answers 503, and a ref update naming them is refused with 503 as long as
    they are not in the bucket; once the server is back the same update succeeds, and a
    hub process with an empty cache serves them from the bucket."""
    one, two = scaled.one, scaled.two
    token = scaled.tokens["alice"]["write"]
    src = new_repo(tmp_path / "src", one, "order")
    head = commit_files(src, {"p.prompt.yaml": PROMPT}, "one")
    local = LocalEndpoint(src)
    needs = local.needs([head], [])
    assert not needs.chunks and not needs.files       # git objects only
    ep = HttpEndpoint(_url(one, "order"), token)
    ep.create()
    s3.stop()
    try:
        for frame in local.git_frames(needs.git):
            with pytest.raises(E.DemoAIError) as failed:
                ep.put_git(frame)
            assert _storage_error(failed.value, "s3")
        assert ep.missing_git(needs.git) == []        # kept, to be sent to the bucket later
        with pytest.raises(E.DemoAIError) as failed:
            ep.update_refs([{"ref": MAIN, "old": None, "new": head}])
        assert _storage_error(failed.value, "s3")
        assert ep.refs()["refs"] == {}
    finally:
        s3.start()
    try:
        assert not [k for k in scaled.keys("alice", "order") if k.startswith("git/")]
        assert ep.update_refs([{"ref": MAIN, "old": None, "new": head}])[0]["new"] == head
        assert [k for k in scaled.keys("alice", "order") if k.startswith("git/")]
    finally:
        ep.close()
    P.clone(_url(two, "order"), tmp_path / "dst", token=token)
    with Repository(tmp_path / "dst") as dst:
        assert dst.head_commit() == head and P.fsck(dst)["ok"]
    src.close()


# ----------------------------------------------------------------------------- units

def test_postgres_search_finds_what_the_embedded_index_finds(pg: PostgresServer, tmp_path: Path) -> None:
    """The same documents indexed by SQLite FTS5 (the reference) and PostgreSQL full-text
    search: each query finds the same documents, prefixes match, and operators typed by a
    user are plain words (no error, no injection)."""
    from demoai.hub.meta import SqliteMetaStore
    from demoai.hub.meta_pg import PostgresMetaStore
    docs = [
        {"path": "prompts/capital.prompt.yaml", "kind": "prompt", "title": "capitals",
         "text": "Name the capital city of a country in one word."},
        {"path": "agents/files.agent.yaml", "kind": "agent", "title": "files agent",
         "text": "An agent that writes files in its workspace and then finishes."},
        {"path": "prompts/json.prompt.yaml", "kind": "prompt", "title": "json answers",
         "text": "Answer with a JSON object holding the city and the country."},
    ]
    stores = [SqliteMetaStore(tmp_path / "ref.sqlite3"), PostgresMetaStore(pg.new_database("search"))]
    for m in stores:
        m.add_user("alice")
        m.create_repo("alice", "r", False)
        m.index_docs("alice", "r", docs)
    queries = ["capital", "capit", "city country", "agent", "files agent", "JSON", "nothing here",
               "", "a\" OR \"b", "x:* | y & !z", "NEAR(city", "city's"]
    for q in queries:
        found = [sorted(h["path"] for h in m.search(q)) for m in stores]
        assert found[0] == found[1], (q, found)
    assert [h["path"] for h in stores[1].search("capit")] == ["prompts/capital.prompt.yaml"]
    hit = stores[1].search("city country")
    assert len(hit) == 2 and all(h["rank"] <= 0 for h in hit) and "[" in hit[0]["snippet"]
    stores[1].index_docs("alice", "r", docs[:1])          # a re-index replaces the documents
    assert [h["path"] for h in stores[1].search("agent")] == []
    stores[1].close()


def test_backends_from_the_environment() -> None:
    """The variables select the backends; a bucket without a database is refused; the
    description never shows the database URL (it may hold a password)."""
    assert Backends.from_env({}) == Backends()
    b = Backends.from_env({"DEMOAI_HUB_DATABASE_URL": "postgresql://u:secret@h/db",
                           "DEMOAI_HUB_OBJECTS": "s3://bucket/pre", "AWS_ENDPOINT_URL": "http://x:9000"})
    assert b == Backends("postgresql://u:secret@h/db", "s3://bucket/pre", "http://x:9000")
    assert "secret" not in b.describe() and "PostgreSQL" in b.describe()
    with pytest.raises(E.InvalidRefName):
        Backends(objects="s3://bucket/x").open(Path("/nonexistent"))
    from demoai.hub.objects_s3 import parse_bucket_url
    assert parse_bucket_url("s3://b/a/b/") == ("b", "a/b")
    for bad in ("http://b/x", "s3:///x", "s3://b/x?y=1"):
        with pytest.raises(E.InvalidRefName):
            parse_bucket_url(bad)
