"""Benchmark of ``demoai eval`` against lm-evaluation-harness on the same model, backend and
items, measured in one run.

    python bench/bench_eval.py [--items 60] [--texts 30] [--threads 1] [--json FILE]

Workload: a multiple-choice task (two-term integer arithmetic from reasoning-gym's
``basic_arithmetic``, seed 2026, with three distractors per item) and a rolling-perplexity
task (reasoning-gym questions of several generators as plain texts), written as JSONL.
Model: the embedded SmolLM2-135M-Instruct GGUF, dequantized by transformers on both sides
(DemoAI's ``transformers`` backend; lm-eval's ``hf`` model with ``gguf_file=``), float32 on
CPU with the same thread count.

DemoAI runs ``eval run`` (in process, model load included) twice: the first run and an
unchanged re-run (cached predictions). lm-eval runs ``simple_evaluate`` once on local task
YAMLs over the same JSONL files (``dataset_path: json``), no cache. Printed side by side:
acc and acc_norm (must be identical), word perplexity and bits per byte (must agree to
1e-3 relative), wall times.

Targets (issue 13): scores equal; DemoAI's first run <= lm-eval's wall time; its re-run
<= 2% of lm-eval's.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TARGETS = {"rel_ppl": 1e-3, "first_run_ratio": 1.0, "rerun_share": 0.02}

MC_SUITE = """name: arith-mc
task: multiple_choice
dataset: data/mc.jsonl
key: id
template: "Question: {{question}}\\nAnswer:"
choices: choices
target: label
metrics: [acc, acc_norm]
"""
PPL_SUITE = """name: texts-ppl
task: perplexity
dataset: data/texts.jsonl
text: text
metrics: [word_perplexity, bits_per_byte]
"""
MC_TASK = """task: demoai_bench_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
output_type: multiple_choice
test_split: test
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
"""
PPL_TASK = """task: demoai_bench_ppl
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
output_type: loglikelihood_rolling
test_split: test
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: bits_per_byte
"""


def workload(items: int, texts: int) -> tuple[list[dict], list[dict]]:
    """(multiple-choice rows, perplexity rows), generated offline and seeded."""
    import reasoning_gym
    rng = random.Random(2026)
    mc = []
    for i, x in enumerate(reasoning_gym.create_dataset("basic_arithmetic", size=items, seed=2026,
                                                       min_terms=2, max_terms=2, min_digits=1,
                                                       max_digits=2)):
        ans = int(x["answer"])
        wrong = set()
        while len(wrong) < 3:
            w = ans + rng.choice([-10, -2, -1, 1, 2, 10, 11])
            if w != ans:
                wrong.add(w)
        choices = [str(c) for c in [ans, *sorted(wrong)]]
        rng.shuffle(choices)
        mc.append({"id": f"mc{i:03d}", "question": x["question"], "choices": choices,
                   "label": choices.index(str(ans))})
    pool = []
    for name in ("basic_arithmetic", "letter_counting", "word_sorting", "caesar_cipher"):
        pool += [x["question"] for x in reasoning_gym.create_dataset(name, size=texts, seed=7)]
    rng.shuffle(pool)
    return mc, [{"text": " ".join(t.split())} for t in pool[:texts]]


def run_demoai(root: Path, mc: list[dict], ppl: list[dict]) -> dict:
    """Both suites through ``eval run`` on the transformers backend: first and cached runs."""
    from demoai.porcelain import add, commit, init
    from demoai.porcelain import evaluate as PE
    repo = init(root)
    (root / "data").mkdir()
    (root / "data" / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mc))
    (root / "data" / "texts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ppl))
    (root / "mc.suite.yaml").write_text(MC_SUITE)
    (root / "ppl.suite.yaml").write_text(PPL_SUITE)
    add(repo, [root / "data", root / "mc.suite.yaml", root / "ppl.suite.yaml"])
    commit(repo, "bench data")
    out: dict = {}
    from demoai.engines.llm import ModelPool
    t0 = time.perf_counter()
    with ModelPool(size=1) as pool:        # one model load for both suites, as lm-eval does
        a = PE.run_eval(repo, "mc.suite.yaml", backend="transformers", pool=pool)
        b = PE.run_eval(repo, "ppl.suite.yaml", backend="transformers", pool=pool)
    out["first_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    a2 = PE.run_eval(repo, "mc.suite.yaml", backend="transformers")
    b2 = PE.run_eval(repo, "ppl.suite.yaml", backend="transformers")
    out["rerun_s"] = time.perf_counter() - t0
    out["cached"] = a2.outcome.cached and b2.outcome.cached
    m, p = a.outcome.result.scores, b.outcome.result.scores
    out["scores"] = {"acc": m["acc"]["value"], "acc_norm": m["acc_norm"]["value"],
                     "word_perplexity": p["word_perplexity"]["value"],
                     "bits_per_byte": p["bits_per_byte"]["value"]}
    return out


def run_lm_eval(root: Path, gguf: Path, threads: int) -> dict:
    """The same tasks through lm-eval's hf model on the same GGUF."""
    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager
    torch.set_num_threads(threads)
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "mc.yaml").write_text(MC_TASK.format(path=root / "data" / "mc.jsonl"))
    (tasks / "ppl.yaml").write_text(PPL_TASK.format(path=root / "data" / "texts.jsonl"))
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(gguf.parent), "gguf_file": gguf.name,
                                "dtype": "float32", "device": "cpu"},
        tasks=["demoai_bench_mc", "demoai_bench_ppl"], batch_size=1,
        task_manager=TaskManager(include_path=str(tasks)), log_samples=False)
    wall = time.perf_counter() - t0
    r = res["results"]
    return {"first_s": wall, "scores": {
        "acc": r["demoai_bench_mc"]["acc,none"], "acc_norm": r["demoai_bench_mc"]["acc_norm,none"],
        "word_perplexity": r["demoai_bench_ppl"]["word_perplexity,none"],
        "bits_per_byte": r["demoai_bench_ppl"]["bits_per_byte,none"]}}


