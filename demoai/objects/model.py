"""Model and Adapter: one or more large files (weights, configs, tokenizers), each stored
as a chunked blob. The manifest keeps every file's chunk list so diffs and transfers can
tell which bytes changed without reading them."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from demoai.errors import InvalidArtifact
from demoai.objects.base import Artifact, digest_bytes, register
from demoai.objects.paths import check_path

__all__ = ["Model", "Adapter", "MODEL_FORMATS", "files_digest"]

MODEL_FORMATS = ("gguf", "safetensors", "transformers", "peft")


def files_digest(files: dict[str, dict]) -> str:
    """Digest of a set of files: a single file keeps its own digest; a folder hashes the
    sorted (relative path, file digest) list, so renaming a file changes it."""
    if len(files) == 1:
        return next(iter(files.values()))["digest"]
    listing = json.dumps(sorted((p, f["digest"]) for p, f in files.items()))
    return digest_bytes(listing.encode())


@dataclass(frozen=True)
class _FileSet(Artifact):
    format: str = "gguf"
    files: dict = field(default_factory=dict)   # relpath -> BlobManifest.to_dict()

    def check(self) -> None:
        super().check()
        if self.format not in MODEL_FORMATS:
            raise InvalidArtifact(f"{self.kind}: unknown format {self.format!r}")
        if not self.files:
            raise InvalidArtifact(f"{self.kind}: no files")
        for rel, f in self.files.items():
            check_path(rel)     # a hostile manifest must not name a file outside its folder
            if not {"digest", "size", "chunks"} <= set(f):
                raise InvalidArtifact(f"{self.kind}: file {rel!r} lacks digest/size/chunks")
            if sum(n for _, n in f["chunks"]) != f["size"]:
                raise InvalidArtifact(f"{self.kind}: file {rel!r} chunk lengths do not add up to its size")
        if files_digest(self.files) != self.digest:
            raise InvalidArtifact(f"{self.kind}: digest does not match its files")

    @property
    def size(self) -> int:
        return sum(f["size"] for f in self.files.values())

    def chunk_ids(self) -> set[str]:
        """Every chunk id this artifact needs."""
        return {c for f in self.files.values() for c, _ in f["chunks"]}

    def summary(self) -> str:
        return f"{self.kind} {self.format}, {len(self.files)} file(s), {self.size / 1e6:.1f} MB"

    def diff(self, other: Artifact) -> dict[str, Any]:
        """Sizes and the share of the new bytes that sit in chunks the old one lacks."""
        assert isinstance(other, _FileSet)
        old_chunks = self.chunk_ids()
        new_bytes = sum(n for f in other.files.values() for c, n in f["chunks"] if c not in old_chunks)
        files_changed = sorted(p for p in set(self.files) | set(other.files)
                               if (self.files.get(p) or {}).get("digest") != (other.files.get(p) or {}).get("digest"))
        return {"changed": self.digest != other.digest, "size": [self.size, other.size],
                "changed_bytes": new_bytes,
                "changed_share": round(new_bytes / other.size, 6) if other.size else 0.0,
                "files_changed": files_changed}


@register
@dataclass(frozen=True)
class Model(_FileSet):
    """Base model weights: a GGUF or safetensors file, or a transformers folder."""

    kind = "model"


@register
@dataclass(frozen=True)
class Adapter(_FileSet):
    """A LoRA/peft adapter folder; ``config`` is its parsed ``adapter_config.json``."""

    kind = "adapter"
    format: str = "peft"
    config: dict = field(default_factory=dict)

    def check(self) -> None:
        super().check()
        if "adapter_config.json" not in self.files:
            raise InvalidArtifact("adapter: folder has no adapter_config.json")

    def summary(self) -> str:
        base = self.config.get("base_model_name_or_path", "?")
        return f"adapter {self.config.get('peft_type', 'peft')} r={self.config.get('r', '?')} on {base}, {self.size / 1e6:.2f} MB"
