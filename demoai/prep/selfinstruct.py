"""Self-instruct: new instructions and answers from seed tasks, made by a model and filtered as
the self-instruct paper filters them.

Each model call shows the model ``examples`` seed tasks (drawn with a seeded generator) and
asks, through a JSON schema, for one new task: ``{"instruction", "answer"}``. A candidate is
rejected, with its reason, when the reply is not that object or a field is empty
(``invalid_output``), the instruction has fewer than ``min_words`` or more than
``max_words`` words (``too_short``/``too_long``), names a blocked keyword (``blocklist``:
things a text model cannot do, such as images or files), starts with punctuation or a
non-ASCII character or with "Write a program" (``bad_start``), or has a ROUGE-L F-measure
at or above ``threshold`` with a seed or an already kept instruction (``similar``: found
through :class:`demoai.prep.rougeindex.RougeIndex`, not by scanning the pool).

The model is reached through ``call(messages, params, json_schema) -> dict`` (``text``,
``json``, ``finish_reason``, ``record``), so the same code runs live or replays recorded
calls; every call's messages, sampling params (with its seed) and output are returned.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from demoai.errors import InvalidArtifact
from demoai.prep.rougeindex import RougeIndex

__all__ = ["FilterConfig", "InstructionFilter", "Verdict", "generate_instructions",
           "GenerationResult", "SCHEMA", "BLOCKLIST", "call_params", "build_messages"]

BLOCKLIST = ("image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
             "map", "maps", "draw", "plot", "go to", "video", "audio", "music", "flowchart",
             "diagram")
SCHEMA = {"type": "object", "properties": {"instruction": {"type": "string"},
                                           "answer": {"type": "string"}},
          "required": ["instruction", "answer"]}
Call = Callable[[list[dict], dict, dict | None], dict]


@dataclass
class FilterConfig:
    """The filter's settings (the paper's defaults)."""

    threshold: float = 0.7
    min_words: int = 3
    max_words: int = 150
    blocklist: Sequence[str] = BLOCKLIST

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {"threshold": self.threshold, "min_words": self.min_words,
                "max_words": self.max_words, "blocklist": list(self.blocklist)}


@dataclass
class Verdict:
    """Whether a candidate is kept; else why (reason, detail, the pool text it is similar
    to and the ROUGE-L F-measure)."""

    kept: bool
    reason: str | None = None
    detail: str | None = None
    similar_to: str | None = None
    similarity: float | None = None


class InstructionFilter:
    """The self-instruct filter over a pool (seed instructions, then each kept one)."""

    def __init__(self, tokenize: Callable[[str], list[str]], pool: Sequence[str] = (),
                 config: FilterConfig | None = None, corpus: Sequence[str] = ()) -> None:
        self.config = config or FilterConfig()
        if not 0 < self.config.threshold <= 1:
            raise InvalidArtifact(f"self-instruct: threshold must be in (0, 1], not "
                                  f"{self.config.threshold}", reason="threshold")
        self.index = RougeIndex(tokenize, self.config.threshold)
        pool_ids = [self.index.ids(p) for p in pool]
        self.index.fit([*pool_ids, *corpus])
        self._block = [re.compile(r"\b" + re.escape(w.lower()) + r"\b")
                       for w in self.config.blocklist]
        self.texts: list[str] = list(pool)
        for ids in pool_ids:
            self.index.add(ids)

    def check(self, instruction: str, add: bool = True) -> Verdict:
        """The verdict on ``instruction``; a kept one joins the pool when ``add``."""
        c = self.config
        text = instruction.strip()
        words = len(text.split())
        if words < c.min_words:
            return Verdict(False, "too_short", f"{words} words (< {c.min_words})")
        if words > c.max_words:
            return Verdict(False, "too_long", f"{words} words (> {c.max_words})")
        low = text.lower()
        for w, rx in zip(c.blocklist, self._block):
            if rx.search(low):
                return Verdict(False, "blocklist", f"names {w!r}")
        if low.startswith("write a program"):
            return Verdict(False, "bad_start", "starts with 'Write a program'")
        if not text[0].isascii() or not text[0].isalnum():
            return Verdict(False, "bad_start", f"starts with {text[0]!r}")
        ids = self.index.ids(text)
        score, where = self.index.best(ids)
        if score >= c.threshold:
            return Verdict(False, "similar", f"ROUGE-L {score:.3f} >= {c.threshold}",
                           self.texts[where], score)
        if add:
            self.index.add(ids)
            self.texts.append(text)
        return Verdict(True, similarity=score if where >= 0 else None)


def build_messages(examples: Sequence[dict[str, str]]) -> list[dict]:
    """The chat messages that ask for one new task like ``examples``."""
    shown = "\n".join(f"Task {i}: {json.dumps(e, ensure_ascii=False)}"
                      for i, e in enumerate(examples, 1))
    return [{"role": "system", "content": "You write new, varied tasks for training an "
             "assistant. Reply with one JSON object with an instruction and its answer."},
            {"role": "user", "content": f"Here are example tasks:\n{shown}\nWrite one new "
             "task, different from these, and its answer."}]


def call_params(seed: int, i: int, temperature: float, max_tokens: int) -> dict:
    """The sampling params of call ``i`` of a run seeded ``seed``."""
    return {"temperature": temperature, "top_p": 0.95, "max_tokens": max_tokens,
            "seed": (seed * 1_000_003 + i) % 2**31}


@dataclass
class GenerationResult:
    """Kept rows, rejected rows (with reason) and every model call, in order."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)


