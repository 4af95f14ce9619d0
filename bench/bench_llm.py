"""Overhead of DemoAI's llama.cpp backend against llama-cpp-python used directly.

    python bench/bench_llm.py [--repeat 5] [--max-tokens 128]

Same GGUF (SmolLM2-135M-Instruct Q4_1), same Llama object, same prompt and sampling
params (temperature 0, seed 0, repeat penalty 1, one thread), calls interleaved so load
on a shared machine hits both alike. tokens/s = completion tokens / wall time of the call;
the median over repeats is compared, target >= 95% of raw. The backend evaluates the whole
prompt on every call (so a recorded call replays); the raw reference is reset before each
call to do the same work. The raw call reusing its KV cache is shown for information.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from demoai.registry.defaults import default_gguf_path  # noqa: E402
from demoai.engines.llm import open_backend  # noqa: E402

TARGET = 0.95
STORY = [{"role": "user", "content": "Write a short story about a robot who learns to paint."}]
TOOL = [{"role": "system", "content": "You call tools. Answer with JSON."},
        {"role": "user", "content": "List the files in the current folder."}]
SCHEMA = {"type": "object", "properties": {
    "tool": {"enum": ["shell", "python", "write_file", "finish"]},
    "args": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
    "required": ["tool", "args"]}


def _raw(llm, messages, max_tokens: int, schema, reset: bool) -> tuple[float, int, str]:
    if reset:
        llm.reset()
    kw = {"response_format": {"type": "json_object", "schema": schema}} if schema else {}
    t0 = time.perf_counter()
    out = llm.create_chat_completion(
        messages, max_tokens=max_tokens, temperature=0.0, top_p=0.95, top_k=40, min_p=0.05,
        repeat_penalty=1.0, seed=0, **kw)
    wall = time.perf_counter() - t0
    return wall, out["usage"]["completion_tokens"], out["choices"][0]["message"]["content"]


def _ours(backend, messages, max_tokens: int, schema) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    r = backend.chat(messages, params={"max_tokens": max_tokens}, json_schema=schema)
    return time.perf_counter() - t0, r.completion_tokens, r.text


def run(repeat: int = 5, max_tokens: int = 128, threads: int = 1) -> dict:
    """Median tokens/s of the backend and of raw llama-cpp-python, per case."""
    backend = open_backend({"backend": "llamacpp", "path": str(default_gguf_path()),
                            "threads": threads})
    llm = backend.llm
    cases = {"plain": (STORY, None), "json_schema": (TOOL, SCHEMA)}
    results: dict = {"repeat": repeat, "max_tokens": max_tokens, "threads": threads,
                     "target": TARGET, "cases": {}}
    try:
        for name, (messages, schema) in cases.items():
            _ours(backend, messages, max_tokens, schema)  # warm-up: caches, grammar, pages
            _raw(llm, messages, max_tokens, schema, reset=True)
            rates: dict[str, list[float]] = {"ours": [], "raw": [], "raw_cached": []}
            texts: dict[str, str] = {}
            tokens = 0
            for _ in range(repeat):
                for kind in ("ours", "raw", "raw_cached"):
                    if kind == "ours":
                        wall, n, text = _ours(backend, messages, max_tokens, schema)
                    else:
                        wall, n, text = _raw(llm, messages, max_tokens, schema,
                                             reset=kind == "raw")
                    rates[kind].append(n / wall)
                    texts[kind], tokens = text, n
            med = {k: statistics.median(v) for k, v in rates.items()}
            results["cases"][name] = {
                "tokens": tokens, "ours_tps": med["ours"], "raw_tps": med["raw"],
                "raw_cached_tps": med["raw_cached"], "ratio": med["ours"] / med["raw"],
                "ratio_vs_cached": med["ours"] / med["raw_cached"],
                "same_text": texts["ours"] == texts["raw"],
                "ok": med["ours"] / med["raw"] >= TARGET}
    finally:
        backend.close()
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    res = run(args.repeat, args.max_tokens, args.threads)
    table = Table(title=f"llama.cpp backend vs raw llama-cpp-python (median of {res['repeat']}, "
                        f"{res['threads']} thread, max_tokens {res['max_tokens']})")
    for col in ("case", "tokens", "backend tok/s", "raw tok/s", "ratio", "target",
                "raw cached tok/s", "same text"):
        table.add_column(col, justify="right")
    for name, c in res["cases"].items():
        table.add_row(name, str(c["tokens"]), f"{c['ours_tps']:.1f}", f"{c['raw_tps']:.1f}",
                      f"[{'green' if c['ok'] else 'red'}]{c['ratio']:.1%}[/]",
                      f">= {TARGET:.0%}", f"{c['raw_cached_tps']:.1f}",
                      "yes" if c["same_text"] else "NO")
    Console().print(table)


if __name__ == "__main__":
    main()
