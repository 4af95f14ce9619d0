"""``demoai add`` / ``demoai rm``: stage artifacts, or unstage them."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from demoai.errors import PathNotFound, UnknownKind
from demoai.objects import Artifact, decode_manifest, detect_kind
from demoai.porcelain._util import repo_path
from demoai.store.artifacts import import_path
from demoai.store.index import _RACY_NS, IndexState, fingerprint
from demoai.store.repo import CONTROL_DIR, Repository

__all__ = ["add", "rm", "AddResult", "find_artifacts"]


@dataclass
class AddResult:
    """What ``add`` did to one path."""

    path: str
    kind: str
    status: str          # added | modified | unchanged
    artifact: Artifact

    def to_dict(self) -> dict:
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


def add(repo: Repository, paths: list[str | os.PathLike], *, kind: str | None = None,
        key: str | None = None, progress: Callable[[str, int, int], None] | None = None) -> list[AddResult]:
    """Store each path and stage it. A folder that is not itself an artifact is searched for
    artifacts. A path whose bytes are unchanged since it was last staged is skipped."""
    targets: list[Path] = []
    for p in paths:
        abs_p = Path(p).resolve()
        if not abs_p.exists():
            raise PathNotFound(f"{p}: no such file or directory", path=str(p))
        if abs_p.is_dir() and kind is None:
            try:
                detect_kind(abs_p)
                targets.append(abs_p)
            except UnknownKind:
                found = find_artifacts(abs_p)
                if not found:
                    raise
                targets.extend(found)
        else:
            targets.append(abs_p)
    with repo.write_guard():
        return _add_targets(repo, targets, kind, key, progress)


def _add_targets(repo: Repository, targets: list[Path], kind: str | None, key: str | None,
                 progress: Callable[[str, int, int], None] | None) -> list[AddResult]:
    results: list[AddResult] = []
    records: dict[str, dict | None] = {}   # path -> index stat record known without hashing
    state = repo.index.read()
    for t in targets:
        rel = repo_path(repo, t)
        k = kind or detect_kind(t)
        old_bytes = state.entries.get(rel)
        old = decode_manifest(old_bytes, rel) if old_bytes else None
        if (old is not None and old.kind == k and state.is_clean(rel, t)
                and key in (None, getattr(old, "key", None))):
            results.append(AddResult(rel, k, "unchanged", old))
            records[rel] = _trusted_record(state, rel, t)
            continue
        cb = (lambda done, total, _r=rel: progress(_r, done, total)) if progress else None
        fp = fingerprint(t)
        art = import_path(repo, t, kind=k, key=key, base=old if old is not None and old.kind == k else None,
                          progress=cb)
        status = "added" if old is None else ("unchanged" if old.digest == art.digest else "modified")
        results.append(AddResult(rel, k, status, art))
        raw = _file_digest(t, art)
        records[rel] = {"fp": fp, "raw": raw, "at": None} if raw else None
    with repo.index.update() as st:
        for r in results:
            src = repo.root / r.path
            rec = records.get(r.path)
            if rec is not None and fingerprint(src) == rec["fp"]:
                # The stored bytes' BLAKE3 is already known: no second pass over the file.
                st.stage(r.path, r.artifact, None)
                st.stat[r.path] = dict(rec, at=rec["at"] or time.time_ns())
            else:
                st.stage(r.path, r.artifact, src)
    _clear_resolved_conflicts(repo, [r.path for r in results])
    return results


def _file_digest(path: Path, art: Artifact) -> str | None:
    """The BLAKE3 (hex) of the bytes of file ``path`` that ``art`` was just made from, when
    the artifact records it (a single-file model or adapter): what ``content_hash`` gives."""
    files = getattr(art, "files", None)
    if not isinstance(files, dict) or len(files) != 1 or not path.is_file():
        return None
    digest = next(iter(files.values())).get("digest", "")
    return digest[len("blake3:"):] if digest.startswith("blake3:") else None


def _trusted_record(state: IndexState, rel: str, path: Path) -> dict | None:
    """The stat record of an unchanged path when its stat alone proves it clean (not racy)."""
    rec = state.stat.get(rel)
    if not rec:
        return None
    fp = fingerprint(path)
    return dict(rec) if fp == rec["fp"] and fp[1] < rec["at"] - _RACY_NS else None


def _clear_resolved_conflicts(repo: Repository, paths: list[str]) -> None:
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
    _clear_resolved_conflicts(repo, rels)
    return rels
