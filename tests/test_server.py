"""``demoai serve`` as deployed: the real command (uvicorn) on 127.0.0.1 with a token, read
by the official ``openai`` client, httpx and :class:`demoai.http.serve.ServeClient`.

The repository holds the agent of test_agent.py (SmolLM2, namespace sandbox) and a tiny
random Llama built here from a config, with a random LoRA adapter (no downloads). Last, the
app's OpenAPI spec is fuzzed in-process with schemathesis: no input may get a 5xx.
"""
from __future__ import annotations

import json
import shutil
import time
from types import SimpleNamespace

import httpx
import pytest

from demoai import errors as E
from demoai.http.serve import ServeClient
from demoai.registry.defaults import default_gguf_path
from demoai.porcelain import add, commit, init
from demoai.engines.llm import open_backend
from tests.helpers.serve import serving
from tests.helpers.tiny import TASK, agent_yaml, free_port, tiny_llama_with_lora

for _mod in ("fastapi", "uvicorn", "sse_starlette", "openai", "llama_cpp"):
    pytest.importorskip(_mod)
import openai  # noqa: E402

TOKEN = "s3cret-test-token"
AGENT = agent_yaml(max_steps=3)
HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]


def _need_bwrap() -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (agent runs need the namespace sandbox)")


def _tiny_model(root) -> tuple:
    """A random 2-layer Llama with a byte-level BPE trained here, and a random LoRA."""
    for mod in ("torch", "transformers", "peft"):
        pytest.importorskip(mod)
    corpus = ["Hello there, how are you today? Say hello in one short sentence.",
              "user assistant system", "The cat sat on the mat and said hi."]
    return tiny_llama_with_lora(root / "models" / "tiny", root / "adapters" / "lora", corpus,
                                vocab_size=300, lora_alpha=32)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """``demoai serve REPO --port P`` with the token from DEMOAI_SERVE_TOKEN."""
    root = tmp_path_factory.mktemp("served")
    home = tmp_path_factory.mktemp("home")
    repo = init(root)
    (root / "agents").mkdir()
    (root / "agents" / "t.agent.yaml").write_text(AGENT)
    base, adapter = _tiny_model(root)
    kinds = {r.path: r.kind for r in add(repo, [root / "agents" / "t.agent.yaml", base, adapter])}
    assert kinds == {"agents/t.agent.yaml": "agent", "models/tiny": "model", "adapters/lora": "adapter"}
    commit(repo, "agent, tiny model and adapter")
    repo.close()
    with serving(root, home, TOKEN, DEMOAI_AUTHOR="Test <t@example.com>") as url:
        client = ServeClient(url, TOKEN)
        yield SimpleNamespace(url=url, root=root, client=client, base=base, adapter=adapter,
                              oa=openai.OpenAI(base_url=url + "/v1", api_key=TOKEN, max_retries=0))
        client.close()


@pytest.fixture(scope="module")
def smollm2():
    backend = open_backend({"backend": "llamacpp", "path": str(default_gguf_path()), "threads": 1})
    yield backend
    backend.close()


