"""``demoai repair`` (and ``fsck --repair``): get a damaged repository working again.

1. An interrupted checkout (a pending journal) is finished, or, when it cannot be, dropped.
2. Every chunk and table file that live history needs is checked; damaged or missing ones
   are taken from a remote that has them (``--remote``, default ``origin`` when configured),
   verified by hash, and put in place: a damaged chunk's pack is rewritten without it, a
   damaged table file replaced.
3. The working tree and index are brought to HEAD where the interrupted switch left them
   behind (files that already hold HEAD's content are not touched).

What cannot be repaired is listed; nothing is reported as fixed unless it was re-verified.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from demoai.errors import DemoAIError
from demoai.objects import decode_manifest
from demoai.porcelain.remote import open_remote, remote_url, remotes
from demoai.store import Repository, drop_sync, reachable, recover_sync, sync_pending, sync_worktree
from demoai.store.kinds import live_objects
from demoai.store.transfer import PART_BYTES, decode_chunk_frame

if TYPE_CHECKING:
    from demoai.store.tables import TableRef

__all__ = ["repair", "RepairReport"]

Progress = Callable[[str, int, int], None] | None


@dataclass
class RepairReport:
    """What ``repair`` found and did."""

    journal: str | None = None            # "finished", "dropped: why", or None (none pending)
    damaged_chunks: list[str] = field(default_factory=list)
    damaged_files: list[str] = field(default_factory=list)   # "table_id.lance/rel"
    repaired_chunks: list[str] = field(default_factory=list)
    repaired_files: list[str] = field(default_factory=list)
    unrepaired: list[str] = field(default_factory=list)
    remote: str | None = None
    worktree_synced: bool = False

    @property
    def ok(self) -> bool:
        """Whether everything damaged was repaired."""
        return not self.unrepaired

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, ``ok`` included."""
        return {**asdict(self), "ok": self.ok}


def repair(repo: Repository, remote: str | None = None, *, token: str | None = None,
           progress: Progress = None) -> RepairReport:
    """Finish or drop a stuck checkout, restore damaged objects from ``remote``, resync."""
    report = RepairReport()
    if sync_pending(repo) is not None:
        try:
            recover_sync(repo)
            report.journal = "finished"
        except DemoAIError as e:
            drop_sync(repo)
            report.journal = f"dropped: {e}"
    _, manifests = reachable(repo)
    arts = []
    for name, data in manifests.items():
        try:
            arts.append(decode_manifest(data, name))
        except DemoAIError:
            continue       # fsck names malformed manifests; nothing to fetch for them
    chunks, tables = live_objects(arts)
    bad_chunks = sorted(set(repo.blobs.missing_chunks(sorted(chunks)))
                        | set(repo.blobs.damaged_chunks(chunks)))
    report.damaged_chunks = bad_chunks
    bad_files: list[tuple[TableRef, str]] = []
    for t in {(t.table_id, t.version): t for t in tables}.values():
        bad_files += [(t, rel) for rel in repo.tables.damaged_files(t)]
    report.damaged_files = [f"{t.table_id}.lance/{rel}" for t, rel in bad_files]
    if bad_chunks:
        report.repaired_chunks = _from_worktree(repo, bad_chunks)
        bad_chunks = [c for c in bad_chunks if c not in set(report.repaired_chunks)]
    if bad_chunks or bad_files:
        if remote is None and "origin" in remotes(repo):
            remote = "origin"
        if remote is None:
            report.unrepaired = [f"chunk {c}" for c in bad_chunks] + report.damaged_files
        else:
            _from_remote(repo, remote, token, bad_chunks, bad_files, report, progress)
    if report.ok and report.journal and report.journal != "finished" and repo.head_commit():
        # the dropped switch had moved HEAD: bring what it left behind to HEAD
        sync_worktree(repo, repo.index.read().entries, repo.tree_entries(repo.head_commit()),
                      progress)
        report.worktree_synced = True
    return report


def _from_worktree(repo: Repository, bad: list[str]) -> list[str]:
    """Damaged chunks cut again from intact working-tree files of models and adapters
    (a file whose bytes hash to the chunk id is as good as the stored copy)."""
    import blake3
    from demoai.objects import Adapter, Model
    wanted, found = set(bad), {}
    for path, data in repo.index.read().entries.items():
        art = decode_manifest(data, path)
        if not isinstance(art, (Model, Adapter)):
            continue
        for rel, f in art.files.items():
            if not wanted & {c for c, _ in f["chunks"]}:
                continue
            p = repo.root / path if len(art.files) == 1 and not (repo.root / path).is_dir() \
                else repo.root / path / rel
            try:
                with open(p, "rb") as fh:
                    off = 0
                    for cid, n in f["chunks"]:
                        if cid in wanted and cid not in found:
                            fh.seek(off)
                            chunk = fh.read(n)
                            if len(chunk) == n and blake3.blake3(chunk).hexdigest() == cid:
                                found[cid] = chunk
                        off += n
            except OSError:
                continue
    if not found:
        return []
    repo.blobs.repair_raw(found.items())
    still = set(repo.blobs.damaged_chunks(found)) | set(repo.blobs.missing_chunks(sorted(found)))
    return sorted(set(found) - still)


def _from_remote(repo: Repository, remote: str, token: str | None, bad_chunks: list[str],
                 bad_files: list[tuple[TableRef, str]], report: RepairReport,
                 progress: Progress) -> None:
    url, _ = remote_url(repo, remote)
    report.remote = url
    ep = open_remote(url, token)
    try:
        if bad_chunks:
            wanted = set(bad_chunks)
            absent: set[str] = set()
            for b in range(0, len(bad_chunks), 2000):
                absent.update(ep.missing_chunks(bad_chunks[b:b + 2000]))
            have = [c for c in bad_chunks if c not in absent]
            items = []
            for frame in ep.chunk_frames(have):
                items += [it for it in decode_chunk_frame(frame) if it[0] in wanted]
                if progress:
                    progress("chunks", len(items), len(have))
            if items:
                repo.blobs.repair(items)
            fixed = set(repo.blobs.damaged_chunks(wanted)) | set(repo.blobs.missing_chunks(sorted(wanted)))
            report.repaired_chunks = sorted(set(report.repaired_chunks) | (wanted - fixed))
            report.unrepaired += [f"chunk {c}" for c in sorted(fixed)]
        tmpdir = repo.control / "tmp"
        tmpdir.mkdir(exist_ok=True)
        for t, rel in bad_files:
            digest = t.files[rel]
            tmp = tmpdir / f"repair-{os.getpid()}-{os.urandom(4).hex()}"
            try:
                with open(tmp, "wb") as f:
                    off, size = 0, None
                    while size is None or off < size:
                        data, size = ep.read_file(t.table_id, rel, digest, off, PART_BYTES)
                        if not data:
                            break
                        f.write(data)
                        off += len(data)
                repo.tables.replace_file(t, rel, tmp)
                report.repaired_files.append(f"{t.table_id}.lance/{rel}")
            except DemoAIError as e:
                report.unrepaired.append(f"{t.table_id}.lance/{rel} ({e})")
            finally:
                tmp.unlink(missing_ok=True)
    finally:
        ep.close()
