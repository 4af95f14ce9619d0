"""Scoring through the model backends: loglikelihood of continuations, rolling loglikelihood,
raw completions and chat logprobs, and the llama-bench-like speed figures.

References: a direct torch computation on a tiny random Llama (built here from a config, no
downloads), lm-evaluation-harness's own ``HFLM`` on the same folder (its split, its BOS rule,
its rolling windows), a ``logits_all`` llama.cpp context for the embedded SmolLM2, and
transformers dequantizing the same SmolLM2 GGUF (slow: DEMOAI_SLOW=1).
"""
from __future__ import annotations

import math
import os
import shutil

import pytest

from demoai.engines.llm import bench_backend, encode_pair, open_backend, rolling_windows
from demoai.errors import BackendUnavailable, ModelError
from demoai.registry.defaults import default_gguf_path

for _mod in ("torch", "transformers", "peft", "llama_cpp"):
    pytest.importorskip(_mod)
import torch  # noqa: E402

CORPUS = ["Hello there, how are you today? Say hello in one short sentence.",
          "The cat sat on the mat and said hi.", "Paris is the capital of France."]
PAIRS = [("Hello there,", " how are you"), ("The cat sat ", "on the mat"),   # trailing space
         ("", "Paris is"), ("Paris is the", " capital of France."), ("Paris is the", " cat")]
TEXTS = [" ".join(CORPUS), "The cat said hello.", ""]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny Llama (no BOS: lm-eval's prefix is EOS), a copy whose tokenizer adds a BOS
    (prefix BOS), and a random LoRA."""
    from tests.helpers.tiny import tiny_llama_with_lora
    root = tmp_path_factory.mktemp("tiny")
    base, adapter = tiny_llama_with_lora(root / "m", root / "lora", CORPUS, vocab_size=300,
                                         lora_alpha=32)
    import transformers
    from tokenizers import processors
    bos = root / "bos"
    shutil.copytree(base, bos)
    tok = transformers.AutoTokenizer.from_pretrained(base)
    bos_id = tok.convert_tokens_to_ids("<|im_start|>")
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", pair="<|im_start|> $A $B", special_tokens=[("<|im_start|>", bos_id)])
    tok.bos_token = "<|im_start|>"
    tok.save_pretrained(bos)
    assert transformers.AutoTokenizer.from_pretrained(bos).encode("hi")[0] == bos_id
    return {"base": base, "bos": bos, "adapter": adapter}


def _direct(model, tok, pairs):
    """Continuation logprobs computed here with torch from the model's logits."""
    out = []
    for context, continuation in pairs:
        ctx, whole = tok.encode(context), tok.encode(context + continuation)
        with torch.no_grad():
            logits = model(torch.tensor([whole[:-1]])).logits[0]
        lp = torch.log_softmax(logits.float(), -1)
        cont = whole[len(ctx):]
        out.append(sum(float(lp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont)))
    return out


# --- transformers: exact against torch and against lm-eval ---------------------------------
def test_transformers_loglikelihood_matches_torch(tiny):
    import peft
    import transformers
    backend = open_backend({"backend": "transformers", "path": str(tiny["base"]), "n_ctx": 64})
    tok = transformers.AutoTokenizer.from_pretrained(tiny["base"])
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny["base"], dtype=torch.float32).eval()
    pairs = [p for p in PAIRS if p[0] and not p[0].endswith(" ")]
    got = backend.loglikelihood(pairs)
    for g, want in zip(got, _direct(model, tok, pairs)):
        assert g.logprob == pytest.approx(want, abs=1e-5)
        assert g.n_tokens == len(g.token_logprobs) and g.logprob < 0
    # the adapter changes the scores, and they still match a direct computation on the peft model
    tuned = open_backend({"backend": "transformers", "path": str(tiny["base"]), "n_ctx": 64,
                          "adapter_path": str(tiny["adapter"])})
    peft_model = peft.PeftModel.from_pretrained(model, str(tiny["adapter"])).eval()
    tuned_got = tuned.loglikelihood(pairs)
    for g, want in zip(tuned_got, _direct(peft_model, tok, pairs)):
        assert g.logprob == pytest.approx(want, abs=1e-5)
    assert abs(tuned_got[0].logprob - got[0].logprob) > 1e-3


