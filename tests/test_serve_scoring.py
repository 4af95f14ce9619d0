"""``demoai serve`` for scoring tools: ``/v1/completions`` with ``echo`` and ``logprobs``, chat
``logprobs``/``top_logprobs``, and Prometheus ``/metrics`` — through the real command (uvicorn
on 127.0.0.1, with a token), read by the official ``openai`` client, by DemoAI's own
``openai`` backend, and by lm-evaluation-harness's ``local-completions`` model; every number
is checked against the embedded SmolLM2 scored in-process.
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import httpx
import pytest

from demoai.engines.llm import open_backend
from demoai.http.serve import ServeClient
from demoai.porcelain import init
from demoai.registry.defaults import default_gguf_path
from tests.helpers.serve import serving

for _mod in ("fastapi", "uvicorn", "openai", "llama_cpp", "prometheus_client"):
    pytest.importorskip(_mod)
import openai  # noqa: E402

TOKEN = "scoring-test-token"
PAIRS = [("The capital of France is", " Paris"), ("The capital of France is", " London"),
         ("Question: What is 2 + 2?\nAnswer:", " 4"), ("Once upon a time ", "there was a cat")]
# Served and in-process scores run the same llama.cpp computation on the same tokens; only
# the batches differ (the server decodes the whole prompt with logits, the backend the
# context apart from the continuation).
TOL = 1e-4


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("served")
    home = tmp_path_factory.mktemp("home")
    init(root).close()
    with serving(root, home, TOKEN) as url:
        client = ServeClient(url, TOKEN)
        yield SimpleNamespace(url=url, client=client,
                              oa=openai.OpenAI(base_url=url + "/v1", api_key=TOKEN, max_retries=0))
        client.close()


@pytest.fixture(scope="module")
def smol():
    backend = open_backend({"backend": "llamacpp", "path": str(default_gguf_path()), "threads": 1})
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def direct(smol):
    return smol.loglikelihood(PAIRS)


def test_completions_echo_logprobs_with_openai_client(served, smol, direct):
    context, continuation = PAIRS[0]
    r = served.oa.completions.create(model="smollm2", prompt=context + continuation, max_tokens=0,
                                     echo=True, logprobs=2)
    c = r.choices[0]
    lp = c.logprobs
    assert c.text == context + continuation and r.object == "text_completion"
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert "".join(lp.tokens) == c.text and lp.text_offset[0] == 0
    assert all(lp.text_offset[i + 1] == lp.text_offset[i] + len(lp.tokens[i])
               for i in range(len(lp.tokens) - 1))
    n_ctx = len(smol.encode_pair(context, continuation)[0])
    assert sum(lp.token_logprobs[n_ctx:]) == pytest.approx(direct[0].logprob, abs=TOL)
    assert all(len(t) >= 2 for t in lp.top_logprobs[1:])      # 2 alternatives (and its own)
    assert r.usage.prompt_tokens == len(lp.tokens) and r.usage.completion_tokens == 0
    # a generated answer (greedy) with logprobs; a list of prompts gives one choice each
    r = served.oa.completions.create(model="smollm2", prompt=[context, "2 + 2 ="], max_tokens=2,
                                     logprobs=1, temperature=0)
    assert [c.index for c in r.choices] == [0, 1]
    first = r.choices[0]
    assert first.text.startswith(" Paris") and first.logprobs.tokens[0] == " Paris"
    assert first.logprobs.token_logprobs[0] == pytest.approx(direct[0].logprob, abs=TOL)
    assert first.logprobs.text_offset[0] == len(context)
    assert max(first.logprobs.top_logprobs[0].values()) == first.logprobs.token_logprobs[0]
    # token-id prompts are read as tokens
    ids = smol._encode(context)
    r = served.oa.completions.create(model="smollm2", prompt=ids, max_tokens=1, temperature=0)
    assert r.choices[0].text == " Paris" and r.usage.prompt_tokens == len(ids)
    # bad input: a 4xx with the typed error, never a 500
    for bad in ({"max_tokens": 0}, {"logprobs": 50}, {"prompt": []}, {"stream": True}):
        kw = {"model": "smollm2", "prompt": "hi", **bad}
        resp = httpx.post(served.url + "/v1/completions", json=kw,
                          headers={"Authorization": f"Bearer {TOKEN}"})
        assert 400 <= resp.status_code < 500, (bad, resp.text)


def test_chat_logprobs_with_openai_client(served, smol):
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    r = served.oa.chat.completions.create(model="smollm2", messages=msgs, max_tokens=8,
                                          logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert "".join(t.token for t in content) == r.choices[0].message.content
    assert len(content) == r.usage.completion_tokens
    for t in content:                                       # greedy: each is the top one
        assert len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token
        assert t.top_logprobs[0].logprob == t.logprob >= t.top_logprobs[1].logprob
        assert bytes(t.bytes).decode("utf-8", "replace") == t.token
    local = smol.chat(msgs, params={"max_tokens": 8}, logprobs=3)
    assert [t.logprob for t in local.logprobs] == pytest.approx([t.logprob for t in content], abs=TOL)
    plain = served.oa.chat.completions.create(model="smollm2", messages=msgs, max_tokens=8)
    assert plain.choices[0].logprobs is None
    # streamed: the last chunk carries the logprobs
    chunks = list(served.oa.chat.completions.create(model="smollm2", messages=msgs, max_tokens=8,
                                                    logprobs=True, top_logprobs=1, stream=True))
    last = [c for c in chunks if c.choices and c.choices[0].finish_reason][0]
    assert [t.token for t in last.choices[0].logprobs.content] == [t.token for t in content]
    with pytest.raises(openai.UnprocessableEntityError):
        served.oa.chat.completions.create(model="smollm2", messages=msgs, max_tokens=2,
                                          top_logprobs=30, logprobs=True)
    with pytest.raises(openai.BadRequestError):
        served.oa.chat.completions.create(model="smollm2", messages=msgs, max_tokens=2,
                                          top_logprobs=2)


def test_openai_backend_scores_a_served_model(served, direct):
    """DemoAI's ``openai`` backend against ``demoai serve``: the same numbers as in-process."""
    remote = open_backend({"backend": "openai", "base_url": served.url + "/v1", "model": "smollm2",
                           "api_key": TOKEN})
    try:
        got = remote.loglikelihood(PAIRS)
        for g, d in zip(got, direct):
            assert g.logprob == pytest.approx(d.logprob, abs=TOL)
            assert (g.is_greedy, g.n_tokens) == (d.is_greedy, d.n_tokens)
        c = remote.complete("The capital of France is", params={"max_tokens": 2}, logprobs=1)
        assert c.text.startswith(" Paris") and c.completion_tokens == 2
        assert c.tokens[0].logprob == pytest.approx(direct[0].logprob, abs=TOL)
        chat = remote.chat([{"role": "user", "content": "Hi"}], params={"max_tokens": 4}, logprobs=1)
        assert len(chat.logprobs) == chat.completion_tokens and chat.record["logprobs"] == 1
    finally:
        remote.close()


