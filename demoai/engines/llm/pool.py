"""One bounded pool of open model backends, shared by agent runs and the OpenAI API.

Loading a model is the slow part of a short call, so backends stay open between uses,
keyed by their spec (the resolved spec: a model that changes at HEAD resolves to another
digest and is loaded again rather than served stale). At most ``size`` backends stay open;
past that the least recently used one nobody holds is closed. A model is held from
:meth:`ModelPool.use` until it is released (its ``with`` block ends) and is never closed
while held (the pool may then be over its bound for that long). Each call on a backend takes that backend's lock:
inference is not thread-safe, so two callers of one model take turns.

    with ModelPool(size=2) as pool, pool.use({"backend": "llamacpp", "path": p}) as model:
        model.chat(messages)                      # a ModelBackend, called under its lock

There is no process-wide pool: whoever keeps models loaded across calls owns a pool and
closes it (the server's app, a notebook); :func:`use_model` without one opens a model for
one block and closes it after.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from demoai.engines.llm.base import ModelBackend

__all__ = ["ModelPool", "PooledModel", "spec_key", "use_model", "DEFAULT_POOL_SIZE"]

DEFAULT_POOL_SIZE = 2
Opener = Callable[[dict[str, Any]], ModelBackend]


def spec_key(spec: dict[str, Any]) -> str:
    """The pool key of a backend spec: every setting but its provenance (``source``)."""
    return repr(sorted((k, v) for k, v in spec.items() if k != "source"))


@dataclass(eq=False)
class _Entry:
    key: str
    backend: ModelBackend
    lock: threading.Lock = field(default_factory=threading.Lock)   # one call at a time
    holders: int = 0
    closed: bool = False


class PooledModel:
    """A model held from a pool until :meth:`release` (or the end of its ``with`` block).
    It behaves as its :class:`ModelBackend`: ``chat`` and ``count_tokens`` take the
    backend's lock; other attributes are the backend's."""

    def __init__(self, pool: "ModelPool", entry: _Entry, spec: dict[str, Any]) -> None:
        self._pool = pool
        self._entry = entry
        self._held = True
        self._held_lock = threading.Lock()
        self.spec = spec
        self.waited = 0.0           # seconds the last call waited for the backend's lock

    @property
    def backend(self) -> ModelBackend:
        """The open backend itself (call it inside :meth:`call`)."""
        return self._entry.backend

    @contextmanager
    def call(self) -> Iterator[ModelBackend]:
        """Hold the backend's lock for one call (or a few that belong together)."""
        t0 = time.perf_counter()
        with self._entry.lock:
            self.waited = time.perf_counter() - t0
            yield self._entry.backend

    def chat(self, messages: list[dict], **kw: Any) -> Any:
        """``ModelBackend.chat`` under the backend's lock."""
        with self.call() as b:
            return b.chat(messages, **kw)

    def count_tokens(self, messages: list[dict]) -> int:
        """``ModelBackend.count_tokens`` under the backend's lock."""
        with self.call() as b:
            return b.count_tokens(messages)

    def release(self) -> None:
        """Give the model back to the pool (which may then close it); idempotent."""
        with self._held_lock:
            held, self._held = self._held, False
        if held:
            self._pool._release(self._entry)

    def __enter__(self) -> "PooledModel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._entry.backend, name)


class ModelPool:
    """Open backends by spec, least recently used first out; thread-safe."""

    def __init__(self, size: int = DEFAULT_POOL_SIZE, opener: Opener | None = None) -> None:
        self.size = max(1, size)
        self._opener = opener
        self._entries: OrderedDict[str, _Entry] = OrderedDict()     # least recently used first
        self._lock = threading.Lock()          # the entries and their holders
        self._open_lock = threading.Lock()     # one load at a time: loads are memory-heavy

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def keys(self) -> list[str]:
        """The keys of the open backends, least recently used first."""
        with self._lock:
            return list(self._entries)

    def use(self, spec: dict[str, Any]) -> PooledModel:
        """Hold the backend ``spec`` names, opening it if needed (blocking: loading takes
        seconds). It stays open at least until the holder releases it: use it as a
        context manager, or call ``release()``."""
        return PooledModel(self, self._hold(spec), spec)

    def _hold(self, spec: dict[str, Any]) -> _Entry:
        key = spec_key(spec)
        with self._lock:
            entry = self._take(key)
        if entry is not None:
            return entry
        with self._open_lock:
            with self._lock:                  # opened by another thread meanwhile?
                entry = self._take(key)
            if entry is not None:
                return entry
            backend = self._open(spec)
            with self._lock:
                entry = self._entries[key] = _Entry(key, backend, holders=1)
                victims = self._victims()
        self._close(victims)
        return entry

    def _take(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            entry.holders += 1
            self._entries.move_to_end(key)
        return entry

    def _open(self, spec: dict[str, Any]) -> ModelBackend:
        if self._opener is not None:
            return self._opener(spec)
        from demoai.engines.llm import open_backend
        return open_backend(spec)

    def _release(self, entry: _Entry) -> None:
        with self._lock:
            entry.holders -= 1
            if entry.key in self._entries:
                self._entries.move_to_end(entry.key)
            victims = self._victims()
        self._close(victims)

    def _victims(self) -> list[_Entry]:
        """Take out the least recently used entries nobody holds, down to ``size``
        (called with ``_lock`` held)."""
        out = []
        for entry in list(self._entries.values()):
            if len(self._entries) <= self.size:
                break
            if entry.holders == 0:
                del self._entries[entry.key]
                entry.closed = True
                out.append(entry)
        return out

    @staticmethod
    def _close(entries: list[_Entry]) -> None:
        for entry in entries:
            with entry.lock:                  # a call in flight finishes first
                try:
                    entry.backend.close()
                except Exception:  # noqa: BLE001 (a failing close must not fail the caller's work)
                    pass

    def close(self) -> None:
        """Close every backend (waiting for calls in flight). The pool stays usable."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
            for e in entries:
                e.closed = True
        self._close(entries)

    def __enter__(self) -> "ModelPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def use_model(spec: dict[str, Any], pool: ModelPool | None = None) -> Iterator[PooledModel]:
    """Hold the backend ``spec`` names from ``pool`` for the block; without a pool, open it
    for the block alone and close it after (nothing stays loaded behind the caller's back)."""
    if pool is not None:
        with pool.use(spec) as model:
            yield model
        return
    with ModelPool(1) as own, own.use(spec) as model:
        yield model
