"""Hosting repositories for others to push to and pull from (the hub's storage and sync
routes): a hosted repository is an ordinary DemoAI control directory with no working files,
so every store-level tool (fsck, diff, replay) works on it unchanged.

This module is the hub's door to the store: create, find and open hosted repositories, the
sync endpoint that answers the push/pull protocol for one (``demoai.store.transfer``), the
unfinished table-file uploads it keeps staged, and the checks a host makes before it moves
refs. The protocol's size constants are re-exported for the routes that bound requests.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demoai.errors import IntegrityError, ProtocolError
from demoai.store import CONTROL_DIR, FileLock, Repository, check_repo_name
from demoai.store.transfer import (FRAME_BYTES, ID_BATCH, PART_BYTES, LocalEndpoint,
                                   SHAREABLE_REFS, check_shared_ref, check_table_file)

__all__ = ["init_hosted", "is_hosted", "open_hosted", "sync_endpoint", "SyncEndpoint",
           "StagedPart", "staged_parts", "drop_staged_part", "host_lock", "check_ref_targets",
           "check_repo_name", "FRAME_BYTES", "ID_BATCH", "PART_BYTES", "mirror_refs",
           "table_file", "install_table_file"]

SyncEndpoint = LocalEndpoint
"""What :func:`sync_endpoint` returns: one method per protocol request (refs, needs,
missing_*, *_frames, put_*, upload_*, finish_upload, update_refs); ``repo`` is the
repository it serves."""

_UPLOADS = "uploads"       # LocalEndpoint's staging folder inside the control directory
_PART = ".part"


def is_hosted(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a repository."""
    return (Path(path) / CONTROL_DIR / "git").is_dir()


def init_hosted(path: str | os.PathLike) -> None:
    """Create an empty repository at ``path`` (with no working files); one there already
    is kept as it is."""
    if not is_hosted(path):
        Repository.init(path).close()


def open_hosted(path: str | os.PathLike) -> Repository:
    """The repository at ``path`` (the caller closes it); ``NotARepository`` if none."""
    return Repository(path)


def sync_endpoint(repo: Repository) -> SyncEndpoint:
    """The push/pull protocol's endpoint over ``repo``: every request is verified (object
    hashes, tree names, table-file hashes) before anything is stored or a ref moves."""
    return LocalEndpoint(repo)


@dataclass(frozen=True)
class StagedPart:
    """An unfinished table-file upload: the file's BLAKE3 ``digest``, the bytes that
    arrived and when the last of them did."""

    digest: str
    size: int
    mtime: float


def _uploads(path: str | os.PathLike) -> Path:
    return Path(path) / CONTROL_DIR / _UPLOADS


def staged_parts(path: str | os.PathLike) -> list[StagedPart]:
    """The unfinished uploads kept in the hosted repository at ``path``."""
    out = []
    for part in _uploads(path).glob(f"*{_PART}"):
        try:
            st = part.stat()
        except FileNotFoundError:      # finished or dropped meanwhile
            continue
        out.append(StagedPart(part.name[:-len(_PART)], st.st_size, st.st_mtime))
    return out


def drop_staged_part(path: str | os.PathLike, digest: str) -> None:
    """Delete an unfinished upload (gone already is fine)."""
    (_uploads(path) / f"{digest}{_PART}").unlink(missing_ok=True)


def host_lock(path: str | os.PathLike, timeout: float = 120) -> FileLock:
    """An exclusive lock on the file ``path`` (a context manager; released if the process
    dies), for a host's own bookkeeping such as per-user staging caps."""
    return FileLock(Path(path), timeout=timeout)


def check_ref_targets(repo: Repository, updates: list[dict[str, Any]]) -> None:
    """Refuse (``ProtocolError``) an update whose new target is here but is no commit:
    branches and sessions name a commit; a tag names a commit or an annotated tag that
    peels to one. Absent targets are left to ``update_refs`` (``MissingObject``)."""
    for u in updates:
        ref, new = check_shared_ref(u.get("ref", "")), u.get("new")
        kind = repo.object_type(new) if new is not None else None
        if kind is None:
            continue
        oid = new
        if ref.startswith("refs/tags/"):
            while kind == "tag":
                target = repo.tag_target(oid)
                if repo.object_type(target) is None:
                    break         # a tag whose target is absent: MissingObject later
                oid, kind = target, repo.object_type(target)
            if kind not in ("commit", "tag"):
                what = f"a {kind}" if oid == new else f"an annotated tag of a {kind}"
                raise ProtocolError(f"{ref}: {new} is {what}, not a commit (a tag names a commit "
                                    f"or an annotated tag of one)", ref=ref, object=new, type=kind)
        elif kind != "commit":
            raise ProtocolError(f"{ref}: {new} is a {kind}, not a commit (branches and sessions "
                                f"name commits)", ref=ref, object=new, type=kind)


# -- hooks for a host whose copy is a cache of another store (hub/storage_s3.py)

def mirror_refs(repo: Repository, refs: dict[str, str]) -> None:
    """Make ``repo``'s shareable refs (branches, tags, sessions) exactly ``refs``, whatever
    they were: a host whose refs live elsewhere (a database) copies them here so that
    store-level readers see them. Each change is made under the repository's commit lock."""
    with repo.commit_lock():
        have = {k: v for k, v in repo.refs().items() if k.startswith(SHAREABLE_REFS)}
        for ref, old in have.items():
            if ref not in refs:
                repo.delete_ref(ref, old)
        for ref, new in refs.items():
            if have.get(check_shared_ref(ref)) != new:
                repo.set_ref(ref, new, have.get(ref), "hub: refs from the hub's database")


def table_file(repo: Repository, table_id: str, rel: str, digest: str) -> Path | None:
    """Where ``repo`` keeps the table file ``rel`` of ``table_id`` hashing to ``digest``
    (None if it does not)."""
    check_table_file(table_id, rel, digest)
    return repo.tables.find_file(table_id, rel, digest)


def install_table_file(repo: Repository, table_id: str, rel: str, digest: str,
                       src: str | os.PathLike) -> None:
    """Move the file ``src`` into ``repo`` as ``rel`` of table ``table_id`` once its bytes
    hash to ``digest`` (``IntegrityError`` otherwise, ``src`` left in place); nothing to do
    when that file is there already."""
    from demoai.store.tables.ref import file_blake3
    check_table_file(table_id, rel, digest)
    if repo.tables.find_file(table_id, rel, digest) is not None:
        return
    got = file_blake3(src, cache=False)
    if got != digest:
        raise IntegrityError(f"table {table_id}: {rel}: bytes hash to {got[:16]}..., expected "
                             f"{digest[:16]}...", table_id=table_id, file=rel)
    repo.tables.install_file(table_id, rel, Path(src))
