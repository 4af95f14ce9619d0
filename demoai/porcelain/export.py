"""``demoai export PATH[@REF] OUT``: write an artifact out of the store, verified."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from demoai.porcelain._util import split_path_ref
from demoai.store import Repository
from demoai.store.kinds import materialize

__all__ = ["export"]


def export(repo: Repository, spec: str, out: str | os.PathLike,
           progress: Callable[[int, int], None] | None = None) -> dict:
    """Materialize the artifact named by ``PATH[@REF]`` at ``out`` (datasets in the format
    ``out``'s extension names)."""
    path, ref = split_path_ref(spec)
    art = repo.artifact_at(ref, path)
    written = materialize(repo, art, Path(out), progress=progress)
    return {"path": path, "ref": ref, "kind": art.kind, "digest": art.digest, "out": str(written)}