def test_lm_eval_local_completions_gets_the_backend_numbers(served, smol, direct, tmp_path, monkeypatch):
    """lm-evaluation-harness's ``local-completions`` (token-id requests, the SmolLM2 tokenizer
    converted from the GGUF into a local folder: no network) on the served model."""
    pytest.importorskip("lm_eval")
    import transformers
    from lm_eval.api.instance import Instance
    from lm_eval.models.openai_completions import LocalCompletionsAPI
    gguf = default_gguf_path()
    tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok.save_pretrained(tmp_path / "tok")
    monkeypatch.setenv("OPENAI_API_KEY", TOKEN)
    lm = LocalCompletionsAPI(base_url=served.url + "/v1/completions", model="smollm2",
                             tokenizer_backend="huggingface", tokenizer=str(tmp_path / "tok"),
                             max_length=2048, max_retries=1)
    for context, continuation in PAIRS:
        assert lm._encode_pair(context, continuation) == smol.encode_pair(context, continuation)
    got = lm.loglikelihood([Instance("loglikelihood", {}, p, i) for i, p in enumerate(PAIRS)],
                           disable_tqdm=True)
    for (lp, greedy), d in zip(got, direct):
        assert lp == pytest.approx(d.logprob, abs=TOL) and greedy == d.is_greedy


