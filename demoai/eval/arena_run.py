"""``arena run``: pairwise battles among models on a prompt set, judged by a model or a
person, rated by Bradley-Terry with bootstrap intervals (:mod:`~demoai.eval.arena`).

Prompts are a dataset committed in the tree (a text column, ``prompt`` by default), pinned
by digest; models are references as ``eval run`` takes them (``smollm2``, a model path,
``MODEL+ADAPTER``). Answers are greedy (one per model and prompt); each battle is judged in
both orders. The battles are a table; the :class:`~demoai.objects.ArenaResult` pins the
models, prompts, judge and template.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import pyarrow as pa

from demoai.engines.llm import ModelPool, spec_key
from demoai.errors import InvalidArtifact
from demoai.eval.arena import Leaderboard, ratings
from demoai.eval.battles import JUDGE_TEMPLATE_DIGEST, Battle, make_judge, run_battles
from demoai.eval.plan import committed_dataset
from demoai.eval.run import open_model
from demoai.objects import ArenaResult
from demoai.registry.resolve import resolve_model, split_model_id
from demoai.store.git.lineage import environment
from demoai.store.git.repo import Repository
from demoai.store.kinds import load_table

__all__ = ["run_arena", "ANSWER_PARAMS", "battles_table", "VERDICT_SCHEMA"]

VERDICT_SCHEMA = {"type": "object", "properties": {"verdict": {"enum": ["A", "B", "C"]}},
                  "required": ["verdict"], "additionalProperties": False}
"""What a judge model's reply is constrained to: A, B, or C for a tie."""

ANSWER_PARAMS = {"temperature": 0.0, "max_tokens": 128}
"""Decoding of the answers and of the judge (greedy, so a re-run gives the same battles)."""


def battles_table(battles: list[Battle]) -> pa.Table:
    """The battles as a table (one row each)."""
    rows = [b.to_dict() for b in battles]
    cols = ["prompt_index", "prompt", "model_a", "model_b", "answer_a", "answer_b", "winner",
            "judge", "raw", "error", "template_digest", "swapped"]
    return pa.table({c: [r.get(c) if not isinstance(r.get(c), (dict, list)) else json.dumps(r.get(c))
                         for r in rows] for c in cols})


def run_arena(repo: Repository, models: list[str], prompts: str, *, name: str = "arena",
              judge: str | None = None, human: Callable[[str, str, str], str] | None = None,
              column: str = "prompt", limit: int | None = None, rev: str = "HEAD", seed: int = 0,
              rounds: int = 1000, on_progress: Callable[[int, int], None] | None = None
              ) -> tuple[ArenaResult, Leaderboard, list[Battle]]:
    """Run the battles and rate the models; returns the record to commit, the leaderboard
    and the battles."""
    if len(set(models)) < 2:
        raise InvalidArtifact("an arena needs at least two different models (--models A,B)")
    if (judge is None) == (human is None):
        raise InvalidArtifact("give a judge model (--judge MODEL) or ask a person (--human)")
    ds = committed_dataset(repo, prompts, rev, "arena")
    if column not in ds.columns:
        raise InvalidArtifact(f"the prompts dataset {prompts} has no column {column!r} "
                              f"(it has {', '.join(ds.columns)})", column=column)
    texts = [t for t in load_table(repo, ds, columns=[column]).column(column).to_pylist()
             if isinstance(t, str) and t.strip()][:limit]
    if not texts:
        raise InvalidArtifact(f"the prompts dataset {prompts} has no text in column {column!r}")
    specs = {}
    for m in models:
        base, adapter = split_model_id(m)
        specs[m] = resolve_model(repo, base, rev, None, adapter)
    pool = ModelPool(size=max(2, len(models) + 1))
    held: dict[str, tuple[Any, Callable[[], None]]] = {}

    def backend(ref: str, spec: dict[str, Any]) -> Any:
        # one held backend per distinct spec: two references to the same weights (or the
        # judge being one of the models) share it rather than waiting on its lock
        k = spec_key(spec)
        if k not in held:
            held[k] = open_model(spec, pool)
        return held[k][0]

    def generate(model: str, prompt: str) -> str:
        return backend(model, specs[model]).chat([{"role": "user", "content": prompt}],
                                                 params={**ANSWER_PARAMS, "seed": seed}).text

    judge_fn = None
    judge_spec = None
    if judge is not None:
        jbase, jad = split_model_id(judge)
        judge_spec = resolve_model(repo, jbase, rev, None, jad)

        def complete(text: str) -> str:
            # the verdict is constrained to the schema (a small judge cannot drift off-format
            # through a local backend); the raw reply is kept, the marker line appended
            res = backend("judge:" + judge, judge_spec).chat(
                [{"role": "user", "content": text}], params={**ANSWER_PARAMS, "seed": seed},
                json_schema=VERDICT_SCHEMA)
            verdict = (res.json or {}).get("verdict") if isinstance(res.json, dict) else None
            return res.text + (f"\n[[{verdict}]]" if verdict in ("A", "B", "C") else "")
        judge_fn = make_judge(complete)
    try:
        battles = run_battles(models, texts, generate, judge=judge_fn, human=human, seed=seed,
                              on_progress=on_progress)
    finally:
        for _, release in held.values():
            release()
        pool.close()
    decided = [b for b in battles if b.winner is not None]
    if not decided:
        raise InvalidArtifact(f"no battle was decided ({len(battles)} errored: the judge answered "
                              "off-format every time); nothing to rate", battles=len(battles))
    board = ratings(decided, rounds=rounds, seed=seed)
    ref = repo.tables.write(battles_table(battles))
    record = ArenaResult.create(
        name=name, models={m: specs[m].get("adapter_digest") or specs[m].get("digest") for m in models},
        prompts=ds.digest, judge={"model": judge, "digest": judge_spec.get("digest") if judge_spec else None,
                                  "human": human is not None, "template": JUDGE_TEMPLATE_DIGEST},
        leaderboard=board.to_dict(),
        counts={"battles": len(battles), "decided": len(decided), "errored": len(battles) - len(decided),
                "prompts": len(texts)},
        pins={"prompts_path": prompts, "column": column, "params": ANSWER_PARAMS, "seed": seed,
              "rounds": rounds, "hardware": environment()["host"]},
        battles=ref.to_dict())
    return record, board, battles
