"""``demoai data self-instruct`` and ``demoai data augment``: rows made by a model (or by
templates), committed with the model calls that made them.

Both write OUT (the new rows) and, beside it, ``OUT.prep/calls.parquet`` (every model call:
messages, params with its seed, JSON schema, output, finish reason, the backend's replay
record) and ``OUT.prep/rejected.parquet`` (each rejected candidate with its reason), and
commit the three together with the inputs' digests (seeds or source, model). The run's key
(inputs, model, parameters) is kept in the calls table's metadata: the same run again is
not made again (``up_to_date``). ``replay=True`` answers every call from the calls table at
``rev`` instead of the model, so a step re-runs its filters without a model, and fails if
a call is not recorded.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pyarrow as pa

from demoai.errors import InvalidArtifact, PathNotFound, RefNotFound, ReplayError
from demoai.porcelain.data.prepare import (
    changes_of, check_worktree, joined_texts, load_source, sidecar_path, text_columns, write_commit,
)
from demoai.prep.augment import augment_with_model, check_templates, render_templates
from demoai.prep.selfinstruct import FilterConfig, InstructionFilter, generate_instructions
from demoai.prep.steps import augmented_path
from demoai.store import Repository
from demoai.store.kinds import load_table

__all__ = ["SelfInstructResult", "AugmentResult", "self_instruct", "augment", "model_caller"]

Progress = Callable[[str, int, int], None] | None
_RUN_META = b"demoai.run"
_CALLS = pa.schema([("call", pa.int64()), ("row", pa.int64()), ("step", pa.int64()),
                    ("messages", pa.string()), ("params", pa.string()), ("seed", pa.int64()),
                    ("json_schema", pa.string()), ("output", pa.string()),
                    ("finish_reason", pa.string()), ("record", pa.string())])
_TABLE_FMT = {".jsonl": "jsonl", ".parquet": "parquet", ".csv": "csv"}


@dataclass
class SelfInstructResult:
    """A self-instruct run: kept and rejected counts (rejections by reason), the commit
    (None with ``up_to_date``), the paths written and the model."""

    path: str
    commit: str | None
    calls: int
    kept: int
    rejected: int
    reasons: dict[str, int]
    model: str
    up_to_date: bool = False
    outputs: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


@dataclass
class AugmentResult:
    """An augment run: rows made and rejected (by reason), the commit and paths."""

    path: str
    source: str
    commit: str | None
    made: int
    rejected: int
    reasons: dict[str, int]
    method: str
    up_to_date: bool = False
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


def _digest(obj: Any) -> str:
    return "blake2b:" + hashlib.blake2b(json.dumps(obj, sort_keys=True, default=str).encode(),
                                        digest_size=20).hexdigest()


def _out_format(out: str) -> str:
    fmt = _TABLE_FMT.get(Path(out).suffix.lower())
    if fmt is None:
        raise InvalidArtifact(f"{out}: the output must end in .jsonl, .parquet or .csv",
                              path=out)
    return fmt


def _recorded(repo: Repository, rev: str, out: str) -> pa.Table | None:
    try:
        return load_table(repo, repo.artifact_at(repo.resolve(rev), sidecar_path(out,
                                                                             "calls.parquet")))
    except (PathNotFound, RefNotFound):
        return None


def model_caller(repo: Repository, model: str, *, rev: str = "HEAD",
                 replay_from: pa.Table | None = None) -> tuple[Callable, dict, Callable[[], None]]:
    """(call, description, close) for ``model`` (``smollm2``, a committed model path, or
    ``openai:NAME``): ``call(messages, params, json_schema) -> {text, json, finish_reason,
    record}``. With ``replay_from`` (a calls table), calls are answered from it."""
    if replay_from is not None:
        rec = {(r["messages"], r["params"]): r for r in replay_from.to_pylist()}
        desc = json.loads((replay_from.schema.metadata or {}).get(_RUN_META, b"{}")
                          ).get("model", {})

        def replay(messages: list[dict], params: dict, schema: dict | None) -> dict:
            key = (json.dumps(messages, ensure_ascii=False), json.dumps(params))
            r = rec.get(key)
            if r is None:
                raise ReplayError("replay: this call is not recorded (the seeds, parameters or "
                                  "code changed); run without --replay", seed=params.get("seed"))
            parsed = None
            if schema is not None:
                try:
                    parsed = json.loads(r["output"])
                except ValueError:
                    parsed = None
            return {"text": r["output"], "json": parsed, "finish_reason": r["finish_reason"],
                    "record": json.loads(r["record"] or "{}")}
        return replay, desc, lambda: None
    from demoai.engines.llm import open_backend
    from demoai.registry.resolve import resolve_model
    spec = resolve_model(repo, model, rev)
    backend = open_backend(spec)
    desc = {"ref": model, "digest": spec.get("digest"), **backend.describe()}

    def call(messages: list[dict], params: dict, schema: dict | None) -> dict:
        r = backend.chat(messages, params=params, json_schema=schema)
        return {"text": r.text, "json": r.json, "finish_reason": r.finish_reason,
                "record": r.record}
    return call, desc, backend.close


def _calls_table(calls: list[dict], run: dict) -> pa.Table:
    rows = [{k: c.get(k) for k in _CALLS.names} for c in calls]
    t = pa.Table.from_pylist(rows, schema=_CALLS)
    return t.replace_schema_metadata({_RUN_META: json.dumps(run, default=str).encode()})


def _up_to_date(repo: Repository, rev: str, out: str, key: str) -> bool:
    t = _recorded(repo, rev, out)
    if t is None:
        return False
    return json.loads((t.schema.metadata or {}).get(_RUN_META, b"{}")).get("key") == key


def self_instruct(repo: Repository, seeds_path: str, out: str, *, model: str = "smollm2",
                  n: int = 20, seed: int = 0, column: str = "instruction",
                  answer_column: str | None = None, examples: int = 3,
                  threshold: float = 0.7, min_words: int = 3, max_words: int = 150,
                  blocklist: Sequence[str] | None = None, temperature: float = 0.7,
                  max_tokens: int = 128, rev: str = "HEAD", replay: bool = False,
                  tokenize: Callable[[str], list[str]] | None = None,
                  message: str | None = None, progress: Progress = None) -> SelfInstructResult:
    """Generate ``n`` tasks from the seed tasks of ``seeds_path`` (its ``column`` and,
    when given or present as ``answer``/``output``, its answers) with ``model``, filter
    them (:mod:`demoai.prep.selfinstruct`; ROUGE-L with rouge-score's tokenizer) against
    the seeds and the instructions already in ``out``, and commit ``out`` (earlier rows
    plus the kept ones, keyed ``id``) with the rejected rows and every model call."""
    from demoai.porcelain._util import repo_path
    fmt = _out_format(out)
    src = load_source(repo, seeds_path, rev)
    text_columns(src.table, column, src.art.key, "self-instruct")
    if answer_column is None:
        answer_column = next((c for c in ("answer", "output", "response")
                              if c in src.table.column_names), None)
    elif answer_column not in src.table.column_names:
        raise InvalidArtifact(f"self-instruct: no answer column {answer_column!r} (columns: "
                              f"{src.table.column_names})", column=answer_column,
                              reason="missing")
    ins = [x for x in src.table.column(column).to_pylist()]
    ans = (src.table.column(answer_column).to_pylist() if answer_column else [None] * len(ins))
    seeds = [{"instruction": i, **({"answer": a} if a else {})}
             for i, a in zip(ins, ans) if i and i.strip()]
    rel = repo_path(repo, out)
    base = rev
    if replay:      # the step's own input: OUT as it was before the commit that recorded it
        step = next(changes_of(repo, sidecar_path(rel, "calls.parquet"), repo.resolve(rev)),
                    None)
        if step is None:
            raise ReplayError(f"replay: no recorded calls for {rel} at {rev}", path=rel)
        parents = repo.commit_info(step).parents
        base = parents[0] if parents else step
    prev = None
    try:
        prev = load_source(repo, rel, base, rel=rel)
    except (PathNotFound, RefNotFound):
        pass
    prev_rows = prev.table.to_pylist() if prev is not None else []
    config = FilterConfig(threshold, min_words, max_words,
                          tuple(blocklist) if blocklist is not None else FilterConfig().blocklist)
    params = {"n": n, "seed": seed, "examples": examples, "temperature": temperature,
              "max_tokens": max_tokens, "filter": config.to_dict(), "column": column,
              "answer_column": answer_column}
    recorded = _recorded(repo, rev, rel) if replay else None
    if replay and recorded is None:
        raise ReplayError(f"replay: no recorded calls for {rel} at {rev}", path=rel)
    call, desc, close = model_caller(repo, model, rev=rev, replay_from=recorded)
    model_id = desc.get("digest") or desc.get("model_digest") or model
    run_key = _digest([src.art.digest, model_id, params])
    if not replay and _up_to_date(repo, rev, rel, run_key):
        close()
        return SelfInstructResult(rel, None, n, 0, 0, {}, model, up_to_date=True)
    if tokenize is None:
        from demoai.eval.metrics import rouge_tokenize
        tokenize = rouge_tokenize
    try:
        filt = InstructionFilter(tokenize, [s["instruction"] for s in seeds] +
                                 [r.get("instruction") or "" for r in prev_rows], config)
        gen = generate_instructions(call, seeds, filt, n=n, seed=seed, examples=examples,
                                    temperature=temperature, max_tokens=max_tokens,
                                    progress=progress)
    finally:
        close()
    new = [{"id": f"s{seed}-{r['call']}", "instruction": r["instruction"],
            "answer": r["answer"], "call": r["call"]} for r in gen.kept]
    have = {r.get("id") for r in prev_rows}
    new = [r for r in new if r["id"] not in have]
    if prev is not None:
        table = pa.concat_tables([prev.table, pa.Table.from_pylist(new, schema=prev.table.schema)]
                                 ) if new else prev.table
    else:
        table = pa.Table.from_pylist(new, schema=pa.schema([
            ("id", pa.string()), ("instruction", pa.string()), ("answer", pa.string()),
            ("call", pa.int64())]))
    if table.num_rows == 0 and fmt != "parquet":
        why = ", ".join(f"{k} {v}" for k, v in sorted(_reasons(gen.rejected).items()))
        raise InvalidArtifact(f"self-instruct: every one of the {n} candidates was rejected "
                              f"({why}); nothing was committed",
                              reason="empty_result", path=rel)
    rej = pa.Table.from_pylist(gen.rejected, schema=pa.schema([
        ("call", pa.int64()), ("instruction", pa.string()), ("answer", pa.string()),
        ("reason", pa.string()), ("detail", pa.string()), ("similar_to", pa.string()),
        ("similarity", pa.float64())]))
    run = {"key": run_key, "verb": "self-instruct", "model": desc, "params": params}
    files = {rel: (table, fmt), sidecar_path(rel, "calls.parquet"): (_calls_table(gen.calls, run),
                                                                     "parquet"),
             sidecar_path(rel, "rejected.parquet"): (rej, "parquet")}
    check_worktree(repo, list(files))
    reasons = _reasons(gen.rejected)
    msg = message or (f"data self-instruct {rel}: {len(gen.kept)} kept, {len(gen.rejected)} "
                      f"rejected of {n} ({model})")
    inputs = {"seeds": src.art.digest, **({"model": model_id} if model_id else {})}
    if prev is not None:
        inputs["previous"] = prev.art.digest
    commit = write_commit(repo, files, msg, keys={rel: "id"}, inputs=inputs,
                          parameters={"verb": "self-instruct", "seeds": src.path, "model": model,
                                      "replay": replay, **params})
    return SelfInstructResult(rel, commit, n, len(gen.kept), len(gen.rejected),
                              reasons, model, up_to_date=commit is None, outputs=list(files),
                              rows=new, rejections=gen.rejected)


def _reasons(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["reason"]] = out.get(r["reason"], 0) + 1
    return out


def augment(repo: Repository, path: str, *, templates: Sequence[str] = (),
            model: str | None = None, mode: str = "paraphrase", column: str | None = None,
            out: str | None = None, per_row: int = 1, seed: int = 0,
            temperature: float = 0.7, max_tokens: int = 128, rev: str = "HEAD",
            replay: bool = False, message: str | None = None,
            progress: Progress = None) -> AugmentResult:
    """New rows from the rows of ``path``: ``templates`` rendered into ``column`` (each row
    ``per_row`` times, templates drawn with ``seed``), or ``column`` rewritten by ``model``
    in ``mode`` (:mod:`demoai.prep.augment`). ``out`` (default ``PATH_stem.augmented.ext``)
    holds the source columns with ``column`` replaced, plus ``aug_id`` (the key),
    ``source_key`` and ``augment``; committed with the calls and rejections beside it."""
    from demoai.porcelain._util import repo_path
    if bool(templates) == bool(model):
        raise InvalidArtifact("augment: give either --template (repeatable) or --model")
    src = load_source(repo, path, rev)
    cols = text_columns(src.table, column, src.art.key, "augment")
    column = cols[0]
    rel = repo_path(repo, out) if out else augmented_path(src.path)
    fmt = _out_format(rel)
    rows = src.table.to_pylist()
    keys = src.keys
    if templates:
        check_templates(templates, src.table.column_names)
        made = [(i, f"template{j}", text) for i, j, text in
                render_templates(rows, templates, seed=seed, per_row=per_row)]
        rejected: list[dict] = []
        calls: list[dict] = []
        method = "template"
        model_desc: dict = {}
        params: dict[str, Any] = {"templates": list(templates), "per_row": per_row,
                                  "seed": seed, "column": column}
    else:
        params = {"mode": mode, "seed": seed, "temperature": temperature,
                  "max_tokens": max_tokens, "column": column}
        recorded = _recorded(repo, rev, rel) if replay else None
        if replay and recorded is None:
            raise ReplayError(f"replay: no recorded calls for {rel} at {rev}", path=rel)
        call, model_desc, close = model_caller(repo, model or "smollm2", rev=rev,
                                               replay_from=recorded)
        try:
            res = augment_with_model(call, joined_texts(src.table, [column], "augment")
                                     .to_pylist(), mode, seed=seed, temperature=temperature,
                                     max_tokens=max_tokens, progress=progress)
        finally:
            close()
        made = [(i, mode, text) for i, text in res.made]
        rejected = [{"source_key": keys[r["row"]], "reason": r["reason"],
                     "detail": r["detail"]} for r in res.rejected]
        calls = res.calls
        method = f"model:{mode}"
    count: dict[int, int] = {}
    out_rows = []
    for i, tag, text in made:
        j = count[i] = count.get(i, 0) + 1
        out_rows.append({"aug_id": f"{keys[i]}:{tag}:{j}", **rows[i], column: text,
                         "source_key": keys[i], "augment": tag})
    fields = [pa.field("aug_id", pa.string()), *[f for f in src.table.schema
                                                   if f.name not in ("aug_id", "source_key",
                                                                     "augment")],
              pa.field("source_key", pa.string()), pa.field("augment", pa.string())]
    table = pa.Table.from_pylist(out_rows, schema=pa.schema(fields))
    if table.num_rows == 0:
        why = ", ".join(f"{k} {v}" for k, v in sorted(_reasons(rejected).items()))
        raise InvalidArtifact(f"augment: no row was made ({why or 'no input rows'}); nothing "
                              "was committed", reason="empty_result", path=rel)
    model_id = model_desc.get("digest") or model_desc.get("model_digest")
    run = {"key": _digest([src.art.digest, model_id, params]), "verb": "augment",
           "model": model_desc, "params": params}
    rej = pa.Table.from_pylist(rejected, schema=pa.schema(
        [("source_key", pa.string()), ("reason", pa.string()), ("detail", pa.string())]))
    files = {rel: (table, fmt),
             sidecar_path(rel, "calls.parquet"): (_calls_table(calls, run), "parquet"),
             sidecar_path(rel, "rejected.parquet"): (rej, "parquet")}
    check_worktree(repo, list(files))
    msg = message or f"data augment {src.path} -> {rel}: {len(made)} rows ({method})"
    inputs = {"source": src.art.digest, **({"model": model_id} if model_id else {})}
    commit = write_commit(repo, files, msg, keys={rel: "aug_id"}, inputs=inputs,
                          parameters={"verb": "augment", "source": src.path, "method": method,
                                      "model": model, "replay": replay, **params})
    return AugmentResult(rel, src.path, commit, len(made), len(rejected), _reasons(rejected),
                         method, up_to_date=commit is None, outputs=list(files))
