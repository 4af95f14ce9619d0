"""Turning working-tree files into stored artifacts and back.

``import_path`` reads a file or folder, stores its bulk bytes (chunks or a Lance table
version, as a delta onto the previous version of the same path when there is one) and
returns the typed artifact whose manifest goes into the index. ``materialize`` writes an
artifact back out, verified.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from demoai.errors import InvalidArtifact, UnknownKind, UnsupportedOperation
from demoai.objects import (Adapter, Agent, Artifact, Dataset, EvalResult, Model, Prompt,
                            Session, dataset_format, detect_kind, files_digest)
from demoai.store.blobs.chunks import BlobManifest
from demoai.store.fsutil import atomic_write

if TYPE_CHECKING:
    import pyarrow as pa

    from demoai.store.tables.store import TableRef

    from demoai.store.git.repo import Repository

__all__ = ["import_path", "materialize", "load_table", "live_objects"]

Progress = Callable[[int, int], None] | None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArtifact(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})", path=str(path)) from None


def _put_files(repo: "Repository", path: Path, progress: Progress) -> dict[str, dict]:
    if path.is_file():
        return {path.name: repo.blobs.put_file(path, progress=progress).to_dict()}
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InvalidArtifact(f"{path}: folder is empty", path=str(path))
    return {p.relative_to(path).as_posix(): repo.blobs.put_file(p, progress=progress).to_dict() for p in files}


def import_path(repo: "Repository", path: Path, *, kind: str | None = None, key: str | None = None,
                base: Artifact | None = None, progress: Progress = None) -> Artifact:
    """Store the file/folder at ``path`` as an artifact of ``kind`` (detected when None).

    ``base`` is the artifact previously staged at the same path: a dataset is then
    written as a delta onto its table, and its key column is kept unless ``key`` is given.
    """
    kind = kind or detect_kind(path)
    if kind == "dataset":
        from demoai.store.tables.store import TableRef, read_file
        fmt = dataset_format(path)
        table = read_file(path, fmt)
        base_ref = None
        if isinstance(base, Dataset):
            key = key if key is not None else base.key
            base_ref = TableRef.from_dict(base.table)
        ref = repo.tables.write(table, key=key, base=base_ref, progress=progress)
        return Dataset(digest=ref.digest, rows=ref.rows, schema=ref.schema, key=ref.key,
                       format=fmt, table=ref.to_dict())
    if key is not None:
        raise InvalidArtifact("--key applies to datasets only")
    if kind in ("prompt", "agent"):
        cls = Prompt if kind == "prompt" else Agent
        return cls.from_text(_read_text(path), str(path))
    if kind in ("model", "adapter"):
        if kind == "adapter":
            cfg_path = path / "adapter_config.json"
            if not path.is_dir() or not cfg_path.is_file():
                raise InvalidArtifact(f"{path}: an adapter is a folder with adapter_config.json", path=str(path))
            try:
                config = json.loads(cfg_path.read_text())
            except ValueError as e:
                raise InvalidArtifact(f"{cfg_path}: malformed JSON ({e})", path=str(cfg_path)) from None
            files = _put_files(repo, path, progress)
            return Adapter(digest=files_digest(files), format="peft", files=files, config=config)
        fmt = ("transformers" if path.is_dir() else
               "gguf" if path.name.lower().endswith(".gguf") else "safetensors")
        if fmt == "gguf":
            with open(path, "rb") as f:
                if f.read(4) != b"GGUF":
                    raise InvalidArtifact(f"{path}: not a GGUF file (bad magic)", path=str(path))
        files = _put_files(repo, path, progress)
        return Model(digest=files_digest(files), format=fmt, files=files)
    if kind in ("eval", "session"):
        try:
            fields = json.loads(_read_text(path))
        except ValueError as e:
            raise InvalidArtifact(f"{path}: malformed JSON ({e})", path=str(path)) from None
        cls2 = EvalResult if kind == "eval" else Session
        return cls2.from_manifest(fields)
    raise UnknownKind(f"unknown kind {kind!r}", kind=kind)


def load_table(repo: "Repository", ds: Dataset, columns: list[str] | None = None,
               verify: bool = True) -> "pa.Table":
    """The rows of a dataset artifact, verified against the recorded file hashes."""
    from demoai.store.tables.store import TableRef
    return repo.tables.read(TableRef.from_dict(ds.table), columns=columns, verify=verify)


def materialize(repo: "Repository", art: Artifact, out: Path, progress: Progress = None) -> Path:
    """Write ``art`` to ``out`` (a file, or a folder for multi-file artifacts), verified."""
    out = Path(out)
    if isinstance(art, Dataset):
        from demoai.store.tables.store import write_file
        fmt = None if out.suffix.lower() in (".jsonl", ".csv", ".parquet") else art.format
        if fmt == "hf":
            raise UnsupportedOperation("export of a saved HF dataset folder: give a .jsonl/.csv/.parquet path")
        write_file(load_table(repo, art), out, fmt)
        return out
    if isinstance(art, (Prompt, Agent)):
        atomic_write(out, art.text.encode())
        return out
    if isinstance(art, (Model, Adapter)):
        if len(art.files) == 1 and art.format in ("gguf", "safetensors"):
            m = BlobManifest.from_dict(next(iter(art.files.values())))
            out.parent.mkdir(parents=True, exist_ok=True)
            repo.blobs.write_to(m, out, progress=progress)
            return out
        tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        for rel, fd in art.files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            repo.blobs.write_to(BlobManifest.from_dict(fd), target, progress=progress)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
        return out
    atomic_write(out, json.dumps(art.to_manifest(), indent=1, sort_keys=True).encode())
    return out


def live_objects(arts: list[Artifact]) -> tuple[set[str], list["TableRef"]]:
    """Chunk ids and table versions the given artifacts need (for gc)."""
    from demoai.store.tables.store import TableRef
    chunks: set[str] = set()
    tables: list[TableRef] = []
    for a in arts:
        if isinstance(a, (Model, Adapter)):
            chunks |= a.chunk_ids()
        elif isinstance(a, Dataset):
            tables.append(TableRef.from_dict(a.table))
        elif isinstance(a, (EvalResult, Session)):
            for t in (getattr(a, "predictions", None), getattr(a, "events", None)):
                if t:
                    tables.append(TableRef.from_dict(t))
    return chunks, tables
