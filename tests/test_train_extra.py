"""Issue 14, the rest of models: LoRA -> GGUF LoRA export (checked against transformers +
peft through llama-cpp-python on SmolLM2), the scan during training (tables, warnings,
stops), and the comparison of two runs (``train compare``, ``demoai diff``). Tiny random
Llamas everywhere but the one llama.cpp test."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from demoai.errors import InvalidArtifact, TrainingDiverged  # noqa: E402
from demoai.porcelain.diff import diff as typed_diff  # noqa: E402
from demoai.porcelain import model as M  # noqa: E402
from demoai.porcelain import train as T  # noqa: E402
from demoai.porcelain.commit import commit  # noqa: E402
from demoai.store import Repository  # noqa: E402
from demoai.train.gguf_lora import base_facts, lora_to_gguf, permute_rows  # noqa: E402
from demoai.train.watch import TrainingWatch  # noqa: E402
from tests.helpers.tiny import tiny_llama_with_lora  # noqa: E402

PAIRS = [(a, b) for a in range(6) for b in range(6)]
CONFIG = """\
name: arith
base: models/tiny
dataset: data/arith.jsonl
format: template
template: "Question: what is {{a}} plus {{b}}?"
columns: {completion: answer}
lora: {r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, k_proj, v_proj]}
learning_rate: 0.02
schedule: cosine
warmup_steps: 1
max_steps: 6
batch_size: 4
max_length: 64
validation: {share: 0.2}
eval_every: 3
save_every: 2
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny")
    corpus = [f"Question: what is {a} plus {b}? {a + b}" for a, b in PAIRS]
    tiny_llama_with_lora(d / "base", d / "adapter", corpus, vocab_size=300, lora_alpha=8)
    return d


@pytest.fixture
def trepo(tmp_dir, tiny) -> Repository:
    """The tiny model and its random LoRA (naming models/tiny as its base), the rows and
    the config, committed."""
    repo = Repository.init(".")
    shutil.copytree(tiny / "base", "models/tiny")
    shutil.copytree(tiny / "adapter", "adapters/tiny")
    cfg = json.loads(Path("adapters/tiny/adapter_config.json").read_text())
    Path("adapters/tiny/adapter_config.json").write_text(
        json.dumps({**cfg, "base_model_name_or_path": "models/tiny"}))
    tmp_dir.gen({"data/arith.jsonl": [{"id": i, "a": a, "b": b, "answer": str(a + b)}
                                      for i, (a, b) in enumerate(PAIRS)],
                 "arith.train.yaml": CONFIG})
    commit(repo, "model, adapter, data, config",
           paths=["models/tiny", "adapters/tiny", "data/arith.jsonl", "arith.train.yaml"])
    return repo


def _config(tmp_dir, name: str, **lines: str) -> str:
    text = CONFIG
    for key, line in lines.items():
        if f"\n{key}:" in "\n" + text:
            text = "\n".join(line if x.startswith(f"{key}:") else x for x in text.splitlines()) + "\n"
        else:
            text += line + "\n"
    tmp_dir.gen({f"{name}.train.yaml": text})
    return f"{name}.train.yaml"


# ------------------------------------------------------------------ GGUF LoRA export

