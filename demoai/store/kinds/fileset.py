"""What the file-set kinds (models, adapters) share: one file or a folder of files, each
stored as a chunked blob; materialized by writing every file from its chunks (verified),
into a temporary folder that replaces the target whole."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from demoai.errors import InvalidArtifact
from demoai.objects import Adapter, Model
from demoai.store.blobs import BlobManifest
from demoai.store.kinds.base import KindHandler, Live, Progress

if TYPE_CHECKING:
    from demoai.store.git.repo import Repository

__all__ = ["FileSetHandler", "put_files"]

F = TypeVar("F", Model, Adapter)
_SINGLE_FILE_FORMATS = ("gguf", "safetensors")


def put_files(repo: "Repository", path: Path, progress: Progress) -> dict[str, dict]:
    """Store a file, or every file of a folder (dot files skipped), as chunked blobs:
    relative path -> blob manifest."""
    if path.is_file():
        return {path.name: repo.blobs.put_file(path, progress=progress).to_dict()}
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InvalidArtifact(f"{path}: folder is empty", path=str(path))
    return {p.relative_to(path).as_posix(): repo.blobs.put_file(p, progress=progress).to_dict() for p in files}


class FileSetHandler(KindHandler[F]):
    """Files in chunks; the detail view lists them."""

    def materialize(self, repo: "Repository", art: F, out: Path, progress: Progress = None) -> Path:
        """A single weights file at ``out``; a folder of files at ``out`` (replaced whole)."""
        if len(art.files) == 1 and art.format in _SINGLE_FILE_FORMATS:
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

    def live_objects(self, art: F) -> Live:
        """Every chunk of every file."""
        return art.chunk_ids(), []

    def show(self, repo: "Repository", art: F, rows: int) -> dict[str, Any]:
        """The manifest without the chunk lists, and each file's digest, size and chunk count."""
        manifest = {k: v for k, v in art.to_manifest().items() if k != "files"}
        files = {p: {"digest": f["digest"], "size": f["size"], "chunks": len(f["chunks"])}
                 for p, f in art.files.items()}
        return {"manifest": manifest, "files": files}

    def detail(self, repo: "Repository", art: F, *, commit: str, path: str,
               rows: int) -> dict[str, Any]:
        """The files (path, size, digest, chunk count) and the format."""
        files = [{"path": p, "size": f["size"], "digest": f["digest"], "chunks": len(f["chunks"])}
                 for p, f in sorted(art.files.items())]
        return {"files": files, "format": art.format}
