"""What the text kinds (prompts, agents) share: a small UTF-8 YAML document kept verbatim in
its manifest, written back out as the same bytes, and indexed for full-text search."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from demoai.objects import Agent, Prompt
from demoai.store.fsutil import atomic_write
from demoai.store.kinds.base import KindHandler, Progress, read_text

if TYPE_CHECKING:
    from demoai.store.git.repo import Repository

__all__ = ["TextHandler"]

T = TypeVar("T", Prompt, Agent)


class TextHandler(KindHandler[T]):
    """A text kind: ``artifact.from_text`` parses and checks the document."""

    searchable = True

    def import_path(self, repo: "Repository", path: Path, *, key: str | None = None,
                    base: Any = None, progress: Progress = None) -> T:
        """Parse and check the document (nothing goes to the blob store: the text is the
        manifest)."""
        return self.artifact.from_text(read_text(path), str(path))

    def materialize(self, repo: "Repository", art: T, out: Path, progress: Progress = None) -> Path:
        """The document's exact bytes."""
        atomic_write(out, art.text.encode())
        return out

    def show(self, repo: "Repository", art: T, rows: int) -> dict[str, Any]:
        """The manifest and the document."""
        return {"manifest": art.to_manifest(), "text": art.text}

    def search_text(self, path: str, art: T) -> tuple[str, str] | None:
        """The ``name:`` field (else the file name) and the document."""
        title = art.meta.get("name") or path.rsplit("/", 1)[-1]
        return str(title), art.text
