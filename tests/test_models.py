"""LLM backends: the embedded SmolLM2 GGUF on llama.cpp, a real llama.cpp OpenAI server,
a tiny random transformers model with a LoRA adapter, and vLLM's unavailable path."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from demoai.errors import BackendUnavailable, ContextOverflow, ModelError
from demoai.engines.llm import ChatResult, digest_path, digest_text, open_backend
from demoai.engines.llm.constrain import SchemaAutomaton, parse_and_validate
from tests.helpers.tiny import CHATML, tiny_llama_with_lora

REQUIRE_ALL = bool(os.environ.get("DEMOAI_REQUIRE_ALL"))

TOOL_SCHEMA = {
    "type": "object",
    "properties": {
        "tool": {"enum": ["shell", "python", "write_file", "finish"]},
        "args": {"type": "object",
                 "properties": {"cmd": {"type": "string"}, "timeout": {"type": "integer"}},
                 "required": ["cmd"]},
    },
    "required": ["tool", "args"],
}
HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]
ASK_TOOL = [
    {"role": "system", "content": "You call tools. Answer with JSON: {\"tool\": ..., \"args\": ...}"},
    {"role": "user", "content": "List the files in the current folder."},
]


def _need(module: str):
    """Import a module, or skip unless DEMOAI_REQUIRE_ALL says everything must run."""
    if REQUIRE_ALL:
        return __import__(module)
    return pytest.importorskip(module)


@pytest.fixture(scope="module")
def gguf():
    _need("llama_cpp")
    from demoai.registry.defaults import default_gguf_path
    return default_gguf_path()


@pytest.fixture(scope="module")
def llm(gguf):
    backend = open_backend({"backend": "llamacpp", "path": str(gguf), "threads": 1})
    yield backend
    backend.close()


# --- llama.cpp --------------------------------------------------------------------------
def test_llamacpp_chat_usage_and_record(llm, gguf):
    r = llm.chat(HELLO, params={"max_tokens": 24})
    assert isinstance(r, ChatResult) and r.text.strip()
    assert r.finish_reason in ("stop", "length")
    assert r.prompt_tokens == llm.count_tokens(HELLO) > 5
    assert 0 < r.completion_tokens <= 24
    assert set(r.timings) == {"ttft_s", "total_s", "tokens_per_s"}
    assert 0 < r.timings["ttft_s"] <= r.timings["total_s"]
    rec = r.record
    assert rec["backend"] == "llamacpp"
    assert rec["model_digest"] == digest_path(gguf) == llm.model_digest
    assert rec["model_digest"].startswith("blake3:") and len(rec["model_digest"]) == 71
    assert rec["chat_template_digest"] == digest_text(llm.llm.metadata["tokenizer.chat_template"])
    assert rec["params"]["max_tokens"] == 24 and rec["params"]["seed"] == 0
    assert {"temperature", "top_p", "top_k", "min_p", "repeat_penalty", "stop"} <= set(rec["params"])
    assert rec["json_schema"] is None
    assert rec["settings"] == {"threads": 1, "n_ctx": 2048, "reuse_prefix": False}
    assert json.loads(json.dumps(r.to_dict()))["text"] == r.text
    assert llm.describe()["model_digest"] == llm.model_digest


def test_llamacpp_max_tokens_gives_length(llm):
    r = llm.chat([{"role": "user", "content": "Count from 1 to 100."}], params={"max_tokens": 5})
    assert r.finish_reason == "length" and r.completion_tokens == 5


def test_llamacpp_deterministic_with_seed(llm, gguf):
    sampled = {"temperature": 0.9, "seed": 7, "max_tokens": 24}
    greedy = llm.chat(HELLO, params={"max_tokens": 24}).text
    first = llm.chat(HELLO, params=sampled).text
    llm.chat(ASK_TOOL, params={"max_tokens": 8})  # leaves other tokens in the KV cache
    assert llm.chat(HELLO, params=sampled).text == first
    assert llm.chat(HELLO, params={"max_tokens": 24}).text == greedy
    others = {llm.chat(HELLO, params={**sampled, "seed": s}).text for s in range(4)}
    assert len(others) > 1  # the seed matters at temperature > 0
    fresh = open_backend({"backend": "llamacpp", "path": str(gguf), "digest": llm.model_digest})
    try:  # a fresh process state (empty cache) replays the same text
        assert fresh.chat(HELLO, params=sampled).text == first
    finally:
        fresh.close()


def test_llamacpp_schema_output_always_valid(llm):
    seen = set()
    for seed in range(6):
        r = llm.chat(ASK_TOOL, params={"temperature": 1.0, "seed": seed, "max_tokens": 96},
                     json_schema=TOOL_SCHEMA)
        obj = json.loads(r.text)
        assert obj == r.json and parse_and_validate(r.text, TOOL_SCHEMA) == obj
        assert obj["tool"] in TOOL_SCHEMA["properties"]["tool"]["enum"]
        assert r.record["json_schema"].startswith("blake3:")
        seen.add(r.text)
    assert len(seen) > 1


def test_llamacpp_context_overflow(llm):
    long = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(ContextOverflow) as e:
        llm.chat(long)
    assert e.value.prompt_tokens > 2048 and e.value.n_ctx == 2048
    assert isinstance(e.value, ValueError)


def test_llamacpp_streaming(llm):
    pieces: list[str] = []
    r = llm.chat(HELLO, params={"max_tokens": 24}, on_token=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == r.text
    assert r.text == llm.chat(HELLO, params={"max_tokens": 24}).text
    stopped: list[str] = []
    r2 = llm.chat(HELLO, params={"max_tokens": 24, "stop": [r.text[3:6]]}, on_token=stopped.append)
    assert r2.finish_reason == "stop" and r2.text == r.text[:3] == "".join(stopped)


def test_open_backend_errors(tmp_path):
    with pytest.raises(ModelError):
        open_backend({"backend": "nope"})
    with pytest.raises(ModelError):
        open_backend({"backend": "llamacpp", "path": str(tmp_path / "missing.gguf")})
    with pytest.raises(ModelError):
        open_backend({"backend": "llamacpp", "path": "x.gguf", "bogus": 1})


def test_settings_and_params(monkeypatch):
    from demoai.engines.llm import default_threads, resolve_params
    assert default_threads() == 1
    monkeypatch.setenv("DEMOAI_LLM_THREADS", "3")
    assert default_threads() == 3
    p = resolve_params({"temperature": 0.5, "stop": "###"})
    assert p["stop"] == ["###"] and p["seed"] == 0 and p["temperature"] == 0.5
    with pytest.raises(ModelError):
        resolve_params({"temprature": 1})
    with pytest.raises(ModelError):
        resolve_params({"max_tokens": 0})


def test_vllm_unavailable():
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed")
    except ImportError:
        pass
    with pytest.raises(BackendUnavailable) as e:
        open_backend({"backend": "vllm", "path": "/models/x"})
    assert "pip install" in str(e.value)


def test_automaton_shapes():
    a = SchemaAutomaton(TOOL_SCHEMA)
    ok = ['{"tool":"shell","args":{"cmd":"ls \\"x\\""}}',
          '{"tool": "finish", "args": {"cmd": "", "timeout": -12}}']
    bad = ['{"tool":"bash","args":{"cmd":"ls"}}', '{"args":{"cmd":"ls"}}',
           '{"tool":"shell","args":{"timeout":1}}', '{"tool":"shell","args":{"cmd":"a","timeout":01}}']
    for s in ok:
        assert a.accepts(a.walk(a.start, s)), s
    for s in bad:
        st = a.walk(a.start, s)
        assert st is None or not a.accepts(st), s


# --- OpenAI-compatible server (llama.cpp's) ---------------------------------------------
@pytest.fixture(scope="module")
def server(gguf):
    for mod in ("openai", "fastapi", "uvicorn", "sse_starlette", "starlette_context",
                "pydantic_settings"):
        _need(mod)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias",
         "smollm2", "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1",
         "--n_threads_batch", "1", "--n_ctx", "2048", "--verbose", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/models", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"llama_cpp.server did not start: {proc.stderr.read()[-2000:]!r}")
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def remote(server, llm):
    backend = open_backend({"backend": "openai", "base_url": server, "model": "smollm2",
                            "digest": llm.model_digest})
    yield backend
    backend.close()


def test_openai_chat_and_stream(remote, llm):
    r = remote.chat(HELLO, params={"max_tokens": 24})
    assert r.text.strip() and r.prompt_tokens == llm.count_tokens(HELLO)
    assert r.completion_tokens > 0 and r.record["model_digest"] == llm.model_digest
    assert r.record["backend"] == "openai" and r.record["params"]["max_tokens"] == 24
    # same engine, same template, greedy: the server answers what the embedded backend does
    assert r.text == llm.chat(HELLO, params={"max_tokens": 24}).text
    pieces: list[str] = []
    s = remote.chat(HELLO, params={"max_tokens": 24}, on_token=pieces.append)
    # not == r.text: the server reuses its KV cache across requests, which shifts logits
    assert len(pieces) > 1 and "".join(pieces) == s.text and s.completion_tokens > 0
    assert s.timings["ttft_s"] <= s.timings["total_s"]
    assert remote.count_tokens(HELLO) == r.prompt_tokens


def test_openai_schema(remote):
    for seed in range(2):
        r = remote.chat(ASK_TOOL, params={"temperature": 1.0, "seed": seed, "max_tokens": 96},
                        json_schema=TOOL_SCHEMA)
        assert parse_and_validate(r.text, TOOL_SCHEMA) == r.json
    assert r.record["server"]["schema_mode"] == "json_object"  # llama.cpp's server dialect


def test_openai_context_overflow_and_unreachable(remote):
    with pytest.raises(ContextOverflow) as e:
        remote.chat([{"role": "user", "content": "word " * 3000}], params={"max_tokens": 8})
    assert e.value.n_ctx == 2048 and e.value.prompt_tokens > 2048
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = open_backend({"backend": "openai", "base_url": f"http://127.0.0.1:{port}/v1",
                         "model": "x"})
    with pytest.raises(BackendUnavailable):
        dead.chat(HELLO)


# --- transformers + peft ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random 2-layer Llama with a byte-level BPE trained here, and a random LoRA."""
    for mod in ("torch", "transformers", "peft"):
        _need(mod)
    root = tmp_path_factory.mktemp("tiny")
    corpus = [json.dumps({"tool": t, "args": {"cmd": c, "path": "a.txt", "ok": True}})
              for t in ("shell", "python", "finish") for c in ("ls -la", "cat a.txt", "echo hi")]
    corpus += ["Hello there, how are you today? List the files.", "user assistant system"]
    return tiny_llama_with_lora(root / "base", root / "adapter", corpus, vocab_size=400, lora_alpha=16)