def test_metrics_move_and_parse(served):
    from prometheus_client.parser import text_string_to_metric_families

    def samples() -> dict:
        out = {}
        for fam in text_string_to_metric_families(served.client.metrics()):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def get(d, name, **labels):
        return d.get((name, tuple(sorted(labels.items()))), 0.0)

    before = samples()
    r = served.client.chat("smollm2", [{"role": "user", "content": "Say hi"}], max_tokens=5)
    after = samples()
    n = r["usage"]["completion_tokens"]
    route = "/v1/chat/completions"
    assert get(after, "demoai_model_requests_total", route=route, model="smollm2") == \
        get(before, "demoai_model_requests_total", route=route, model="smollm2") + 1
    assert get(after, "demoai_generation_tokens_total", model="smollm2") == \
        get(before, "demoai_generation_tokens_total", model="smollm2") + n
    assert get(after, "demoai_prompt_tokens_total", model="smollm2") == \
        get(before, "demoai_prompt_tokens_total", model="smollm2") + r["usage"]["prompt_tokens"]
    assert get(after, "demoai_time_to_first_token_seconds_count", model="smollm2") == \
        get(before, "demoai_time_to_first_token_seconds_count", model="smollm2") + 1
    assert get(after, "demoai_http_requests_total", method="POST", route=route, status="200") == \
        get(before, "demoai_http_requests_total", method="POST", route=route, status="200") + 1
    assert get(after, "demoai_requests_waiting") == 0 and get(after, "demoai_requests_running") == 0
    assert get(after, "process_cpu_seconds_total") > 0
    assert get(after, "process_resident_memory_bytes") > 50e6        # the model is loaded
    # an error is counted by its code
    with pytest.raises(Exception):
        served.client.chat("models/nope", [{"role": "user", "content": "x"}], max_tokens=2)
    errs = samples()
    assert get(errs, "demoai_model_errors_total", route=route, model="models/nope",
               code="path_not_found") == 1


MC_ROWS = [{"id": "m1", "question": "The sky on a clear day is", "choices": ["blue", "green", "salt"], "label": 0},
           {"id": "m2", "question": "Two plus two equals", "choices": ["five", "four", "ten"], "label": 1},
           {"id": "m3", "question": "Water freezes at zero degrees", "choices": ["Celsius", "meters", "volts"], "label": 0},
           {"id": "m4", "question": "The opposite of hot is", "choices": ["cold", "loud", "tall"], "label": 0},
           {"id": "m5", "question": "A week has seven", "choices": ["days", "apples", "rivers"], "label": 0},
           {"id": "m6", "question": "Paris is the capital of", "choices": ["Spain", "France", "Peru"], "label": 1}]


def test_lm_eval_scores_a_served_model_as_demoai_eval_does(served, tmp_path, monkeypatch):
    """lm-evaluation-harness's ``local-completions`` runs a multiple-choice task against
    ``demoai serve``; ``demoai eval run`` of the same items gets the same acc and acc_norm."""
    pytest.importorskip("lm_eval")
    import lm_eval
    import transformers
    from lm_eval.tasks import TaskManager
    from demoai.porcelain import add, commit
    from demoai.porcelain import evaluate as PE
    gguf = default_gguf_path()
    transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(
        tmp_path / "tok")
    root = tmp_path / "repo"
    repo = init(root)
    data = root / "mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in MC_ROWS))
    (root / "mc.suite.yaml").write_text("name: mc\ntask: multiple_choice\ndataset: mc.jsonl\nkey: id\n"
                                        "template: \"Question: {{question}}\\nAnswer:\"\n"
                                        "choices: choices\ntarget: label\n")
    add(repo, [data, root / "mc.suite.yaml"])
    commit(repo, "mc")
    monkeypatch.setenv("DEMOAI_LLM_THREADS", "1")
    ours = PE.run_eval(repo, str(root / "mc.suite.yaml")).outcome.result.scores
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "mc.yaml").write_text(
        f"task: demoai_served_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        "output_type: multiple_choice\ntest_split: test\n"
        "doc_to_text: \"Question: {{question}}\\nAnswer:\"\ndoc_to_choice: \"{{choices}}\"\n"
        "doc_to_target: label\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    monkeypatch.setenv("OPENAI_API_KEY", TOKEN)
    res = lm_eval.simple_evaluate(
        model="local-completions",
        model_args={"base_url": served.url + "/v1/completions", "model": "smollm2",
                    "tokenizer_backend": "huggingface", "tokenizer": str(tmp_path / "tok"),
                    "max_length": 2048, "max_retries": 1},
        tasks=["demoai_served_mc"], task_manager=TaskManager(include_path=str(tasks)),
        batch_size=1, log_samples=False)
    theirs = res["results"]["demoai_served_mc"]
    assert theirs["acc,none"] == pytest.approx(ours["acc"]["value"], abs=1e-12)
    assert theirs["acc_norm,none"] == pytest.approx(ours["acc_norm"]["value"], abs=1e-12)
