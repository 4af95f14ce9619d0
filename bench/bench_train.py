"""Training throughput: `demoai train lora` vs a plain transformers `Trainer` + peft script.

Both sides train the same LoRA (r=8, alpha=16, q_proj/v_proj, AdamW, constant lr) on the
same base (SmolLM2-135M-Instruct, dequantized from the embedded GGUF by transformers), the
same tokenized examples (the shipped arithmetic set, prompt masked in the labels, ChatML),
batch 4, the same number of steps and one torch thread. Each side runs in its own process
so its peak RSS is its own. Tokens/s counts the non-padding tokens each side fed the model
divided by its training time (model loading excluded on both sides; DemoAI's time includes
its checkpoint and final commits, curves and lineage).

    .venv/bin/python bench/bench_train.py                 # SmolLM2-135M, 30 steps
    .venv/bin/python bench/bench_train.py --steps 10      # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = """\
name: bench
base: smollm2
dataset: data/arith.jsonl
format: template
template: "{{{{question}}}}"
columns: {{completion: answer}}
lora: {{r: 8, alpha: 16, dropout: 0.0, target_modules: [q_proj, v_proj]}}
learning_rate: 0.0002
schedule: constant
max_steps: {steps}
batch_size: 4
max_length: 128
seed: 0
threads: 1
save_every: {save}
"""


def _repo(work: Path, steps: int):
    from demoai.porcelain.commit import commit
    from demoai.store import Repository
    repo = Repository.init(work)
    (work / "data").mkdir()
    (work / "data/arith.jsonl").write_bytes((ROOT / "demoai/data/arith.jsonl").read_bytes())
    (work / "bench.train.yaml").write_text(CONFIG.format(steps=steps, save=max(1, steps // 3)))
    commit(repo, "data", paths=[work / "data/arith.jsonl"])
    return repo


def side_demoai(steps: int) -> dict:
    """`demoai train lora` through porcelain (what the CLI runs)."""
    from demoai.porcelain import train as T
    with tempfile.TemporaryDirectory() as d:
        repo = _repo(Path(d), steps)
        os.chdir(d)
        start: list[float] = []

        def first(s) -> None:   # when the loop began: the first step's end less its time
            if not start:
                start.append(time.perf_counter() - s.elapsed_s)

        t0 = time.perf_counter()
        res = T.train_lora(repo, "bench.train.yaml", name="bench", on_step=first)
        end = time.perf_counter()
    # the loop plus everything after it began: checkpoint commits, curve, adapter, lineage
    return {"tokens": res.tokens, "train_s": res.train_s, "train_and_commit_s": end - start[0],
            "final_loss": res.final_loss, "wall_s": end - t0}


def side_trainer(steps: int) -> dict:
    """A plain transformers Trainer + peft script on the same examples."""
    import peft
    import torch
    import transformers
    from demoai.objects import TrainConfig
    from demoai.registry.defaults import default_gguf_path
    from demoai.train.data import encode_rows
    torch.set_num_threads(1)
    gguf = default_gguf_path()
    tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                              dtype=torch.float32)
    # the weights are plain float32 once dequantized; the GGUF marker only makes Trainer
    # refuse to train them
    model.hf_quantizer, model.is_quantized = None, False
    meta = TrainConfig.from_text(CONFIG.format(steps=steps, save=1)).meta
    rows = [json.loads(x) for x in (ROOT / "demoai/data/arith.jsonl").read_text().splitlines()]
    examples = [{"input_ids": e.input_ids, "labels": e.labels}
                for e in encode_rows(tok, meta, rows).examples]
    torch.manual_seed(0)
    model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                       target_modules=["q_proj", "v_proj"],
                                                       task_type="CAUSAL_LM"))
    base = transformers.DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    seen = {"tokens": 0}

    def collate(batch):
        out = base(batch)
        seen["tokens"] += int(out["attention_mask"].sum())
        return out

    with tempfile.TemporaryDirectory() as d:
        args = transformers.TrainingArguments(
            output_dir=d, per_device_train_batch_size=4, max_steps=steps, learning_rate=2e-4,
            lr_scheduler_type="constant", optim="adamw_torch", save_strategy="no", report_to=[],
            logging_steps=max(1, steps // 3), use_cpu=True, dataloader_num_workers=0, seed=0,
            disable_tqdm=True)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=examples,
                                       data_collator=collate)
        t0 = time.perf_counter()
        out = trainer.train()
        train_s = time.perf_counter() - t0
    return {"tokens": seen["tokens"], "train_s": train_s, "train_and_commit_s": train_s,
            "final_loss": out.training_loss, "wall_s": train_s}


def _child(side: str, steps: int) -> None:
    res = {"demoai": side_demoai, "trainer": side_trainer}[side](steps)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=1,
                    help="Run each side this many times, alternating; keep each side's fastest")
    ap.add_argument("--side", choices=["demoai", "trainer"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side:
        _child(a.side, a.steps)
        return
    results: dict[str, dict] = {}
    for i in range(a.repeat):
        for side in (("trainer", "demoai") if i % 2 == 0 else ("demoai", "trainer")):
            p = subprocess.run([sys.executable, __file__, "--side", side, "--steps", str(a.steps)],
                               capture_output=True, text=True, check=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
            r = json.loads(next(x for x in p.stdout.splitlines() if x.startswith("RESULT "))[7:])
            if side not in results or r["train_s"] < results[side]["train_s"]:
                results[side] = r
    print(f"SmolLM2-135M LoRA r=8, batch 4, max length 128, {a.steps} steps, 1 thread")
    print(f"{'':28}{'Trainer+peft':>14}{'demoai train':>14}")
    t, d = results["trainer"], results["demoai"]
    for label, key in (("tokens", "tokens"), ("training s", "train_s"),
                       ("training + commits s", "train_and_commit_s"), ("loss (Trainer: run mean)", "final_loss"),
                       ("peak RSS MB", "peak_rss_mb")):
        print(f"{label:28}{t[key]:>14.4g}{d[key]:>14.4g}")
    ts, ds = t["tokens"] / t["train_s"], d["tokens"] / d["train_s"]
    dc = d["tokens"] / d["train_and_commit_s"]
    print(f"{'tokens/s (loop)':28}{ts:>14.1f}{ds:>14.1f}   ratio {ds / ts:.3f}")
    print(f"{'tokens/s (with commits)':28}{ts:>14.1f}{dc:>14.1f}   ratio {dc / ts:.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
