"""Opened model backends, shared by requests: one lock per backend, least recently used
closed past a bound.

The id a request names is resolved against HEAD on every request (cheap: a tree read, the
weights are materialized once into the repository's cache), and the pool is keyed by the
resolved spec, so a model that changes at HEAD is loaded again rather than served stale.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from demoai.errors import InvalidArtifact
from demoai.engines.llm import ModelBackend, open_backend
from demoai.registry.resolve import resolve_model
from demoai.store.git.repo import Repository

__all__ = ["ModelPool", "PoolEntry", "split_model_id"]


def split_model_id(model_id: str) -> tuple[str, str | None]:
    """``MODEL+ADAPTER`` -> (MODEL, ADAPTER); ``MODEL`` -> (MODEL, None)."""
    base, plus, adapter = model_id.partition("+")
    if plus and not (base and adapter):
        raise InvalidArtifact(f"model id {model_id!r}: expected MODEL+ADAPTER_PATH", model=model_id)
    return base, adapter or None


@dataclass
class PoolEntry:
    """An open backend and the lock every call on it takes."""

    key: str
    backend: ModelBackend
    lock: threading.Lock = field(default_factory=threading.Lock)
    used: float = field(default_factory=time.monotonic)
    closed: bool = False


class ModelPool:
    """Backends by resolved spec; at most ``size`` open at once."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        self.size = max(1, size)
        self._entries: dict[str, PoolEntry] = {}
        self._open_lock = threading.Lock()     # one load at a time: loads are memory-heavy

    def spec(self, model_id: str) -> dict[str, Any]:
        """The backend spec ``model_id`` names at HEAD."""
        base, adapter = split_model_id(model_id)
        if base.startswith("openai:"):   # resolve_model's remote form: this server has no endpoint for it
            raise InvalidArtifact(f"model {model_id!r}: this server serves the repository's models "
                                  "(see GET /v1/models), not remote ones", model=model_id)
        with Repository(self.root) as repo:
            return resolve_model(repo, base, "HEAD", None, adapter)

    def get(self, model_id: str) -> PoolEntry:
        """The entry for ``model_id``, opening its backend if needed (blocking: call it from
        a worker thread)."""
        spec = self.spec(model_id)
        key = repr(sorted((k, v) for k, v in spec.items() if k != "source"))
        with self._open_lock:
            entry = self._entries.get(key)
            if entry is None:
                backend = open_backend({k: v for k, v in spec.items() if k != "source"})
                entry = self._entries[key] = PoolEntry(key, backend)
                self._evict(keep=key)
            entry.used = time.monotonic()
            return entry

    @contextmanager
    def use(self, entry: PoolEntry, model_id: str) -> Iterator[tuple[PoolEntry, float]]:
        """Hold ``entry``'s lock for one call; yields (entry, seconds waited). An entry
        evicted meanwhile is replaced by a freshly opened one."""
        t0 = time.perf_counter()
        while True:
            entry.lock.acquire()
            if not entry.closed:
                break
            entry.lock.release()
            entry = self.get(model_id)
        try:
            yield entry, time.perf_counter() - t0
        finally:
            entry.used = time.monotonic()
            entry.lock.release()

    def _evict(self, keep: str) -> None:
        """Close the least recently used backends nobody is calling, down to ``size``."""
        for e in sorted(self._entries.values(), key=lambda e: e.used):
            if len(self._entries) <= self.size:
                return
            if e.key != keep and e.lock.acquire(blocking=False):
                try:
                    del self._entries[e.key]
                    e.closed = True
                    e.backend.close()
                finally:
                    e.lock.release()

    def close(self) -> None:
        """Close every backend (waiting for calls in flight)."""
        with self._open_lock:
            for e in list(self._entries.values()):
                with e.lock:
                    e.closed = True
                    e.backend.close()
            self._entries.clear()
