"""``demoai fsck``: check every git object, manifest, chunk and table file, and name what
is broken. The git checks and the reachability walk (which ``gc`` and ``repair`` share) are
the store's (:func:`demoai.store.check_git_objects`, :func:`demoai.store.reachable`)."""
from __future__ import annotations

from typing import Callable

from demoai.errors import DemoAIError
from demoai.objects import Artifact, decode_manifest
from demoai.store import Repository, check_git_objects, reachable
from demoai.store.kinds import live_objects

__all__ = ["fsck", "FsckReport"]

_COUNT_NAMES = (("git_objects", "git object", "git objects"), ("commits", "commit", "commits"),
                ("manifests", "manifest", "manifests"), ("chunks", "chunk", "chunks"),
                ("table_versions", "table version", "table versions"),
                ("sessions", "session", "sessions"))


class FsckReport(dict):
    """What :func:`fsck` found: a dict ``{"ok", "problems", "counts"}`` (as ``--json``
    prints it and callers index it) with a human summary for faces."""

    @property
    def ok(self) -> bool:
        """Whether nothing is broken."""
        return bool(self["ok"])

    @property
    def problems(self) -> list[str]:
        """One line per broken thing."""
        return list(self["problems"])

    @property
    def counts(self) -> dict[str, int]:
        """How many of each thing were checked."""
        return dict(self["counts"])

    def counts_text(self) -> str:
        """``39 git objects, 5 commits, 7 manifests, 3 chunks, 2 table versions, 0 sessions``."""
        c = self["counts"]
        return ", ".join(f"{c[k]} {one if c[k] == 1 else many}" for k, one, many in _COUNT_NAMES if k in c)

    def summary(self) -> str:
        """One line: ``ok: checked 39 git objects, ...`` or ``BROKEN, 2 problem(s): checked ...``."""
        head = "ok" if self.ok else f"BROKEN, {len(self['problems'])} problem(s)"
        return f"{head}: checked {self.counts_text()}"


def fsck(repo: Repository, progress: Callable[[str, int, int], None] | None = None) -> FsckReport:
    """Verify everything; returns a :class:`FsckReport` (``{"ok", "problems", "counts"}``)
    and never raises for damage."""
    problems: list[str] = []
    n_git = check_git_objects(repo, problems)
    commits, manifests = reachable(repo, problems)
    arts: list[Artifact] = []
    for name, data in manifests.items():
        try:
            arts.append(decode_manifest(data, name))
        except DemoAIError as e:
            problems.append(f"manifest {name}: {e}")
    chunks, tables = live_objects(arts)
    missing = repo.blobs.missing_chunks(sorted(chunks))
    problems.extend(f"chunk {c} is referenced but missing" for c in missing)
    cb = (lambda d, t: progress("chunks", d, t)) if progress else None
    problems.extend(repo.blobs.verify(progress=cb))
    unique = {(t.table_id, t.version): t for t in tables}
    by_digest = {(t.table_id, t.digest): t for t in unique.values()}
    for i, t in enumerate(unique.values()):
        if progress:
            progress("tables", i, len(unique))
        base = by_digest.get((t.table_id, t.delta["base"])) if t.delta else None
        problems.extend(repo.tables.verify(t, base=base))
    n_sessions = _check_sessions(repo, problems)
    return FsckReport(ok=not problems, problems=problems,
                      counts={"git_objects": n_git, "commits": len(commits), "manifests": len(manifests),
                              "chunks": len(set(repo.blobs.iter_chunk_ids())),
                              "table_versions": len(unique), "sessions": n_sessions})


def _check_sessions(repo: Repository, problems: list[str]) -> int:
    """Verify the hash chain of every session against the head its ref records."""
    from demoai.store.sessions.log import SESSION_REF, open_session
    names = [r[len(SESSION_REF):] for r in repo.refs() if r.startswith(SESSION_REF)]
    for name in names:
        try:
            with open_session(repo, name) as log:
                log.verify(from_git=True)
        except DemoAIError as e:
            problems.append(f"session {name}: {e}")
        except Exception as e:  # damaged cache or objects: name it, never crash fsck
            problems.append(f"session {name}: unreadable ({e.__class__.__name__}: {e})")
    return len(names)
