"""Background agent work (runs, continues, live replays) on worker threads.

A request only checks its input and queues the work; the answer (202) names the session at
once and the work runs on a worker thread with its own :class:`Repository`. The app uses one
worker: runs take turns on the CPU and on the models of the app's pool (each model call
already takes that model's lock, shared with ``/v1``). The manager also knows which
sessions it is writing, so that the routes refuse to open those (see
:mod:`demoai.server.guards`); reads of a session come from git and are always safe.
"""
from __future__ import annotations

import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from demoai.errors import DemoAIError, RefConflict
from demoai.http.errors import status_for
from demoai.porcelain import Repository, open_repository

__all__ = ["Run", "RunManager"]

Work = Callable[[Repository], dict[str, Any]]


@dataclass
class Run:
    """One unit of background work and what became of it."""

    session: str
    kind: str                                  # run | continue | live
    status: str = "queued"                     # queued | running | finished | max_steps | failed | ...
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None        # {"status", "error": {code, message, fields}}
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def active(self) -> bool:
        """Queued or running: its session may be written at any moment."""
        return not self.done.is_set()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"session": self.session, "kind": self.kind, "status": self.status,
                "created": self.created, "started": self.started, "ended": self.ended,
                "result": self.result, "error": self.error}


class RunManager:
    """A queue of background work served by ``workers`` daemon threads."""

    def __init__(self, root: Path, workers: int = 1) -> None:
        self.root = root
        self._queue: queue.Queue[tuple[Run, Work] | None] = queue.Queue()
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._serve, name=f"demoai-run-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for t in self._threads:
            t.start()

    def submit(self, session: str, kind: str, work: Work) -> Run:
        """Queue ``work`` for ``session``; refuse a session that already has active work."""
        with self._lock:
            old = self._runs.get(session)
            if old is not None and old.active:
                raise RefConflict(f"session {session!r} already has a {old.kind} {old.status}",
                                  session=session)
            run = self._runs[session] = Run(session, kind)
        self._queue.put((run, work))
        return run

    def get(self, session: str) -> Run | None:
        """The latest work this server did or does on ``session``."""
        with self._lock:
            return self._runs.get(session)

    def active(self, session: str) -> bool:
        """Whether this server may be writing ``session`` right now."""
        run = self.get(session)
        return run is not None and run.active

    def list(self) -> list[Run]:
        """All work this server knows of, newest first."""
        with self._lock:
            return sorted(self._runs.values(), key=lambda r: -r.created)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop taking work; wait up to ``timeout`` seconds for the work in flight. Work still
        running then is left to the daemon threads: if the process exits under it, its session
        reads as interrupted, as after any crash."""
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            run, work = item
            run.status, run.started = "running", time.time()
            try:
                with open_repository(self.root, search=False) as repo:
                    run.result = work(repo)
                run.status = str(run.result.get("status", "finished"))
            except DemoAIError as e:
                run.status, run.error = "failed", {"status": status_for(e), "error": e.to_dict()}
            except BaseException as e:  # noqa: BLE001 (a worker must outlive any run)
                run.status = "failed"
                run.error = {"status": 500, "error": {
                    "code": "internal_error", "message": f"{type(e).__name__}: {e}",
                    "fields": {"traceback": traceback.format_exc(limit=8)}}}
            finally:
                run.ended = time.time()
                run.done.set()