@pytest.mark.parametrize("folder", ["base", "bos"])
def test_split_bos_and_scores_match_lm_eval_hflm(tiny, folder):
    """lm-eval's own HFLM on the same folder: same token split (trailing spaces moved, empty
    context -> prefix token), same BOS rule, same loglikelihoods and rolling windows."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    path = str(tiny[folder])
    lm = HFLM(pretrained=path, device="cpu", batch_size=1, max_length=16)
    backend = open_backend({"backend": "transformers", "path": path, "n_ctx": 16})
    assert backend._prefix_token() == lm.prefix_token_id
    for context, continuation in PAIRS:
        if context:
            assert backend.encode_pair(context, continuation) == lm._encode_pair(context, continuation)
    theirs = lm.loglikelihood([Instance("loglikelihood", {}, p, i) for i, p in enumerate(PAIRS)],
                              disable_tqdm=True)
    ours = backend.loglikelihood(PAIRS)
    for (lp, greedy), o in zip(theirs, ours):
        assert o.logprob == pytest.approx(lp, abs=1e-4) and o.is_greedy == greedy
    texts = TEXTS[:2]             # the first is 60+ tokens: several 16-token windows
    theirs = lm.loglikelihood_rolling(
        [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)], disable_tqdm=True)
    ours = backend.loglikelihood_rolling(texts)
    assert ours[0].n_windows > 2
    for lp, o in zip(theirs, ours):
        assert o.logprob == pytest.approx(lp, rel=1e-5)


def test_rolling_windows_are_lm_evals():
    pytest.importorskip("lm_eval")
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
    for n in (0, 1, 5, 16, 17, 40, 97):
        tokens = list(range(100, 100 + n))
        for L in (1, 4, 16):
            want = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, 7, L, 1)]
            assert rolling_windows(tokens, 7, L) == [tuple(w) for w in want]
    with pytest.raises(ModelError):
        rolling_windows([1, 2], 0, 0)


def test_encode_pair_rules():
    enc = lambda s: [ord(c) for c in s]  # noqa: E731  (a character tokenizer)
    assert encode_pair(enc, "ab ", "c", 0) == ([97, 98], [32, 99])
    assert encode_pair(enc, "", "xy", 0) == ([0], [120, 121])
    assert encode_pair(lambda s: [0] + enc(s), "", "xy", 0) == ([0], [120, 121])


# --- llama.cpp ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smol():
    backend = open_backend({"backend": "llamacpp", "path": str(default_gguf_path()), "threads": 1})
    yield backend
    backend.close()


def test_llamacpp_loglikelihood_matches_logits_all_context(smol):
    """Selected-position logits equal a ``logits_all`` context's, whatever the request order
    (the context's KV cache is reused between choices without changing a score)."""
    import llama_cpp
    import numpy as np
    pairs = [("The capital of France is", " Paris"), ("The capital of France is", " London"),
             ("Question: 2 + 2 =", " 4"), ("", "Hello world"), ("The capital of France is ", "Rome")]
    got = smol.loglikelihood(pairs)
    again = smol.loglikelihood(pairs[::-1])[::-1]
    assert [g.logprob for g in got] == [g.logprob for g in again]
    ref = llama_cpp.Llama(str(default_gguf_path()), n_ctx=256, n_threads=1, logits_all=True,
                          verbose=False)
    try:
        for (context, continuation), g in zip(pairs, got):
            ctx, cont = smol.encode_pair(context, continuation)
            whole = ctx + cont
            ref.reset()
            ref.eval(whole[:-1])
            want, greedy = 0.0, True
            for i in range(len(ctx) - 1, len(whole) - 1):
                row = ref.scores[i].astype(np.float64)
                want += row[whole[i + 1]] - (row.max() + math.log(np.exp(row - row.max()).sum()))
                greedy &= int(row.argmax()) == whole[i + 1]
            assert g.logprob == pytest.approx(want, abs=1e-4) and g.is_greedy == greedy
            assert g.n_tokens == len(cont) and g.context_tokens == len(ctx)
    finally:
        ref.close()
    assert got[0].is_greedy and got[0].logprob > got[1].logprob       # Paris over London
    assert smol.encode_pair(*pairs[4])[1][0] == smol._encode(" Rome")[0]  # the space moved over


def test_llamacpp_rolling_complete_and_chat_logprobs(smol):
    text = "The quick brown fox jumps over the lazy dog. " * 12
    whole = smol.loglikelihood_rolling([text])[0]
    n = len(smol._encode(text))
    assert whole.n_tokens == n and whole.n_windows == 1
    # the first window is the prefix token then the text: the same as an empty context
    first = smol.loglikelihood([("", text)])[0]
    assert first.logprob == pytest.approx(whole.logprob, abs=1e-3)
    windows = smol.loglikelihood_rolling([text], max_length=40)[0]
    assert windows.n_windows == math.ceil(n / 40) and windows.n_tokens == n
    # echoed prompt logprobs are the scores; a greedy answer's tokens are each the top one
    c = smol.complete("The capital of France is", params={"max_tokens": 3}, logprobs=2, echo=True)
    assert c.prompt[0].logprob is None and c.prompt_text == "The capital of France is"
    ll = smol.loglikelihood([("The capital of France", " is")])[0]
    assert c.prompt[-1].logprob == pytest.approx(ll.logprob, abs=1e-4)
    assert c.text.startswith(" Paris") and len(c.tokens) == c.completion_tokens == 3
    for t in c.tokens:
        assert t.top[0].id == t.id and t.top[0].logprob == t.logprob and len(t.top) == 2
        assert t.top[0].logprob >= t.top[1].logprob
    assert c.tokens[0].logprob == pytest.approx(smol.loglikelihood(
        [("The capital of France is", " Paris")])[0].logprob, abs=1e-4)
    only = smol.complete("Hello world", params={"max_tokens": 0}, logprobs=0, echo=True)
    assert only.text == "" and only.completion_tokens == 0 and len(only.prompt) == 2
    with pytest.raises(ModelError):
        smol.complete("Hello", params={"max_tokens": 0})          # 0 needs echo
    with pytest.raises(ModelError):
        smol.complete([10 ** 7], params={"max_tokens": 1})        # not a token id
    # chat: logprobs asked -> per-token, recorded; not asked -> the record is unchanged
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    plain = smol.chat(msgs, params={"max_tokens": 6})
    with_lp = smol.chat(msgs, params={"max_tokens": 6}, logprobs=3)
    assert plain.logprobs is None and "logprobs" not in plain.record
    assert with_lp.record["logprobs"] == 3 and with_lp.text == plain.text
    assert "".join(t.token for t in with_lp.logprobs) == with_lp.text
    assert all(t.top[0].id == t.id for t in with_lp.logprobs)   # greedy
    rendered = smol.render_chat(msgs)
    assert rendered.endswith("<|im_start|>assistant\n") and "capital of France" in rendered
    assert not smol.render_chat(msgs, add_generation_prompt=False).endswith("assistant\n")
    with pytest.raises(ModelError):
        smol.chat(msgs, params={"max_tokens": 2}, logprobs=99)


def test_bad_requests_and_unsupported(smol):
    with pytest.raises(ModelError):
        smol.loglikelihood([("context only",)])
    with pytest.raises(ModelError):
        smol.loglikelihood([("a", "")])
    with pytest.raises(ModelError):
        smol.loglikelihood_rolling("not a list")
    from demoai.engines.llm import ModelBackend

    class Bare(ModelBackend):
        name = "bare"

        def chat(self, messages, **kw):
            raise AssertionError

        def count_tokens(self, messages):
            return 0
    for call in (lambda b: b.loglikelihood([("a", "b")]), lambda b: b.loglikelihood_rolling(["a"]),
                 lambda b: b.complete("a"), lambda b: b.render_chat([]),
                 lambda b: b.decode_timings([1], 1)):
        with pytest.raises(BackendUnavailable) as e:
            call(Bare())
        assert e.value.fields["unsupported"] is True


def test_bench_backend_small(smol):
    out = bench_backend(smol, n_prompt=32, n_gen=8, repetitions=2)
    assert out["method"] == "decode" and out["repetitions"] == 2
    assert out["pp"]["n_tokens"] == 32 and out["tg"]["n_tokens"] == 8
    assert len(out["pp"]["seconds"]) == 2
    for k in ("pp", "tg"):
        tps = out[k]["tokens_per_s"]
        assert tps["mean"] > 0 and tps["std"] >= 0 and tps["min"] <= tps["mean"] <= tps["max"]
    assert 0 < out["ttft_s"]["mean"] < 60
    # processing a prompt in batches is faster per token than decoding one at a time
    assert out["pp"]["tokens_per_s"]["mean"] > out["tg"]["tokens_per_s"]["mean"]
    with pytest.raises(ModelError):
        bench_backend(smol, n_prompt=0)


# --- the same GGUF through llama.cpp and transformers --------------------------------------
PPL_TEXTS = [
    "The quick brown fox jumps over the lazy dog. It was a sunny day in the park, and the "
    "children were playing football near the old oak tree.",
    "Paris is the capital and most populous city of France. With an estimated population of "
    "2,102,650 residents in January 2023 in an area of more than 105 km2, Paris is the "
    "fourth-most populous city in the European Union.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n",
    "Water boils at 100 degrees Celsius at sea level. At higher altitudes the air pressure is "
    "lower, so water boils at a lower temperature, which is why cooking takes longer there.",
]
# Measured on SmolLM2-135M Q4_1 (153 tokens): the pooled mean NLL differs by 0.45% (llama.cpp
# quantizes activations to 8 bits for its Q4_1 matmuls; transformers runs the dequantized
# weights in float32), single texts by up to 2.2%, per-token NLLs correlate at 0.999.
# Scoring each token against its own position's logits (an off-by-one) is >20% away.
PPL_REL_TOL = 0.02


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DEMOAI_SLOW"), reason="set DEMOAI_SLOW=1 (~40 s)")
def test_perplexity_llamacpp_and_transformers_agree_on_the_same_gguf(smol):
    pytest.importorskip("gguf")
    hf = open_backend({"backend": "transformers", "path": str(default_gguf_path()), "threads": 1})
    for t in PPL_TEXTS:
        assert hf._encode(t) == smol._encode(t)          # the same tokens both sides
    a, b = smol.loglikelihood_rolling(PPL_TEXTS), hf.loglikelihood_rolling(PPL_TEXTS)
    n = sum(x.n_tokens for x in a)
    assert n == sum(x.n_tokens for x in b) > 150
    nll_a, nll_b = -sum(x.logprob for x in a) / n, -sum(x.logprob for x in b) / n
    assert abs(nll_a / nll_b - 1) < PPL_REL_TOL, (nll_a, nll_b)
    assert 1.0 < nll_b < 4.0                              # a sensible model, not noise
    # token by token too: the per-token NLLs of the two backends go together
    import numpy as np
    la = np.concatenate([smol.loglikelihood([("", t)])[0].token_logprobs for t in PPL_TEXTS])
    lb = np.concatenate([hf.loglikelihood([("", t)])[0].token_logprobs for t in PPL_TEXTS])
    assert np.corrcoef(la, lb)[0, 1] > 0.98
    # a scorer shifted by one token would be far outside the tolerance
    shifted = []
    for t in PPL_TEXTS:
        ids = [hf._prefix_token()] + hf._encode(t)
        with torch.no_grad():
            lp = torch.log_softmax(hf.model(torch.tensor([ids])).logits[0].float(), -1)
        shifted += [float(lp[i, ids[i]]) for i in range(1, len(ids))]   # wrong row
    assert abs(-np.mean(shifted) / nll_b - 1) > 10 * PPL_REL_TOL