def main() -> int:
    """Run both sides and print them side by side; exit 1 if a target is missed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=60, help="multiple-choice items")
    ap.add_argument("--texts", type=int, default=30, help="perplexity texts")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on both sides")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    os.environ["DEMOAI_LLM_THREADS"] = str(args.threads)
    from demoai.registry.defaults import default_gguf_path
    mc, ppl = workload(args.items, args.texts)
    with tempfile.TemporaryDirectory(prefix="demoai-bench-eval-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        ours = run_demoai(root, mc, ppl)
        peer = run_lm_eval(root, default_gguf_path(), args.threads)
    print(f"\nSmolLM2-135M (GGUF dequantized by transformers, float32, {args.threads} thread(s)); "
          f"{args.items} multiple-choice items, {args.texts} texts\n")
    print(f"{'':24}{'DemoAI':>14}{'lm-eval':>14}")
    ok = True
    for k in ("acc", "acc_norm", "word_perplexity", "bits_per_byte"):
        a, b = ours["scores"][k], peer["scores"][k]
        rel = abs(a - b) / max(abs(b), 1e-12)
        same = rel == 0 if k.startswith("acc") else rel <= TARGETS["rel_ppl"]
        ok &= same
        print(f"{k:24}{a:>14.6g}{b:>14.6g}   {'equal' if rel == 0 else f'rel diff {rel:.2e}'}"
              f"{'' if same else '  MISSED'}")
    ratio = ours["first_s"] / peer["first_s"]
    share = ours["rerun_s"] / peer["first_s"]
    ok &= ratio <= TARGETS["first_run_ratio"] and share <= TARGETS["rerun_share"] and ours["cached"]
    print(f"{'wall, first run (s)':24}{ours['first_s']:>14.2f}{peer['first_s']:>14.2f}   "
          f"ratio {ratio:.2f} (target <= 1.00)")
    print(f"{'wall, unchanged re-run':24}{ours['rerun_s']:>14.2f}{peer['first_s']:>14.2f}   "
          f"{share:.2%} of lm-eval (target <= 2%; cached: {ours['cached']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"demoai": ours, "lm_eval": peer, "ok": ok}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
