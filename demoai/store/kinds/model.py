"""Models: a GGUF or safetensors file, or a transformers folder, in chunks."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from demoai.errors import InvalidArtifact
from demoai.objects import Model, files_digest
from demoai.store.kinds.base import Progress, register_handler
from demoai.store.kinds.fileset import FileSetHandler, put_files

if TYPE_CHECKING:
    from demoai.store.git.repo import Repository

__all__ = ["ModelHandler"]

GGUF_MAGIC = b"GGUF"


@register_handler
class ModelHandler(FileSetHandler[Model]):
    """Base model weights."""

    kind = "model"
    artifact = Model

    def import_path(self, repo: "Repository", path: Path, *, key: str | None = None,
                    base: Any = None, progress: Progress = None) -> Model:
        """A folder is a transformers model; a ``.gguf`` file must start with the GGUF
        magic; any other file is safetensors."""
        fmt = ("transformers" if path.is_dir() else
               "gguf" if path.name.lower().endswith(".gguf") else "safetensors")
        if fmt == "gguf":
            with open(path, "rb") as f:
                if f.read(4) != GGUF_MAGIC:
                    raise InvalidArtifact(f"{path}: not a GGUF file (bad magic)", path=str(path))
        files = put_files(repo, path, progress)
        return Model(digest=files_digest(files), format=fmt, files=files)