def _parse(reply: dict) -> tuple[str, str] | str:
    obj = reply.get("json")
    if obj is None:
        try:
            obj = json.loads(reply.get("text") or "")
        except ValueError:
            return f"not a JSON object (finish {reply.get('finish_reason')})"
    if not isinstance(obj, dict):
        return "not a JSON object"
    ins, ans = obj.get("instruction"), obj.get("answer")
    if not isinstance(ins, str) or not ins.strip():
        return "no instruction"
    if not isinstance(ans, str) or not ans.strip():
        return "no answer"
    return ins.strip(), ans.strip()


def generate_instructions(call: Call, seeds: Sequence[dict[str, str]], filt: InstructionFilter,
                          *, n: int, seed: int = 0, examples: int = 3,
                          temperature: float = 0.7, max_tokens: int = 128,
                          progress: Callable[[str, int, int], None] | None = None
                          ) -> GenerationResult:
    """Make ``n`` model calls and filter their tasks (see the module docstring)."""
    if n < 1:
        raise InvalidArtifact(f"self-instruct: n must be at least 1, not {n}")
    if not seeds:
        raise InvalidArtifact("self-instruct: the seed dataset has no tasks")
    out = GenerationResult()
    for i in range(n):
        rng = random.Random(seed * 1_000_003 + i)
        shown = rng.sample(list(seeds), min(examples, len(seeds)))
        messages = build_messages(shown)
        params = call_params(seed, i, temperature, max_tokens)
        reply = call(messages, params, SCHEMA)
        out.calls.append({"call": i, "messages": json.dumps(messages, ensure_ascii=False),
                          "params": json.dumps(params), "seed": params["seed"],
                          "json_schema": json.dumps(SCHEMA), "output": reply.get("text") or "",
                          "finish_reason": reply.get("finish_reason") or "",
                          "record": json.dumps(reply.get("record") or {}, default=str)})
        got = _parse(reply)
        row: dict[str, Any] = {"call": i}
        if isinstance(got, str):
            out.rejected.append({**row, "instruction": None, "answer": None,
                                 "reason": "invalid_output", "detail": got,
                                 "similar_to": None, "similarity": None})
        else:
            v = filt.check(got[0])
            row.update(instruction=got[0], answer=got[1])
            if v.kept:
                out.kept.append(row)
            else:
                out.rejected.append({**row, "reason": v.reason, "detail": v.detail,
                                     "similar_to": v.similar_to, "similarity": v.similarity})
        if progress:
            progress("self-instruct", i + 1, n)
    return out
