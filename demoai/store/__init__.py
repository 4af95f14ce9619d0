"""Storage: the repository (dulwich commit DAG, refs, index), content-defined chunk packs
for large files, Lance tables for datasets, lineage, and crash-safe file primitives.

Lance and pyarrow load on first use of a table, so commands that never touch one start fast.
"""
from demoai.store.blobs.chunks import BlobManifest, BlobStore, MemoryBlobStore
from demoai.store.blobs.packs import DiskBlobStore
from demoai.store.git.index import Index, IndexState
from demoai.store.git.lineage import environment, make_lineage
from demoai.store.git.repo import CONTROL_DIR, LINEAGE_PATH, CommitInfo, Repository, find_root

__all__ = ["Repository", "CommitInfo", "find_root", "CONTROL_DIR", "LINEAGE_PATH", "BlobStore",
           "MemoryBlobStore", "DiskBlobStore", "BlobManifest", "Index", "IndexState",
           "environment", "make_lineage"]