def test_transformers_chat_adapter_and_record(tiny_model):
    base, adapter = tiny_model
    plain = open_backend({"backend": "transformers", "path": str(base), "n_ctx": 256})
    tuned = open_backend({"backend": "transformers", "path": str(base), "n_ctx": 256,
                          "adapter_path": str(adapter)})
    assert plain.chat_template_digest == digest_text(CHATML) == tuned.chat_template_digest
    assert tuned.settings()["adapter"] == digest_path(adapter) and plain.settings()["adapter"] is None
    assert plain.settings()["threads"] == 1
    # the adapter really changes the logits
    assert not plain.next_token_logits(HELLO).allclose(tuned.next_token_logits(HELLO))
    pieces: list[str] = []
    r = plain.chat(HELLO, params={"max_tokens": 12, "temperature": 0.8, "seed": 3},
                   on_token=pieces.append)
    assert r.completion_tokens == 12 or r.finish_reason == "stop"
    assert "".join(pieces) == r.text
    assert r.prompt_tokens == plain.count_tokens(HELLO)
    again = plain.chat(HELLO, params={"max_tokens": 12, "temperature": 0.8, "seed": 3})
    assert again.text == r.text
    rec = r.record
    assert rec["backend"] == "transformers" and rec["model_digest"] == digest_path(base)
    assert rec["settings"]["n_ctx"] == 256 and rec["params"]["seed"] == 3
    with pytest.raises(ContextOverflow):
        plain.chat([{"role": "user", "content": "hello " * 400}])


