"""``demoai serve`` for agent frameworks: OpenAI tool calling (auto/none/required/named,
streamed too, and a tool call -> tool result -> answer loop) and ``/v1/embeddings``
(wordllama's shipped embeddings and SmolLM2's pooled hidden states), through the real
command on 127.0.0.1 read by the official ``openai`` client."""
from __future__ import annotations

import base64
import json
import struct
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from demoai.porcelain import init
from tests.helpers.serve import serving

for _mod in ("fastapi", "uvicorn", "openai", "llama_cpp", "wordllama"):
    pytest.importorskip(_mod)
import openai  # noqa: E402

TOKEN = "tools-test-token"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two integers.",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"], "additionalProperties": False}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("served")
    home = tmp_path_factory.mktemp("home")
    init(root).close()
    with serving(root, home, TOKEN) as url:
        yield SimpleNamespace(url=url, oa=openai.OpenAI(base_url=url + "/v1", api_key=TOKEN, max_retries=0))


def _args_valid(call, schema: dict) -> dict:
    args = json.loads(call.function.arguments)
    assert set(schema["required"]) <= set(args) <= set(schema["properties"])
    return args


def test_required_tool_call_and_loop_to_an_answer(served):
    r = served.oa.chat.completions.create(model="smollm2", messages=ASK, tools=[WEATHER, ADD],
                                          tool_choice="required", max_tokens=60, temperature=0)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls" and c.message.content is None
    call = c.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    fn = {"get_weather": WEATHER, "add": ADD}[call.function.name]
    _args_valid(call, fn["function"]["parameters"])
    # the LangChain-style loop: the call and its result go back, the model answers in text
    messages = ASK + [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                      {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"}]
    r2 = served.oa.chat.completions.create(model="smollm2", messages=messages, tools=[WEATHER, ADD],
                                           tool_choice="none", max_tokens=30, temperature=0)
    c2 = r2.choices[0]
    assert c2.message.tool_calls is None and c2.finish_reason in ("stop", "length")
    assert isinstance(c2.message.content, str) and c2.message.content.strip()
    # auto: either a call or an answer, always in OpenAI's shape
    r3 = served.oa.chat.completions.create(model="smollm2", messages=messages, tools=[WEATHER, ADD],
                                           max_tokens=60, temperature=0)
    c3 = r3.choices[0]
    if c3.finish_reason == "tool_calls":
        assert c3.message.tool_calls and c3.message.content is None
    else:
        assert c3.message.tool_calls is None and isinstance(c3.message.content, str)


def test_named_tool_choice_and_streamed_deltas(served):
    r = served.oa.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "What is 2 plus 3?"}], tools=[WEATHER, ADD],
        tool_choice={"type": "function", "function": {"name": "add"}}, max_tokens=40, temperature=0)
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "add" and r.choices[0].finish_reason == "tool_calls"
    args = _args_valid(call, ADD["function"]["parameters"])
    assert all(isinstance(v, int) for v in args.values())
    stream = served.oa.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "What is 2 plus 3?"}], tools=[WEATHER, ADD],
        tool_choice={"type": "function", "function": {"name": "add"}}, max_tokens=40, temperature=0,
        stream=True)
    name, argtext, finish, ids = "", "", None, set()
    for ch in stream:
        d = ch.choices[0].delta
        for tc in d.tool_calls or []:
            ids.add(tc.id) if tc.id else None
            name += (tc.function.name or "") if tc.function else ""
            argtext += (tc.function.arguments or "") if tc.function else ""
        finish = ch.choices[0].finish_reason or finish
    assert finish == "tool_calls" and name == "add" and len(ids) == 1
    assert json.loads(argtext) == args          # greedy: the same call as unstreamed


def test_tool_choice_errors_are_400(served):
    with pytest.raises(openai.BadRequestError):
        served.oa.chat.completions.create(model="smollm2", messages=ASK, tools=[WEATHER],
                                          tool_choice={"type": "function", "function": {"name": "nope"}})
    with pytest.raises(openai.BadRequestError):
        served.oa.chat.completions.create(model="smollm2", messages=ASK, tool_choice="required")


def test_embeddings_wordllama_and_pooled_smollm2(served):
    from demoai.engines.embed import wordllama_embedder
    texts = ["the cat sat on the mat", "a kitten rests on a rug", "quarterly revenue grew"]
    r = served.oa.embeddings.create(model="wordllama", input=texts)
    got = np.array([d.embedding for d in r.data])
    want = np.asarray(wordllama_embedder()(texts), dtype=np.float64)
    assert got.shape == (3, 256) and np.allclose(got, want, atol=1e-6)
    r64 = served.oa.embeddings.create(model="wordllama", input=texts[0], encoding_format="base64")
    assert r64.data[0].embedding == pytest.approx(list(got[0]), abs=1e-6) or isinstance(r64.data[0].embedding, str)
    raw = httpx.post(served.url + "/v1/embeddings", headers={"Authorization": f"Bearer {TOKEN}"},
                     json={"model": "wordllama", "input": texts[0], "encoding_format": "base64"}).json()
    dec = struct.unpack("<256f", base64.b64decode(raw["data"][0]["embedding"]))
    assert np.allclose(dec, got[0], atol=1e-6)
    s = served.oa.embeddings.create(model="smollm2", input=texts)
    v = np.array([d.embedding for d in s.data])
    assert v.shape == (3, 576) and np.isfinite(v).all() and s.usage.prompt_tokens > 3
    again = served.oa.embeddings.create(model="smollm2", input=texts[:1])
    assert np.allclose(again.data[0].embedding, v[0], atol=1e-4)     # deterministic, per text
    assert not np.allclose(v[0], v[2], atol=1e-3)
    with pytest.raises(openai.NotFoundError):
        served.oa.embeddings.create(model="models/none.gguf", input="x")


def test_loading_wordllama_leaves_the_root_logger_alone() -> None:
    """wordllama configures the root logger at INFO when imported; loading it through the
    embedder must not, or every later httpx request would be printed."""
    import logging
    import subprocess
    import sys
    code = ("import logging; from demoai.engines.embed import wordllama_embedder; "
            "wordllama_embedder(); r = logging.getLogger(); print(r.level, len(r.handlers))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(logging.WARNING), "0"]
