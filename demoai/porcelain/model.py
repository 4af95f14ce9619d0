"""``demoai model``: the model registry (list, show, rm, alias, import, export, merge).

The registry is a view over commits, refs and manifests (:mod:`demoai.train.registry`);
every change is a commit of the paths it touches (``import``, ``rm``, ``merge``) or a move of
an alias ref (``alias``). ``import`` stores only chunks the store lacks and, for a file it
has seen (same path, size, mtime, inode), reads no byte of it: re-importing what HEAD
already holds is a no-op. ``pull`` does the same from a hub: only the chunks this store
lacks come over the wire, and the commit's lineage names the remote commit.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from demoai.errors import (DirtyWorkingTree, InvalidArtifact, NothingToCommit, PathNotFound,
                           RefNotFound)
from demoai.objects import Adapter, Model
from demoai.objects.paths import check_path
from demoai.porcelain.commit import commit
from demoai.store import Repository, fingerprint, stat_record
from demoai.store.kinds import materialize
from demoai.train import export as _export
from demoai.train import importers, registry
from demoai.train.registry import AliasEvent, ModelEntry, ModelInfo

__all__ = ["list_models", "show_model", "remove_model", "set_alias", "alias_history",
           "remove_alias", "import_model", "export_model", "merge_model", "pull_model",
           "ImportResult", "PullResult", "ModelEntry", "ModelInfo", "AliasEvent",
           "EXPORT_FORMATS", "LAYOUTS", "LINK_MODES"]

EXPORT_FORMATS = _export.EXPORT_FORMATS
LAYOUTS = importers.LAYOUTS
LINK_MODES = importers.LINK_MODES
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
    it), bytes read from the source and bytes newly stored, seconds taken, and how the
    working file was made (None when it was already there)."""

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
    placed: str | None = None       # how the working file was made: reflink | hardlink | copy

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


def import_model(repo: Repository, source: str | os.PathLike, *, dest: str | None = None,
                 tag: str | None = None, message: str | None = None, link: str = "auto",
                 progress: Progress = None) -> ImportResult:
    """Import the model at ``source`` (a GGUF or safetensors file, a transformers or peft
    folder, a Hugging Face cache entry or snapshot, an Ollama store with ``tag`` or one of
    its manifests) to ``dest`` in the tree (default ``models/NAME.gguf``, ``models/NAME``
    or ``adapters/NAME``) and commit it.

    The working file is a copy-on-write clone of the source where the filesystem can make
    one, a hard link when ``link="hardlink"`` (or, with ``"auto"``, when the source is an
    immutable store's file: a Hugging Face or Ollama blob, an installed package's file),
    else a copy (``link="copy"`` always copies); :attr:`ImportResult.placed` says which."""
    t0 = time.perf_counter()
    src = importers.find_source(source, tag)
    rel = check_path(dest.strip("/") if dest else src.default_dest())
    if link not in LINK_MODES:
        raise InvalidArtifact(f"link mode {link!r}: one of {', '.join(LINK_MODES)}", link=link)
    before = repo.blobs.stored_bytes()
    with repo.write_guard():
        art, read = importers.store_source(repo, src, progress, Path(rel).name)
    head = repo.head_commit()
    try:     # entry_id first: a path HEAD lacks costs no read of the tree's manifests
        at_head = repo.artifact_at(head, rel) if head and repo.entry_id(head, rel) else None
    except (PathNotFound, RefNotFound):
        at_head = None
    target = repo.workpath(rel)
    placed = None
    if at_head is not None and at_head.digest == art.digest:
        if not target.exists():
            placed = _place_all(src, art, target, link)
        return ImportResult(rel, art.kind, art.format, src.layout, art.digest, art.size, None, read,
                            repo.blobs.stored_bytes() - before, time.perf_counter() - t0, placed)
    placed = _place_all(src, art, target, link)
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
                        repo.blobs.stored_bytes() - before, time.perf_counter() - t0, placed)


def _place_all(src: importers.ImportSource, art: Model | Adapter, target: Path, link: str) -> str:
    """Put the source's files at ``target``; returns how (the weakest way any file took:
    ``copy`` over ``hardlink`` over ``reflink``)."""
    immutable = src.immutable
    if src.single:
        return importers.place_file(next(iter(src.files.values())), target, immutable=immutable, mode=link)
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    ways = {importers.place_file(real, tmp / rel, immutable=immutable, mode=link)
            for rel, real in src.files.items()}
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    os.replace(tmp, target)
    return next(w for w in ("copy", "hardlink", "reflink") if w in ways)


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