def test_transformers_constrained_decoding(tiny_model):
    base, adapter = tiny_model
    backend = open_backend({"backend": "transformers", "path": str(base),
                            "adapter_path": str(adapter), "n_ctx": 256})
    schema = {"type": "object", "properties": {
        "tool": {"enum": ["shell", "python", "write_file", "finish"]},
        "args": {"type": "object", "properties": {
            "path": {"enum": ["a.txt", "b.txt"]}, "ok": {"type": "boolean"}},
            "required": ["path"]}}, "required": ["tool", "args"]}
    outs = set()
    for seed in range(5):
        r = backend.chat(ASK_TOOL, params={"temperature": 1.0, "seed": seed, "max_tokens": 60},
                         json_schema=schema)
        assert r.record["constrained"] is True and r.finish_reason == "stop"
        assert parse_and_validate(r.text, schema) == r.json
        outs.add(r.text)
    assert len(outs) > 1  # a random model, constrained: valid yet varied


def test_transformers_missing_backend(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(BackendUnavailable) as e:
        open_backend({"backend": "transformers", "path": "/x"})
    assert "pip install" in e.value.message


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DEMOAI_SLOW"), reason="set DEMOAI_SLOW=1 (~40 s)")
def test_transformers_gguf_smollm2_constrained(gguf, llm):
    """The real SmolLM2 GGUF dequantized by transformers: same template, valid tool calls."""
    _need("torch"), _need("transformers"), _need("gguf")
    backend = open_backend({"backend": "transformers", "path": str(gguf),
                            "digest": llm.model_digest})
    assert backend.chat_template_digest == llm.chat_template_digest
    for seed in range(3):
        r = backend.chat(ASK_TOOL, params={"temperature": 1.0, "seed": seed, "max_tokens": 96},
                         json_schema=TOOL_SCHEMA)
        assert r.record["constrained"] and parse_and_validate(r.text, TOOL_SCHEMA) == r.json
