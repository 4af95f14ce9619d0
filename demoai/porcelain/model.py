"""``demoai model``: the model registry (list, show, rm, alias, import, export, merge).

The registry is a view over commits, refs and manifests (:mod:`demoai.train.registry`);
every change is a commit of the paths it touches (``import``, ``rm``, ``merge``) or a move of
an alias ref (``alias``). ``import`` stores only chunks the store lacks and, for a file it
has seen (same path, size, mtime, inode), reads no byte of it: re-importing what HEAD
already holds is a no-op.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from demoai.errors import InvalidArtifact, NothingToCommit, PathNotFound, RefNotFound
from demoai.objects import Adapter, Model
from demoai.objects.paths import check_path
from demoai.porcelain.commit import commit
from demoai.store import Repository, fingerprint, stat_record
from demoai.train import export as _export
from demoai.train import importers, registry
from demoai.train.registry import AliasEvent, ModelEntry, ModelInfo

__all__ = ["list_models", "show_model", "remove_model", "set_alias", "alias_history",
           "remove_alias", "import_model", "export_model", "merge_model", "ImportResult",
           "ModelEntry", "ModelInfo", "AliasEvent", "EXPORT_FORMATS", "LAYOUTS"]

EXPORT_FORMATS = _export.EXPORT_FORMATS
LAYOUTS = importers.LAYOUTS
Progress = Callable[[str, int, int], None] | None


def list_models(repo: Repository, rev: str = "HEAD") -> list[ModelEntry]:
    """Models and adapters at ``rev`` with parameters, quantization, base, aliases and best scores."""
    return registry.list_models(repo, rev)


def show_model(repo: Repository, name: str, rev: str = "HEAD") -> ModelInfo:
    """One model/adapter (a path, a short name or an alias): config, files, lineage, evals."""
    return registry.model_info(repo, name, rev)


def remove_model(repo: Repository, name: str, message: str | None = None) -> str:
    """Delete a model/adapter from the tree and commit that deletion; returns the commit."""
    path, _, art = registry.find_model(repo, name, "HEAD")
    f = repo.workpath(path)
    if f.is_dir():
        shutil.rmtree(f)
    elif f.exists():
        f.unlink()
    return commit(repo, message or f"Remove {art.kind} {path}", paths=[f])


def set_alias(repo: Repository, name: str, alias: str, rev: str = "HEAD") -> AliasEvent:
    """Point ``alias`` (a ref under ``refs/aliases/``) at a model/adapter at ``rev``."""
    path, commit_id, _ = registry.find_model(repo, name, rev)
    return registry.set_alias(repo, path, alias, commit_id)


def alias_history(repo: Repository, alias: str) -> list[AliasEvent]:
    """What ``alias`` named over time, newest first (the audit trail)."""
    return registry.alias_history(repo, alias)


def remove_alias(repo: Repository, alias: str) -> str:
    """Delete an alias ref; returns the alias commit it pointed at."""
    return registry.delete_alias(repo, alias)


@dataclass
class ImportResult:
    """An ``import``: where it landed, what it is, the commit (None when HEAD already held
    it), bytes read from the source and bytes newly stored, seconds taken."""

    path: str
    kind: str
    format: str
    layout: str
    digest: str
    size: int
    commit: str | None
    bytes_read: int
    new_bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


def _place(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` keeping its mtime (so the index trusts its stat)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{dest.name}-{os.getpid()}"
    shutil.copy2(src, tmp)
    os.replace(tmp, dest)


def import_model(repo: Repository, source: str | os.PathLike, *, dest: str | None = None,
                 tag: str | None = None, message: str | None = None,
                 progress: Progress = None) -> ImportResult:
    """Import the model at ``source`` (a GGUF or safetensors file, a transformers or peft
    folder, a Hugging Face cache entry or snapshot, an Ollama store with ``tag`` or one of
    its manifests) to ``dest`` in the tree (default ``models/NAME.gguf``, ``models/NAME``
    or ``adapters/NAME``) and commit it."""
    t0 = time.perf_counter()
    src = importers.find_source(source, tag)
    rel = check_path(dest.strip("/") if dest else src.default_dest())
    before = repo.blobs.stored_bytes()
    with repo.write_guard():
        art, read = importers.store_source(repo, src, progress, Path(rel).name)
    try:
        at_head = repo.artifact_at("HEAD", rel)
    except (PathNotFound, RefNotFound):
        at_head = None
    target = repo.workpath(rel)
    if at_head is not None and at_head.digest == art.digest:
        if not target.exists():
            _place_all(src, art, target)
        return ImportResult(rel, art.kind, art.format, src.layout, art.digest, art.size, None, read,
                            repo.blobs.stored_bytes() - before, time.perf_counter() - t0)
    _place_all(src, art, target)
    if src.single:
        raw = next(iter(art.files.values()))["digest"].removeprefix("blake3:")
        with repo.index.update() as st:
            st.stage_file(rel, art, target, stat_record(fingerprint(target), raw))
    try:
        cid: str | None = commit(repo, message or f"Import {art.kind} {rel} ({src.layout})",
                                 paths=[target], parameters={"import": {"layout": src.layout,
                                                                        "source": str(source)}})
    except NothingToCommit:
        cid = None
    return ImportResult(rel, art.kind, art.format, src.layout, art.digest, art.size, cid, read,
                        repo.blobs.stored_bytes() - before, time.perf_counter() - t0)


def _place_all(src: importers.ImportSource, art: Model | Adapter, target: Path) -> None:
    if src.single:
        _place(next(iter(src.files.values())), target)
        return
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, real in src.files.items():
        _place(real, tmp / rel)
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    os.replace(tmp, target)


def export_model(repo: Repository, name: str, out: str | os.PathLike, *, fmt: str | None = None,
                 rev: str = "HEAD", force: bool = False) -> Path:
    """Write a model/adapter as a plain GGUF file or folder upstream tools load."""
    _, _, art = registry.find_model(repo, name, rev)
    return _export.export_artifact(repo, art, Path(out), fmt, force=force, rev=rev)


def merge_model(repo: Repository, spec: str, out: str, *, rev: str = "HEAD", threads: int = 1,
                message: str | None = None) -> ImportResult:
    """``BASE+ADAPTER``: bake the adapter into the base (peft ``merge_and_unload``), write the
    merged transformers folder at ``out`` in the tree and commit it with both digests as inputs."""
    base_name, plus, ad_name = spec.partition("+")
    if not (plus and base_name and ad_name):
        raise InvalidArtifact(f"{spec!r}: expected BASE+ADAPTER", spec=spec)
    t0 = time.perf_counter()
    _, _, base = registry.find_model(repo, base_name, rev)
    _, _, adapter = registry.find_model(repo, ad_name, rev)
    if not isinstance(base, Model) or not isinstance(adapter, Adapter):
        raise InvalidArtifact(f"{spec!r}: BASE must be a model and ADAPTER an adapter", spec=spec)
    rel = check_path(out.strip("/"))
    base_path = registry.local_path(repo, base)
    gguf_file = None
    if base.format == "gguf":
        base_path, gguf_file = base_path.parent, base_path.name
    elif base_path.is_file():
        raise InvalidArtifact("the base must be a transformers folder or a GGUF", path=base_name)
    target = repo.workpath(rel)
    _export.merge_adapter(base_path, gguf_file, registry.local_path(repo, adapter), target, threads)
    before = repo.blobs.stored_bytes()
    cid = commit(repo, message or f"Merge adapter {ad_name} into {base_name}", paths=[target],
                 inputs={"base": base.digest, "adapter": adapter.digest},
                 parameters={"merge": {"base": base_name, "adapter": ad_name}})
    art = repo.artifact_at(cid, rel)
    return ImportResult(rel, art.kind, art.format, "merge", art.digest, art.size, cid, 0,
                        repo.blobs.stored_bytes() - before, time.perf_counter() - t0)
