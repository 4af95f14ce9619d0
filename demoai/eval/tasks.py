"""Run one planned item on a model backend and return its raw prediction row.

A row holds what scoring needs and nothing derived from the metrics, so changing only the
metrics re-scores stored rows without the model: the output text (``generate``), the
choices' log-likelihoods and greedy flags (``multiple_choice``), the continuation's
log-likelihood (``loglikelihood``), the text's total log-likelihood and its token, word and
byte counts (``perplexity``); plus tokens and timings. A model error on one item makes that
row errored (its message kept), never a score of 0; such a row is tried again by the next run
(a bad row, e.g. one without a reference, is not).
"""
from __future__ import annotations

import json
import time
from typing import Any

from demoai.errors import DemoAIError
from demoai.eval.plan import Item

__all__ = ["run_item", "PREDICTION_FIELDS", "context_text"]

PREDICTION_FIELDS: dict[str, str] = {
    "index": "int64", "item": "string", "input": "string", "output": "string",
    "reference": "string", "error": "string", "prompt_tokens": "int64",
    "completion_tokens": "int64", "latency_ms": "float64", "ttft_ms": "float64",
    "logprob": "float64", "is_greedy": "bool", "n_tokens": "int64", "n_words": "int64",
    "n_bytes": "int64", "choice_logprobs": "list<float64>", "choice_greedy": "list<bool>",
    "choices": "list<string>", "gold": "int64", "prediction": "int64", "record": "string",
}
"""Columns of the per-example predictions table (score columns ``score:<metric>`` follow)."""


def context_text(backend: Any, request: dict[str, Any]) -> str:
    """The scored context: the rendered template, inside the model's chat template when the
    suite asks for chat (the system text first)."""
    if not request.get("chat"):
        return (request["system"] + "\n\n" if request.get("system") else "") + request["input"]
    return backend.render_chat(_messages(request), add_generation_prompt=True)


def _messages(request: dict[str, Any]) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": request["system"]}] if request.get("system") else []
    return msgs + [{"role": "user", "content": request["input"]}]


def _base(item: Item) -> dict[str, Any]:
    row: dict[str, Any] = {k: None for k in PREDICTION_FIELDS}
    row.update(index=item.index, item=item.item_id)
    req = item.request
    if "input" in req:
        row["input"] = req["input"]
    refs = req.get("references")
    row["reference"] = json.dumps(refs, ensure_ascii=False) if refs is not None else req.get("reference_text")
    return row


def run_item(backend: Any, task: str, item: Item, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """The prediction row of ``item`` (errored when the item or the model call failed)."""
    row = _base(item)
    if item.error is not None:
        row["error"] = item.error
        return row
    req = item.request
    t0 = time.perf_counter()
    try:
        if task == "generate":
            _generate(backend, req, params, seed, row)
        elif task == "multiple_choice":
            ctx = context_text(backend, req)
            conts = [req["delimiter"] + c for c in req["choices"]]
            res = backend.loglikelihood([(ctx, c) for c in conts])
            row["choice_logprobs"] = [float(r.logprob) for r in res]
            row["choice_greedy"] = [bool(r.is_greedy) for r in res]
            row["choices"] = list(req["choices"])
            row["gold"] = int(req["gold"])
            lls = row["choice_logprobs"]
            row["prediction"] = max(range(len(lls)), key=lambda i: (lls[i], -i))
            row["output"] = req["choices"][row["prediction"]]
            row["n_tokens"] = sum(int(r.n_tokens) for r in res)
        elif task == "loglikelihood":
            ctx = context_text(backend, req)
            (res,) = backend.loglikelihood([(ctx, req["delimiter"] + req["continuation"])])
            row.update(logprob=float(res.logprob), is_greedy=bool(res.is_greedy),
                       n_tokens=int(res.n_tokens), output=req["continuation"])
        elif task == "perplexity":
            text = req["text"]
            (res,) = backend.loglikelihood_rolling([text])
            row.update(logprob=float(res.logprob), n_tokens=int(res.n_tokens),
                       n_words=len(text.split()), n_bytes=len(text.encode("utf-8")),
                       input=text[:200])
        else:
            raise ValueError(f"unknown task {task!r}")
    except DemoAIError as e:
        row["error"] = f"{type(e).__name__}: {e}"
        row["retry"] = True        # a failed call (not a bad row): the next run tries it again
    row["latency_ms"] = (time.perf_counter() - t0) * 1000.0
    return row


def _generate(backend: Any, req: dict[str, Any], params: dict[str, Any], seed: int,
              row: dict[str, Any]) -> None:
    p = {**params, "seed": seed}
    if req.get("chat"):
        res = backend.chat(_messages(req), params=p)
        text, pt, ct, timings, record = (res.text, res.prompt_tokens, res.completion_tokens,
                                         res.timings, res.record)
    else:
        res = backend.complete(context_text(backend, req), params=p)
        text, pt, ct = res.text, res.prompt_tokens, res.completion_tokens
        timings, record = getattr(res, "timings", {}) or {}, getattr(res, "record", {}) or {}
    row.update(output=text, prompt_tokens=pt, completion_tokens=ct,
               ttft_ms=(timings.get("ttft_s") or 0.0) * 1000.0 if timings else None,
               record=json.dumps({"params": record.get("params"), "backend": record.get("backend")},
                                 sort_keys=True) if record else None)
