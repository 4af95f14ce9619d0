"""Datasets: a file (JSONL, CSV, Parquet) or a saved HF dataset folder, stored as a Lance
table version (a delta onto the previous version of the same path when there is one)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from demoai.errors import InvalidArtifact, UnsupportedOperation
from demoai.objects import Artifact, Dataset, dataset_format
from demoai.store.kinds.base import KindHandler, Live, Progress, register_handler

if TYPE_CHECKING:
    import pyarrow as pa

    from demoai.store.git.repo import Repository
    from demoai.store.tables import TableRef

__all__ = ["DatasetHandler", "load_table", "table_ref", "read_working", "check_working",
           "working_diff"]

_FILE_SUFFIXES = (".jsonl", ".csv", ".parquet")
_TEXT_FORMATS = ("jsonl", "csv")


def read_working(path: Path) -> "tuple[pa.Table, str]":
    """The rows of a dataset file and its format (a text file holding unresolved merge
    conflict blocks is refused, naming the line); nothing is stored."""
    from demoai.store.tables import read_file
    fmt = check_working(path)
    return read_file(path, fmt), fmt


def check_working(path: Path) -> str:
    """The format of a dataset file, refusing a text file that holds unresolved merge
    conflict blocks (naming the line)."""
    from demoai.store.tables.conflicts import conflict_marker_line
    fmt = dataset_format(path)
    if fmt in _TEXT_FORMATS:
        line = conflict_marker_line(path)
        if line is not None:
            raise InvalidArtifact(
                f"{path}: line {line}: unresolved merge conflict (<<<<<<< / ======= / >>>>>>> "
                "lines); keep the row you want from each block, delete the marker lines, then "
                "`demoai add` it", path=str(path), line=line)
    return fmt


def working_diff(repo: "Repository", old: Dataset | None, path: Path, *, key: str | None,
                 sample: int = 5) -> dict[str, Any]:
    """The rows of the working file ``path`` (read, checked, not stored) against the
    stored dataset ``old`` (None: everything is added): the fields of a
    :class:`~demoai.store.tables.diff.TableDiff` (``to_dict``)."""
    from demoai.store.tables.io import jsonable
    from demoai.store.tables.write import check_table
    table = check_table(read_working(path)[0], key)
    if old is None:
        return {"added": table.num_rows, "removed": 0, "modified": 0, "unchanged": 0, "key": key,
                "method": "full", "reordered": False, "column_changes": {}, "schema_changes": [],
                "samples": {"added": jsonable(table.slice(0, sample).to_pylist()),
                            "removed": [], "modified": []}}
    return repo.tables.diff_table(table_ref(old), table, key=key, sample=sample).to_dict()


def table_ref(ds: Dataset) -> "TableRef":
    """The table version a dataset artifact names."""
    from demoai.store.tables import TableRef
    return TableRef.from_dict(ds.table)


def load_table(repo: "Repository", ds: Dataset, columns: list[str] | None = None,
               verify: bool = True) -> "pa.Table":
    """The rows of a dataset artifact, verified against the recorded file hashes."""
    return repo.tables.read(table_ref(ds), columns=columns, verify=verify)


@register_handler
class DatasetHandler(KindHandler[Dataset]):
    """Rows in a Lance table; previews scan with a limit."""

    kind = "dataset"
    artifact = Dataset
    keyed = True
    tabular = True

    def import_path(self, repo: "Repository", path: Path, *, key: str | None = None,
                    base: Artifact | None = None, progress: Progress = None) -> Dataset:
        """Write the file's rows as a table version; onto ``base``'s table (keeping its key
        column unless ``key`` is given) when the path held a dataset before. The file is
        read, checked, hashed and written in batches (bounded memory; see
        :mod:`demoai.store.tables.stream`)."""
        from demoai.store.tables.stream import open_source
        fmt = check_working(path)
        source = open_source(path, fmt)
        base_ref = None
        if isinstance(base, self.artifact):
            key = key if key is not None else base.key
            base_ref = table_ref(base)
        ref = repo.tables.write_source(source, key=key, base=base_ref, progress=progress)
        return Dataset(digest=ref.digest, rows=ref.rows, schema=ref.schema, key=ref.key,
                       format=fmt, table=ref.to_dict())

    def materialize(self, repo: "Repository", art: Dataset, out: Path,
                    progress: Progress = None) -> Path:
        """The rows in the format ``out``'s extension names (else the imported format)."""
        from demoai.store.tables.io import write_batches
        fmt = None if out.suffix.lower() in _FILE_SUFFIXES else art.format
        if fmt == "hf":
            raise UnsupportedOperation("export of a saved HF dataset folder: give a .jsonl/.csv/.parquet path")
        # a batch at a time: checking out a table of any size takes one batch of memory
        ref = table_ref(art)
        write_batches(ref.arrow_schema(), repo.tables.read_batches(ref), out, fmt)
        return out

    def live_objects(self, art: Dataset) -> Live:
        """The table version."""
        return set(), [table_ref(art)]

    def columns(self, art: Dataset) -> list[str]:
        """The column names, in stored order."""
        return art.columns

    def row_count(self, art: Dataset) -> int:
        """The rows the manifest records."""
        return art.rows

    def preview_rows(self, repo: "Repository", art: Dataset, limit: int,
                     offset: int = 0) -> list[dict[str, Any]]:
        """Rows ``offset`` .. ``offset + limit`` in the order of the file the version was
        made from, read with a limit (the table's files are hash-verified first)."""
        if limit <= 0 or art.rows == 0 or offset >= art.rows:
            return []
        ref = table_ref(art)
        try:
            names = ref.arrow_schema().names
        except (ValueError, TypeError, KeyError) as e:   # the manifest's schema is not Arrow IPC
            raise InvalidArtifact(f"dataset table {ref.table_id}: unreadable schema ({e})") from None
        ds = repo.tables.scanner_dataset(ref)
        perm = repo.tables.order_of(ref)
        if perm is not None:   # scan positions of the file's rows offset .. offset + limit
            return ds.take(perm[offset:offset + limit], columns=names).to_pylist()
        kw = {"offset": offset} if offset else {}
        return ds.to_table(columns=names, limit=limit, **kw).to_pylist()

    def show(self, repo: "Repository", art: Dataset, rows: int) -> dict[str, Any]:
        """The first ``rows`` rows (in file order), and the manifest without the table's
        file list."""
        manifest = {k: v for k, v in art.to_manifest().items() if k != "table"}
        manifest["table"] = {k: v for k, v in art.table.items() if k != "files"}
        return {"manifest": manifest, "preview": self.preview_rows(repo, art, rows)}

    def detail(self, repo: "Repository", art: Dataset, *, commit: str, path: str,
               rows: int) -> dict[str, Any]:
        """Row count, columns (name and type), key, format and the first ``rows`` rows."""
        return {"dataset": {"rows": art.rows, "columns": art.schema.get("fields", []), "key": art.key,
                            "format": art.format,
                            "preview": self.preview_rows(repo, art, max(0, min(rows, 500)))}}
