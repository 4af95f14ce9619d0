"""``demoai export PATH[@REF] OUT``: write an artifact out of the store, verified.

A dataset is written in the format ``OUT``'s extension names (:data:`EXPORT_FORMATS`), or
the one ``fmt`` forces; any other extension is refused rather than guessed. Like
``dvc get``, an existing ``OUT`` is replaced only with ``force``; like ``mkdir``, missing
parent folders are made only with ``parents``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from demoai.errors import PathNotFound, RepositoryExists, UnsafePath, UnsupportedOperation
from demoai.objects import Dataset
from demoai.porcelain._util import split_path_ref
from demoai.store import Repository
from demoai.store.kinds import load_table, materialize

__all__ = ["export", "EXPORT_FORMATS", "export_format"]

# format -> the extensions that name it (the first is the usual one)
EXPORT_FORMATS: dict[str, tuple[str, ...]] = {
    "jsonl": (".jsonl", ".ndjson", ".json"),    # .json: JSON Lines too (as the reader takes it)
    "csv": (".csv",),
    "tsv": (".tsv",),
    "parquet": (".parquet", ".pq"),
}


def _formats_text() -> str:
    return ", ".join(f"{name} ({' '.join(exts)})" for name, exts in EXPORT_FORMATS.items())


def export_format(out: str | os.PathLike, fmt: str | None = None) -> str:
    """The dataset format to write at ``out``: ``fmt`` when given, else the one its
    extension names; :class:`UnsupportedOperation` (listing the formats) otherwise."""
    if fmt is not None:
        if fmt not in EXPORT_FORMATS:
            raise UnsupportedOperation(f"unknown export format {fmt!r}; formats: {_formats_text()}",
                                       format=fmt)
        return fmt
    suffix = Path(out).suffix.lower()
    for name, exts in EXPORT_FORMATS.items():
        if suffix in exts:
            return name
    what = f"extension {suffix!r}" if suffix else "no extension"
    raise UnsupportedOperation(
        f"cannot tell a dataset format from {str(out)!r} ({what}); formats: {_formats_text()}; "
        "or name one with --format", path=str(out), suffix=suffix)


def _check_dest(repo: Repository, art: Any, out: Path, force: bool, parents: bool) -> None:
    """Refuse what would surprise: a missing folder, an existing target, the repository."""
    resolved = out.resolve()
    if resolved == repo.control or repo.control in resolved.parents:
        raise UnsafePath(f"{out}: inside the repository's {repo.control.name} folder", path=str(out))
    parent = out.parent
    if not parent.exists():
        if not parents:
            raise PathNotFound(f"{out}: folder {str(parent)!r} does not exist "
                               "(create it, or pass --parents)", path=str(parent))
        return       # nothing there yet to replace; the writer makes the folders
    if not parent.is_dir():
        raise PathNotFound(f"{out}: {str(parent)!r} is not a folder", path=str(parent))
    if not (out.exists() or out.is_symlink()):
        return
    if not force:
        raise RepositoryExists(f"{out} already exists (pass --force to replace it)", path=str(out))
    if out.is_dir() and not out.is_symlink():
        if resolved == repo.root or resolved in repo.root.parents:
            raise UnsafePath(f"{out}: replacing it would delete the repository", path=str(out))
        if len(getattr(art, "files", None) or {}) <= 1:
            raise RepositoryExists(f"{out} is a folder and {art.kind} is written as a file; "
                                   "give a file path, or remove the folder first", path=str(out))


def _make_parent(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PathNotFound(f"{out}: cannot make folder {str(out.parent)!r}: {e.strerror or e}",
                           path=str(out.parent)) from None


def export(repo: Repository, spec: str, out: str | os.PathLike,
           progress: Callable[[int, int], None] | None = None, *, fmt: str | None = None,
           force: bool = False, parents: bool = False) -> dict[str, Any]:
    """Write the artifact named by ``PATH[@REF]`` at ``out``, verified: a dataset in the
    format ``fmt`` or ``out``'s extension names (:func:`export_format`), any other kind as
    it was added. Refuses an existing ``out`` unless ``force``, a missing parent folder
    unless ``parents``. Returns ``{"path", "ref", "kind", "digest", "out"}`` (and
    ``"format"`` for a dataset)."""
    path, ref = split_path_ref(spec)
    art = repo.artifact_at(ref, path)
    dest = Path(out)
    res: dict[str, Any] = {"path": path, "ref": ref, "kind": art.kind, "digest": art.digest}
    if isinstance(art, Dataset):
        chosen = export_format(dest, fmt)      # before touching the disk
        _check_dest(repo, art, dest, force, parents)
        from demoai.store.tables import write_file     # pyarrow: only when a dataset is written
        table = load_table(repo, art)                  # verified before anything is made
        _make_parent(dest)
        write_file(table, dest, chosen)
        written, res["format"] = dest, chosen
    else:
        if fmt is not None:
            raise UnsupportedOperation(f"{path} is a {art.kind}: --format applies to datasets",
                                       path=path, format=fmt)
        _check_dest(repo, art, dest, force, parents)
        _make_parent(dest)
        written = materialize(repo, art, dest, progress=progress)
    res["out"] = str(written)
    return res
