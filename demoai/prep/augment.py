"""Augmentation: new rows made from existing ones, by template or by a model.

- Templates: ``"Question: {prompt}"`` style strings (Python format fields naming columns);
  with several, each new row uses one drawn by a seeded generator.
- Model modes: ``paraphrase`` (the same meaning in other words), ``roundtrip`` (rewritten in
  ``via`` and back: two calls) and ``reformat`` (an answer rewritten as a short list). A
  reply that is empty, the same as the input, or more than :data:`MAX_GROWTH` times longer
  is rejected with its reason. Every call (messages, params with its seed, output) is
  returned so the step replays.

``call(messages, params, json_schema) -> dict`` (``text``, ``finish_reason``, ``record``) is
the model, live or replayed.
"""
from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from demoai.errors import InvalidArtifact

__all__ = ["MODES", "MAX_GROWTH", "check_templates", "render_templates", "augment_with_model",
           "AugmentResult", "mode_messages"]

MODES = ("paraphrase", "roundtrip", "reformat")
MAX_GROWTH = 4.0
Call = Callable[[list[dict], dict, dict | None], dict]


def check_templates(templates: Sequence[str], columns: Sequence[str]) -> list[list[str]]:
    """The column names each template uses; InvalidArtifact for a malformed template or a
    field that is not a column."""
    if not templates:
        raise InvalidArtifact("augment: give a --template or a --model")
    out = []
    for t in templates:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(t) if f is not None]
        except ValueError as e:
            raise InvalidArtifact(f"augment: template {t!r} is malformed ({e})") from None
        if not fields:
            raise InvalidArtifact(f"augment: template {t!r} names no column "
                                  "(use {column} fields)")
        bad = [f for f in fields if f not in columns]
        if bad:
            raise InvalidArtifact(f"augment: template {t!r} names {bad[0]!r}, not a column "
                                  f"(columns: {list(columns)})", column=bad[0],
                                  reason="missing")
        out.append(fields)
    return out


def render_templates(rows: Sequence[dict[str, Any]], templates: Sequence[str], *,
                     seed: int = 0, per_row: int = 1) -> list[tuple[int, int, str]]:
    """(row, template index, text) for ``per_row`` renderings of each row, templates drawn
    by a generator seeded with ``seed`` (without repeats while there are enough)."""
    rng = random.Random(seed)
    out = []
    for i, row in enumerate(rows):
        pick = (rng.sample(range(len(templates)), per_row) if per_row <= len(templates)
                else [rng.randrange(len(templates)) for _ in range(per_row)])
        vals = {k: "" if v is None else v for k, v in row.items()}
        for j in pick:
            out.append((i, j, templates[j].format(**vals)))
    return out


def mode_messages(mode: str, text: str, step: int = 0, via: str = "French") -> list[dict]:
    """The chat messages of ``mode``'s call number ``step`` on ``text``."""
    if mode == "paraphrase":
        ask = "Paraphrase this text. Keep its meaning; use different words. Reply with the " \
              "paraphrase only."
    elif mode == "reformat":
        ask = "Rewrite this answer as a short bulleted list. Keep every fact. Reply with the " \
              "list only."
    elif mode == "roundtrip":
        ask = (f"Translate this text into {via}. Reply with the translation only." if step == 0
               else "Translate this text into English. Reply with the translation only.")
    else:
        raise InvalidArtifact(f"augment: unknown mode {mode!r} (use {', '.join(MODES)})",
                              reason="mode")
    return [{"role": "user", "content": f"{ask}\n\n{text}"}]


@dataclass
class AugmentResult:
    """New texts by source row, rejections with reasons, and every model call."""

    made: list[tuple[int, str]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)


def augment_with_model(call: Call, texts: Sequence[str | None], mode: str, *, seed: int = 0,
                       temperature: float = 0.7, max_tokens: int = 128, via: str = "French",
                       progress: Callable[[str, int, int], None] | None = None
                       ) -> AugmentResult:
    """Rewrite each text with the model (see the module docstring)."""
    if mode not in MODES:
        raise InvalidArtifact(f"augment: unknown mode {mode!r} (use {', '.join(MODES)})",
                              reason="mode")
    res = AugmentResult()
    steps = 2 if mode == "roundtrip" else 1
    for i, text in enumerate(texts):
        if not text or not text.strip():
            res.rejected.append({"row": i, "reason": "empty_input", "detail": "nothing to "
                                 "rewrite"})
            continue
        cur = text
        reason = None
        for step in range(steps):
            params = {"temperature": temperature, "top_p": 0.95, "max_tokens": max_tokens,
                      "seed": (seed * 1_000_003 + i * steps + step) % 2**31}
            messages = mode_messages(mode, cur, step, via)
            reply = call(messages, params, None)
            out = (reply.get("text") or "").strip()
            res.calls.append({"call": len(res.calls), "row": i, "step": step,
                              "messages": json.dumps(messages, ensure_ascii=False),
                              "params": json.dumps(params), "seed": params["seed"],
                              "json_schema": "", "output": reply.get("text") or "",
                              "finish_reason": reply.get("finish_reason") or "",
                              "record": json.dumps(reply.get("record") or {}, default=str)})
            if not out:
                reason = ("invalid_output", f"empty reply at call {step + 1}")
                break
            cur = out
        if reason is None:
            if cur.strip().lower() == text.strip().lower():
                reason = ("unchanged", "the reply repeats the input")
            elif len(cur) > MAX_GROWTH * max(len(text), 20):
                reason = ("invalid_output", f"reply {len(cur)} chars for {len(text)}")
        if reason is None:
            res.made.append((i, cur))
        else:
            res.rejected.append({"row": i, "reason": reason[0], "detail": reason[1]})
        if progress:
            progress("augment", i + 1, len(texts))
    return res
