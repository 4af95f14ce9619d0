"""Adapters: a LoRA/peft folder with ``adapter_config.json``, in chunks."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from demoai.errors import InvalidArtifact
from demoai.objects import Adapter, files_digest
from demoai.store.kinds.base import Progress, register_handler
from demoai.store.kinds.fileset import FileSetHandler, put_files

if TYPE_CHECKING:
    from demoai.store.git.repo import Repository

__all__ = ["AdapterHandler"]

CONFIG = "adapter_config.json"


@register_handler
class AdapterHandler(FileSetHandler[Adapter]):
    """A peft adapter; its parsed config is part of the manifest."""

    kind = "adapter"
    artifact = Adapter

    def import_path(self, repo: "Repository", path: Path, *, key: str | None = None,
                    base: Any = None, progress: Progress = None) -> Adapter:
        """The folder's files, with ``adapter_config.json`` parsed into ``config``."""
        cfg_path = path / CONFIG
        if not path.is_dir() or not cfg_path.is_file():
            raise InvalidArtifact(f"{path}: an adapter is a folder with {CONFIG}", path=str(path))
        try:
            config = json.loads(cfg_path.read_text())
        except ValueError as e:
            raise InvalidArtifact(f"{cfg_path}: malformed JSON ({e})", path=str(cfg_path)) from None
        files = put_files(repo, path, progress)
        return Adapter(digest=files_digest(files), format="peft", files=files, config=config)

    def detail(self, repo: "Repository", art: Adapter, *, commit: str, path: str,
               rows: int) -> dict[str, Any]:
        """The files and format, and the adapter's config."""
        return {**super().detail(repo, art, commit=commit, path=path, rows=rows), "config": art.config}