# --- /v1: OpenAI-compatible -------------------------------------------------------------
def test_models_lists_repo_models_and_builtin(served):
    ids = [m.id for m in served.oa.models.list().data]
    assert ids[0] == "smollm2" and "models/tiny" in ids
    assert served.oa.models.retrieve("models/tiny").id == "models/tiny"
    raw = httpx.get(served.url + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [a["path"] for a in raw["adapters"]] == ["adapters/lora"]
    with pytest.raises(openai.NotFoundError):
        served.oa.models.retrieve("models/nope")


def test_chat_completions_through_openai_client(served, smollm2):
    oa = served.oa
    r = oa.chat.completions.create(model="smollm2", messages=HELLO, max_tokens=16)
    text = r.choices[0].message.content
    assert text.strip() and r.choices[0].finish_reason in ("stop", "length")
    u = r.usage
    assert u.prompt_tokens == smollm2.count_tokens(HELLO) and 0 < u.completion_tokens <= 16
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    tm = r.model_extra["timings"]
    assert 0 < tm["ttft_ms"] <= tm["total_ms"] and tm["tokens_per_s"] > 0
    # the same engine, template and (greedy) params as the backend used directly
    assert text == smollm2.chat(HELLO, params={"max_tokens": 16}).text
    sampled = {"temperature": 0.9, "seed": 7, "max_tokens": 16}
    first = oa.chat.completions.create(model="smollm2", messages=HELLO, **sampled).choices[0].message.content
    again = oa.chat.completions.create(model="smollm2", messages=HELLO, **sampled).choices[0].message.content
    assert first == again == smollm2.chat(HELLO, params=sampled).text
    others = {oa.chat.completions.create(model="smollm2", messages=HELLO, **{**sampled, "seed": s})
              .choices[0].message.content for s in (1, 2, 3)}
    assert len(others | {first}) > 1

    chunks = list(oa.chat.completions.create(model="smollm2", messages=HELLO, max_tokens=16, stream=True,
                                             stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == text
    last = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert last.choices[0].finish_reason == r.choices[0].finish_reason
    assert last.usage.completion_tokens == u.completion_tokens
    assert 0 < last.model_extra["timings"]["ttft_ms"] <= last.model_extra["timings"]["total_ms"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == u.total_tokens


def test_json_schema_response_format(served):
    schema = {"type": "object", "properties": {"greeting": {"type": "string"}}, "required": ["greeting"]}
    r = served.oa.chat.completions.create(
        model="smollm2", messages=HELLO, max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "g", "schema": schema}})
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content)["greeting"], str)
    assert r.model_extra["record"]["json_schema"].startswith("blake3:")


def test_context_overflow_is_refused_typed(served):
    long = [{"role": "user", "content": "word " * 3000}]
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as e:
            served.oa.chat.completions.create(model="smollm2", messages=long, max_tokens=8, stream=stream)
        assert e.value.status_code == 400 and e.value.code == "context_overflow"
    with pytest.raises(E.ContextOverflow) as ce:
        served.client.chat("smollm2", long, max_tokens=8)
    assert ce.value.n_ctx == 2048 and ce.value.prompt_tokens > 2048 and isinstance(ce.value, ValueError)


