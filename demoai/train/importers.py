"""Reading models from the layouts other tools leave on disk, storing only bytes the store
lacks.

Layouts read (never downloaded):

- a GGUF file (``*.gguf``) or a single safetensors file;
- a transformers folder (``config.json`` with ``*.safetensors``/``*.bin``/``*.gguf``) or a peft
  adapter folder (``adapter_config.json``);
- a Hugging Face cache entry (``~/.cache/huggingface/hub/models--ORG--NAME``, its snapshot
  named by ``refs/main`` or the only one) or one of its ``snapshots/REV`` folders (the files
  there are symlinks into ``blobs/``; they are read through);
- an Ollama model store (``~/.ollama/models``: ``manifests/HOST/NAMESPACE/NAME/TAG`` JSON
  naming ``blobs/sha256-...``; the model layer is a GGUF), or one manifest file in it.

Each file's blob manifest is cached by (path, size, mtime, inode) in
``.demoai/cache/imports.json``: importing a file the store already holds reads no byte of it.

:func:`place_file` puts the source's bytes in the working tree without copying them where
it safely can (a copy-on-write clone; a hard link for an immutable store's file), and
:func:`pull_source` reads a model or adapter from a DemoAI hub repository instead: the
commit's manifests through the sync protocol, then only the chunks this store lacks.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from demoai.errors import InvalidArtifact, MissingObject, PathNotFound, RefNotFound
from demoai.objects import Adapter, Model, files_digest
from demoai.store.blobs import BlobManifest
from demoai.store.fsutil import atomic_write
from demoai.store.git.repo import Repository
from demoai.store.transfer import Endpoint, LocalEndpoint

__all__ = ["ImportSource", "find_source", "store_source", "LAYOUTS", "OLLAMA_MODEL_MEDIA",
           "PulledSource", "remote_ref", "pull_source", "place_file", "LINK_MODES"]

LAYOUTS = ("gguf", "safetensors", "transformers", "peft", "hf-cache", "ollama")
OLLAMA_MODEL_MEDIA = "application/vnd.ollama.image.model"
_WEIGHT_EXT = (".safetensors", ".bin", ".gguf")
Progress = Callable[[str, int, int], None] | None


@dataclass
class ImportSource:
    """What a path holds: its layout, the files to store (relative name -> real file), the
    artifact kind and format, and the name it suggests."""

    layout: str
    kind: str             # model | adapter
    format: str           # gguf | safetensors | transformers | peft
    files: dict[str, Path]
    name: str

    @property
    def immutable(self) -> bool:
        """Whether the files sit in a store whose owner never rewrites a file in place: a
        Hugging Face cache's or Ollama's content-addressed blobs, or an installed Python
        package. Only such a source is hard-linked into the working tree by default."""
        if self.layout in ("hf-cache", "ollama"):
            return True
        roots = _package_roots()
        return bool(roots) and all(any(_under(p.resolve(), r) for r in roots) for p in self.files.values())

    @property
    def single(self) -> bool:
        """Whether the artifact is one file (stored at ``models/NAME.EXT``)."""
        return self.format in ("gguf", "safetensors") and len(self.files) == 1

    def default_dest(self) -> str:
        """Where the import lands in the tree when no path is given."""
        if self.single:
            return f"models/{self.name}{Path(next(iter(self.files))).suffix.lower()}"
        return f"{'adapters' if self.kind == 'adapter' else 'models'}/{self.name}"


def _package_roots() -> list[Path]:
    import site
    import sysconfig
    paths = {sysconfig.get_paths().get(k) for k in ("purelib", "platlib")}
    try:
        paths |= set(site.getsitepackages()) | {site.getusersitepackages()}
    except AttributeError:      # a virtualenv's site module may lack these
        pass
    return [Path(p).resolve() for p in paths if p and os.path.isdir(p)]


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


LINK_MODES = ("auto", "copy", "hardlink")
_FICLONE = 0x40049409          # Linux ioctl: share the source's extents, copy-on-write


def _reflink(src: Path, dst: Path) -> bool:
    """Clone ``src`` into the new file ``dst`` where the filesystem can (btrfs, XFS...)."""
    try:
        import fcntl
    except ImportError:
        return False
    with open(src, "rb") as fi:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.ioctl(fd, _FICLONE, fi.fileno())
            ok = True
        except OSError:
            ok = False
        finally:
            os.close(fd)
    if not ok:
        dst.unlink(missing_ok=True)
    else:
        st = os.stat(src)
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    return ok


def place_file(src: Path, dest: Path, *, immutable: bool = False, mode: str = "auto") -> str:
    """Put the bytes of ``src`` at ``dest`` (replaced atomically, mtime kept so the index
    trusts its stat) and say how: ``reflink`` (a copy-on-write clone: nothing is copied and
    the two files stay independent), ``hardlink`` (the same inode: with ``mode="hardlink"``,
    or by default when ``immutable`` and both sit on one filesystem) or ``copy``.

    A hard link never endangers the store (its chunks are separate and verified; an edit
    of the source in place shows as a modified file in ``status``, and ``restore`` writes a
    file of its own again); it shares bytes with the source, which is why it is the default
    only for sources nobody rewrites in place (:attr:`ImportSource.immutable`)."""
    if mode not in LINK_MODES:
        raise InvalidArtifact(f"link mode {mode!r}: one of {', '.join(LINK_MODES)}", mode=mode)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{dest.name}-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    how = "copy"
    if mode == "auto" and _reflink(src, tmp):
        how = "reflink"
    elif mode == "hardlink" or (mode == "auto" and immutable):
        try:
            os.link(src, tmp)
            how = "hardlink"
        except OSError:          # another filesystem, or links not allowed there
            pass
    if how == "copy":
        shutil.copy2(src, tmp)
    os.replace(tmp, dest)
    return how


def _clean(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


def _folder(path: Path, layout: str, name: str) -> ImportSource:
    names = {p.name for p in path.iterdir()}
    files = {p.relative_to(path).as_posix(): p for p in sorted(path.rglob("*"))
             if p.is_file() and not p.name.startswith(".")}     # as `demoai add` reads a folder
    if "adapter_config.json" in names:
        return ImportSource(layout if layout != "transformers" else "peft", "adapter", "peft", files, name)
    if "config.json" in names and any(n.endswith(_WEIGHT_EXT) for n in names):
        return ImportSource(layout, "model", "transformers", files, name)
    raise InvalidArtifact(f"{path}: not a model folder (no adapter_config.json, nor config.json "
                          "with weights)", path=str(path))


def _hf_snapshot(entry: Path) -> Path:
    snaps = entry / "snapshots"
    ref = entry / "refs" / "main"
    if ref.is_file() and (snaps / ref.read_text().strip()).is_dir():
        return snaps / ref.read_text().strip()
    found = sorted(p for p in snaps.iterdir() if p.is_dir()) if snaps.is_dir() else []
    if len(found) != 1:
        raise InvalidArtifact(f"{entry}: {len(found)} snapshots and no refs/main; name one "
                              "(snapshots/REV)", path=str(entry))
    return found[0]


def _ollama_manifests(root: Path) -> list[Path]:
    return sorted(p for p in (root / "manifests").rglob("*") if p.is_file())


def _ollama(manifest: Path, root: Path) -> ImportSource:
    try:
        data = json.loads(manifest.read_text())
        layer = next(l for l in data["layers"] if l.get("mediaType") == OLLAMA_MODEL_MEDIA)
        digest = layer["digest"]
    except (ValueError, KeyError, StopIteration, TypeError):
        raise InvalidArtifact(f"{manifest}: not an Ollama manifest with a model layer",
                              path=str(manifest)) from None
    blob = root / "blobs" / digest.replace(":", "-")
    if not blob.is_file():
        raise PathNotFound(f"{blob} (the model layer of {manifest}) is missing", path=str(blob))
    rel = manifest.relative_to(root / "manifests").parts
    name = _clean("-".join(rel[-2:]) if len(rel) >= 2 else rel[-1])
    return ImportSource("ollama", "model", "gguf", {f"{name}.gguf": blob}, name)


def find_source(path: str | os.PathLike, tag: str | None = None) -> ImportSource:
    """Recognize the layout at ``path`` (see the module docstring). ``tag`` picks one model
    of an Ollama store (``NAME`` or ``NAME:TAG``)."""
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.exists():
        raise PathNotFound(f"{path}: no such file or directory", path=str(path))
    if p.is_file():
        low = p.name.lower()
        if low.endswith(".gguf"):
            with open(p, "rb") as f:
                if f.read(4) != b"GGUF":
                    raise InvalidArtifact(f"{p}: not a GGUF file (bad magic)", path=str(p))
            return ImportSource("gguf", "model", "gguf", {p.name: p}, _clean(p.name[:-5]))
        if low.endswith(".safetensors"):
            return ImportSource("safetensors", "model", "safetensors", {p.name: p}, _clean(p.name[:-12]))
        parts = p.parts
        if "manifests" in parts:
            root = Path(*parts[:len(parts) - parts[::-1].index("manifests") - 1])
            return _ollama(p, root)
        raise InvalidArtifact(f"{p}: not a GGUF, safetensors or Ollama manifest file", path=str(p))
    if (p / "manifests").is_dir() and (p / "blobs").is_dir():
        mans = _ollama_manifests(p)
        if tag:
            name, _, t = tag.partition(":")
            mans = [m for m in mans if m.parent.name == name and m.name == (t or "latest")]
        if len(mans) != 1:
            listing = ", ".join(f"{m.parent.name}:{m.name}" for m in _ollama_manifests(p)) or "none"
            raise InvalidArtifact(f"{p}: an Ollama store; pick one model with --tag NAME:TAG "
                                  f"(models: {listing})", path=str(p))
        return _ollama(mans[0], p)
    if p.name.startswith("models--") and (p / "snapshots").is_dir():
        return _folder(_hf_snapshot(p), "hf-cache", _clean(p.name.split("--")[-1]))
    if p.parent.name == "snapshots" and p.parent.parent.name.startswith("models--"):
        return _folder(p, "hf-cache", _clean(p.parent.parent.name.split("--")[-1]))
    return _folder(p, "transformers", _clean(p.name))


def _cache_file(repo: Repository) -> Path:
    return repo.control / "cache" / "imports.json"


def _load_cache(repo: Repository) -> dict:
    try:
        return json.loads(_cache_file(repo).read_text())
    except (OSError, ValueError):
        return {}


def _key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def store_source(repo: Repository, src: ImportSource, progress: Progress = None,
                 file_name: str | None = None) -> tuple[Model | Adapter, int]:
    """Store ``src``'s files (only chunks the store lacks are written) and return the
    artifact and the number of bytes read from the source (0 when every file was known by
    its stat and its chunks are all in the store). ``file_name`` names a single file as it
    lands in the tree."""
    cache = _load_cache(repo)
    files: dict[str, dict] = {}
    read = 0
    changed = False
    for rel, real in src.files.items():
        real_r = real.resolve()
        key = _key(real_r.stat())
        hit = cache.get(str(real_r))
        if hit and hit.get("stat") == key:
            m = BlobManifest.from_dict(hit["blob"])
            if not repo.blobs.missing_chunks({c for c, _ in m.chunks}):
                files[rel] = m.to_dict()
                continue
        cb = (lambda done, total, _r=rel: progress(_r, done, total)) if progress else None
        m = repo.blobs.put_file(real_r, progress=cb)
        read += m.size
        files[rel] = m.to_dict()
        cache[str(real_r)] = {"stat": key, "blob": m.to_dict()}
        changed = True
    if changed:
        _cache_file(repo).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(_cache_file(repo), json.dumps(cache).encode(), durable=False)
    if file_name and src.single:        # a single file is named as it lands in the tree
        files = {file_name: next(iter(files.values()))}
    digest = files_digest(files)
    if src.kind == "adapter":
        cfg = json.loads(src.files["adapter_config.json"].read_text())
        art: Model | Adapter = Adapter(digest=digest, format="peft", files=files, config=cfg)
    else:
        art = Model(digest=digest, format=src.format, files=files)
    art.check()
    return art, read


# --- pulling from a hub -----------------------------------------------------------------------
@dataclass
class PulledSource:
    """A model or adapter read from a hub repository and stored here: where it sat there
    (``ref`` and ``commit``, and the commit that last changed it), its artifact, and the
    transfer figures (chunks the model has, chunks and bytes that came over the wire)."""

    path: str
    ref: str | None
    commit: str
    added_in: str | None
    artifact: Model | Adapter
    lineage: dict
    chunks: int
    chunks_received: int
    git_objects: int


def remote_ref(answer: dict, rev: str | None) -> tuple[str | None, str]:
    """(ref, object id) that ``rev`` names among a hub's advertised refs (``answer`` as
    :meth:`Endpoint.refs` gives it): None means its default branch; a branch or tag name,
    a full ref, or a 40-digit commit id. ``RefNotFound`` lists the branches and tags."""
    refs: dict[str, str] = answer.get("refs") or {}
    if rev is None:
        head = answer.get("head") or "refs/heads/main"
        cands = [head] + sorted(r for r in refs if r.startswith("refs/heads/"))
    else:
        cands = [rev, f"refs/heads/{rev}", f"refs/tags/{rev}"] if not rev.startswith("refs/") else [rev]
    for c in cands:
        if c in refs:
            return c, refs[c]
    if rev is not None and re.fullmatch(r"[0-9a-f]{40}", rev):
        return None, rev
    names = sorted(r.split("/", 2)[2] for r in refs if r.startswith(("refs/heads/", "refs/tags/")))
    raise RefNotFound(f"the remote has no branch or tag {rev or 'to pull from'!r} (it has: "
                      f"{', '.join(names) or 'nothing'})", ref=rev or "HEAD", available=names)


def pull_source(repo: Repository, ep: Endpoint, name: str, rev: str | None = None,
                progress: Progress = None) -> PulledSource:
    """Find model/adapter ``name`` (a path, a file or folder name, or its stem) at ``rev`` of
    the hub repository behind ``ep`` and store the chunks of it this store lacks (verified).

    The hub's git objects for that commit are read into a scratch repository under
    ``.demoai/tmp`` (checked as a fetch checks them) and dropped afterwards, so this
    repository's object store never holds a remote commit whose chunks it lacks. Nothing
    is committed here; the caller holds ``repo.write_guard()`` until the chunks are
    referenced. ``PathNotFound`` lists the models and adapters the remote has there."""
    from demoai.train.registry import added_in, find_model
    report = progress or (lambda *_: None)
    ref, sha = remote_ref(ep.refs(), rev)
    scratch_dir = repo.control / "tmp" / f"pull-{os.getpid()}-{os.urandom(4).hex()}"
    scratch_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Repository.init(scratch_dir)
    try:
        ids = ep.needs([sha], []).git
        put = LocalEndpoint(scratch)
        done = 0
        report("objects", 0, len(ids))
        for frame in ep.git_frames(ids):
            done += put.put_git(frame)
            report("objects", done, len(ids))
        commit = scratch.peel(sha)
        where = f"{ref or sha[:12]}"
        try:
            path, _, art = find_model(scratch, name, commit)
        except PathNotFound:
            have = sorted(p for p, a in scratch.artifacts(commit).items() if isinstance(a, (Model, Adapter)))
            raise PathNotFound(f"the remote has no model or adapter {name!r} at {where} (it has: "
                               f"{', '.join(have) or 'none'})", path=name, ref=where,
                               available=have) from None
        first = added_in(scratch, commit, path)
        lineage = scratch.lineage(first)
    finally:
        scratch.close()
        shutil.rmtree(scratch_dir, ignore_errors=True)
    wanted = sorted(art.chunk_ids())
    missing = repo.blobs.missing_chunks(wanted)
    local = LocalEndpoint(repo)
    got = 0
    report("chunks", 0, len(missing))
    for frame in ep.chunk_frames(missing):
        got += local.put_chunks(frame)      # each chunk decoded and hashed before it is kept
        report("chunks", got, len(missing))
    still = repo.blobs.missing_chunks(wanted)
    if still:
        raise MissingObject(f"the remote sent {len(missing) - len(still)} of {len(missing)} chunks of "
                            f"{path} (first missing {still[0]})", chunk=still[0])
    return PulledSource(path, ref, commit, first, art, lineage, len(wanted), len(missing), done)
