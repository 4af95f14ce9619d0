"""Datasets as Lance tables: the store of versions (``store``: folders, files, reads, gc),
writing new versions and deltas (``write``), diffs and merges of versions (``compare``),
hash checks (``verify``), row and cell matching and merging (``diff``), reading and writing
files (``io``), the version record (``ref``) and what Lance's own metadata answers without
reading rows (``lancemeta``)."""
from demoai.store.tables.io import read_file, write_file
from demoai.store.tables.ref import TableRef
from demoai.store.tables.store import TableStore

__all__ = ["TableStore", "TableRef", "read_file", "write_file"]
