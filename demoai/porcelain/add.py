"""``demoai add`` / ``demoai rm``: stage artifacts, or unstage them.

``add`` is two steps that ``commit PATHS`` reuses apart: :func:`import_targets` stores
what the files hold (the slow part, no lock but gc's shared one), and
:meth:`Imported.stage` writes the entries into the index (under its lock, touching only
those paths). Every path goes through :func:`demoai.objects.paths.check_path` first: a
file whose name holds a backslash, NUL, ``..``... is refused, not mangled.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from demoai.errors import InvalidArtifact, PathNotFound, UnknownKind, UnsafePath
from demoai.objects import Artifact, decode_manifest, detect_kind, encode_manifest
from demoai.objects.paths import check_path
from demoai.porcelain._util import repo_path
from demoai.store import CONTROL_DIR, IndexState, Repository, fingerprint, recover_sync, stat_record
from demoai.store.kinds import import_path

__all__ = ["add", "rm", "AddResult", "Imported", "find_artifacts", "expand_path", "artifact_path",
           "import_targets", "clear_resolved_conflicts"]

Progress = Callable[[str, int, int], None] | None


@dataclass
class AddResult:
    """What ``add`` did to one path."""

    path: str
    kind: str
    status: str          # added | modified | unchanged
    artifact: Artifact

    def to_dict(self) -> dict:
        """A JSON-ready summary (path, kind, status, digest, summary)."""
        return {"path": self.path, "kind": self.kind, "status": self.status,
                "digest": self.artifact.digest, "summary": self.artifact.summary()}


def find_artifacts(folder: Path) -> list[Path]:
    """Artifact files/folders under ``folder`` (hidden entries and .demoai skipped)."""
    out: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name == CONTROL_DIR:
            continue
        try:
            detect_kind(entry)
            out.append(entry)
        except UnknownKind:
            if entry.is_dir():
                out.extend(find_artifacts(entry))
    return out


@dataclass
class Imported:
    """Artifacts stored from working files but not staged yet: ``add`` stages them at once,
    ``commit PATHS`` commits them and then stages them. ``records``: path -> the index stat
    record known without hashing the file again (None: hash it when staging)."""

    results: list[AddResult] = field(default_factory=list)
    records: dict[str, dict | None] = field(default_factory=dict)

    def stage(self, repo: Repository, st: IndexState) -> None:
        """Write these entries (and only these) into the index state ``st``."""
        for r in self.results:
            # A known record spares a second pass over the file (its BLAKE3 is known).
            st.stage_file(r.path, r.artifact, repo.root / r.path, self.records.get(r.path))


def artifact_path(repo: Repository, path: Path) -> str:
    """The artifact path of ``path`` (absolute, inside the work tree), checked by
    :func:`~demoai.objects.paths.check_path`: a name holding a backslash, NUL, ``..``,
    ``.demoai``... raises :class:`~demoai.errors.UnsafePath` instead of being rewritten."""
    try:
        rel = path.relative_to(repo.root)
    except ValueError:
        raise PathNotFound(f"{path} is outside the repository {repo.root}", path=str(path)) from None
    return check_path(rel.as_posix())


def _given(p: str | os.PathLike) -> Path:
    """A user-given path, resolved; refused first when it holds what no artifact path may
    (a backslash in a relative path would otherwise surface as a missing file)."""
    text = os.fspath(p)
    if "\0" in text:
        raise UnsafePath(f"unsafe path {text!r}: a NUL byte is not allowed", path=text)
    if "\\" in text and not os.path.isabs(text):
        raise UnsafePath(f"unsafe path {text!r}: a backslash is not allowed (DemoAI paths use '/' "
                         "and never hold '\\'; rename the file)", path=text)
    return Path(text).resolve()


def expand_path(p: str | os.PathLike, kind: str | None = None) -> list[Path]:
    """What ``add p`` stores: ``p`` itself, or, for a folder that is not an artifact (and no
    ``kind`` given), the artifacts under it. Raises PathNotFound, UnknownKind, UnsafePath."""
    abs_p = _given(p)
    if not abs_p.exists():
        raise PathNotFound(f"{p}: no such file or directory", path=str(p))
    if abs_p.is_dir() and kind is None:
        try:
            detect_kind(abs_p)
        except UnknownKind:
            found = find_artifacts(abs_p)
            if not found:
                raise
            return found
    return [abs_p]


def add(repo: Repository, paths: list[str | os.PathLike], *, kind: str | None = None,
        key: str | None = None, progress: Progress = None) -> list[AddResult]:
    """Store each path and stage it. A folder that is not itself an artifact is searched for
    artifacts. A path whose bytes are unchanged since it was last staged is skipped.

    Each path must be one a DemoAI tree may hold (:func:`artifact_path`); the index is
    read-modified-written under its lock and only these paths change in it."""
    recover_sync(repo)        # a switch a killed process left half done is finished first
    targets = [(t, kind) for p in paths for t in expand_path(p, kind)]
    with repo.write_guard():
        imported = import_targets(repo, targets, key=key, progress=progress)
        with repo.index.update() as st:
            imported.stage(repo, st)
    clear_resolved_conflicts(repo, [r.path for r in imported.results])
    return imported.results


def import_targets(repo: Repository, targets: list[tuple[Path, str | None]], *,
                   key: str | None = None, progress: Progress = None,
                   state: IndexState | None = None) -> Imported:
    """Store each (path, kind or None to detect) and return what to stage; the index is
    not written. A path unchanged since ``state`` (default: the index) staged it is reused
    without storing it again. The caller holds ``repo.write_guard()`` until what this
    stored is referenced (staged or committed), so gc cannot take it meanwhile."""
    out = Imported()
    state = repo.index.read() if state is None else state
    rels = [artifact_path(repo, t) for t, _ in targets]     # every name checked before any work
    for (t, kind), rel in zip(targets, rels):
        try:
            _import_one(repo, out, state, t, rel, kind, key, progress)
        except FileNotFoundError:
            raise PathNotFound(f"{rel}: no such file or directory (removed while it was read?)",
                               path=rel) from None
        except (IsADirectoryError, NotADirectoryError, PermissionError) as e:
            raise InvalidArtifact(f"{rel}: cannot read it ({e.strerror or e})", path=rel) from None
    return out


def _import_one(repo: Repository, out: Imported, state: IndexState, t: Path, rel: str,
                kind: str | None, key: str | None, progress: Progress) -> None:
    k = kind or detect_kind(t)
    old_bytes = state.entries.get(rel)
    old = decode_manifest(old_bytes, rel) if old_bytes else None
    if (old is not None and old.kind == k and state.is_clean(rel, t)
            and key in (None, getattr(old, "key", None))):
        out.results.append(AddResult(rel, k, "unchanged", old))
        out.records[rel] = state.trusted_record(rel, t)
        return
    cb = (lambda done, total, _r=rel: progress(_r, done, total)) if progress else None
    fp = fingerprint(t)
    art = import_path(repo, t, kind=k, key=key, base=old if old is not None and old.kind == k else None,
                      progress=cb)
    # the manifest, not just the digest: the same rows in another order are a new version
    status = "added" if old is None else (
        "unchanged" if encode_manifest(old) == encode_manifest(art) else "modified")
    out.results.append(AddResult(rel, k, status, art))
    raw = _file_digest(t, art)
    out.records[rel] = stat_record(fp, raw) if raw else None


def _file_digest(path: Path, art: Artifact) -> str | None:
    """The BLAKE3 (hex) of the bytes of file ``path`` that ``art`` was just made from, when
    the artifact records it (a single-file model or adapter): what ``content_hash`` gives."""
    files = getattr(art, "files", None)
    if not isinstance(files, dict) or len(files) != 1 or not path.is_file():
        return None
    digest = next(iter(files.values())).get("digest", "")
    return digest[len("blake3:"):] if digest.startswith("blake3:") else None


def clear_resolved_conflicts(repo: Repository, paths: list[str]) -> None:
    """Mark the merge conflicts of ``paths`` resolved (their entries were just staged)."""
    state = repo.merge_state()
    if state and state.get("conflicts"):
        remaining = [c for c in state["conflicts"] if c["path"] not in paths]
        if len(remaining) != len(state["conflicts"]):
            state["conflicts"] = remaining
            repo.set_merge_state(state)


def rm(repo: Repository, paths: list[str | os.PathLike], *, cached: bool = False) -> list[str]:
    """Unstage artifacts (the next commit drops them); delete the files too unless ``cached``."""
    rels = [repo_path(repo, p) for p in paths]
    with repo.index.update() as st:
        for rel in rels:
            matched = [e for e in st.entries if e == rel or e.startswith(rel + "/")]
            if not matched:
                raise PathNotFound(f"{rel} is not tracked", path=rel)
            for e in matched:
                st.unstage(e)
    if not cached:
        import shutil
        for rel in rels:
            p = repo.root / rel
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    clear_resolved_conflicts(repo, rels)
    return rels
