"""Dataset: a table of rows (a multiset with a schema), stored as a Lance table version."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from demoai.errors import InvalidArtifact
from demoai.objects.base import Artifact, register

__all__ = ["Dataset", "DATASET_FORMATS"]

DATASET_FORMATS = ("jsonl", "csv", "parquet", "hf")


@register
@dataclass(frozen=True)
class Dataset(Artifact):
    """A versioned table. ``table`` is the store's TableRef dict (table id, Lance version,
    file hashes); ``digest`` is the order-insensitive content digest of the rows."""

    kind = "dataset"
    rows: int = 0
    schema: dict = field(default_factory=dict)
    key: str | None = None
    format: str = "jsonl"
    table: dict = field(default_factory=dict)

    def check(self) -> None:
        super().check()
        if self.format not in DATASET_FORMATS:
            raise InvalidArtifact(f"dataset: unknown format {self.format!r}")
        if not isinstance(self.rows, int) or self.rows < 0:
            raise InvalidArtifact("dataset: rows must be a non-negative integer")
        names = [f.get("name") for f in self.schema.get("fields", [])]
        if self.key is not None and names and self.key not in names:
            raise InvalidArtifact(f"dataset: key column {self.key!r} is not in the schema {names}")
        for k in ("table_id", "version"):
            if k not in self.table:
                raise InvalidArtifact(f"dataset: table reference lacks {k!r}")

    @property
    def columns(self) -> list[str]:
        return [f["name"] for f in self.schema.get("fields", [])]

    def summary(self) -> str:
        key = f", key={self.key}" if self.key else ""
        return f"dataset {self.rows} rows x {len(self.columns)} cols{key} ({self.format})"

    def diff(self, other: "Artifact") -> dict[str, Any]:
        """Schema-level difference; row-level diffs need the table store (porcelain.diff)."""
        assert isinstance(other, Dataset)
        old = {f["name"]: f["type"] for f in self.schema.get("fields", [])}
        new = {f["name"]: f["type"] for f in other.schema.get("fields", [])}
        return {
            "changed": self.digest != other.digest,
            "rows": [self.rows, other.rows],
            "columns_added": sorted(set(new) - set(old)),
            "columns_removed": sorted(set(old) - set(new)),
            "columns_retyped": sorted(c for c in set(old) & set(new) if old[c] != new[c]),
        }
