"""Sessions: append-only, hash-chained event logs committed step by step to their own ref.

Storage, per session ``NAME``:

- ``refs/sessions/NAME`` points at the commit of the last finished step. Each step is one
  small commit whose parent is the previous step's commit, so the git DAG *is* the step
  chain and forking at step k is a new ref at commit k (plus one commit recording the fork).
  Its tree holds ``session`` (a Session manifest: agent digest, head event id, step count,
  status), ``.demoai/events`` (the lines of the events of that step only) and
  ``.demoai/workspace/`` (the sandbox files after that step, as git blobs; unchanged files
  and folders share their ids with the previous step). Every step costs the same bytes,
  whatever the length of the session.
- An event line is ``<id> <parent> <canonical JSON>``; ``id = BLAKE3(parent + " " + JSON)``,
  so the head id pins every event before it. The head is stored in the ref's manifest.
- ``.demoai/sessions/NAME/`` is a rebuildable cache: ``journal`` (all event lines, appended
  as they happen) and ``steps`` (fixed 28-byte records: step commit id, journal offset), which
  make appending, reading step k and forking O(1). A fork's cache starts at its fork point
  and reads earlier events from its parent's cache. The cache is checked against the ref on
  open and rebuilt from git when it disagrees (after a crash, a clone or a fetch).

The event line format and chain check live in :mod:`.events`, the git objects of a step in
:mod:`.steps`, and reading a session another process is appending to in :mod:`.follow`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import secrets
import struct
import time
from pathlib import Path
from typing import Any

from demoai.errors import IntegrityError, InvalidRefName, RefConflict, SessionNotFound
from demoai.objects import Session
from demoai.store.fsutil import FileLock, atomic_write
from demoai.store.git.repo import Repository, check_ref_name
from demoai.store.sessions.events import (ROOT_PARENT, Event, new_event, parse_bodies,
                                          parse_session_step, verify_lines)
from demoai.store.sessions.steps import (blob_ids, chain_lines, commit_time, manifest_at,
                                         read_workspace, walk_steps, workspace_tree,
                                         workspace_tree_at, write_step)

__all__ = ["SESSION_REF", "SessionLog", "SessionInfo", "open_session", "create_session",
           "fork_session", "list_sessions", "session_info", "session_exists", "session_tip",
           "live_status", "free_name", "new_session_name",
           # re-exported from .events and .steps: what readers of one session log use
           "Event", "verify_lines", "parse_bodies", "parse_session_step", "blob_ids",
           "workspace_tree", "read_workspace", "manifest_at"]

SESSION_REF = "refs/sessions/"
_REC = struct.Struct(">20sQ")            # step commit id, journal end offset
_ROOT = ROOT_PARENT


class _Records:
    """The step index: fixed-size records over one buffer, unpacked only when read, so
    opening a long session costs no per-step work."""

    def __init__(self, raw: bytes) -> None:
        self.raw = bytearray(raw[:len(raw) - len(raw) % _REC.size])

    def __len__(self) -> int:
        return len(self.raw) // _REC.size

    def __bool__(self) -> bool:
        return bool(self.raw)

    def __getitem__(self, i: int) -> tuple[bytes, int]:
        n = len(self)
        i = i + n if i < 0 else i
        if not 0 <= i < n:
            raise IndexError(i)
        return _REC.unpack_from(self.raw, i * _REC.size)

    def __setitem__(self, i: int, rec: tuple[bytes, int]) -> None:
        assert i == -1
        self.raw[-_REC.size:] = _REC.pack(*rec)

    def append(self, rec: tuple[bytes, int]) -> None:
        self.raw += _REC.pack(*rec)


@dataclasses.dataclass
class SessionInfo:
    """A session's state as its tip commit records it (``status`` corrected for a run
    that died: ``interrupted``)."""

    name: str
    commit: str
    steps: int
    status: str
    agent: str
    head: str
    parent: dict | None
    meta: dict
    updated: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return dataclasses.asdict(self)


def session_exists(repo: Repository, name: str) -> bool:
    """Whether ``refs/sessions/NAME`` exists."""
    return repo.ref_value(SESSION_REF + name) is not None


def session_tip(repo: Repository, name: str) -> str | None:
    """The commit ``refs/sessions/NAME`` points at; None when there is none (a name git
    would refuse names no session)."""
    try:
        check_ref_name(name, "session")
        return repo.ref_value(SESSION_REF + name)
    except (InvalidRefName, ValueError):
        return None


def free_name(repo: Repository, base: str) -> str:
    """``BASE-1``, ``BASE-2``, ...: the first session name not taken."""
    n = 1
    while session_exists(repo, f"{base}-{n}"):
        n += 1
    return f"{base}-{n}"


def new_session_name(stem: str) -> str:
    """A fresh session name for a run of ``stem``: ``STEM-YYYYmmdd-HHMMSS-xxxx``."""
    return f"{stem or 'agent'}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def list_sessions(repo: Repository) -> list[SessionInfo]:
    """Every session ref with the state its tip commit records, newest first."""
    out = []
    for ref, sha in repo.refs().items():
        if ref.startswith(SESSION_REF):
            out.append(_info(repo, ref[len(SESSION_REF):], sha))
    return sorted(out, key=lambda s: (-s.updated, s.name))


def session_info(repo: Repository, name: str, commit: str | None = None) -> SessionInfo:
    """The state of session ``name`` as its tip (or ``commit``) records it, read from git
    only (safe while a run appends to it). SessionNotFound when there is no such session."""
    sha = commit or session_tip(repo, name)
    if sha is None:
        raise SessionNotFound(f"no session named {name!r} (see `demoai agent sessions`)", session=name)
    return _info(repo, name, sha)


def live_status(repo: Repository, name: str, status: str) -> str:
    """The status a session really has, given the one its manifest records: a session the
    manifest says is running but that nobody holds open for writing was interrupted."""
    if status == "running" and _is_unlocked(repo, name):
        return "interrupted"            # nobody appends to it: the run died mid-way
    return status


def _info(repo: Repository, name: str, sha: str) -> SessionInfo:
    s = manifest_at(repo, sha)
    return SessionInfo(name=name, commit=sha, steps=s.steps, status=live_status(repo, name, s.status),
                       agent=s.agent, head=s.head, parent=s.parent, meta=dict(s.meta),
                       updated=commit_time(repo, sha))


def _cache_dir(repo: Repository, name: str) -> Path:
    return repo.control / "sessions" / name


def _lock_path(repo: Repository, name: str) -> Path:
    return _cache_dir(repo, name) / "lock"


def _is_unlocked(repo: Repository, name: str) -> bool:
    if not _lock_path(repo, name).parent.is_dir():
        return True
    lock = FileLock(_lock_path(repo, name), timeout=0)
    try:
        lock.acquire()
    except Exception:
        return False
    lock.release()
    return True


class SessionLog:
    """An open session: read its events and steps; append and commit when writable."""

    def __init__(self, repo: Repository, name: str, *, writable: bool = False) -> None:
        self.repo = repo
        self.name = check_ref_name(name, "session")
        self.ref = SESSION_REF + name
        tip = repo.ref_value(self.ref)
        if tip is None:
            raise SessionNotFound(f"no session named {name!r} (see `demoai agent sessions`)", session=name)
        self.dir = _cache_dir(repo, name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock: FileLock | None = None
        if writable:
            # A short wait: readers (listing, the status probe, a cache check) hold the lock
            # for microseconds; a real writer holds it for the whole run.
            self._lock = FileLock(self.dir / "lock", timeout=0.5)
            try:
                self._lock.acquire()
            except Exception:
                raise RefConflict(f"session {name!r} is being appended to by another process",
                                  ref=self.ref) from None
        self.tip = tip
        self.manifest = manifest_at(repo, tip)
        self._base: dict | None = None
        self._records: _Records = _Records(b"")
        self._mem_journal: bytes | None = None
        # A reader may repair the cache only while no writer holds the session: a writer's
        # journal legitimately runs ahead of its committed steps.
        probe = self._lock if writable else FileLock(self.dir / "lock", timeout=0)
        try:
            if not writable:
                probe.acquire()
            self._may_repair = True
        except Exception:
            self._may_repair = False
        try:
            self._load_cache()
        finally:
            if not writable and self._may_repair:
                probe.release()
        self._pending: list[bytes] = []
        self._head = self.manifest.head.removeprefix("blake3:").encode() if self.manifest.head else _ROOT
        self._jfd: int | None = None

    # --- cache ---------------------------------------------------------------------
    def _load_cache(self) -> None:
        try:
            raw = (self.dir / "steps").read_bytes()
            base = json.loads((self.dir / "base.json").read_bytes()) if (self.dir / "base.json").exists() else None
        except (OSError, ValueError):
            raw, base = b"", None
        recs = _Records(raw)
        n = len(recs)
        first = base["step"] if base else 0
        ok = bool(recs) and recs[-1][0].hex() == self.tip and first + n - 1 == self.manifest.steps
        if ok and base:
            try:
                parent = SessionLog(self.repo, base["session"])
                ok = parent.step_commit(base["step"]) == base["commit"]
                self._parent = parent
            except Exception:
                ok = False
        if ok:
            jsize = (self.dir / "journal").stat().st_size if (self.dir / "journal").exists() else -1
            ok = jsize >= recs[-1][1]
        if not ok:
            self._rebuild()
            return
        self._base, self._records = base, recs
        if self._may_repair:
            with open(self.dir / "journal", "r+b") as f:   # drop events of a step that never committed
                f.truncate(recs[-1][1])

    def _rebuild(self) -> None:
        """Re-create the cache from git: walk the step commits back to the first."""
        chain = list(walk_steps(self.repo, self.tip, steps=True))
        chain.reverse()
        journal, recs, steps = bytearray(), [], []
        for c in chain:
            journal += c.events
            steps.append(c.steps)
            recs.append((c.id, len(journal)))
        # One record per step number: a fork commit replaces the step it forked from.
        by_step: dict[int, tuple[bytes, int]] = {}
        for st, (cid, off) in zip(steps, recs):
            by_step[st] = (bytes.fromhex(cid), off)
        records = [by_step[k] for k in sorted(by_step)]
        if not self._may_repair:   # a writer is active: keep this view in memory only
            self._mem_journal = bytes(journal)
            self._base, self._records = None, _Records(b"".join(_REC.pack(*r) for r in records))
            return
        atomic_write(self.dir / "journal", bytes(journal), durable=False)
        atomic_write(self.dir / "steps", b"".join(_REC.pack(*r) for r in records), durable=False)
        (self.dir / "base.json").unlink(missing_ok=True)
        self._base, self._records = None, _Records(b"".join(_REC.pack(*r) for r in records))

    # --- reading -------------------------------------------------------------------
    @property
    def steps(self) -> int:
        """The number of the last committed step."""
        return self.manifest.steps

    @property
    def head(self) -> str:
        """The id of the last event appended (``""`` before the first)."""
        return "blake3:" + self._head.decode() if self._head != _ROOT else ""

    def step_commit(self, step: int) -> str:
        """The commit recording the state after ``step`` (O(1) through the cache)."""
        if step < 0 or step > self.manifest.steps:
            raise SessionNotFound(f"session {self.name!r} has steps 0..{self.manifest.steps}, not {step}",
                                  session=self.name, step=step)
        first = self._base["step"] if self._base else 0
        if step < first:
            return self._parent.step_commit(step)
        return self._records[step - first][0].hex()

    def _offsets(self, upto_step: int | None) -> int:
        first = self._base["step"] if self._base else 0
        if upto_step is None or upto_step >= self.manifest.steps:
            return self._records[-1][1]
        return self._records[upto_step - first][1]

    def lines(self, upto_step: int | None = None) -> list[bytes]:
        """Raw event lines from the first event through the end of ``upto_step``."""
        first = self._base["step"] if self._base else 0
        if upto_step is not None and upto_step < first:
            return self._parent.lines(upto_step)
        prefix = self._parent.lines(self._base["step"]) if self._base else []
        end = self._offsets(upto_step)
        if self._mem_journal is not None:
            return prefix + self._mem_journal[:end].splitlines(keepends=True)
        with open(self.dir / "journal", "rb") as f:
            data = f.read(end)
        return prefix + data.splitlines(keepends=True)

    def events(self, upto_step: int | None = None) -> list[Event]:
        """The events from the first through the end of ``upto_step`` (default: all)."""
        return [Event.parse(line) for line in self.lines(upto_step)]

    def git_lines(self) -> list[bytes]:
        """Every event line read from the step commits themselves (not the cache)."""
        return chain_lines(self.repo, self.tip)

    def verify(self, *, from_git: bool = False) -> dict[str, Any]:
        """Verify the chain of every event against the head the ref pins (reading the
        cache, or with ``from_git`` the step commits)."""
        lines = self.git_lines() if from_git else self.lines()
        n, head = verify_lines(lines)
        want = self.manifest.head.removeprefix("blake3:").encode()
        if head != want:
            raise IntegrityError(f"session {self.name}: events end at {head[:12].decode()}, the ref "
                                 f"records head {want[:12].decode()}", session=self.name)
        return {"session": self.name, "events": n, "steps": self.manifest.steps,
                "head": self.manifest.head, "verified": True}

    def workspace_at(self, step: int | None = None) -> dict[str, bytes]:
        """The sandbox workspace files recorded after ``step`` (default: the last)."""
        commit = self.step_commit(self.manifest.steps if step is None else step)
        return read_workspace(self.repo, commit)

    def info(self) -> SessionInfo:
        """The session's state as its tip records it."""
        return _info(self.repo, self.name, self.tip)

    # --- writing -------------------------------------------------------------------
    @property
    def in_flight(self) -> bool:
        """Events appended since the last commit."""
        return bool(self._pending)

    def append(self, type: str, *, same_step: bool = False, **data: Any) -> str:
        """Append an event to the step in flight (``same_step``: to the last committed
        step, e.g. its end); returns its id. Durable at :meth:`commit_step`."""
        eid, line = new_event(self._head, type, self.manifest.steps + (0 if same_step else 1), data)
        if self._jfd is None:
            self._jfd = os.open(self.dir / "journal", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self._jfd, line)
        self._pending.append(line)
        self._head = eid
        return "blake3:" + eid.decode()

    def commit_step(self, *, status: str | None = None, workspace: str | None = None,
                    message: str = "", same_step: bool = False) -> str:
        """Commit the events appended since the last step as the next step (or, with
        ``same_step``, as a new state of the current step: a fork or a status change)."""
        steps = self.manifest.steps + (0 if same_step else 1)
        man = dataclasses.replace(self.manifest, digest="blake3:" + self._head.decode(),
                                  head="blake3:" + self._head.decode(), steps=steps,
                                  status=status or self.manifest.status)
        ws = workspace if workspace is not None else workspace_tree_at(self.repo, self.tip)
        commit = write_step(self.repo, man, b"".join(self._pending), ws, [self.tip],
                             message or f"step {steps}")
        self.repo.set_ref(self.ref, commit, self.tip, f"session: step {steps}")
        off = os.path.getsize(self.dir / "journal")
        with open(self.dir / "steps", "ab") as f:
            if same_step:
                f.truncate(f.tell() - _REC.size)
            f.write(_REC.pack(bytes.fromhex(commit), off))
        rec = (bytes.fromhex(commit), off)
        if same_step:
            self._records[-1] = rec
        else:
            self._records.append(rec)
        self.tip, self.manifest, self._pending = commit, man, []
        return commit

    def close(self) -> None:
        """Close the journal and release the writer's lock."""
        if self._jfd is not None:
            os.close(self._jfd)
            self._jfd = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "SessionLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _init_cache(repo: Repository, name: str, line: bytes, commit: str, base: dict | None) -> None:
    """A new session's cache: its first journal line and step record, and for a fork the
    session and step its earlier events are read from."""
    d = _cache_dir(repo, name)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write(d / "journal", line, durable=False)
    atomic_write(d / "steps", _REC.pack(bytes.fromhex(commit), len(line)), durable=False)
    if base is None:
        (d / "base.json").unlink(missing_ok=True)
    else:
        atomic_write(d / "base.json", json.dumps(base).encode(), durable=False)