def test_adapter_changes_the_output(served):
    plain = served.client.chat("models/tiny", HELLO, max_tokens=12)
    tuned = served.client.chat("models/tiny+adapters/lora", HELLO, max_tokens=12)
    assert plain["record"]["backend"] == tuned["record"]["backend"] == "transformers"
    assert plain["record"]["settings"]["adapter"] is None
    listed = httpx.get(served.url + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert tuned["record"]["settings"]["adapter"] == listed["adapters"][0]["digest"]   # the stored one
    a, b = plain["choices"][0]["message"]["content"], tuned["choices"][0]["message"]["content"]
    assert a != b
    direct = open_backend({"backend": "transformers", "path": str(served.base),
                           "adapter_path": str(served.adapter), "threads": 1})
    try:
        assert direct.chat(HELLO, params={"max_tokens": 12}).text == b
    finally:
        direct.close()
    with pytest.raises(openai.NotFoundError):
        served.oa.chat.completions.create(model="models/tiny+adapters/none", messages=HELLO, max_tokens=2)
    with pytest.raises(openai.BadRequestError) as e:
        served.oa.chat.completions.create(model="models/tiny+", messages=HELLO, max_tokens=2)
    assert e.value.code == "invalid_artifact"


# --- /api: agents, runs, sessions ---------------------------------------------------------
@pytest.fixture(scope="module")
def run1(served):
    """One run started over HTTP and followed through its SSE stream: (start answer,
    [(seconds since start, event)])."""
    _need_bwrap()
    t0 = time.monotonic()
    started = served.client.start_run("agents/t.agent.yaml", TASK, name="run1")
    answered = time.monotonic() - t0
    got = [(time.monotonic() - t0, ev) for ev in served.client.stream("run1")]
    return started, answered, got


def test_run_in_background_and_stream_to_the_end(served, run1):
    started, answered, got = run1
    assert started["session"] == "run1" and started["status"] in ("queued", "running")
    assert answered < 1.0                            # 202 at once; the run takes seconds
    end_t, end = got[-1]
    assert end["event"] == "end" and end["data"]["status"] == "finished", end
    events = [ev["data"] for _, ev in got[:-1]]
    assert all(ev["event"] == "event" for _, ev in got[:-1])
    assert [int(ev["id"]) for _, ev in got[:-1]] == list(range(len(events)))
    assert events[0]["type"] == "run_start" and events[-1]["type"] == "run_end"
    assert {"model_request", "model_response", "tool_call"} <= {e["type"] for e in events}
    assert events[0]["parent"] is None
    assert all(b["parent"] == a["id"] for a, b in zip(events, events[1:]))   # one hash chain
    assert end_t - got[0][0] > 0.3                   # events arrived while the run went on
    c = served.client
    assert [e["id"] for e in c.events("run1")] == [e["id"] for e in events]
    s = c.session("run1")
    assert s["session"]["status"] == "finished" and s["session"]["steps"] == end["data"]["result"]["steps"]
    assert [e["type"] for e in s["events"]] == [e["type"] for e in events]
    assert "run1" in {x["name"] for x in c.sessions()}
    assert c.run("run1")["status"] == "finished"
    assert c.agents()[0]["path"] == "agents/t.agent.yaml"
    step1 = c.step("run1", 1)
    assert step1["events"] and all(e["step"] == 1 for e in step1["events"])


def test_fork_replay_and_continue_over_http(served, run1):
    c = served.client
    run_events = c.events("run1")
    f = c.fork("run1", 1, "fork1", instruction="Now write bye into bye.txt.", set={"temperature": 0.0})
    assert f["session"] == "fork1" and f["from"]["session"] == "run1" and f["from"]["step"] == 1
    assert f["overrides"]["instruction"] == "Now write bye into bye.txt."
    fork_events = c.events("fork1")
    shared = [e for e in run_events if e["step"] <= 1]
    assert [e["id"] for e in fork_events[:len(shared)]] == [e["id"] for e in shared]
    assert fork_events[len(shared)]["type"] == "fork"

    rec = c.replay("run1", "recorded")
    assert rec["verified"] and rec["events"] == len(run_events) and rec["mode"] == "recorded"
    assert c.replay("fork1", "recorded", from_step=1)["verified"]
    rex = c.replay("run1", "reexecute")
    assert rex["identical"] and rex["first_divergence"] is None

    assert c.continue_session("fork1", max_steps=1)["status"] in ("queued", "running")
    end = c.wait("fork1")
    assert end["status"] in ("finished", "max_steps") and end["result"]["steps"] == 2
    cont = c.events("fork1")
    assert any(e["type"] == "resume" for e in cont)
    req = [e for e in cont if e["type"] == "model_request"][-1]
    assert {"role": "user", "content": "Now write bye into bye.txt."} in req["messages"]
    d = c.diff("run1", "fork1")
    assert d["shared_events"] == len(shared) and not d["identical"]

    live = c.replay("run1", "live", from_step=0, max_steps=1)
    assert live["session"] == "run1-live-1" and live["mode"] == "live"
    assert c.wait("run1-live-1")["result"]["steps"] == 1


def test_typed_errors_round_trip(served, run1):
    c = served.client
    with pytest.raises(E.SessionNotFound) as e:
        c.session("nope")
    assert e.value.session == "nope" and isinstance(e.value, KeyError)
    with pytest.raises(E.SessionNotFound):
        c.fork("run1", 99, "fork99")
    with pytest.raises(E.SessionNotFound):
        list(c.stream("nope"))
    with pytest.raises(E.PathNotFound):
        c.start_run("agents/missing.agent.yaml", "x")
    with pytest.raises(E.RefConflict):
        c.start_run("agents/t.agent.yaml", "x", name="run1")
    with pytest.raises(E.InvalidRefName):
        c.start_run("agents/t.agent.yaml", "x", name="bad name")
    with pytest.raises(E.InvalidArtifact):
        c.fork("run1", 1, "fork-bad", set={"temperature": "hot"})
    with pytest.raises(E.ProtocolError) as pe:
        c.replay("run1", "bogus")
    assert pe.value.errors[0]["loc"][-1] == "mode"
    with pytest.raises(E.RemoteNotFound):
        c._call("GET", "/api/nothing-here")
    # an error in the background run comes back typed at the end of its stream
    started = c.start_run("agents/t.agent.yaml", "x", name="no-model", model="openai:nothing")
    assert started["status"] in ("queued", "running")
    with pytest.raises(E.ModelError) as me:
        c.wait("no-model")
    assert "base_url" in me.value.message
    assert c.run("no-model")["error"]["error"]["code"] == "model_error"
    with pytest.raises(openai.UnprocessableEntityError) as ue:
        served.oa.chat.completions.create(model="smollm2", messages=HELLO, n=2)
    assert ue.value.code == "protocol_error"
    with ServeClient(f"http://127.0.0.1:{free_port()}") as dead, pytest.raises(E.RemoteError):
        dead.sessions()


def test_token_guards_every_route(served):
    for path in ("/api/sessions", "/v1/models", "/openapi.json", "/api/health"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = httpx.get(served.url + path, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (path, headers)
            assert r.json()["error"]["code"] == "authentication_required"
    with ServeClient(served.url, "wrong") as bad, pytest.raises(E.AuthenticationRequired):
        bad.sessions()
    wrong = openai.OpenAI(base_url=served.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def test_request_body_is_bounded(served):
    from fastapi.testclient import TestClient

    from demoai.http.errors import raise_for_status
    from demoai.server import create_app
    with TestClient(create_app(served.root, max_body=1000)) as c:
        body = json.dumps({"agent": "agents/t.agent.yaml", "task": "x" * 2000}).encode()
        for content in (body, iter([body[:900], body[900:]])):      # with a length, and chunked
            r = c.post("/api/runs", content=content, headers={"content-type": "application/json"})
            assert r.status_code == 413
            with pytest.raises(E.RequestTooLarge):
                raise_for_status(r.status_code, r.content)
        small = c.post("/api/sessions/nope/fork", content=iter([b'{"step"', b': 1}']),
                       headers={"content-type": "application/json"})
        assert small.status_code == 404 and small.json()["error"]["code"] == "session_not_found"


def test_cli_refuses_open_non_loopback(cli):
    from demoai.cli.serve import is_loopback
    res = cli("serve", ".", "--host", "0.0.0.0", code=2)
    assert "without a token" in res.output
    assert cli("serve", ".", "--token", "t", "--no-token", code=2).output.count("exclude") == 1
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")


# --- the OpenAPI spec, fuzzed -------------------------------------------------------------
def test_openapi_fuzz_never_5xx(served, run1):
    """Every operation, with generated valid and invalid input: never a 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    from demoai.server import create_app
    app = create_app(served.root, max_tokens_cap=4)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) >= 15
    t0, calls = time.monotonic(), []
    for op in ops:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=6, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def fuzz(case) -> None:
                case.call_and_validate(checks=[not_a_server_error])
                calls.append(op.label)
            try:
                fuzz()
            except Unsatisfiable:        # no invalid input exists (an operation without inputs)
                assert mode is GenerationMode.NEGATIVE
    assert len(set(calls)) == len(ops)
    assert time.monotonic() - t0 < 120
