"""``demoai data import`` / ``export``: Hugging Face ``datasets``, Parquet, JSONL and CSV.

Layout in the tree: a single table (a ``Dataset`` folder or object, or a file) becomes one
dataset at PATH (PATH ending in ``.parquet``, ``.jsonl``, ``.csv`` or ``.tsv``; another
PATH gets ``.parquet``); a ``DatasetDict`` becomes one dataset per split,
``PATH/<split>.parquet`` (PATH is then a folder). Parquet keeps the Arrow schema as it is
(nested structs, lists and their field names, nulls, integer widths, timestamps, the HF
``Features`` in the schema metadata), so ``export --format hf`` gives back the same
``Dataset``/``DatasetDict``; JSONL and CSV keep what those formats can hold.

Every file an import writes is committed in one commit, with the source's digest and format
as lineage; a source that cannot be read, a key column that a split lacks, or a target with
uncommitted edits is a typed error before anything is written.
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from demoai.errors import InvalidArtifact, PathNotFound, RepositoryExists
from demoai.objects import Dataset
from demoai.porcelain.data.prepare import check_worktree, load_source, write_commit
from demoai.prep.hf import (
    EXPORT_FORMATS, datasets_module, from_hf, read_source, save_hf, write_table,
)
from demoai.prep.hf import to_hf as _tables_to_hf
from demoai.store import Repository
from demoai.store.kinds import load_table

__all__ = ["ImportResult", "ExportResult", "import_data", "import_hf", "export_data", "to_hf",
           "TABLE_SUFFIXES"]

TABLE_SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv"}


@dataclass
class ImportResult:
    """The commit (None: the tree already held these tables), the datasets written by split
    (``""`` for a single table), their rows, and the source."""

    source: str
    source_format: str
    commit: str | None
    paths: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    up_to_date: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


@dataclass
class ExportResult:
    """What was written: the output (file or folder), its format and the rows by split."""

    path: str
    out: str
    format: str
    rows: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


def _targets(repo: Repository, path: str, splits: list[str]) -> dict[str, tuple[str, str]]:
    """split -> (repo-relative path, format)."""
    from demoai.porcelain._util import repo_path
    rel = repo_path(repo, path)
    if splits == [""]:
        fmt = TABLE_SUFFIXES.get(Path(rel).suffix.lower())
        return {"": (rel, fmt) if fmt else (rel + ".parquet", "parquet")}
    if Path(rel).suffix.lower() in TABLE_SUFFIXES:
        raise InvalidArtifact(f"import: a DatasetDict becomes a folder of splits; give a "
                              f"folder path, not {rel}", path=rel)
    return {s: (f"{rel.rstrip('/')}/{s}.parquet", "parquet") for s in splits}


def _source_digest(tables: dict[str, pa.Table]) -> str:
    import hashlib
    h = hashlib.blake2b(digest_size=20)
    for name in sorted(tables):
        h.update(name.encode() + b"\0")
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, tables[name].schema) as w:
            w.write_table(tables[name])
        h.update(sink.getvalue().to_pybytes())
    return "blake2b:" + h.hexdigest()


def _import_tables(repo: Repository, tables: dict[str, pa.Table], path: str, *, source: str,
                   source_format: str, key: str | None, message: str | None) -> ImportResult:
    targets = _targets(repo, path, list(tables))
    for split, t in tables.items():
        if key is not None and key not in t.column_names:
            where = f" split {split!r}" if split else ""
            raise InvalidArtifact(f"import: the key column {key!r} is not in{where} "
                                  f"(columns: {t.column_names})", column=key, reason="missing")
    rels = [r for r, _ in targets.values()]
    check_worktree(repo, rels)
    files = {rel: (tables[s], fmt) for s, (rel, fmt) in targets.items()}
    res = ImportResult(source, source_format, None, {s: r for s, (r, _) in targets.items()},
                       {s: t.num_rows for s, t in tables.items()})
    digest = _source_digest(tables)
    msg = message or (f"data import {source} -> {path}: " + ", ".join(
        f"{s or 'rows'} {n}" for s, n in res.rows.items()))
    res.commit = write_commit(repo, files, msg, keys={rel: key for rel in files},
                              inputs={"source": digest}, writer=write_table,
                              parameters={"verb": "import", "source": source,
                                          "format": source_format, "splits": list(tables),
                                          "key": key, "paths": res.paths})
    res.up_to_date = res.commit is None
    return res


def import_data(repo: Repository, source: str | Path, path: str, *, fmt: str | None = None,
                key: str | None = None, message: str | None = None) -> ImportResult:
    """Import a ``save_to_disk`` folder (Dataset or DatasetDict), Parquet, JSONL, CSV or
    Arrow file at ``source`` into the tree at ``path`` (see the module docstring) and
    commit it; ``key`` names the key column of every dataset written."""
    tables, got = read_source(source, fmt)
    return _import_tables(repo, tables, path, source=str(source), source_format=got, key=key,
                          message=message)


def import_hf(repo: Repository, dataset_obj: Any, path: str, *, key: str | None = None,
              message: str | None = None) -> ImportResult:
    """Import a ``datasets.Dataset`` or ``DatasetDict`` object at ``path`` and commit it."""
    tables = from_hf(dataset_obj)
    name = getattr(dataset_obj, "info", None)
    label = getattr(name, "dataset_name", None) or type(dataset_obj).__name__
    return _import_tables(repo, tables, path, source=f"<{label}>", source_format="hf",
                          key=key, message=message)


def _tables_at(repo: Repository, path: str, rev: str) -> dict[str, pa.Table]:
    """``{"": table}`` for a dataset at ``path``, else ``{split: table}`` for the datasets
    directly inside the folder ``path`` (step side tables left out)."""
    from demoai.porcelain._util import repo_path
    rel = repo_path(repo, path)
    commit = repo.resolve(rev)
    arts = repo.artifacts(commit)
    if rel in arts:
        return {"": load_source(repo, rel, commit, rel=rel).table}
    prefix = rel.rstrip("/") + "/"
    inside = {p[len(prefix):]: a for p, a in arts.items() if p.startswith(prefix)
              and "/" not in p[len(prefix):] and isinstance(a, Dataset)}
    if not inside:
        raise PathNotFound(f"no dataset or folder of datasets {rel} at {rev}", path=rel)
    out = {}
    for name, art in sorted(inside.items()):
        out[Path(name).stem if Path(name).suffix.lower() in TABLE_SUFFIXES else name] = \
            load_table(repo, art)
    return out


def to_hf(repo: Repository, path: str, *, rev: str = "HEAD") -> Any:
    """The ``datasets.Dataset`` (a dataset path) or ``DatasetDict`` (a folder of split
    datasets) committed at ``rev``, features as imported."""
    return _tables_to_hf(_tables_at(repo, path, rev))


def export_data(repo: Repository, path: str, out: str | Path, *, fmt: str | None = None,
                rev: str = "HEAD", force: bool = False) -> ExportResult:
    """Write the dataset (or folder of split datasets) ``path`` at ``rev`` to ``out``:
    ``hf`` (a ``save_to_disk`` folder: Dataset or DatasetDict), ``parquet``, ``jsonl`` or
    ``csv`` (a folder of split files for a folder of datasets). ``fmt`` defaults to
    ``out``'s extension, else ``hf``; an existing ``out`` needs ``force``."""
    o = Path(out)
    fmt = fmt or TABLE_SUFFIXES.get(o.suffix.lower(), "hf")
    if fmt not in EXPORT_FORMATS:
        raise InvalidArtifact(f"export: unknown format {fmt!r} (use "
                              f"{', '.join(EXPORT_FORMATS)})", reason="format")
    if fmt == "hf":
        datasets_module()
    tables = _tables_at(repo, path, rev)
    if o.exists():
        if not force:
            raise RepositoryExists(f"{o} already exists (pass --force to replace it)", path=str(o))
        shutil.rmtree(o) if o.is_dir() else o.unlink()
    res = ExportResult(path, str(o), fmt, {k: t.num_rows for k, t in tables.items()})
    if fmt == "hf":
        save_hf(tables, o)
        res.files = [str(o)]
    elif list(tables) == [""]:
        write_table(tables[""], o, fmt)
        res.files = [str(o)]
    else:
        for name, t in tables.items():
            f = o / f"{name}.{fmt}"
            write_table(t, f, fmt)
            res.files.append(str(f))
    return res
