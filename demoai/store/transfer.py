"""Moving history between two repositories: what one side lacks, in verified batches.

Push, fetch and clone all run :func:`transfer` between two :class:`Endpoint`\\ s: a
:class:`LocalEndpoint` over a :class:`~demoai.store.git.repo.Repository` (this machine, or the
hub's copy of a repository on the hub's side) and the HTTP endpoint in
:mod:`demoai.http.hub`, which speaks to a hub that wraps a ``LocalEndpoint`` in turn.

A transfer moves three kinds of content-addressed things, then the caller moves refs:

1. **chunks** of model/adapter files (BLAKE3 ids), in their stored (compressed) form, in
   frames of at most ``FRAME_BYTES``; the receiver decodes and hashes each before keeping it;
2. **table files** (Lance manifests, data and deletion files; BLAKE3 per file, recorded in
   every dataset manifest), in parts of at most ``PART_BYTES`` into ``uploads/<hash>.part``;
   a file is installed only once all its bytes hash to what the manifest recorded;
3. **git objects** (commits, trees, manifests, session events and workspaces), SHA-1 checked
   on receipt, written as one pack per frame.

Everything received is kept as soon as it is verified, so an interrupted transfer resumes:
the next run asks what the receiver lacks (``missing_*``) and the upload offset of each
partial file, and sends only the rest. Refs move last, with compare-and-swap, after
:func:`check_complete` has proved that every object, chunk and table file the new tips
reach is present, so no ref ever names something half-received.

What to send is computed on the side that has it (:meth:`Endpoint.needs`): the commits
reachable from ``wants`` but not from ``haves``, the trees and blobs of those commits that the
boundary commits' trees do not already hold, and the chunks and table files named by the
manifests among them (everything outside the reserved ``.demoai/`` tree is a manifest).
"""
from __future__ import annotations

import abc
import os
import re
import struct
import itertools
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import zstandard
from dulwich.objects import Commit, ShaFile, Tag, Tree

from demoai.errors import (IntegrityError, InvalidRefName, MissingObject, NonFastForward,
                           ProtocolError, RefConflict, RequestTooLarge, UnsafePath)
from demoai.objects import decode_manifest
from demoai.store.git.repo import CONTROL_DIR, check_entry, check_ref_name

if TYPE_CHECKING:
    from demoai.store.git.repo import Repository

__all__ = ["Endpoint", "LocalEndpoint", "Needs", "transfer", "check_complete", "plan_objects",
           "encode_git_frame", "decode_git_frame", "encode_chunk_frame", "decode_chunk_frame",
           "FRAME_BYTES", "PART_BYTES", "SHAREABLE_REFS", "check_shared_ref", "is_ancestor",
           "check_tree_object", "check_table_file"]

FRAME_BYTES = 8 << 20         # the most one batch of objects or chunks carries
PART_BYTES = 8 << 20          # the most one part of a table file carries
ID_BATCH = 20_000             # ids per "what do you lack?" question
THREADS = 4                   # connections a transfer uses at once
READ_AHEAD = 3                # parts of one file read ahead of the one being written
CHUNK_BATCH = 128             # chunk ids per download (stored chunks average ~64 KiB)
_END = object()
SHAREABLE_REFS = ("refs/heads/", "refs/tags/", "refs/sessions/")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_CID = re.compile(r"^[0-9a-f]{64}$")
_TABLE_ID = re.compile(r"^[0-9a-f]{32}$")
_TABLE_REL = re.compile(r"^(data|_versions|_deletions|_transactions|_indices)(/[A-Za-z0-9_.=-]+)+$")
_GIT_HEAD = struct.Struct(">20sBI")
_CHUNK_HEAD = struct.Struct(">32sIBI")

Progress = Callable[[str, int, int], None] | None
"""``progress(stage, done, total)``; stages ``chunks``, ``files``, ``objects`` (bytes or counts)."""


# ----------------------------------------------------------------------------- checks