def create_session(repo: Repository, name: str, *, agent: str, meta: dict[str, Any],
                   start: dict[str, Any], workspace: str | None = None) -> SessionLog:
    """Create ``refs/sessions/NAME`` with step 0: the ``run_start`` event (``start`` holds
    the lock of every digest and setting). Returns the session opened for writing."""
    check_ref_name(name, "session")
    if session_exists(repo, name):
        raise RefConflict(f"a session named {name!r} already exists", ref=SESSION_REF + name)
    eid, line = new_event(_ROOT, "run_start", 0, start)
    man = Session(digest="blake3:" + eid.decode(), agent=agent, head="blake3:" + eid.decode(),
                  steps=0, status="running", parent=None, meta=meta)
    man.check()
    commit = write_step(repo, man, line, workspace, [], f"session {name}: start")
    _init_cache(repo, name, line, commit, None)
    repo.set_ref(SESSION_REF + name, commit, None, f"session: start {name}")
    return SessionLog(repo, name, writable=True)


def fork_session(repo: Repository, spec: str, new_name: str, *, overrides: dict[str, Any] | None = None) -> SessionLog:
    """Fork ``NAME@STEP`` into a new session sharing every event up to STEP: one commit
    (a ``fork`` event) on top of step STEP's commit and a new ref; nothing is copied."""
    name, step = parse_session_step(spec)
    check_ref_name(new_name, "session")
    if session_exists(repo, new_name):
        raise RefConflict(f"a session named {new_name!r} already exists", ref=SESSION_REF + new_name)
    src = SessionLog(repo, name)
    step = src.steps if step is None else step
    base_commit = src.step_commit(step)
    base = manifest_at(repo, base_commit)
    head = base.head.removeprefix("blake3:").encode()
    eid, line = new_event(head, "fork", step, {
        "from": {"session": name, "step": step, "commit": base_commit, "head": base.head},
        "overrides": overrides or {}})
    meta = {**base.meta, "name": new_name}
    man = dataclasses.replace(base, digest="blake3:" + eid.decode(), head="blake3:" + eid.decode(),
                              status="forked", meta=meta,
                              parent={"session": name, "step": step, "commit": base_commit})
    commit = write_step(repo, man, line, workspace_tree_at(repo, base_commit), [base_commit],
                         f"session {new_name}: fork of {name}@{step}")
    _init_cache(repo, new_name, line, commit, {"session": name, "step": step, "commit": base_commit})
    repo.set_ref(SESSION_REF + new_name, commit, None, f"session: fork {name}@{step}")
    return SessionLog(repo, new_name)


def open_session(repo: Repository, name: str, *, writable: bool = False) -> SessionLog:
    """Open session ``name`` (``writable``: as its one writer); SessionNotFound if none."""
    try:
        return SessionLog(repo, name, writable=writable)
    except InvalidRefName:
        raise SessionNotFound(f"no session named {name!r}", session=name) from None
