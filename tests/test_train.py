"""LoRA fine-tuning as commits (issue 14): configs checked before anything runs, runs as
commit chains on train/RUN, determinism, resume after a kill, NaN stops, serving the
adapter, the doctor, the plot and the CLI; on a tiny random Llama (a few seconds each)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from demoai.errors import InvalidArtifact, PathNotFound, RefConflict, TrainingDiverged  # noqa: E402
from demoai.objects import TrainConfig, detect_kind  # noqa: E402
from demoai.porcelain import train as T  # noqa: E402
from demoai.porcelain.commit import commit  # noqa: E402
from demoai.store import Repository  # noqa: E402
from tests.helpers.tiny import tiny_llama_with_lora  # noqa: E402

PAIRS = [(a, b) for a in range(6) for b in range(6)]
CONFIG = """\
name: arith
base: models/tiny
dataset: data/arith.jsonl
format: template
template: "Question: what is {{a}} plus {{b}}?"
columns: {completion: answer}
lora: {r: 4, alpha: 8, dropout: 0.1}
learning_rate: 0.02
schedule: cosine
warmup_steps: 1
max_steps: 6
batch_size: 4
max_length: 64
validation: {share: 0.2}
eval_every: 2
save_every: 2
"""


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny")
    corpus = [f"Question: what is {a} plus {b}? {a + b}" for a, b in PAIRS]
    tiny_llama_with_lora(d / "base", d / "adapter", corpus, vocab_size=300, lora_alpha=8)
    return d / "base"


@pytest.fixture
def trepo(tmp_dir, tiny_base) -> Repository:
    """A repository with the tiny model, the arithmetic rows and the config committed."""
    repo = Repository.init(".")
    shutil.copytree(tiny_base, "models/tiny")
    tmp_dir.gen({"data/arith.jsonl": [{"id": i, "a": a, "b": b, "answer": str(a + b)}
                                      for i, (a, b) in enumerate(PAIRS)],
                 "arith.train.yaml": CONFIG})
    commit(repo, "model, data, config", paths=["models/tiny", "data/arith.jsonl", "arith.train.yaml"])
    return repo


def _config(tmp_dir, **changes: str) -> str:
    text = CONFIG
    for key, line in changes.items():
        text = "\n".join(line if x.startswith(f"{key}:") else x for x in text.splitlines()) + "\n"
        if f"{key}:" not in CONFIG:
            text += line + "\n"
    name = f"alt{len(list(Path(tmp_dir).glob('alt*.train.yaml')))}.train.yaml"
    tmp_dir.gen({name: text})
    return name


def _train_refs(repo: Repository) -> list[str]:
    return [r for r in repo.refs() if r.startswith("refs/heads/train/")]


# ------------------------------------------------------------------ the config kind

def test_config_is_a_kind_with_every_key_checked(tmp_dir) -> None:
    tmp_dir.gen({"x.train.yaml": CONFIG})
    assert detect_kind("x.train.yaml") == "train"
    cfg = TrainConfig.from_text(CONFIG)
    assert cfg.meta["lora"] == {"r": 4, "alpha": 8.0, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
    assert cfg.meta["variables"] == ["a", "b"] and cfg.meta["gradient_accumulation"] == 1
    with pytest.raises(InvalidArtifact, match="did you mean 'learning_rate'"):
        TrainConfig.from_text(CONFIG + "learning_rat: 0.1\n")
    with pytest.raises(InvalidArtifact, match="did you mean 'lora.r'"):
        TrainConfig.from_text(CONFIG + "r: 8\n")
    with pytest.raises(InvalidArtifact, match="lora.r' must be a positive integer"):
        TrainConfig.from_text(CONFIG.replace("r: 4", "r: 0"))
    with pytest.raises(InvalidArtifact, match="schedule"):
        TrainConfig.from_text(CONFIG.replace("cosine", "cosin"))
    with pytest.raises(InvalidArtifact, match="needs 'template'"):
        TrainConfig.from_text(CONFIG.replace('template: "Question: what is {{a}} plus {{b}}?"\n', ""))


def test_bad_input_is_a_typed_error_and_commits_nothing(trepo, tmp_dir) -> None:
    head = trepo.head_commit()
    cases = [
        (_config(tmp_dir, columns="columns: {completion: result}"), InvalidArtifact, "'result' is not in"),
        (_config(tmp_dir, base="base: data/arith.jsonl"), InvalidArtifact, "not a model"),
        (_config(tmp_dir, base="base: models/none"), PathNotFound, "not committed"),
        (_config(tmp_dir, validation="validation: {share: 0.001}"), InvalidArtifact, "too small"),
        (_config(tmp_dir, dataset="dataset: data/missing.jsonl"), PathNotFound, "not committed"),
    ]
    for path, err, text in cases:
        with pytest.raises(err, match=text):
            T.train_lora(trepo, path)
    assert _train_refs(trepo) == [] and trepo.head_commit() == head


# ------------------------------------------------------------------ runs as commits

def test_run_is_a_commit_chain_with_lineage_and_curve(trepo) -> None:
    head = trepo.head_commit()
    steps = []
    res = T.train_lora(trepo, "arith.train.yaml", name="first", on_step=steps.append)
    assert [s.step for s in steps] == [1, 2, 3, 4, 5, 6] and all(s.tokens_per_s > 0 for s in steps)
    assert steps[-1].eta_s == 0 and steps[1].val_loss is not None and steps[0].val_loss is None
    assert trepo.head_commit() == head                        # HEAD and the working tree untouched
    view = T.show_run(trepo, "first")
    msgs = [c["message"] for c in view.commits]
    assert len(msgs) == 4 and "start" in msgs[-1] and "checkpoint at step 2" in msgs[-2] \
        and "adapter after 6 steps" in msgs[0]
    assert trepo.commit_info(view.commits[-1]["commit"]).parents == (head,)
    arts = trepo.artifacts(res.commit)
    assert arts["runs/first/adapter"].kind == "adapter" and "runs/first/checkpoint" not in arts
    assert set(arts["runs/first/adapter"].files) == {"adapter_config.json", "adapter_model.safetensors"}
    ck = trepo.artifacts(view.commits[1]["commit"])["runs/first/checkpoint"]
    assert "trainer_state.pt" in ck.files                     # optimizer state rides in checkpoints
    assert [r["step"] for r in view.curve] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "lr", "grad_norm", "val_loss", "tokens"} <= set(view.curve[0])
    lin = trepo.lineage(res.commit)
    cfg = trepo.artifact_at(res.commit, "arith.train.yaml")
    assert lin["inputs"]["config"] == cfg.digest
    assert lin["inputs"]["base_model"] == trepo.artifact_at(head, "models/tiny").digest
    assert lin["inputs"]["dataset"] == trepo.artifact_at(head, "data/arith.jsonl").digest
    assert {"code", "chat_template"} <= set(lin["inputs"]) and lin["outputs"]["adapter"] == res.adapter_digest
    p = lin["parameters"]
    assert p["seed"] == 0 and p["status"] == "finished" and p["tokens_per_s"] > 0 and p["wall_s"] > 0
    assert "torch" in lin["environment"]["packages"] and lin["environment"]["host"]["cpus"]
    [info] = T.runs(trepo)
    assert (info.name, info.status, info.step, info.total) == ("first", "finished", 6, 6)
    with pytest.raises(RefConflict, match="already exists"):
        T.train_lora(trepo, "arith.train.yaml", name="first")


def test_same_config_data_and_seed_give_the_same_adapter(trepo, tmp_dir) -> None:
    a = T.train_lora(trepo, "arith.train.yaml", name="a")
    b = T.train_lora(trepo, "arith.train.yaml", name="b")
    c = T.train_lora(trepo, _config(tmp_dir, seed="seed: 1"), name="c")
    assert a.adapter_digest == b.adapter_digest != c.adapter_digest
    assert a.final_loss == b.final_loss


def test_killed_run_resumes_to_the_uninterrupted_adapter(trepo) -> None:
    whole = T.train_lora(trepo, "arith.train.yaml", name="whole")

    def kill(s: T.StepInfo) -> None:
        if s.step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        T.train_lora(trepo, "arith.train.yaml", name="killed", on_step=kill)
    [info] = [r for r in T.runs(trepo) if r.name == "killed"]
    assert (info.status, info.step) == ("checkpoint", 4)      # the last save before the kill
    steps = []
    res = T.resume(trepo, "killed", on_step=steps.append)
    assert res.resumed_from == 4 and [s.step for s in steps] == [5, 6]
    assert res.adapter_digest == whole.adapter_digest
    assert [r["step"] for r in T.show_run(trepo, "killed").curve] == [1, 2, 3, 4, 5, 6]
    with pytest.raises(InvalidArtifact, match="already finished"):
        T.resume(trepo, "killed")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(trepo, tmp_dir) -> None:
    path = _config(tmp_dir, learning_rate="learning_rate: 1.0e+30", schedule="schedule: constant",
                   save_every="save_every: 1", lora="lora: {r: 4, alpha: 8, dropout: 0.0}",
                   warmup_steps="warmup_steps: 0")
    with pytest.raises(TrainingDiverged, match="loss became") as e:
        T.train_lora(trepo, path, name="boom")
    assert e.value.reason == "nan" and e.value.run == "boom"
    [info] = T.runs(trepo)
    assert info.status == "checkpoint" and info.step == e.value.step - 1 and info.adapter is None
    assert e.value.commit == info.commit


# ------------------------------------------------------------------ serving what was trained

def test_adapter_serves_and_loads_in_plain_peft(trepo, tiny_base) -> None:
    import peft
    import torch
    import transformers

    from demoai.engines.llm import open_backend
    from demoai.registry.resolve import resolve_model
    from demoai.train.config import plan_training
    from demoai.train.data import encode_rows
    from demoai.train.lora import load_base, train_loop
    res = T.train_lora(trepo, "arith.train.yaml", name="serve")
    spec = resolve_model(trepo, "models/tiny", f"train/{res.name}", {"threads": 1}, res.adapter_path)
    assert spec["adapter_digest"] == res.adapter_digest
    msgs = [{"role": "user", "content": "Question: what is 2 plus 3?"}]
    tuned = open_backend(spec).chat(msgs, params={"temperature": 0, "max_tokens": 8}).text
    base = open_backend({k: v for k, v in spec.items() if not k.startswith("adapter")}).chat(
        msgs, params={"temperature": 0, "max_tokens": 8}).text
    assert tuned != base
    # the same training in memory: its logits equal plain peft's on the committed adapter
    plan = plan_training(trepo, "arith.train.yaml")
    model, tok = load_base(plan.base.path, None, 1)
    pm, _ = train_loop(model, tok, encode_rows(tok, plan.meta, plan.train_rows).examples,
                       encode_rows(tok, plan.meta, plan.val_rows).examples, plan.meta,
                       base_ref="models/tiny", workdir=Path("work"))
    loaded = peft.PeftModel.from_pretrained(
        transformers.AutoModelForCausalLM.from_pretrained(str(tiny_base), dtype=torch.float32),
        spec["adapter_path"])
    ids = torch.tensor([tok("Question: what is 2 plus 3?")["input_ids"]])
    pm.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(pm(input_ids=ids).logits, loaded(input_ids=ids).logits)
    cfg = json.loads((Path(spec["adapter_path"]) / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "models/tiny" and cfg["r"] == 4


# ------------------------------------------------------------------ doctor, plot, CLI

def test_doctor_reports_cuts_masks_and_failures(trepo, tmp_dir) -> None:
    rep = T.doctor(trepo, "arith.train.yaml")
    assert rep.ok and [c.status for c in rep.checks] == ["ok"] * 6
    assert rep.facts["truncated"] == 0 and rep.facts["longest"] <= 64
    short = T.doctor(trepo, _config(tmp_dir, max_length="max_length: 12"))
    fits = {c.name: c for c in short.checks}["fits max_length"]
    assert fits.status in ("warn", "fail") and short.facts["truncated"] + short.facts["dropped"] > 0
    bad = T.doctor(trepo, _config(tmp_dir, columns="columns: {completion: nope}"))
    assert not bad.ok and bad.checks[0].status == "fail" and bad.checks[-1].status == "skipped"
    target = T.doctor(trepo, _config(tmp_dir, lora="lora: {r: 4, target_modules: [c_attn]}"))
    assert {c.name: c.status for c in target.checks}["base loads"] == "fail"


def test_cli_train_list_show_plot_doctor(trepo, tmp_dir, cli) -> None:
    res = cli("train", "lora", "arith.train.yaml", "--name", "cli", "--json")
    run = json.loads(res.stdout)
    assert run["name"] == "cli" and run["steps"] == 6
    listed = json.loads(cli("train", "list", "--json").stdout)
    assert [r["name"] for r in listed] == ["cli"] and listed[0]["status"] == "finished"
    assert "adapter after 6 steps" in cli("train", "show", "cli").output
    cli("train", "plot", "cli", "-o", "loss.png")
    assert (tmp_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "labels mask the prompt" in cli("train", "doctor", "arith.train.yaml").output
    cli("train", "doctor", _config(tmp_dir, columns="columns: {completion: nope}"), code=1)
    err = cli("train", "show", "nope", "--json", code=1)
    assert json.loads(err.stderr)["error"]["code"] == "ref_not_found"