def check_shared_ref(ref: str) -> str:
    """A ref that may travel between repositories: a branch, a tag or a session."""
    if not ref.startswith(SHAREABLE_REFS):
        raise InvalidRefName(f"{ref!r} cannot be pushed or fetched (refs/heads/, refs/tags/ "
                             f"and refs/sessions/ only)", name=ref)
    check_ref_name(ref, "ref")
    return ref


def _check_cid(c: Any, what: str = "chunk id") -> str:
    if not isinstance(c, str) or not _CID.match(c):
        raise ProtocolError(f"malformed {what} {str(c)[:80]!r}")
    return c


def _check_sha(s: Any, what: str = "object id") -> str:
    if not isinstance(s, str) or not _SHA.match(s):
        raise ProtocolError(f"malformed {what} {str(s)[:60]!r}")
    return s


def check_table_file(table_id: Any, rel: Any, digest: Any) -> tuple[str, str, str]:
    """A table file name that cannot escape its table folder, and a BLAKE3 hex."""
    if not (isinstance(table_id, str) and _TABLE_ID.match(table_id)):
        raise ProtocolError(f"malformed table id {str(table_id)[:60]!r}")
    if not (isinstance(rel, str) and _TABLE_REL.match(rel)) or "/../" in f"/{rel}/" or "/./" in f"/{rel}/":
        raise ProtocolError(f"malformed table file name {str(rel)[:100]!r}")
    if not (isinstance(digest, str) and _CID.match(digest)):
        raise ProtocolError(f"malformed file hash {str(digest)[:80]!r}")
    return table_id, rel, digest


# ----------------------------------------------------------------------------- frames

def encode_git_frame(objects: Iterable[tuple[str, int, bytes]]) -> bytes:
    """``(sha hex, type number, raw content)`` records, zstd-compressed."""
    parts = []
    for sha, type_num, raw in objects:
        parts.append(_GIT_HEAD.pack(bytes.fromhex(sha), type_num, len(raw)))
        parts.append(raw)
    return zstandard.ZstdCompressor(level=3).compress(b"".join(parts))


def decode_git_frame(frame: bytes, max_bytes: int = 16 * FRAME_BYTES) -> list[ShaFile]:
    """Parse and verify a git frame: every object must hash to the id it came with."""
    try:
        data = zstandard.ZstdDecompressor().decompress(frame, max_output_size=max_bytes)
    except zstandard.ZstdError as e:
        raise ProtocolError(f"git frame: cannot decompress ({e})") from None
    out, i = [], 0
    while i < len(data):
        if i + _GIT_HEAD.size > len(data):
            raise ProtocolError("git frame: truncated header")
        sha, type_num, n = _GIT_HEAD.unpack_from(data, i)
        i += _GIT_HEAD.size
        raw = data[i:i + n]
        i += n
        if len(raw) != n or type_num not in (1, 2, 3, 4):
            raise ProtocolError("git frame: truncated or unknown object")
        try:
            obj = ShaFile.from_raw_string(type_num, raw)
        except Exception as e:   # dulwich raises several types for malformed objects
            raise IntegrityError(f"git object {sha.hex()}: malformed ({e})", object=sha.hex()) from None
        if obj.id.decode() != sha.hex():
            raise IntegrityError(f"git object {sha.hex()}: received bytes hash to {obj.id.decode()}",
                                 object=sha.hex())
        if isinstance(obj, Tree):
            check_tree_object(obj)
        out.append(obj)
    return out


def encode_chunk_frame(items: Iterable[tuple[str, bytes, int, int]]) -> bytes:
    """Chunks in stored form: ``(id hex, payload, raw length, flags)`` records."""
    parts = []
    for cid, payload, raw_len, flags in items:
        parts.append(_CHUNK_HEAD.pack(bytes.fromhex(cid), raw_len, flags, len(payload)))
        parts.append(payload)
    return b"".join(parts)


