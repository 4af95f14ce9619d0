"""The fine-tuning part of the main job (``demoai demo``): a LoRA on SmolLM2 for a shipped
task, trained as commits on its own branch, merged, shown with its lineage, evaluated
against the base with the regression gate, and exported as a GGUF LoRA for llama.cpp.

The task (``people.jsonl``, 48 rows; held out: ``people.test.jsonl``, 12 rows with other
names) is a house format: the person a sentence mentions as one line of compact JSON with
exactly ``name`` and ``age``. The base model guesses at JSON (extra keys, values it makes
up, several lines), so its exact-match score is near zero; 24 steps of an r=8 LoRA teach
the form. The gate's outcome is printed as it is: the tour's success is the machinery's.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape as esc

from demoai import porcelain as P
from demoai.porcelain import agent as A
from demoai.porcelain import model as M
from demoai.porcelain import train as T

__all__ = ["train_tour", "RUN", "CONFIG", "SUITE"]

RUN = "people-json"
"""The demo run's name: branch ``train/people-json``, adapter ``runs/people-json/adapter``."""
CONFIG = "people.train.yaml"
SUITE = "evals/people.suite.yaml"


def _progress(console: Console) -> tuple[Any, Any]:
    def on_step(s: T.StepInfo) -> None:
        for w in s.warnings:
            console.print(f"  [yellow]scan warning:[/yellow] {esc(w)}")
        if s.step % 4 == 0 or s.step == s.total:
            val = f", validation loss {s.val_loss:.4f}" if s.val_loss is not None else ""
            console.print(f"  step {s.step:>3}/{s.total}  loss {s.loss:.4f}{val}  "
                          f"{s.tokens_per_s:,.0f} tokens/s  ETA {s.eta_s:.0f} s", markup=False)

    def on_phase(text: str) -> None:
        console.print(f"  {text}", markup=False)
    return on_step, on_phase


def _example(repo: Any, path: str, console: Console, label: str) -> None:
    view = P.evaluate.show_eval(repo, path, examples=1)
    for ex in view.examples[:1]:
        console.print(f"  {label}: {A.shorten(A.one_line(str(ex.get('output', ''))), 90)}",
                      markup=False)


def train_tour(repo: Any, root: Path, console: Console, step: Any) -> bool:
    """Train, merge, show, evaluate, gate and export; False when the machinery broke."""
    from demoai.cli.eval import print_comparison, print_scores
    from demoai.cli.model import model_show
    src = A.sample_data_dir()
    (root / "evals").mkdir(exist_ok=True)
    for name in ("people.jsonl", "people.test.jsonl"):
        shutil.copy(src / name, root / "data" / name)
    shutil.copy(src / CONFIG, root / CONFIG)
    shutil.copy(src / "people.suite.yaml", root / SUITE)
    P.add(repo, [root / "data" / "people.jsonl", root / "data" / "people.test.jsonl"], key="id")
    P.add(repo, [root / CONFIG, root / SUITE])
    P.commit(repo, "People-to-JSON task: 48 training rows, 12 held out, a LoRA config and its suite")

    step(f"train lora {CONFIG}: SmolLM2-135M, r=8 LoRA on q/v, 24 steps, on branch train/{RUN}")
    t0 = time.perf_counter()
    on_step, on_phase = _progress(console)
    res = T.train_lora(repo, CONFIG, name=RUN, on_step=on_step, on_phase=on_phase)
    console.print(f"  trained in {time.perf_counter() - t0:.0f} s: loss {res.final_loss:.4f}, validation "
                  f"loss {res.val_loss if res.val_loss is None else round(res.val_loss, 4)}, "
                  f"{res.tokens_per_s:,.0f} tokens/s; scan table {res.scan_path} "
                  f"({len(res.warnings)} warning(s))", markup=False)
    for c in reversed(T.show_run(repo, RUN).commits):
        console.print(f"  train/{RUN} {c['commit'][:12]} {c['message']}", markup=False)

    step(f"merge train/{RUN} into main: the adapter comes with its lineage")
    m = P.merge(repo, f"train/{RUN}")
    console.print(f"  {m['status']}: {m['commit'][:12]}", markup=False)

    step(f"eval run {SUITE}: the base, then the base + the adapter (held-out people)")
    runs = {}
    for label, adapter in (("base", None), ("base + LoRA", res.adapter_path)):
        t0 = time.perf_counter()
        run = P.evaluate.run_eval(repo, SUITE, model="smollm2", adapter=adapter)
        r = run.outcome.result
        print_scores(r.scores, title=f"{label}: {r.model_ref}{' + ' + adapter if adapter else ''} "
                     f"({r.counts['examples']} examples, {time.perf_counter() - t0:.1f} s)")
        _example(repo, run.outcome.path, console, f"first answer ({label})")
        runs[label] = run

    step(f"model show {res.adapter_path} (registry view: lineage, evaluations)")
    model_show.callback(name=res.adapter_path, rev="HEAD", as_json=False)

    step("eval gate: may SmolLM2 + the LoRA replace SmolLM2 on this task? (paired, cached)")
    gate = P.evaluate.run_gate(repo, SUITE, P.evaluate.Side("HEAD", "smollm2"),
                               P.evaluate.Side("HEAD", "smollm2", res.adapter_path), metric="exact_match")
    rec = gate.run.record
    color = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[rec.outcome]
    console.print(f"  gate on {rec.metric}: [{color}]{rec.outcome.upper()}[/{color}] — {esc(gate.run.reason)}")
    print_comparison([gate.run.comparison.to_dict()], rec.refs.get("inputs_changed") or [])
    cached = gate.run.base.cached and gate.run.candidate.cached
    console.print(f"  both sides {'reused the stored predictions' if cached else 'ran'}; committed "
                  f"{gate.path} as {(gate.commit or '-')[:12]}", markup=False)

    step(f"model export {res.adapter_path} --format gguf (a GGUF LoRA llama.cpp applies to the base)")
    out = root.parent / f"{RUN}.lora.gguf"
    out.unlink(missing_ok=True)
    path = M.export_model(repo, res.adapter_path, out, fmt="gguf")
    console.print(f"  wrote {path} ({path.stat().st_size / 1e6:.1f} MB): "
                  f"Llama(model_path=<SmolLM2 GGUF>, lora_path='{path.name}')", markup=False)
    return all(r.commit is not None or r.up_to_date for r in runs.values())
