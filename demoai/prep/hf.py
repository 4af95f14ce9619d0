"""Hugging Face ``datasets`` <-> Arrow tables, without losing the schema.

A ``datasets.Dataset`` is an Arrow table plus its ``Features`` (kept by ``datasets`` in the
schema metadata under ``huggingface``). Import takes the table as it is (indices mapping
flattened, features written into the metadata), and the Parquet files it writes keep Arrow's
own list field names (``use_compliant_nested_type=False``) and the metadata, so the table a
DatasetDict split comes back as is the table it went in as: nested structs, lists, nulls,
integer widths, timestamps with their unit and zone, ``ClassLabel`` names.

    splits = read_source("saved_folder")        # {"train": table, "test": table} or {"": table}
    ds = to_hf(splits)                          # Dataset ({""}) or DatasetDict
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from demoai.errors import BackendUnavailable, InvalidArtifact, PathNotFound

__all__ = ["datasets_module", "from_hf", "to_hf", "read_source", "write_table",
           "save_hf", "HF_META", "SOURCE_FORMATS", "EXPORT_FORMATS"]

HF_META = b"huggingface"
SOURCE_FORMATS = ("hf", "parquet", "jsonl", "csv", "tsv", "arrow")
EXPORT_FORMATS = ("hf", "parquet", "jsonl", "csv")


def datasets_module() -> Any:
    """The ``datasets`` package, or BackendUnavailable saying how to install it."""
    try:
        import datasets
    except ImportError as e:
        raise BackendUnavailable("Hugging Face datasets support needs `pip install datasets`",
                                 package="datasets") from e
    return datasets


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """datasets' progress bars off (the library never prints), as they were after."""
    from datasets.utils import (
        are_progress_bars_disabled, disable_progress_bars, enable_progress_bars,
    )
    was = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was:
            enable_progress_bars()


def _table_of(ds: Any) -> pa.Table:
    if getattr(ds, "_indices", None) is not None:      # select/shuffle/filter views
        with _quiet():
            ds = ds.flatten_indices()
    table = ds.data.table
    if hasattr(table, "table"):
        table = table.table
    meta = dict(table.schema.metadata or {})
    meta[HF_META] = json.dumps({"info": {"features": ds.features.to_dict()}}).encode()
    return table.combine_chunks().replace_schema_metadata(meta)


def from_hf(obj: Any) -> dict[str, pa.Table]:
    """The tables of a ``datasets.Dataset`` (``{"": table}``) or ``DatasetDict`` (by split)."""
    datasets = datasets_module()
    if isinstance(obj, datasets.DatasetDict):
        if not obj:
            raise InvalidArtifact("import: the DatasetDict has no splits")
        return {str(name): _table_of(ds) for name, ds in obj.items()}
    if isinstance(obj, datasets.Dataset):
        return {"": _table_of(obj)}
    raise InvalidArtifact(f"import: expected a datasets.Dataset or DatasetDict, not "
                          f"{type(obj).__name__} (an IterableDataset must be materialized "
                          "first)")


def _hf_dataset(table: pa.Table) -> Any:
    datasets = datasets_module()
    from datasets.table import InMemoryTable
    features = datasets.Features.from_arrow_schema(table.schema)
    try:    # the stored table may name list items "element": cast to the features' schema
        table = table.cast(features.arrow_schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        pass
    return datasets.Dataset(InMemoryTable(table))


def to_hf(tables: dict[str, pa.Table]) -> Any:
    """A ``Dataset`` (one table named ``""``) or a ``DatasetDict`` of the tables."""
    datasets = datasets_module()
    if list(tables) == [""]:
        return _hf_dataset(tables[""])
    return datasets.DatasetDict({k: _hf_dataset(t) for k, t in tables.items()})


def read_source(path: str | os.PathLike, fmt: str | None = None) -> tuple[dict[str, pa.Table], str]:
    """The tables of a source on disk and its format: a ``save_to_disk`` folder (a Dataset:
    ``{"": table}``; a DatasetDict: one table per split), or a Parquet/JSONL/CSV/Arrow file."""
    p = Path(path)
    if not p.exists():
        raise PathNotFound(f"{p}: no such file or folder", path=str(p))
    if p.is_dir() or fmt == "hf":
        datasets = datasets_module()
        if not ((p / "dataset_dict.json").exists() or (p / "state.json").exists()):
            raise InvalidArtifact(f"{p}: not a folder saved by datasets' save_to_disk (no "
                                  "dataset_dict.json or state.json)", path=str(p))
        try:
            with _quiet():
                obj = datasets.load_from_disk(str(p))
        except (ValueError, OSError, KeyError, FileNotFoundError) as e:
            raise InvalidArtifact(f"{p}: cannot load the saved dataset: "
                                  f"{' '.join(str(e).split())}", path=str(p)) from None
        return from_hf(obj), "hf"
    from demoai.store.tables import read_file
    from demoai.store.tables.io import detect_format
    fmt = fmt or detect_format(p)
    if fmt not in SOURCE_FORMATS:
        raise InvalidArtifact(f"{p}: cannot import format {fmt!r} (use one of "
                              f"{', '.join(SOURCE_FORMATS)})", path=str(p))
    return {"": read_file(p, fmt)}, fmt


def write_table(table: pa.Table, path: str | os.PathLike, fmt: str) -> None:
    """Write ``table`` as ``fmt``; Parquet keeps Arrow's list field names and the schema
    metadata (so the HF features survive), atomically (temp file + rename)."""
    p = Path(path)
    if fmt in ("csv", "tsv"):
        nested = [f.name for f in table.schema if pa.types.is_nested(f.type)]
        if nested:
            raise InvalidArtifact(f"{p}: CSV cannot hold the nested column {nested[0]!r} "
                                  "(export as parquet, jsonl or hf)", column=nested[0],
                                  reason="nested")
    p.parent.mkdir(parents=True, exist_ok=True)
    if fmt != "parquet":
        from demoai.store.tables import write_file
        write_file(table, p, fmt)
        return
    tmp = p.with_name(f".{p.name}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd", use_compliant_nested_type=False)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)


def save_hf(tables: dict[str, pa.Table], out: str | os.PathLike) -> Any:
    """``save_to_disk`` the Dataset or DatasetDict of ``tables`` at ``out``; returns it."""
    obj = to_hf(tables)
    with _quiet():
        obj.save_to_disk(str(out))
    return obj
