"""Session events: the line format and the BLAKE3 hash chain.

An event line is ``<id> <parent> <canonical JSON>``; ``id = BLAKE3(parent + " " + JSON)``,
so the id of the last event (the head) pins every event before it. The first event's parent
is :data:`ROOT_PARENT` (``-``).
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from typing import Any

import blake3

from demoai.errors import IntegrityError

__all__ = ["ROOT_PARENT", "Event", "new_event", "verify_lines", "parse_bodies",
           "parse_session_step"]

try:                                     # 3-4x faster parsing on long replays
    from orjson import loads as _loads
except ImportError:                      # pragma: no cover
    _loads = json.loads

ROOT_PARENT = b"-"                       # parent of the first event


def _canon(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _event_id(parent: bytes, body: bytes) -> bytes:
    return blake3.blake3(parent + b" " + body).hexdigest().encode()


def new_event(parent: bytes, type: str, step: int, data: dict[str, Any]) -> tuple[bytes, bytes]:
    """(id, journal line) of a new event of ``type`` at ``step`` after ``parent``."""
    # The fields every event has come last, so no data key can replace them.
    body = _canon({**data, "type": type, "step": step, "t": round(time.time(), 6)})
    eid = _event_id(parent, body)
    return eid, eid + b" " + parent + b" " + body + b"\n"


@dataclasses.dataclass(frozen=True)
class Event:
    """One event: ``id`` and ``parent`` are BLAKE3 hex ids (``-`` for the first)."""

    id: str
    parent: str
    body: dict[str, Any]

    @property
    def type(self) -> str:
        """What happened (``run_start``, ``model_response``, ``tool_result``, ...)."""
        return self.body.get("type", "?")

    @property
    def step(self) -> int:
        """The step the event belongs to."""
        return int(self.body.get("step", 0))

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON: prefixed ids (``parent`` None for the first) and the body."""
        return {"id": "blake3:" + self.id, "parent": None if self.parent == "-" else "blake3:" + self.parent,
                **self.body}

    @classmethod
    def parse(cls, line: bytes) -> "Event":
        """An event from its journal line (not verified: see :func:`verify_lines`)."""
        i, p, body = line.rstrip(b"\n").split(b" ", 2)
        return cls(i.decode(), p.decode(), _loads(body))


def verify_lines(lines: list[bytes], start_parent: bytes = ROOT_PARENT,
                 bodies: list[bytes] | None = None) -> tuple[int, bytes]:
    """Check the hash chain of event lines; returns (count, head id) and, when given
    ``bodies``, fills it with each event's JSON. Raises :class:`IntegrityError` naming the
    first broken event."""
    prev = start_parent
    h = blake3.blake3
    keep = bodies.append if bodies is not None else None
    for n, line in enumerate(lines):
        try:
            i, p, body = line.rstrip(b"\n").split(b" ", 2)
        except ValueError:
            raise IntegrityError(f"event {n}: malformed line", index=n) from None
        if p != prev:
            raise IntegrityError(f"event {n}: parent {p[:12].decode()} does not chain to "
                                 f"{prev[:12].decode()}", index=n)
        if h(p + b" " + body).hexdigest().encode() != i:
            raise IntegrityError(f"event {n} ({i[:12].decode()}): content does not match its id",
                                 index=n)
        if keep:
            keep(body)
        prev = i
    return len(lines), prev


def parse_bodies(bodies: list[bytes]) -> list[dict[str, Any]]:
    """Parse many event bodies in one call (one JSON array: far fewer parser round trips)."""
    try:
        return _loads(b"[" + b",".join(bodies) + b"]")
    except ValueError as e:
        raise IntegrityError(f"an event is not valid JSON ({e})") from None


def parse_session_step(spec: str) -> tuple[str, int | None]:
    """``NAME@STEP`` -> (NAME, STEP); ``NAME`` -> (NAME, None)."""
    m = re.fullmatch(r"(.+)@(\d+)", spec)
    return (m.group(1), int(m.group(2))) if m else (spec, None)