@dataclass
class PullResult:
    """A ``pull``: where the model landed, what it is, the commit (None when HEAD already
    held it), where it came from (URL, ref, remote commit, the remote commit that last
    changed it) and the transfer (chunks of the model, chunks and bytes received)."""

    path: str
    kind: str
    format: str
    digest: str
    size: int
    commit: str | None
    remote: str
    url: str
    ref: str | None
    remote_commit: str
    remote_path: str
    added_in: str | None
    chunks: int
    chunks_received: int
    bytes_received: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


def _dirty(repo: Repository, rel: str, target: Path, at_head: Model | Adapter | None) -> bool:
    """Whether writing ``target`` would lose work: an untracked file there, or one that
    differs from what HEAD holds."""
    if not target.exists():
        return False
    if at_head is None:
        return True
    state = repo.index.read()
    staged = state.entries.get(rel)
    return staged is None or staged != repo.tree_entries(repo.head_commit()).get(rel) \
        or not state.is_clean(rel, target)


def _stage_pulled(repo: Repository, rel: str, art: Model | Adapter, target: Path) -> None:
    """Stage what was just written at ``target`` so the commit need not chunk it again."""
    with repo.index.update() as st:
        if len(art.files) == 1 and target.is_file():
            raw = next(iter(art.files.values()))["digest"].removeprefix("blake3:")
            st.stage_file(rel, art, target, stat_record(fingerprint(target), raw))
        else:
            st.stage(rel, art, target)


def _undo(repo: Repository, rel: str, target: Path, at_head: Model | Adapter | None,
          staged: tuple[bytes | None, dict | None]) -> None:
    """Put the working file and the index entry back as they were before a failed pull."""
    if at_head is not None:
        materialize(repo, at_head, target)
    elif target.is_dir():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)
    with repo.index.update() as st:
        entry, stat = staged
        if entry is None:
            st.unstage(rel)
        else:
            st.entries[rel] = entry
            if stat is None:
                st.stat.pop(rel, None)
            else:
                st.stat[rel] = stat


def pull_model(repo: Repository, remote: str, name: str, *, rev: str | None = None,
               dest: str | None = None, token: str | None = None, message: str | None = None,
               force: bool = False, progress: Progress = None) -> PullResult:
    """Fetch model/adapter ``name`` from ``remote`` (a remote name or a hub URL) at ``rev``
    (a branch or tag there; default its default branch) and commit it on the current branch
    at the same path (or ``dest``), its lineage naming the remote commit. Only chunks this
    store lacks are transferred; a local file that differs from HEAD there is kept
    (``DirtyWorkingTree``) unless ``force``. A failure leaves no commit and the working
    file and index as they were."""
    from demoai.porcelain.remote import open_remote, remote_url
    t0 = time.perf_counter()
    url, remote_name = remote_url(repo, remote)
    ep = open_remote(url, token)
    try:
        with repo.write_guard():
            got = importers.pull_source(repo, ep, name, rev, progress)
            received = ep.client.bytes_down
    finally:
        ep.close()
    art = got.artifact
    rel = check_path(dest.strip("/") if dest else got.path)
    try:
        at_head = repo.artifact_at("HEAD", rel)
    except (PathNotFound, RefNotFound):
        at_head = None
    if at_head is not None and not isinstance(at_head, (Model, Adapter)):
        raise InvalidArtifact(f"{rel} is a {at_head.kind} here, not a model or adapter", path=rel)
    target = repo.workpath(rel)

    def result(cid: str | None) -> PullResult:
        return PullResult(rel, art.kind, art.format, art.digest, art.size, cid, remote_name or url,
                          url, got.ref, got.commit, got.path, got.added_in, got.chunks,
                          got.chunks_received, received, time.perf_counter() - t0)

    if at_head is not None and at_head.digest == art.digest:
        if not target.exists():
            materialize(repo, art, target)
        return result(None)
    if not force and _dirty(repo, rel, target, at_head):
        raise DirtyWorkingTree(f"{rel} has local changes that the pull would overwrite: commit or "
                               "restore them, or pass --force", path=rel)
    before = repo.index.read()
    staged = (before.entries.get(rel), before.stat.get(rel))
    source = {"remote": remote_name, "url": url, "ref": got.ref, "commit": got.commit,
              "path": got.path, "added_in": got.added_in,
              "command": got.lineage.get("command"), "digest": art.digest}
    try:
        materialize(repo, art, target)
        _stage_pulled(repo, rel, art, target)
        cid = commit(repo, message or f"Pull {art.kind} {got.path} from {remote_name or url} "
                     f"({got.ref or got.commit[:12]} at {got.commit[:12]})",
                     paths=[target], parameters={"pull": source})
    except BaseException:
        _undo(repo, rel, target, at_head, staged)
        raise
    return result(cid)
