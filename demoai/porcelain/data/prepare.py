"""The preparation steps of ``demoai data``: clean, dedup, split, contamination and why
(stats are in :mod:`.stats`, step files in :mod:`.run`). Each verb reads a dataset committed
at a revision (default HEAD), writes the new version back to the same path in the working tree (same format) and commits only what it
wrote, with lineage: the verb, its parameters and the input dataset's digest.

What a step removed or changed is kept with the version, beside the dataset, as ordinary
datasets in the tree (so ``gc``, ``push``/``clone``, ``fsck``, ``diff`` and ``query`` know
them without a new artifact kind): ``PATH.prep/why.parquet`` (one row per removed or changed
row: key, verb, action, rule, column, detail, count, duplicate_of, similarity) and, after
``dedup``, ``PATH.prep/minhash.parquet`` (MinHash signatures and normalized-text hashes of
the kept rows, by key; its schema metadata holds the MinHash parameters, the text columns
and the semantic threshold the rows were deduplicated at), which a later ``dedup`` reuses
so it hashes only new or edited rows. A row's key is its key
column's value (``add --key``), else ``#N``, its position in the step's input version.

Bad input (unknown rule, missing or non-text column, threshold outside (0, 1], an empty
result without ``allow_empty``, a working file with uncommitted edits) is a typed error
raised before anything is written; a failing commit puts the working files back.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from demoai.errors import (
    DirtyWorkingTree, InvalidArtifact, NothingToCommit, PathNotFound, RefNotFound,
    UnsupportedOperation,
)
from demoai.objects import Dataset
from demoai.porcelain._util import repo_path
from demoai.porcelain.add import add as _stage
from demoai.porcelain.add import rm as _unstage
from demoai.porcelain.commit import commit
from demoai.prep.clean import apply_rules, parse_rules, rule_from_text, text_column
from demoai.prep.contamination import DEFAULT_NGRAM, find_contamination
from demoai.prep.dedup import DEFAULT_THRESHOLD, SemanticIndex
from demoai.prep.dedup import dedup as _dedup
from demoai.prep.minhash import MinHashParams, Signatures, check_threshold, text_hashes
from demoai.prep.search import EMBEDDER_NAME, open_index
from demoai.prep.split import split_rows
from demoai.prep.steps import split_path
from demoai.store import Repository
from demoai.store.kinds import load_table
from demoai.store.tables import write_file

__all__ = ["StepResult", "clean", "dedup", "split", "contamination", "why", "WhyEntry",
           "ContaminationReport", "rule_spec", "load_rules", "sidecar_path", "DEFAULT_THRESHOLD",
           "DEFAULT_NGRAM"]

Progress = Callable[[str, int, int], None] | None
_COLS_META = b"demoai.columns"
_SEM_META = b"demoai.semantic"      # threshold and embedder the stored rows were deduplicated at
_WHY_SCHEMA = pa.schema([("key", pa.string()), ("verb", pa.string()), ("action", pa.string()),
                         ("rule", pa.string()), ("column", pa.string()), ("detail", pa.string()),
                         ("count", pa.int64()), ("duplicate_of", pa.string()),
                         ("similarity", pa.float64())])


def sidecar_path(path: str, name: str) -> str:
    """Where a step keeps ``name`` (``why.parquet``, ``minhash.parquet``) for ``path``."""
    return f"{path}.prep/{name}"


@dataclass
class StepResult:
    """What a step did: the commit (None when nothing changed: ``up_to_date``), the
    source version, rows in and out, the paths written and a verb-specific summary."""

    verb: str
    path: str
    source_commit: str
    source_digest: str
    rows_in: int
    rows_out: int
    commit: str | None = None
    up_to_date: bool = False
    outputs: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


@dataclass
class _Source:
    path: str
    commit: str
    art: Dataset
    table: pa.Table

    @property
    def keys(self) -> list[str]:
        if self.art.key:
            return [v if isinstance(v, str) else json.dumps(v, default=str)
                    for v in self.table.column(self.art.key).to_pylist()]
        return [f"#{i}" for i in range(self.table.num_rows)]


def _rel(repo: Repository, path: str) -> str:
    return repo_path(repo, path)


def _load(repo: Repository, path: str, rev: str = "HEAD", rel: str | None = None) -> _Source:
    rel = rel or _rel(repo, path)
    commit_id = repo.resolve(rev)
    try:
        art = repo.artifact_at(commit_id, rel)
    except PathNotFound:
        raise PathNotFound(f"no dataset {rel} in {rev} (commit it first: `demoai add {rel}` "
                           "and `demoai commit`)", path=rel) from None
    if not isinstance(art, Dataset):
        raise InvalidArtifact(f"{rel} at {rev} is a {art.kind}, not a dataset", path=rel)
    return _Source(rel, commit_id, art, load_table(repo, art))


def _columns(table: pa.Table, column: str | Sequence[str] | None, key: str | None,
             what: str) -> list[str]:
    if column:
        cols = [column] if isinstance(column, str) else list(column)
        for c in cols:
            text_column(table, c, what)           # missing / not text: typed error
        return cols
    cols = [f.name for f in table.schema if f.name != key and (
        pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]
    if not cols:
        raise InvalidArtifact(f"{what}: the dataset has no text column (columns: "
                              f"{table.column_names}); name one with --column", reason="not_text")
    return cols


def _texts(table: pa.Table, cols: list[str], what: str) -> pa.Array:
    arrs = [pc.fill_null(text_column(table, c, what), "") for c in cols]
    if len(arrs) == 1:
        return arrs[0]
    return pc.binary_join_element_wise(*arrs, "\n")


def _check_worktree(repo: Repository, rels: list[str]) -> None:
    """Refuse to overwrite a working file that holds what HEAD does not (edits not committed)."""
    head = repo.tree_entries(repo.head_commit())
    state = repo.index.read()
    for rel in rels:
        wp = repo.workpath(rel)
        staged = state.entries.get(rel)
        if staged is not None and staged != head.get(rel):
            raise DirtyWorkingTree(f"{rel} has staged changes; commit them or `demoai restore "
                                   f"--staged {rel}` first", path=rel)
        if wp.exists() and (staged is None or not state.is_clean(rel, wp)):
            raise DirtyWorkingTree(f"{rel} has changes that are not committed; commit them or "
                                   f"`demoai restore {rel}` first", path=rel)


def _write_commit(repo: Repository, files: dict[str, tuple[pa.Table, str]], message: str, *,
                  keys: dict[str, str | None], inputs: dict[str, str],
                  parameters: dict[str, Any],
                  writer: Callable[[pa.Table, Path, str], None] | None = None) -> str | None:
    """Write ``files`` (rel -> (table, format)) with ``writer`` (default
    :func:`~demoai.store.tables.write_file`) and commit exactly them; a failure puts the
    working files (and the index entries of new paths) back. None: nothing changed."""
    backup: dict[str, bytes | None] = {}
    head = repo.tree_entries(repo.head_commit())
    staged_new: list[str] = []
    try:
        for rel, (table, fmt) in files.items():
            wp = repo.workpath(rel)
            backup[rel] = wp.read_bytes() if wp.is_file() else None
            wp.parent.mkdir(parents=True, exist_ok=True)
            (writer or write_file)(table, wp, fmt)
        for rel in files:
            if rel not in head and keys.get(rel):
                _stage(repo, [repo.workpath(rel)], key=keys[rel])
                staged_new.append(rel)
        return commit(repo, message, paths=[repo.workpath(r) for r in files], inputs=inputs,
                      parameters=parameters)
    except NothingToCommit:
        return None
    except BaseException:
        for rel in staged_new:
            try:
                _unstage(repo, [repo.workpath(rel)], cached=True)
            except Exception:       # noqa: BLE001  (best effort while failing)
                pass
        for rel, raw in backup.items():
            wp = repo.workpath(rel)
            if raw is None:
                wp.unlink(missing_ok=True)
            else:
                wp.write_bytes(raw)
        raise


def _fmt(src: _Source) -> str:
    if src.art.format == "hf":
        raise UnsupportedOperation(f"{src.path} is a saved HF dataset folder; data steps write "
                                   "JSONL, CSV or Parquet (export it to one of those first)")
    return src.art.format


def _why_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=_WHY_SCHEMA)


def _why_row(key: str, verb: str, action: str, rule: str, column: str, detail: str,
             count: int | None = None, duplicate_of: str | None = None,
             similarity: float | None = None) -> dict[str, Any]:
    return {"key": key, "verb": verb, "action": action, "rule": rule, "column": column,
            "detail": detail, "count": count, "duplicate_of": duplicate_of,
            "similarity": similarity}


def _finish(repo: Repository, verb: str, src: _Source, out: pa.Table, why_rows: list[dict],
            *, extra: dict[str, pa.Table] | None, message: str | None, parameters: dict[str, Any],
            inputs: dict[str, str] | None, allow_empty: bool, summary: dict[str, Any]
            ) -> StepResult:
    res = StepResult(verb, src.path, src.commit, src.art.digest, src.table.num_rows,
                     out.num_rows, summary=summary)
    if out.num_rows == 0 and src.table.num_rows and not allow_empty:
        raise InvalidArtifact(f"{verb}: every row of {src.path} would be removed; nothing was "
                              "committed (--allow-empty to commit an empty dataset)",
                              reason="empty_result", path=src.path)
    if not why_rows and out.num_rows == src.table.num_rows and not extra:
        res.up_to_date = True
        return res
    fmt = _fmt(src)
    if out.num_rows == 0 and fmt in ("jsonl", "csv"):
        raise UnsupportedOperation(f"{verb}: an empty {fmt.upper()} file keeps no columns, so "
                                   f"{src.path} cannot hold an empty version; keep the dataset "
                                   "as Parquet to commit it empty", path=src.path)
    files = {src.path: (out, fmt), sidecar_path(src.path, "why.parquet"): (_why_table(why_rows),
                                                                             "parquet")}
    for name, t in (extra or {}).items():
        files[sidecar_path(src.path, name)] = (t, "parquet")
    _check_worktree(repo, list(files))
    msg = message or f"data {verb} {src.path}: {src.table.num_rows} -> {out.num_rows} rows"
    params = {"verb": verb, **parameters, "source": {"path": src.path, "commit": src.commit,
                                                     "digest": src.art.digest},
              "why": sidecar_path(src.path, "why.parquet")}
    res.commit = _write_commit(repo, files, msg, keys={src.path: src.art.key},
                               inputs={"source": src.art.digest, **(inputs or {})},
                               parameters=params)
    res.up_to_date = res.commit is None
    res.outputs = list(files)
    return res


# ---- clean --------------------------------------------------------------------------------

def rule_spec(text: str) -> dict[str, Any]:
    """A rule spec from ``NAME[:k=v,...]`` (values read as YAML scalars; ``a|b`` is a
    list): ``length:unit=words,min=3`` -> ``{"name": "length", "unit": "words", "min": 3}``."""
    return rule_from_text(text)


def load_rules(path: str | os.PathLike) -> list[Any]:
    """The rule specs of a YAML file: a list, or a mapping with ``rules``."""
    import yaml
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PathNotFound(f"{path}: no such rules file", path=str(path)) from None
    except yaml.YAMLError as e:
        raise InvalidArtifact(f"clean: {path} is not valid YAML ({e})") from None
    if isinstance(doc, dict) and "rules" in doc:
        doc = doc["rules"]
    if not isinstance(doc, list) or not doc:
        raise InvalidArtifact(f"clean: {path} must hold a non-empty list of rules")
    return doc


def clean(repo: Repository, path: str, rules: Sequence[str | dict[str, Any]], *,
          column: str | Sequence[str] | None = None, rev: str = "HEAD",
          allow_empty: bool = False, message: str | None = None,
          progress: Progress = None) -> StepResult:
    """Apply cleaning ``rules`` (:func:`demoai.prep.clean.parse_rules` specs) to the text
    ``column`` (default: every text column but the key) and commit the result with a
    why table of what each rule removed or changed."""
    if not rules:
        raise InvalidArtifact("clean: give at least one rule (--rule NAME or --rules FILE)")
    parsed = parse_rules([rule_spec(r) if isinstance(r, str) else r for r in rules])
    src = _load(repo, path, rev)
    cols = _columns(src.table, column, src.art.key, "clean")
    res = apply_rules(src.table, parsed, cols, progress=progress)
    keys = src.keys
    rows = [_why_row(keys[r["row"]], "clean", "removed", r["rule"], r["column"], r["detail"])
            for r in res.removed.to_pylist()]
    for c in res.changes.to_pylist():
        kind = f" {c['kind']}" if c["kind"] else ""
        rows.append(_why_row(keys[c["row"]], "clean", "changed", c["rule"], c["column"],
                             f"{c['count']}{kind} edit(s)", count=c["count"]))
    return _finish(repo, "clean", src, res.table, rows, extra=None, message=message,
                   parameters={"rules": res.rules, "columns": cols}, inputs=None,
                   allow_empty=allow_empty,
                   summary={"rules": res.summary, "redactions": res.redactions,
                            "removed": int((~res.keep).sum()), "columns": cols})


# ---- dedup --------------------------------------------------------------------------------

def _stored_sigs(repo: Repository, commit_id: str, rel: str, params: MinHashParams,
                 cols: list[str], *, semantic: bool = False
                 ) -> tuple[Signatures, list[str]] | tuple[Signatures, list[str], Any] | None:
    """The signatures and keys stored with ``rel`` at ``commit_id`` for ``params`` and
    ``cols`` (None: none usable); ``semantic``: also the semantic threshold the stored rows
    were deduplicated at (None: not semantically)."""
    try:
        art = repo.artifact_at(commit_id, sidecar_path(rel, "minhash.parquet"))
    except (PathNotFound, RefNotFound):
        return None
    t = load_table(repo, art)
    meta = t.schema.metadata or {}
    if json.loads(meta.get(_COLS_META, b"[]")) != cols:
        return None
    try:
        sig = Signatures.from_arrow(t)
    except InvalidArtifact:
        return None
    if sig.params != params:
        return None
    if semantic:
        sem = json.loads(meta.get(_SEM_META, b"null")) or {}
        return sig, t.column("key").to_pylist(), (
            sem.get("threshold") if sem.get("embedder") == EMBEDDER_NAME else None)
    return sig, t.column("key").to_pylist()


def _sig_table(sig: Signatures, keys: list[str], cols: list[str],
               semantic: float | None = None) -> pa.Table:
    t = sig.to_arrow().append_column("key", pa.array(keys, type=pa.string()))
    sem = {"threshold": semantic, "embedder": EMBEDDER_NAME} if semantic is not None else None
    return t.replace_schema_metadata({**(t.schema.metadata or {}),
                                      _COLS_META: json.dumps(cols).encode(),
                                      _SEM_META: json.dumps(sem).encode()})


def _datasets_of(repo: Repository, spec: str, exclude: str) -> list[tuple[str, str, str]]:
    """(label, commit, path) of the datasets ``spec`` names: ``PATH[@REF]``, or ``REF`` for
    every dataset at REF but ``exclude`` and step side tables."""
    path, _, ref = spec.rpartition("@") if "@" in spec else (spec, "", "HEAD")
    head = repo.resolve(ref or "HEAD")
    arts = repo.artifacts(head)
    if path in arts:
        return [(f"{path}@{ref or 'HEAD'}", head, path)]
    try:
        c = repo.resolve(spec)
    except RefNotFound:
        raise PathNotFound(f"{spec}: neither a dataset path at {ref or 'HEAD'} nor a ref",
                           path=spec) from None
    out = [(f"{p}@{spec}", c, p) for p, a in sorted(repo.artifacts(c).items())
           if isinstance(a, Dataset) and p != exclude and ".prep/" not in p]
    if not out:
        raise PathNotFound(f"{spec} holds no other dataset to compare with", path=spec)
    return out


def _semantic_indexes(repo: Repository, src: _Source, cols: list[str], texts: pa.Array,
                      new_idx: np.ndarray, old_rows: np.ndarray, others: list[tuple],
                      embed: Callable[[list[str]], Any] | None, progress: Progress
                      ) -> tuple[np.ndarray, list[SemanticIndex], dict[str, Any]]:
    """The vectors of the rows to deduplicate and the indexes to search, from the row
    index of ``src``'s version (built or reused under ``.demoai/cache/search``, embedding
    only rows whose text is new) and of each ``others`` dataset (``(label, source, texts,
    first existing row)``)."""
    cache = repo.control / "cache"
    index = open_index(cache, src.path, src.art.digest, cols, src.keys, texts.to_pylist(),
                       embed, progress)
    n = len(texts)
    as_input = np.full(n, -1, dtype=np.int64)
    as_input[new_idx] = np.arange(len(new_idx))
    as_existing = np.full(n, -1, dtype=np.int64)
    as_existing[old_rows] = np.arange(len(old_rows))
    found = [SemanticIndex(index, as_input, as_existing)]
    info = {"embedder": EMBEDDER_NAME, "embedded": index.embedded, "indexed_rows": index.rows,
            "index": "built" if index.built else "reused",
            "search": "ann" if index.ann else "exact", "against": {}}
    for label, other, otexts, first in others:
        oi = open_index(cache, other.path, other.art.digest, cols, other.keys,
                        otexts.to_pylist(), embed, progress)
        found.append(SemanticIndex(oi, None, first + np.arange(oi.rows)))
        info["embedded"] += oi.embedded
        info["against"][label] = {"rows": oi.rows, "embedded": oi.embedded,
                                  "index": "built" if oi.built else "reused",
                                  "search": "ann" if oi.ann else "exact"}
    return index.vectors()[new_idx], found, info


def dedup(repo: Repository, path: str, *, column: str | Sequence[str] | None = None,
          threshold: float = DEFAULT_THRESHOLD, exact: bool = True, near: bool = True,
          against: Sequence[str] = (), num_perm: int = 128, ngram: int = 5, rev: str = "HEAD",
          allow_empty: bool = False, message: str | None = None,
          semantic: float | None = None, embed: Callable[[list[str]], Any] | None = None,
          progress: Progress = None) -> StepResult:
    """Drop exact (normalized text) and MinHash near-duplicate rows (Jaccard >= ``threshold``
    of word ``ngram``-grams) and commit the result, the clusters (each dropped row and the
    kept row it duplicates) and the kept rows' signatures. Rows whose key and text match the
    signatures stored with the input version are not hashed again; ``against``: datasets
    (``PATH[@REF]``, or ``REF`` for all at REF) whose rows new rows must not duplicate.
    ``semantic``: also drop rows whose embedding (``embed``, default wordllama's shipped
    model) has cosine similarity >= ``semantic`` with a kept row's (or an ``against`` row's):
    the vectors come from the version's row index (the one ``data search`` uses: only rows
    with new text are embedded) and each new row's neighbours from a search of it (exact
    below :data:`~demoai.prep.search.ANN_MIN_ROWS` rows, approximate above)."""
    threshold = check_threshold(threshold)
    if semantic is not None:
        semantic = check_threshold(semantic, "semantic threshold")
    if not exact and not near and semantic is None:
        raise InvalidArtifact("dedup: turn on exact, near or semantic")
    params = MinHashParams(num_perm=num_perm, ngram=ngram)
    src = _load(repo, path, rev)
    cols = _columns(src.table, column, src.art.key, "dedup")
    texts = _texts(src.table, cols, "dedup")
    keys = src.keys
    th = text_hashes(texts)
    n = len(texts)
    ex_sigs: list[Signatures] = []
    ex_labels: list[str] = []
    old_rows = np.zeros(0, dtype=np.int64)
    old_sig_idx = np.zeros(0, dtype=np.int64)
    stored = (_stored_sigs(repo, src.commit, src.path, params, cols, semantic=True)
              if near else None)
    if stored is not None and semantic is not None and (stored[2] is None
                                                        or stored[2] > semantic):
        stored = None       # the stored rows were not deduplicated this closely by meaning
    if stored is not None:
        sig, skeys = stored[0], stored[1]
        where = {(k, int(h)): i for i, (k, h) in enumerate(zip(skeys, sig.text_hash.tolist()))}
        if not src.art.key:      # unkeyed: positions move, match by text alone
            where = {(None, int(h)): i for i, h in enumerate(sig.text_hash.tolist())}
        hits = [(i, where.get((keys[i] if src.art.key else None, int(th[i])), -1))
                for i in range(n)]
        pairs = np.array([(i, j) for i, j in hits if j >= 0], dtype=np.int64).reshape(-1, 2)
        if not src.art.key and len(pairs):            # each stored row stands for one row
            _, first = np.unique(pairs[:, 1], return_index=True)
            pairs = pairs[np.sort(first)]
        old_rows, old_sig_idx = pairs[:, 0], pairs[:, 1]
        ex_sigs.append(sig.take(old_sig_idx))
        ex_labels += [keys[i] for i in old_rows]
    against_rows = 0
    others: list[tuple] = []
    digests: dict[str, str] = {}
    for spec in against:
        for label, c, p in _datasets_of(repo, spec, src.path):
            other = _load(repo, p, c, rel=p)
            digests[f"against:{label}"] = other.art.digest
            got = _stored_sigs(repo, c, p, params, cols) if near else None
            otexts = None
            if semantic is not None and got is not None and got[1] != other.keys:
                got = None      # stale or unkeyed: its rows must line up with the row index
            if got is not None:
                osig, okeys = got
            else:
                otexts = _texts(other.table, cols, f"dedup --against {p}")
                from demoai.prep.minhash import minhash_signatures
                vals = (minhash_signatures(otexts, params) if near
                        else np.zeros((len(otexts), params.num_perm), dtype=np.uint32))
                osig, okeys = Signatures(params, vals, text_hashes(otexts)), other.keys
            if semantic is not None:
                if otexts is None:
                    otexts = _texts(other.table, cols, f"dedup --against {p}")
                others.append((label, other, otexts, len(ex_labels)))
            ex_sigs.append(osig)
            ex_labels += [f"{label}:{k}" for k in okeys]
            against_rows += len(osig)
    is_old = np.zeros(n, dtype=bool)
    is_old[old_rows] = True
    new_idx = np.flatnonzero(~is_old)
    existing = Signatures.concat(ex_sigs) if ex_sigs else None
    vectors, sem_indexes, sem_info = None, [], {}
    if semantic is not None:
        sem_info = {"embedder": EMBEDDER_NAME, "embedded": 0, "index": None, "search": None}
        if len(new_idx):
            vectors, sem_indexes, sem_info = _semantic_indexes(
                repo, src, cols, texts, new_idx, old_rows, others, embed, progress)
    res = _dedup(texts.take(pa.array(new_idx)), exact=exact, near=near, threshold=threshold,
                 params=params, existing=existing, progress=progress, vectors=vectors,
                 semantic_indexes=sem_indexes,
                 semantic_threshold=semantic if semantic is not None else 0.95)
    keep = np.ones(n, dtype=bool)
    keep[new_idx[~res.keep]] = False
    label = "+".join(cols)
    rows = []
    for r in res.records.to_pylist():
        k = keys[new_idx[r["row"]]]
        dup = (ex_labels[r["duplicate_of"]] if r["duplicate_of_existing"]
               else keys[new_idx[r["duplicate_of"]]])
        mat = (ex_labels[r["matched"]] if r["matched_existing"] else keys[new_idx[r["matched"]]])
        detail = f"duplicate of {dup}" + (f" (matched {mat})" if mat != dup else "") + \
            f", similarity {r['similarity']:.3f}"
        rows.append(_why_row(k, "dedup", "removed", r["method"], label, detail,
                             duplicate_of=dup, similarity=r["similarity"]))
    extra = None
    if near and res.signatures is not None:
        vals = np.zeros((n, params.num_perm), dtype=np.uint32)
        if stored is not None and len(old_rows):
            vals[old_rows] = stored[0].values[old_sig_idx]
        vals[new_idx[res.keep]] = res.signatures.values
        kept = np.flatnonzero(keep)
        extra = {"minhash.parquet": _sig_table(Signatures(params, vals[kept], th[kept]),
                                               [keys[i] for i in kept], cols, semantic)}
    summary = {"hashed": len(new_idx), "reused": len(old_rows), "against_rows": against_rows,
               "dropped": {"exact": res.stats.get("exact_dropped", 0),
                           "minhash": res.stats.get("minhash_dropped", 0),
                           **({"semantic": res.stats.get("semantic_dropped", 0)}
                              if semantic is not None else {})},
               "threshold": threshold, "bands": [res.stats.get("bands"),
                                                 res.stats.get("rows_per_band")],
               "columns": cols}
    if semantic is not None:
        summary["semantic"] = {**sem_info, "threshold": semantic,
                               "queries": res.stats.get("semantic_queries", 0),
                               "candidates": res.stats.get("semantic_candidates", 0),
                               "pairs": res.stats.get("semantic_pairs", 0)}
    if not rows:       # nothing dropped: the signatures alone are worth a commit only if new
        if stored is not None and len(new_idx) == 0:
            extra = None
    out = src.table.filter(pa.array(keep))
    lineage = {"threshold": threshold, "exact": exact, "near": near, "semantic": semantic,
               "minhash": params.to_dict(), "against": list(against), "columns": cols}
    if semantic is not None:
        lineage["semantic_index"] = {k: v for k, v in sem_info.items() if k != "against"}
    return _finish(repo, "dedup", src, out, rows, extra=extra if rows or len(new_idx) else None,
                   message=message, parameters=lineage, inputs=digests or None,
                   allow_empty=allow_empty, summary=summary)


# ---- split --------------------------------------------------------------------------------

def split(repo: Repository, path: str, ratios: str | Sequence[float], *, key: str | None = None,
          stratify: str | None = None, seed: int = 0, names: Sequence[str] | None = None,
          rev: str = "HEAD", message: str | None = None) -> StepResult:
    """Split the dataset by key hash (:func:`demoai.prep.split.split_rows`; ``key`` defaults
    to the dataset's key column, else whole rows) into ``PATH_stem.NAME.ext`` files, committed
    together with lineage to the source."""
    src = _load(repo, path, rev)
    fmt = _fmt(src)
    key = key or src.art.key
    res = split_rows(src.table, ratios, key=key, stratify=stratify, seed=seed, names=names)
    files = {}
    for k, name in enumerate(res.names):
        files[split_path(src.path, name)] = (src.table.filter(pa.array(res.assign == k)), fmt)
    _check_worktree(repo, list(files))
    out = StepResult("split", src.path, src.commit, src.art.digest, src.table.num_rows,
                     src.table.num_rows, outputs=list(files),
                     summary={"counts": res.counts, "strata": res.strata, "key": key,
                              "stratify": stratify, "seed": seed,
                              "files": dict(zip(res.names, files))})
    counts = ", ".join(f"{n} {c}" for n, c in res.counts.items())
    msg = message or f"data split {src.path}: {counts}"
    out.commit = _write_commit(
        repo, files, msg, keys={p: src.art.key for p in files},
        inputs={"source": src.art.digest},
        parameters={"verb": "split", "ratios": [float(x) for x in (
            ratios.split(",") if isinstance(ratios, str) else ratios)], "key": key,
            "stratify": stratify, "seed": seed, "names": res.names,
            "source": {"path": src.path, "commit": src.commit, "digest": src.art.digest}})
    out.up_to_date = out.commit is None
    return out


# ---- contamination ------------------------------------------------------------------------

@dataclass
class ContaminationReport:
    """Contaminated test rows: ``hits`` (key, method, source, train_key, ngrams,
    similarity), counts per source, and the step that removed them (with ``remove``)."""

    path: str
    commit: str
    rows: int
    contaminated: int
    hits: list[dict[str, Any]]
    stats: dict[str, Any]
    removed: StepResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        d = asdict(self)
        d["removed"] = self.removed.to_dict() if self.removed else None
        return d


def contamination(repo: Repository, path: str, against: Sequence[str], *,
                  column: str | Sequence[str] | None = None, n: int = DEFAULT_NGRAM,
                  near: bool = True, threshold: float = DEFAULT_THRESHOLD, remove: bool = False,
                  rev: str = "HEAD", allow_empty: bool = False, message: str | None = None,
                  progress: Progress = None) -> ContaminationReport:
    """Test rows of ``path`` whose ``n``-grams occur in, or that are MinHash near-duplicates
    of, rows of the ``against`` datasets (``PATH[@REF]`` or ``REF``); with ``remove``, the
    test set without them is committed (the why table names each hit)."""
    threshold = check_threshold(threshold)
    if not against:
        raise InvalidArtifact("contamination: name the training data with --against")
    src = _load(repo, path, rev)
    cols = _columns(src.table, column, src.art.key, "contamination")
    texts = _texts(src.table, cols, "contamination")
    params = MinHashParams()
    train, sigs, tkeys = [], {}, {}
    for spec in against:
        for label, c, p in _datasets_of(repo, spec, src.path):
            other = _load(repo, p, c, rel=p)
            train.append((label, _texts(other.table, cols, f"contamination --against {p}")))
            tkeys[label] = other.keys
            got = _stored_sigs(repo, c, p, params, cols) if near else None
            if got is not None:
                sigs[label] = got[0]
                tkeys[label + "#sig"] = got[1]
    res = find_contamination(texts, train, n=n, near=near, threshold=threshold, params=params,
                             signatures=sigs, progress=progress)
    keys = src.keys
    hits = []
    for h in res.hits.to_pylist():
        names = tkeys.get(h["source"] + "#sig") if h["method"] == "minhash" and \
            h["source"] in sigs else tkeys[h["source"]]
        hits.append({"key": keys[h["row"]], "method": h["method"], "source": h["source"],
                     "train_key": names[h["train_row"]], "ngrams": h["ngrams"],
                     "similarity": h["similarity"]})
    rep = ContaminationReport(src.path, src.commit, src.table.num_rows, res.count, hits,
                              res.stats)
    if remove and res.count:
        rows = []
        for h in hits:
            what = (f"{n}-gram overlap ({h['ngrams']} shared) with {h['source']} row "
                    f"{h['train_key']}" if h["method"] == "ngram" else
                    f"near-duplicate of {h['source']} row {h['train_key']}, similarity "
                    f"{h['similarity']:.3f}")
            rows.append(_why_row(h["key"], "contamination", "removed", h["method"],
                                 "+".join(cols), what,
                                 count=h["ngrams"], duplicate_of=f"{h['source']}:{h['train_key']}",
                                 similarity=h["similarity"]))
        out = src.table.filter(pa.array(~res.contaminated))
        digests = {}
        for spec in against:
            for label, c, p in _datasets_of(repo, spec, src.path):
                digests[f"against:{label}"] = repo.artifact_at(c, p).digest
        rep.removed = _finish(repo, "contamination", src, out, rows, extra=None, message=message,
                              parameters={"n": n, "near": near, "threshold": threshold,
                                          "against": list(against), "columns": cols},
                              inputs=digests, allow_empty=allow_empty,
                              summary={"contaminated": res.count})
    return rep


def _changes_of(repo: Repository, rel: str, start: str):
    """Commits, first-parent from ``start``, in which the entry at ``rel`` changed."""
    c: str | None = start
    while c:
        info = repo.commit_info(c)
        here = repo.entry_id(c, rel)
        parent = info.parents[0] if info.parents else None
        if here is not None and (parent is None or repo.entry_id(parent, rel) != here):
            yield c
        c = parent


# ---- why ----------------------------------------------------------------------------------

@dataclass
class WhyEntry:
    """One thing a step did to a row: the commit, its message and the why-table row."""

    commit: str
    message: str
    verb: str
    action: str
    rule: str
    column: str
    detail: str
    duplicate_of: str | None = None
    similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


def why(repo: Repository, path: str, key: str, *, rev: str = "HEAD",
        limit: int = 200) -> tuple[list[WhyEntry], bool]:
    """What the data steps in the history of ``rev`` did to the row ``key`` of ``path``
    (newest first), and whether the row is in ``path`` at ``rev``."""
    rel = _rel(repo, path)
    start = repo.resolve(rev)
    src = _load(repo, rel, start, rel=rel)
    present = key in set(src.keys)
    side = sidecar_path(rel, "why.parquet")
    entries: list[WhyEntry] = []
    for c in _changes_of(repo, side, start):
        t = load_table(repo, repo.artifact_at(c, side))
        t = t.filter(pc.equal(t.column("key"), key))
        msg = repo.commit_info(c).summary
        for r in t.to_pylist():
            entries.append(WhyEntry(c, msg, r["verb"], r["action"], r["rule"], r["column"],
                                    r["detail"], r["duplicate_of"], r["similarity"]))
        if len(entries) >= limit:
            break
    return entries, present


# ---- shared with the other data verbs (demoai.porcelain.data.*) ---------------------------

Source = _Source
load_source = _load
text_columns = _columns
joined_texts = _texts
check_worktree = _check_worktree
write_commit = _write_commit
why_row = _why_row
why_table = _why_table
changes_of = _changes_of
rel_path = _rel
