"""The common shape of every typed artifact, and the manifest codec.

An artifact is stored in the commit tree as a small *manifest*: canonical JSON
(sorted keys) naming its kind, its content digest and where its bulk bytes live
(chunks, a Lance table version). Identical content gives an identical manifest
digest, so git's tree ids stay content addressed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import blake3

from demoai.errors import InvalidArtifact, UnknownKind

__all__ = ["Artifact", "MANIFEST_VERSION", "encode_manifest", "decode_manifest",
           "register", "ARTIFACT_TYPES", "blake3_hex", "digest_bytes"]

MANIFEST_VERSION = 1
ARTIFACT_TYPES: dict[str, type["Artifact"]] = {}


def blake3_hex(data: bytes) -> str:
    """BLAKE3 hex digest of ``data``."""
    return blake3.blake3(data, max_threads=blake3.blake3.AUTO if len(data) > 1 << 20 else 1).hexdigest()


def digest_bytes(data: bytes) -> str:
    """The ``blake3:<hex>`` content id used for every artifact digest."""
    return "blake3:" + blake3_hex(data)


def register(cls: type["Artifact"]) -> type["Artifact"]:
    """Class decorator: make a kind known to :func:`decode_manifest`."""
    ARTIFACT_TYPES[cls.kind] = cls
    return cls


@dataclass(frozen=True)
class Artifact:
    """Base of the typed value objects: serialize, deserialize, check, diff."""

    kind: ClassVar[str] = ""
    digest: str
    meta: dict = field(default_factory=dict, compare=False)

    def to_manifest(self) -> dict[str, Any]:
        """JSON-ready manifest stored in the commit tree."""
        out: dict[str, Any] = {"demoai": MANIFEST_VERSION, "kind": self.kind}
        for f in fields(self):
            out[f.name] = getattr(self, f.name)
        return out

    @classmethod
    def from_manifest(cls, d: dict[str, Any]) -> "Artifact":
        """Rebuild from a manifest dict (inverse of :meth:`to_manifest`)."""
        names = {f.name for f in fields(cls)}
        try:
            obj = cls(**{k: v for k, v in d.items() if k in names})
        except TypeError as e:
            raise InvalidArtifact(f"{cls.kind} manifest is malformed: {e}") from None
        obj.check()
        return obj

    def check(self) -> None:
        """Raise :class:`InvalidArtifact` if the object breaks its schema."""
        if not isinstance(self.digest, str) or not self.digest.startswith("blake3:"):
            raise InvalidArtifact(f"{self.kind}: digest must be 'blake3:<hex>', got {self.digest!r}")

    @property
    def size(self) -> int:
        """Bytes of content this artifact stands for (0 where not meaningful)."""
        return 0

    def summary(self) -> str:
        """One human line describing the artifact."""
        return f"{self.kind} {self.digest[:19]}"

    def diff(self, other: "Artifact") -> dict[str, Any]:
        """Typed difference from ``self`` (old) to ``other`` (new); JSON-ready."""
        return {"changed": self.digest != other.digest}


def encode_manifest(obj: Artifact) -> bytes:
    """Canonical bytes of a manifest: sorted keys, no whitespace variance."""
    return (json.dumps(obj.to_manifest(), sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def decode_manifest(data: bytes, path: str = "?") -> Artifact:
    """Parse and check manifest bytes read from a tree."""
    try:
        d = json.loads(data)
    except ValueError as e:
        raise InvalidArtifact(f"{path}: not a DemoAI manifest ({e})", path=path) from None
    if not isinstance(d, dict) or "kind" not in d:
        raise InvalidArtifact(f"{path}: not a DemoAI manifest", path=path)
    cls = ARTIFACT_TYPES.get(d["kind"])
    if cls is None:
        raise UnknownKind(f"{path}: unknown artifact kind {d['kind']!r}", path=path, kind=d["kind"])
    return cls.from_manifest(d)
