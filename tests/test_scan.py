"""``demoai scan``: weight statistics against numpy on a tiny random model, the adapter's
B·A update against peft's own delta, diffs, activations through hooks, the committed table
and the heatmap PNG."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from demoai.porcelain import init
from demoai.porcelain import model as M
from demoai.porcelain import scan as SC

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.helpers.tiny import tiny_llama_with_lora
    d = tmp_path_factory.mktemp("tiny")
    base, ad = tiny_llama_with_lora(d / "base", d / "ad", ["hello world, the cat"] * 8,
                                    vocab_size=300, lora_alpha=8)
    root = d / "repo"
    repo = init(root)
    M.import_model(repo, base, dest="models/tiny")
    M.import_model(repo, ad, dest="adapters/lora")
    yield repo, base, ad
    repo.close()


def test_weight_stats_match_numpy(tiny, tmp_path):
    from safetensors.numpy import load_file
    repo, base, _ = tiny
    run = SC.scan_weights(repo, "models/tiny", plot_dir=str(tmp_path))
    ref = load_file(str(base / "model.safetensors"))
    rows = {r["name"]: r for r in run.rows}
    assert set(rows) == set(ref)
    for name, w in ref.items():
        w = w.astype(np.float64).ravel()
        r = rows[name]
        assert r["norm"] == pytest.approx(np.linalg.norm(w), rel=1e-5)
        assert r["max_abs"] == pytest.approx(np.abs(w).max(), rel=1e-6)
        assert r["mean"] == pytest.approx(w.mean(), abs=1e-6)
        assert r["std"] == pytest.approx(w.std(), rel=1e-4, abs=1e-7)
        assert r["near_zero"] == pytest.approx(np.mean(np.abs(w) < 1e-6))
        assert r["nan"] == 0 and r["inf"] == 0
    q = rows["model.layers.1.self_attn.q_proj.weight"]
    assert (q["layer"], q["module"]) == (1, "self_attn.q_proj.weight")
    assert run.commit and run.path == "scans/tiny.weights.parquet"
    assert repo.artifact_at("HEAD", run.path).kind == "dataset"
    assert repo.lineage(run.commit)["inputs"]["model"] == repo.artifact_at("HEAD", "models/tiny").digest
    assert (tmp_path / "tiny.norm.png").read_bytes()[:4] == b"\x89PNG"
    assert SC.scan_weights(repo, "models/tiny").commit is None       # same table: nothing new


def test_nan_and_inf_are_counted():
    from demoai.train.scan import tensor_stats
    w = np.array([1.0, np.nan, np.inf, -np.inf, 0.0, 3.0], dtype=np.float32)
    s = tensor_stats("blk.2.ffn_up.weight", w)
    assert (s.nan, s.inf, s.layer, s.module) == (1, 2, 2, "ffn_up.weight")
    assert s.max_abs == 3.0 and s.mean == pytest.approx(4 / 3) and s.near_zero == pytest.approx(1 / 6)


def test_adapter_delta_matches_peft(tiny):
    import peft
    import torch
    import transformers
    repo, base, ad = tiny
    run = SC.scan_weights(repo, "models/tiny+adapters/lora", save=False)
    model = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(str(base)), str(ad))
    rows = {r["name"]: r for r in run.rows}
    assert len(rows) == 4                       # q_proj and v_proj in 2 layers
    for name, mod in model.named_modules():
        if isinstance(mod, peft.tuners.lora.Linear):
            delta = mod.get_delta_weight("default").detach().double()
            key = name.removeprefix("base_model.model.") + ".weight"
            r = rows[key]
            assert r["norm"] == pytest.approx(float(delta.norm()), rel=1e-4)
            bn = float(mod.base_layer.weight.detach().double().norm())
            assert r["ratio"] == pytest.approx(float(delta.norm()) / bn, rel=1e-4)


def test_diff_against_merged_equals_adapter_delta(tiny):
    repo, _, _ = tiny
    M.merge_model(repo, "models/tiny+adapters/lora", "models/merged")
    diff = {r["name"]: r for r in SC.scan_diff(repo, "models/tiny", "models/merged").rows}
    ad = {r["name"]: r for r in SC.scan_weights(repo, "models/tiny+adapters/lora", save=False).rows}
    for name, r in ad.items():
        assert diff[name]["norm"] == pytest.approx(r["norm"], rel=1e-3)
    untouched = diff["model.layers.0.mlp.up_proj.weight"]
    assert untouched["norm"] == 0 and untouched["ratio"] == 0


def test_activations_hooks(tiny, tmp_path):
    import torch
    import transformers
    repo, base, _ = tiny
    prompts = ["hello world", "the cat"]
    run = SC.scan_activations(repo, "models/tiny", prompts, top_k=3)
    assert [r["layer"] for r in run.rows] == [0, 1] and run.commit
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base))
    tok = transformers.AutoTokenizer.from_pretrained(str(base))
    acts = []
    for p in prompts:
        mlp = model.model.layers[0].mlp
        with torch.no_grad():
            h = model.model.embed_tokens(tok(p, return_tensors="pt")["input_ids"])
            got = {}
            hook = mlp.down_proj.register_forward_pre_hook(lambda m, a: got.setdefault("a", a[0]))
            model(**tok(p, return_tensors="pt"))
            hook.remove()
        acts.append(got["a"].reshape(-1, got["a"].shape[-1]).double())
    a = torch.cat(acts)
    r0 = run.rows[0]
    assert r0["mean"] == pytest.approx(float(a.mean()), rel=1e-6)
    assert r0["max_abs"] == pytest.approx(float(a.abs().max()), rel=1e-6)
    assert r0["dead_share"] == pytest.approx(1 - float((a > 0).any(0).double().mean()))
    top = torch.topk(acts[0].mean(0), 3)
    assert [u for u, _ in r0["top_units"]] == [int(i) for i in top.indices]