def test_export_gguf_lora_names_shapes_alpha_and_permutation(trepo, tmp_dir) -> None:
    import gguf
    from demoai.train.scan import tensor_loaders
    out = M.export_model(trepo, "adapters/tiny", tmp_dir / "tiny.lora.gguf", fmt="gguf")
    r = gguf.GGUFReader(str(out))
    meta = {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
    assert meta["general.type"] == "adapter" and meta["adapter.type"] == "lora"
    assert meta["general.architecture"] == "llama" and meta["adapter.lora.alpha"] == 8.0
    tensors = {t.name: np.asarray(t.data) for t in r.tensors}
    assert sorted(tensors) == sorted(f"blk.{i}.attn_{m}.weight.lora_{ab}" for i in range(2)
                                     for m in ("q", "v") for ab in "ab")
    src = {k: f() for k, f in tensor_loaders(tmp_dir / "adapters/tiny/adapter_model.safetensors").items()}
    peft_name = "base_model.model.model.layers.1.self_attn.{}_proj.lora_{}.weight"
    # numpy shapes are GGUF's dimensions reversed: A (r, in) -> ne [in, r] as llama.cpp wants
    assert {t.name: [int(x) for x in t.shape] for t in r.tensors}["blk.1.attn_q.weight.lora_a"] == [32, 4]
    assert np.array_equal(tensors["blk.1.attn_q.weight.lora_a"], src[peft_name.format("q", "A")])
    # the query's B rows are permuted as the llama converter permutes W (4 heads); v's are not
    q_b = src[peft_name.format("q", "B")]
    assert np.array_equal(tensors["blk.1.attn_q.weight.lora_b"], permute_rows(q_b, 4))
    assert not np.array_equal(tensors["blk.1.attn_q.weight.lora_b"], q_b)
    assert np.array_equal(tensors["blk.1.attn_v.weight.lora_b"], src[peft_name.format("v", "B")])
    with pytest.raises(InvalidArtifact, match="exists"):
        M.export_model(trepo, "adapters/tiny", out, fmt="gguf")
    assert M.export_model(trepo, "adapters/tiny", out, fmt="gguf", force=True) == out


def test_export_refuses_what_llama_cpp_cannot_apply(tiny, tmp_path) -> None:
    from demoai.registry.defaults import default_gguf_path
    facts = base_facts(tiny / "base")
    assert (facts.arch, facts.n_head, facts.n_head_kv, facts.n_blocks) == ("llama", 4, 2, 2)
    for change, text in (({"use_dora": True}, "DoRA"), ({"modules_to_save": ["lm_head"]}, "whole modules"),
                         ({"rank_pattern": {"q_proj": 2}}, "one alpha"), ({"peft_type": "IA3"}, "not LoRA")):
        ad = tmp_path / f"ad-{text.replace(' ', '')}"
        shutil.copytree(tiny / "adapter", ad)
        cfg = json.loads((ad / "adapter_config.json").read_text())
        (ad / "adapter_config.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(InvalidArtifact, match=text):
            lora_to_gguf(ad, facts, tmp_path / "x.gguf")
    # a GGUF base's tensor shapes are checked: the tiny adapter does not fit SmolLM2
    with pytest.raises(InvalidArtifact, match="does not fit"):
        lora_to_gguf(tiny / "adapter", base_facts(Path(default_gguf_path())), tmp_path / "x.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".tmp-*"))


def _f32_copy(src: Path, dst: Path) -> None:
    """The same model with every tensor dequantized to F32 (the weights transformers uses)."""
    import gguf
    from gguf.quants import dequantize
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), r.fields["general.architecture"].contents())
    for name, f in r.fields.items():
        if not name.startswith("GGUF.") and name not in ("general.architecture", "general.file_type"):
            w.add_key_value(name, f.contents(), f.types[0], f.types[1] if len(f.types) > 1 else None)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    for t in r.tensors:
        w.add_tensor(t.name, dequantize(t.data, t.tensor_type).reshape(
            [int(d) for d in reversed(t.shape)]).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.slow
def test_gguf_lora_on_smollm2_matches_transformers_and_peft(tmp_dir) -> None:
    """A random LoRA on every projection of SmolLM2, converted: llama.cpp base + LoRA gives
    transformers + peft's greedy tokens and logit changes."""
    llama_cpp = pytest.importorskip("llama_cpp")
    import peft
    import torch
    import transformers
    from demoai.registry.defaults import default_gguf_path
    torch.set_num_threads(1)
    q41 = Path(default_gguf_path())
    tok = transformers.AutoTokenizer.from_pretrained(str(q41.parent), gguf_file=q41.name)
    base = transformers.AutoModelForCausalLM.from_pretrained(str(q41.parent), gguf_file=q41.name,
                                                             dtype=torch.float32)
    torch.manual_seed(1)
    pm = peft.get_peft_model(base, peft.LoraConfig(
        r=8, lora_alpha=16, init_lora_weights=False,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.03)
    pm.save_pretrained("adapter")
    out = lora_to_gguf(Path("adapter"), base_facts(q41), Path("lora.gguf"))
    assert (out.pairs, out.rank, out.alpha) == (210, 8, 16.0)
    prompts = ["Name a fruit.", "What is 12 + 7?", "Say hello in Spanish.", "What color is the sky?"]
    ids = {q: tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                      return_dict=True)["input_ids"] for q in prompts}
    eos = tok.convert_tokens_to_ids("<|im_end|>")

    margins: dict[tuple[str, bool], list[float]] = {}

    def hf(q: str, lora: bool) -> list[int]:
        x = torch.tensor([ids[q]])
        kw = dict(max_new_tokens=10, do_sample=False, output_scores=True, return_dict_in_generate=True)
        with torch.no_grad():
            if lora:
                y = pm.generate(x, **kw)
            else:
                with pm.disable_adapter():
                    y = pm.generate(x, **kw)
        margins[q, lora] = [float(t[0] - t[1]) for s in y.scores for t in [s[0].topk(2).values]]
        return y.sequences[0, x.shape[1]:].tolist()

    def same(got: list[int], q: str, lora: bool, tie: float) -> bool:
        """Equal greedy tokens, or equal up to a step where transformers' top two logits
        lie within ``tie`` (a near tie that float rounding may flip)."""
        ref = want[q][lora]
        i = next((k for k, (a, b) in enumerate(zip(got, ref)) if a != b), None)
        return got == ref if i is None else margins[q, lora][i] < tie

    def cpp(llm, q: str) -> list[int]:
        got: list[int] = []
        for t in llm.generate(ids[q], temp=0.0, top_k=1, reset=True):
            got.append(t)
            if t == eos or len(got) == 10:
                return got
        return got

    want = {q: (hf(q, False), hf(q, True)) for q in prompts}
    assert sum(b != lo for b, lo in want.values()) >= 2           # the LoRA changes answers
    # 1. on an F32 copy of the base (the very weights transformers dequantized): equal
    _f32_copy(q41, Path("f32.gguf"))
    kw = dict(n_threads=1, n_ctx=256, verbose=False, logits_all=True)
    f_base = llama_cpp.Llama(model_path="f32.gguf", **kw)
    f_lora = llama_cpp.Llama(model_path="f32.gguf", lora_path="lora.gguf", **kw)
    exact = 0
    for q in prompts:
        got = cpp(f_base, q), cpp(f_lora, q)
        assert same(got[0], q, False, 0.05) and same(got[1], q, True, 0.05), (q, got, want[q])
        exact += got == want[q]
    assert exact >= len(prompts) - 1
    x = ids[prompts[1]]
    with torch.no_grad():
        with pm.disable_adapter():
            hf_base = pm(torch.tensor([x])).logits[0]
        d_hf = (pm(torch.tensor([x])).logits[0] - hf_base).numpy()
    scores = []
    for llm in (f_base, f_lora):
        llm.reset()
        llm.eval(x)
        scores.append(np.array(llm.scores[:len(x)]))
    d_cpp = scores[1] - scores[0]
    assert np.corrcoef(d_hf.ravel(), d_cpp.ravel())[0, 1] > 0.999
    assert abs(np.abs(d_cpp).mean() / np.abs(d_hf).mean() - 1) < 0.05   # alpha / r applied once
    f_base.close()
    f_lora.close()
    Path("f32.gguf").unlink()
    # 2. on the shipped Q4_1 base: where llama.cpp's base answers as transformers' does, the
    # LoRA's answers agree too (Q4_1 rounding can flip a near tie late in an answer)
    q_base = llama_cpp.Llama(model_path=str(q41), **kw)
    q_lora = llama_cpp.Llama(model_path=str(q41), lora_path="lora.gguf", **kw)
    agree = [q for q in prompts if cpp(q_base, q) == want[q][0]]
    assert len(agree) >= 2 and all(same(cpp(q_lora, q), q, True, 1.0) for q in agree)


# ------------------------------------------------------------------ scan during training

class _P:
    """A stand-in parameter: a tensor and its gradient."""

    def __init__(self, w: list[float], g: list[float]) -> None:
        import torch
        self.w, self.grad = torch.tensor(w), torch.tensor(g)

    def detach(self):  # noqa: ANN201 - behaves as the tensor
        return self.w


def _named(scale: float, grad: float = 0.1) -> list[tuple[str, _P]]:
    pre = "base_model.model.model.layers.0.self_attn.q_proj"
    return [(f"{pre}.lora_A.default.weight", _P([scale, -scale, 0.5 * scale], [grad] * 3)),
            (f"{pre}.lora_B.default.weight", _P([0.0, 0.01], [grad, grad]))]


def test_watch_warns_on_spikes_growth_and_nan_and_stops_when_asked() -> None:
    w = TrainingWatch(every=2, growth=2.0)
    assert [w.due(s) for s in (1, 2, 3, 4)] == [False, True, False, True]
    for step, g in enumerate((1.0, 1.2, 0.9, 1.1), start=1):
        assert w.after_step(step, g, None) == []
    spike = w.after_step(5, 50.0, None)
    assert [x.kind for x in spike] == ["spike"] and "47.6x the running median" in spike[0].message
    w.record_grads(_named(1.0))
    assert w.after_step(6, 1.0, _named(1.0)) == []               # first scan: nothing to compare
    rows = [r for r in w.rows if r["step"] == 6]
    assert {(r["module"], r["matrix"]) for r in rows} == {("layers.0.self_attn.q_proj", "A"),
                                                           ("layers.0.self_attn.q_proj", "B")}
    a = next(r for r in rows if r["matrix"] == "A")
    assert a["layer"] == 0 and abs(a["norm"] - 1.5) < 1e-6 and abs(a["grad_norm"] - 0.1 * 3 ** 0.5) < 1e-6
    grown = w.after_step(8, 1.0, _named(3.0))
    assert [x.kind for x in grown] == ["growth"] and "grew 3.0x" in grown[0].message
    nan = w.after_step(10, 1.0, _named(float("nan")))
    assert "nan" in [x.kind for x in nan]
    stopper = TrainingWatch.from_meta({"scan_every": 1, "scan_growth": 1.5, "stop_on_explosion": True},
                                      rows=w.rows[:2], grad_norms=[1.0, 1.0, 1.0])
    with pytest.raises(TrainingDiverged, match="grew") as e:
        stopper.after_step(7, 1.0, _named(2.0))                  # from the restored scan
    assert e.value.fields["reason"] == "explosion"


def test_scan_every_commits_a_table_and_changes_no_adapter_byte(trepo, tmp_dir) -> None:
    plain = T.train_lora(trepo, "arith.train.yaml", name="plain")
    steps: list[T.StepInfo] = []
    scanned = T.train_lora(trepo, _config(tmp_dir, "scan", scan_every="scan_every: 2"), name="scanned",
                           on_step=steps.append)
    assert scanned.adapter_digest == plain.adapter_digest and plain.scan_path is None
    assert scanned.scan_path == "runs/scanned/scan.jsonl" and scanned.warnings == []
    from demoai.store.kinds import load_table
    rows = load_table(trepo, trepo.artifact_at("train/scanned", scanned.scan_path)).to_pylist()
    assert sorted({r["step"] for r in rows}) == [0, 2, 4, 6]      # 0: the initial weights
    assert len(rows) == 4 * 2 * 3 * 2                            # scans x layers x modules x (A, B)
    assert all(r["grad_norm"] > 0 and r["nan"] == 0 for r in rows if r["step"])
    assert all(r["norm"] == 0 for r in rows if r["step"] == 0 and r["matrix"] == "B")
    # the checkpoint at step 2 already holds the first scans
    first = trepo.artifact_at("train/scanned~2", scanned.scan_path)
    assert sorted({r["step"] for r in load_table(trepo, first).to_pylist()}) == [0, 2]
    lin = trepo.lineage(trepo.resolve("train/scanned"))
    assert lin["parameters"]["scan_every"] == 2 and lin["parameters"]["warning_count"] == 0


def test_explosion_warns_or_stops_at_the_last_good_checkpoint(trepo, tmp_dir) -> None:
    hot = dict(learning_rate="learning_rate: 3.0", schedule="schedule: constant",
               warmup_steps="warmup_steps: 0", scan_every="scan_every: 2", save_every="save_every: 1",
               max_grad_norm="max_grad_norm: 0")
    steps: list[T.StepInfo] = []
    warned = T.train_lora(trepo, _config(tmp_dir, "hot", **hot), name="hot", on_step=steps.append)
    assert any("grew" in w for s in steps for w in s.warnings) and warned.warnings
    assert trepo.lineage(trepo.resolve("train/hot"))["parameters"]["warning_count"] == len(warned.warnings)
    head = trepo.head_commit()
    with pytest.raises(TrainingDiverged, match="explosion") as e:
        T.train_lora(trepo, _config(tmp_dir, "stop", stop_on_explosion="stop_on_explosion: true", **hot),
                     name="stop")
    step = e.value.fields["step"]
    info = T.show_run(trepo, "stop").info
    assert info.status == "checkpoint" and info.step == step - 1 and "train/stop" in e.value.message
    assert trepo.head_commit() == head
    with pytest.raises(InvalidArtifact, match="stop_on_explosion"):
        T.train_lora(trepo, _config(tmp_dir, "bad", stop_on_explosion="stop_on_explosion: 1"))


# ------------------------------------------------------------------ comparing runs

def test_compare_and_diff_two_runs(trepo, tmp_dir, cli) -> None:
    T.train_lora(trepo, "arith.train.yaml", name="a")
    T.train_lora(trepo, _config(tmp_dir, "b", learning_rate="learning_rate: 0.005",
                                lora="lora: {r: 2, alpha: 8, dropout: 0.0, target_modules: [q_proj, k_proj, v_proj]}"),
                 name="b")
    c = T.compare_runs(trepo, "a", "train/b")
    assert c.settings == {"learning_rate": [0.02, 0.005], "lora.r": [4, 2]}
    assert c.finals["loss"][0] != c.finals["loss"][1] and c.finals["steps"] == [6, 6]
    assert "-learning_rate: 0.02" in c.config_diff and "+learning_rate: 0.005" in c.config_diff
    for a, b in (("train/a", "train/b"), ("runs/a", "runs/b/adapter")):
        [entry] = typed_diff(trepo, a, b)
        assert entry["kind"] == "run" and entry["settings"]["learning_rate"] == [0.02, 0.005]
        assert entry["text"].startswith("final loss: ")
    assert typed_diff(trepo, "train/a", "train/a")[0]["settings"] == {}
    assert all(d["kind"] != "run" for d in typed_diff(trepo, "HEAD", "train/a"))
    shown = cli("diff", "train/a", "train/b").output
    assert "run train/a..train/b" in shown and "setting lora.r: 4 -> 2" in shown
    js = json.loads(cli("train", "compare", "a", "b", "--json").stdout)
    assert js["settings"]["lora.r"] == [4, 2] and js["finals"]["steps"] == [6, 6]
    table = cli("train", "compare", "runs/a", "b").output
    assert "final loss" in table and "lora.r" in table
    err = cli("train", "compare", "a", "nope", "--json", code=1)
    assert json.loads(err.stderr)["error"]["code"] == "ref_not_found"
