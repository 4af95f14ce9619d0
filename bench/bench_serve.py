"""SmolLM2 through ``demoai serve`` (streaming over HTTP) against the llama.cpp backend called
directly: time to first token and tokens/s, side by side.

    python bench/bench_serve.py [--repeat 5] [--max-tokens 128] [--threads 1] [--json]

The server is the real command (``python -m demoai.cli serve``, uvicorn, 127.0.0.1) in its
own process on an empty repository; the direct backend lives in this process. Same GGUF,
same greedy params, same thread count; calls alternate so load on a shared machine hits
both alike, and each side gets one warm-up call (model load) first. Over HTTP everything
is measured by the client: TTFT from sending the request to the first content chunk,
tokens/s = completion tokens / wall time of the whole request, decode tokens/s = tokens
after the first / time after the first. Directly, the same three from the call and its
token callback. Medians of ``--repeat`` runs.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from demoai.registry.defaults import default_gguf_path  # noqa: E402
from demoai.engines.llm import open_backend  # noqa: E402

STORY = [{"role": "user", "content": "Write a short story about a robot who learns to paint."}]


def _direct(backend, max_tokens: int) -> dict:
    t0 = time.perf_counter()
    first: list[float] = []
    r = backend.chat(STORY, params={"max_tokens": max_tokens},
                     on_token=lambda _: first or first.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    return _figures(t0, first[0] if first else t0 + wall, t0 + wall, r.completion_tokens, r.text)


def _served(http: httpx.Client, max_tokens: int) -> dict:
    body = {"model": "smollm2", "messages": STORY, "max_tokens": max_tokens, "stream": True}
    t0 = time.perf_counter()
    first, text, tokens = None, [], 0
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            delta = chunk["choices"][0]["delta"] if chunk["choices"] else {}
            if delta.get("content"):
                first = first or time.perf_counter()
                text.append(delta["content"])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
    end = time.perf_counter()
    return _figures(t0, first or end, end, tokens, "".join(text))


def _figures(t0: float, first: float, end: float, tokens: int, text: str) -> dict:
    return {"ttft_ms": (first - t0) * 1000, "tokens_per_s": tokens / (end - t0),
            "decode_tokens_per_s": (tokens - 1) / (end - first) if tokens > 1 and end > first else 0.0,
            "tokens": tokens, "text": text}


def _start_server(threads: int) -> tuple[subprocess.Popen, str, tempfile.TemporaryDirectory]:
    tmp = tempfile.TemporaryDirectory(prefix="bench-serve-")
    subprocess.run([sys.executable, "-m", "demoai.cli", "init"], cwd=tmp.name, check=True,
                   capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DEMOAI_LLM_THREADS": str(threads)}
    env.pop("DEMOAI_SERVE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "demoai.cli", "serve", tmp.name, "--port", str(port),
                             "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/api/health").status_code == 200:
                return proc, url, tmp
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"demoai serve did not start: {proc.stderr.read()[-2000:]!r}")
        time.sleep(0.2)


def run(repeat: int = 5, max_tokens: int = 128, threads: int = 1) -> dict:
    """Median TTFT and tokens/s of both paths."""
    proc, url, tmp = _start_server(threads)
    backend = open_backend({"backend": "llamacpp", "path": str(default_gguf_path()), "threads": threads})
    rows: dict[str, list[dict]] = {"direct": [], "served": []}
    try:
        with httpx.Client(base_url=url, timeout=300) as http:
            _direct(backend, max_tokens), _served(http, max_tokens)      # warm-up: model loads
            for _ in range(repeat):
                rows["direct"].append(_direct(backend, max_tokens))
                rows["served"].append(_served(http, max_tokens))
    finally:
        backend.close()
        proc.terminate()
        proc.wait(15)
        tmp.cleanup()
    out: dict = {"repeat": repeat, "max_tokens": max_tokens, "threads": threads, "paths": {}}
    for path, rs in rows.items():
        out["paths"][path] = {k: statistics.median(r[k] for r in rs)
                              for k in ("ttft_ms", "tokens_per_s", "decode_tokens_per_s", "tokens")}
    out["same_text"] = rows["direct"][-1]["text"] == rows["served"][-1]["text"]
    d, s = out["paths"]["direct"], out["paths"]["served"]
    out["ttft_overhead_ms"] = s["ttft_ms"] - d["ttft_ms"]
    out["tokens_per_s_ratio"] = s["tokens_per_s"] / d["tokens_per_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    res = run(args.repeat, args.max_tokens, args.threads)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    table = Table(title=f"SmolLM2 via demoai serve (stream) vs the llama.cpp backend directly "
                        f"(median of {res['repeat']}, {res['threads']} thread, max_tokens {res['max_tokens']})")
    for col in ("path", "tokens", "TTFT ms", "tokens/s", "decode tokens/s"):
        table.add_column(col, justify="right")
    for path, p in res["paths"].items():
        table.add_row(path, f"{p['tokens']:.0f}", f"{p['ttft_ms']:.1f}", f"{p['tokens_per_s']:.1f}",
                      f"{p['decode_tokens_per_s']:.1f}")
    console = Console()
    console.print(table)
    console.print(f"server overhead: TTFT {res['ttft_overhead_ms']:+.1f} ms, tokens/s "
                  f"{res['tokens_per_s_ratio']:.1%} of direct; same text: {'yes' if res['same_text'] else 'NO'}")


if __name__ == "__main__":
    main()