def decode_chunk_frame(frame: bytes) -> list[tuple[str, bytes, int, int]]:
    """The records of a chunk frame (verified later, when stored)."""
    out, i, mv = [], 0, memoryview(frame)
    while i < len(frame):
        if i + _CHUNK_HEAD.size > len(frame):
            raise ProtocolError("chunk frame: truncated header")
        cid, raw_len, flags, n = _CHUNK_HEAD.unpack_from(frame, i)
        i += _CHUNK_HEAD.size
        if i + n > len(frame) or raw_len > 64 << 20:
            raise ProtocolError("chunk frame: truncated payload")
        out.append((cid.hex(), bytes(mv[i:i + n]), raw_len, flags))
        i += n
    return out


# ----------------------------------------------------------------------------- planning

@dataclass
class Needs:
    """What a receiver needs for some tips: git object ids, chunk ids, table files."""

    git: list[str] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)
    files: list[tuple[str, str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (what the hub answers)."""
        return {"git": self.git, "chunks": self.chunks, "files": [list(f) for f in self.files]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Needs":
        """Rebuild and check an answer; ``ProtocolError`` if malformed."""
        try:
            return cls([_check_sha(s) for s in d["git"]],
                       [_check_cid(c) for c in d["chunks"]],
                       [check_table_file(*f) for f in d["files"]])
        except (KeyError, TypeError) as e:
            raise ProtocolError(f"malformed needs answer ({e})") from None


def check_tree_object(tree: Tree) -> None:
    """Refuse a received tree with an entry no working tree could hold safely: an empty,
    ``.``/``..``, slash, backslash, NUL or non-UTF-8 name, or a mode other than file/folder.
    (Where ``.demoai`` may appear depends on the entry's place: see :func:`_checked_path`.)"""
    for e in tree.iteritems():
        name = e.path
        if (name in (b"", b".", b"..") or b"/" in name or b"\\" in name or b"\0" in name
                or e.mode not in (0o040000, 0o100644, 0o100755)):
            raise UnsafePath(f"tree {tree.id.decode()}: unsafe entry {name!r} (mode {e.mode:o})",
                             object=tree.id.decode(), path=name.decode("utf-8", "replace"))
        try:
            name.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsafePath(f"tree {tree.id.decode()}: entry name {name!r} is not UTF-8",
                             object=tree.id.decode()) from None


def _checked_path(prefix: str, entry: Any) -> str:
    """The path of a tree entry below ``prefix``, checked as the working tree would: outside
    the reserved root ``.demoai/`` folder every name passes :func:`check_entry` (no
    ``.demoai`` in any case, no drive letters...); inside it, the basic name rules."""
    if prefix.startswith(CONTROL_DIR + "/") or (not prefix and entry.path == CONTROL_DIR.encode()):
        return prefix + entry.path.decode("utf-8", "replace")
    return prefix + check_entry(entry.path, entry.mode, prefix)


def _ancestors(store: Any, tips: Iterable[bytes]) -> set[bytes]:
    seen: set[bytes] = set()
    stack = list(tips)
    while stack:
        c = stack.pop()
        if c in seen:
            continue
        seen.add(c)
        stack.extend(store[c].parents)
    return seen


def _peel_local(store: Any, sha: bytes) -> tuple[list[bytes], bytes | None]:
    """Tag objects on the way from ``sha`` to a commit, and the commit (None if absent)."""
    tags = []
    try:
        obj = store[sha]
    except KeyError:
        return tags, None
    while isinstance(obj, Tag):
        tags.append(obj.id)
        obj = store[obj.object[1]]
    return tags, obj.id if isinstance(obj, Commit) else None


def _tree_objects(store: Any, tree: bytes, out: set[bytes]) -> None:
    if tree in out:
        return
    out.add(tree)
    for e in store[tree].iteritems():
        if e.mode & 0o040000:
            _tree_objects(store, e.sha, out)
        else:
            out.add(e.sha)


def plan_objects(repo: "Repository", wants: Iterable[str], haves: Iterable[str]) -> tuple[list[str], list[bytes]]:
    """Git object ids reachable from ``wants`` and not from ``haves`` (those ``repo`` has),
    and the manifest blobs among them (raw bytes). ``MissingObject`` if ``repo`` lacks one."""
    store = repo.git.object_store
    try:
        have_commits: set[bytes] = set()
        have_tags: set[bytes] = set()
        for h in haves:
            tags, c = _peel_local(store, _check_sha(h).encode())
            have_tags.update(tags)
            if c is not None:
                have_commits.add(c)
        have_all = _ancestors(store, have_commits)
        out: list[bytes] = []
        want_commits = []
        for w in wants:
            tags, c = _peel_local(store, _check_sha(w).encode())
            if c is None:
                raise MissingObject(f"object {w} is not in the repository", object=w)
            out.extend(t for t in tags if t not in have_tags)
            want_commits.append(c)
        new, boundary = [], set()
        seen: set[bytes] = set()
        stack = list(want_commits)
        while stack:
            c = stack.pop()
            if c in seen:
                continue
            seen.add(c)
            if c in have_all:
                boundary.add(c)
                continue
            new.append(c)
            stack.extend(store[c].parents)
        remote_has: set[bytes] = set()
        for b in boundary:
            _tree_objects(store, store[b].tree, remote_has)
        manifests: list[bytes] = []
        sent: set[bytes] = set(out)
        for c in new:
            out.append(c)
            stack2 = [(store[c].tree, "")]
            while stack2:
                tid, prefix = stack2.pop()
                if tid in remote_has or tid in sent:
                    continue
                sent.add(tid)
                out.append(tid)
                for e in store[tid].iteritems():
                    path = _checked_path(prefix, e)
                    if e.mode & 0o040000:
                        stack2.append((e.sha, path + "/"))
                    elif e.sha not in remote_has and e.sha not in sent:
                        sent.add(e.sha)
                        out.append(e.sha)
                        if not path.startswith(CONTROL_DIR + "/"):
                            manifests.append(store[e.sha].as_raw_string())
    except KeyError as e:
        raise MissingObject(f"git object {e.args[0]!r} is missing", object=str(e.args[0])) from None
    return [o.decode() for o in out], manifests


def attachments(manifests: list[bytes]) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Chunk ids and table files ``(table_id, rel, blake3)`` the manifests name."""
    from demoai.store.kinds import live_objects
    arts = [decode_manifest(m, "manifest") for m in manifests]
    chunks, tables = live_objects(arts)
    files = {(t.table_id, rel, h) for t in tables for rel, h in t.files.items()}
    return sorted(chunks), sorted(files)


def is_ancestor(repo: "Repository", old: str, new: str) -> bool:
    """Whether commit ``old`` is ``new`` or one of its ancestors (tags are peeled)."""
    store = repo.git.object_store
    _, o = _peel_local(store, old.encode())
    _, n = _peel_local(store, new.encode())
    if o is None or n is None:
        return False
    return o in _ancestors(store, [n])


# ----------------------------------------------------------------------------- endpoints

class Endpoint(abc.ABC):
    """One side of a transfer. Ids are hex strings; table files are ``(table_id, rel, hash)``.

    ``remote``: the endpoint is reached over a network and may be called from several
    threads at once; :func:`transfer` calls a local one from one thread only."""

    remote = False

    @abc.abstractmethod
    def refs(self) -> dict[str, Any]:
        """``{"refs": {name: sha}, "head": "refs/heads/..." | None}`` (shareable refs only)."""

    @abc.abstractmethod
    def needs(self, wants: list[str], haves: list[str]) -> Needs:
        """What a side holding ``haves`` needs to have ``wants`` complete."""

    @abc.abstractmethod
    def missing_git(self, ids: list[str]) -> list[str]:
        """The git object ids among ``ids`` not stored here."""

    @abc.abstractmethod
    def missing_chunks(self, ids: list[str]) -> list[str]:
        """The chunk ids among ``ids`` not stored here."""

    @abc.abstractmethod
    def missing_files(self, files: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        """The files not stored here with the given hash (under any folder of the lineage)."""

    @abc.abstractmethod
    def git_frames(self, ids: list[str]) -> Iterator[bytes]:
        """The git objects ``ids`` as frames (:func:`encode_git_frame`)."""

    @abc.abstractmethod
    def chunk_frames(self, ids: list[str]) -> Iterator[bytes]:
        """The chunks ``ids``, in stored form, as frames (:func:`encode_chunk_frame`)."""

    @abc.abstractmethod
    def put_git(self, frame: bytes) -> int:
        """Verify and keep the objects of a git frame; returns how many were new."""

    @abc.abstractmethod
    def put_chunks(self, frame: bytes) -> int:
        """Verify and keep the chunks of a chunk frame; returns how many were new."""

    @abc.abstractmethod
    def read_file(self, table_id: str, rel: str, digest: str, offset: int, length: int) -> tuple[bytes, int]:
        """``length`` bytes (fewer at the end) of the table file ``rel`` hashing to
        ``digest``, and its size."""

    @abc.abstractmethod
    def upload_offset(self, digest: str) -> int:
        """How many bytes of the file hashing to ``digest`` arrived so far."""

    @abc.abstractmethod
    def upload_part(self, digest: str, offset: int, data: bytes, size: int | None = None) -> int:
        """Append ``data`` at ``offset`` (which must be :meth:`upload_offset`) to the upload
        of the file hashing to ``digest``; returns the new offset. ``size``, the whole
        file's, lets a receiver refuse bytes past it."""

    @abc.abstractmethod
    def finish_upload(self, table_id: str, rel: str, digest: str) -> None:
        """Install a fully uploaded file as ``rel`` of table ``table_id`` once its bytes
        hash to ``digest``."""

    @abc.abstractmethod
    def update_refs(self, updates: list[dict[str, Any]], force: bool = False) -> list[dict[str, Any]]:
        """Move refs (``{"ref", "old", "new"}``; ``new`` None deletes) all or none."""


class LocalEndpoint(Endpoint):
    """An endpoint over a repository on this machine's disk."""

    def __init__(self, repo: "Repository") -> None:
        self.repo = repo
        self.uploads = repo.control / "uploads"

    # -- asking
    def refs(self) -> dict[str, Any]:
        refs = {k: v for k, v in self.repo.refs().items() if k.startswith(SHAREABLE_REFS)}
        return {"refs": refs, "head": self.repo.head_ref()}

    def needs(self, wants: list[str], haves: list[str]) -> Needs:
        ids, manifests = plan_objects(self.repo, wants, haves)
        chunks, files = attachments(manifests)
        return Needs(ids, chunks, files)

    def missing_git(self, ids: list[str]) -> list[str]:
        store = self.repo.git.object_store
        return [i for i in ids if _check_sha(i).encode() not in store]

    def missing_chunks(self, ids: list[str]) -> list[str]:
        return self.repo.blobs.missing_chunks([_check_cid(c) for c in ids])

    def missing_files(self, files: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        tables = self.repo.tables
        return [(tid, rel, digest) for tid, rel, digest in (check_table_file(*f) for f in files)
                if tables.find_file(tid, rel, digest) is None]

    # -- reading
    def git_frames(self, ids: list[str]) -> Iterator[bytes]:
        store = self.repo.git.object_store
        batch, size = [], 0
        for i in ids:
            try:
                type_num, raw = store.get_raw(_check_sha(i).encode())
            except KeyError:
                raise MissingObject(f"git object {i} is missing", object=i) from None
            batch.append((i, type_num, raw))
            size += len(raw) + _GIT_HEAD.size
            if size >= FRAME_BYTES // 2:    # compressed frames then stay well under the bound
                yield encode_git_frame(batch)
                batch, size = [], 0
        if batch:
            yield encode_git_frame(batch)

    def chunk_frames(self, ids: list[str]) -> Iterator[bytes]:
        batch, size = [], 0
        for cid in ids:
            payload, raw_len, flags = self.repo.blobs.get_stored(cid)
            if batch and size + len(payload) + _CHUNK_HEAD.size > FRAME_BYTES:
                yield encode_chunk_frame(batch)
                batch, size = [], 0
            batch.append((cid, payload, raw_len, flags))
            size += len(payload) + _CHUNK_HEAD.size
        if batch:
            yield encode_chunk_frame(batch)

    def read_file(self, table_id: str, rel: str, digest: str, offset: int, length: int) -> tuple[bytes, int]:
        check_table_file(table_id, rel, digest)
        p = self.repo.tables.find_file(table_id, rel, digest)
        try:
            if p is None:
                raise FileNotFoundError(rel)
            with open(p, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(max(0, offset))
                return f.read(max(0, min(length, PART_BYTES))), size
        except FileNotFoundError:
            raise MissingObject(f"table {table_id}: {rel} is not here", table_id=table_id,
                                file=rel) from None

    # -- receiving
    def put_git(self, frame: bytes) -> int:
        objs = decode_git_frame(frame)
        store = self.repo.git.object_store
        new = [(o, None) for o in objs if o.id not in store]
        if new:
            store.add_objects(new)
        return len(new)

    def put_chunks(self, frame: bytes) -> int:
        return self.repo.blobs.put_stored(decode_chunk_frame(frame))

    def _part(self, digest: str) -> Path:
        return self.uploads / f"{_check_cid(digest, 'file hash')}.part"

    def upload_offset(self, digest: str) -> int:
        try:
            return self._part(digest).stat().st_size
        except FileNotFoundError:
            return 0

    def upload_part(self, digest: str, offset: int, data: bytes, size: int | None = None) -> int:
        if size is not None and offset + len(data) > size:
            raise RequestTooLarge(f"upload {digest[:16]}: {offset + len(data)} bytes, past the "
                                  f"declared {size}", size=size)
        p = self._part(digest)
        self.uploads.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            have = os.fstat(fd).st_size
            if offset != have:
                raise RefConflict(f"upload {digest[:16]}: part at offset {offset}, have {have} bytes",
                                  offset=have)
            # No fsync per part: the part is synced once, when it is finished and verified
            # (a part cut short by a crash hashes wrong there and is uploaded again).
            os.pwrite(fd, data, offset)
            return offset + len(data)
        finally:
            os.close(fd)

    def finish_upload(self, table_id: str, rel: str, digest: str) -> None:
        from demoai.store.fsutil import FileLock
        from demoai.store.tables.ref import file_blake3
        check_table_file(table_id, rel, digest)
        p = self._part(digest)
        # Two pushes of one file upload it side by side (same bytes at the same offsets)
        # and both finish: one at a time, so the second finds it installed rather than
        # its part gone (MissingObject) or the name taken (IntegrityError).
        with FileLock(self.uploads / "finish.lock", timeout=120):
            if self.repo.tables.find_file(table_id, rel, digest) is not None:
                p.unlink(missing_ok=True)
                return
            try:
                _fsync_path(p)
                got = file_blake3(p, cache=False)
            except FileNotFoundError:
                raise MissingObject(f"upload {digest[:16]}: nothing received", file=rel) from None
            if got != digest:
                p.unlink(missing_ok=True)     # start over: these bytes can never become the file
                raise IntegrityError(f"table {table_id}: {rel}: received bytes hash to "
                                     f"{got[:16]}..., expected {digest[:16]}...",
                                     table_id=table_id, file=rel)
            self.repo.tables.install_file(table_id, rel, p)

    def update_refs(self, updates: list[dict[str, Any]], force: bool = False) -> list[dict[str, Any]]:
        repo = self.repo
        with repo.commit_lock():
            current = repo.refs()
            checked = []
            for u in updates:
                ref = check_shared_ref(u.get("ref", ""))
                old = u.get("old")
                new = u.get("new")
                if old is not None:
                    _check_sha(old)
                if new is not None:
                    _check_sha(new)
                    if new.encode() not in repo.git.object_store:
                        # checked before ancestry: an absent tip is no non-fast-forward
                        raise MissingObject(f"{ref}: object {new} has not arrived", object=new, ref=ref)
                have = current.get(ref)
                if have != old:
                    raise RefConflict(f"{ref} is at {have or 'nothing'}, not {old or 'nothing'} "
                                      f"(it moved meanwhile; fetch first)", ref=ref, current=have)
                if new is not None and have not in (None, new) and not force:
                    if ref.startswith("refs/tags/"):
                        raise NonFastForward(f"{ref} already exists (use --force to move a tag)", ref=ref)
                    if not is_ancestor(repo, have, new):
                        raise NonFastForward(f"{ref}: {new[:12]} does not contain {have[:12]} "
                                             f"(fetch and merge, or push --force)", ref=ref)
                checked.append((ref, have, new))
            news = [n for _, _, n in checked if n is not None]
            check_complete(repo, news, list(current.values()))
            for ref, have, new in checked:
                if new is None:
                    if have is not None:
                        repo.delete_ref(ref, have)
                else:
                    repo.set_ref(ref, new, have, "push")
        return [{"ref": r, "old": h, "new": n} for r, h, n in checked]


def _fsync_path(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_complete(repo: "Repository", tips: list[str], existing: list[str]) -> None:
    """Raise ``MissingObject`` unless everything ``tips`` reach beyond ``existing`` is here:
    git objects, chunks and the table files their manifests name (with matching hashes)."""
    if not tips:
        return
    _, manifests = plan_objects(repo, tips, existing)
    chunks, files = attachments(manifests)
    missing = repo.blobs.missing_chunks(chunks)
    if missing:
        raise MissingObject(f"{len(missing)} chunks are missing (first {missing[0]})", chunk=missing[0])
    for tid, rel, digest in files:
        if repo.tables.find_file(tid, rel, digest) is None:
            raise MissingObject(f"table {tid}: no {rel} with the recorded hash is here",
                                table_id=tid, file=rel)


# ----------------------------------------------------------------------------- transfer

def _batched(items: list[Any], n: int = ID_BATCH) -> Iterator[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _records(frame: bytes) -> int:
    """How many chunks a chunk frame holds (headers only)."""
    n = i = 0
    while i + _CHUNK_HEAD.size <= len(frame):
        i += _CHUNK_HEAD.size + _CHUNK_HEAD.unpack_from(frame, i)[3]
        n += 1
    return n


def _ahead(pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Iterable[Any],
           depth: int = READ_AHEAD) -> Iterator[Any]:
    """``fn(item)`` for each item in order, with up to ``depth`` calls running ahead in ``pool``
    (network and disk overlap; memory stays ``depth`` results)."""
    pending: deque[Future] = deque()
    it = iter(items)
    for item in it:
        pending.append(pool.submit(fn, item))
        if len(pending) >= depth:
            break
    while pending:
        fut = pending.popleft()
        nxt = next(it, _END)
        if nxt is not _END:
            pending.append(pool.submit(fn, nxt))
        yield fut.result()


def _put_chunks(dst: Endpoint, frame: bytes) -> int:
    """Store a chunk frame at ``dst``; returns how many chunks it carried."""
    dst.put_chunks(frame)
    return _records(frame)


def _send_parts(src: Endpoint, dst: Endpoint, f: tuple[str, str, str], off: int,
                pool: ThreadPoolExecutor | None, sent: Callable[[int], None]) -> bool:
    """Send one table file's parts from ``off``; False when the receiver turned out to hold a
    different offset (an earlier try landed but its answer was lost)."""
    tid, rel, digest = f
    first, size = src.read_file(tid, rel, digest, off, PART_BYTES)
    read = lambda o: src.read_file(tid, rel, digest, o, PART_BYTES)[0]   # noqa: E731
    rest = range(off + len(first), size, PART_BYTES)
    parts = _ahead(pool, read, rest) if pool is not None else map(read, rest)
    for data in itertools.chain([first], parts):
        if off >= size:
            break
        if len(data) != min(PART_BYTES, size - off):
            raise ProtocolError(f"table {tid}: {rel}: {len(data)} bytes at offset {off} of {size}")
        try:
            off = dst.upload_part(digest, off, data, size)
        except RefConflict:
            return False
        sent(len(data))
    return True


def _send_file(src: Endpoint, dst: Endpoint, f: tuple[str, str, str],
               pool: ThreadPoolExecutor | None, sent: Callable[[int], None]) -> None:
    """Copy one table file from where ``dst`` stopped and install it there. A file whose
    received bytes hash wrong (a part cut short by a crash of the receiver) starts over once."""
    tid, rel, digest = f
    restarts = 0
    while True:
        if not _send_parts(src, dst, f, dst.upload_offset(digest), pool, sent):
            continue
        try:
            dst.finish_upload(tid, rel, digest)
            return
        except IntegrityError:
            restarts += 1
            if restarts > 1:
                raise


def transfer(src: Endpoint, dst: Endpoint, wants: list[str], haves: list[str],
             progress: Progress = None) -> dict[str, Any]:
    """Copy to ``dst`` whatever it lacks of ``wants`` (beyond ``haves``); refs are not moved.

    Calls to a remote side run ``THREADS`` at a time (table files in parallel, chunk frames
    and file parts read ahead), so the network, the disks and each side's checks overlap;
    the local side is written from this thread only. Returns counts: objects, chunks and
    files considered and sent, and bytes sent."""
    report = progress or (lambda *_: None)
    needs = src.needs(wants, haves)
    stats = {"git_objects": len(needs.git), "chunks": len(needs.chunks), "files": len(needs.files),
             "git_sent": 0, "chunks_sent": 0, "files_sent": 0, "file_bytes_sent": 0}
    lock = threading.Lock()

    def sent(n: int) -> None:
        with lock:
            stats["file_bytes_sent"] += n

    with ThreadPoolExecutor(THREADS, thread_name_prefix="demoai-transfer") as pool, \
            ThreadPoolExecutor(THREADS * READ_AHEAD, thread_name_prefix="demoai-read") as reads:
        chunks = [c for b in _batched(needs.chunks) for c in dst.missing_chunks(b)]
        report("chunks", 0, len(chunks))
        if src.remote:      # fetch batches ahead, store them here in order
            frames = itertools.chain.from_iterable(_ahead(
                pool, lambda b: list(src.chunk_frames(b)), _batched(chunks, CHUNK_BATCH), THREADS))
            puts: Iterable[int] = (_put_chunks(dst, fr) for fr in frames)
        elif dst.remote:    # read here, send THREADS frames at once
            puts = _ahead(pool, lambda fr: _put_chunks(dst, fr),
                          src.chunk_frames(chunks), THREADS)
        else:
            puts = (_put_chunks(dst, fr) for fr in src.chunk_frames(chunks))
        for n in puts:
            stats["chunks_sent"] += n
            report("chunks", stats["chunks_sent"], len(chunks))

        files = [f for b in _batched(needs.files, 2000) for f in dst.missing_files(b)]
        report("files", 0, len(files))

        def one(f: tuple[str, str, str]) -> None:
            _send_file(src, dst, f, reads if src.remote else None, sent)
            with lock:
                stats["files_sent"] += 1
                report("files", stats["files_sent"], len(files))

        if dst.remote:
            for fut in [pool.submit(one, f) for f in files]:
                fut.result()
        else:
            for f in files:
                one(f)

    git = [g for b in _batched(needs.git) for g in dst.missing_git(b)]
    report("objects", 0, len(git))
    done = 0
    for frame in src.git_frames(git):
        done += dst.put_git(frame) or 0
        report("objects", done, len(git))
    stats["git_sent"] = len(git)
    return stats
