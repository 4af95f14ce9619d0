"""Storage: the repository (dulwich commit DAG, refs, index, working tree, lineage),
content-defined chunk packs for large files, Lance tables for datasets, and crash-safe file
primitives.

This package's names are what porcelain uses of the git side; tables
(:mod:`demoai.store.tables`), transfers (:mod:`demoai.store.transfer`), sessions and kinds
are imported from their own packages. dulwich and Lance are imported only under
``demoai.store``. Lance and pyarrow load on first use of a table, so commands that never
touch one start fast.
"""
from demoai.store.blobs.chunks import BlobManifest, BlobStore, MemoryBlobStore, compute_manifest
from demoai.store.blobs.packs import DiskBlobStore
from demoai.store.fsutil import FileLock, atomic_write
from demoai.store.git.index import Index, IndexState, content_hash, fingerprint, stat_record
from demoai.store.git.lineage import environment, make_lineage
from demoai.store.git.names import (check_entry, check_ref_name, check_repo_name,
                                    default_identity, normalize_path, parse_remote_url)
from demoai.store.git.repo import CONTROL_DIR, LINEAGE_PATH, CommitInfo, Repository, find_root
from demoai.store.git.check import check_git_objects, reachable, reflog_commits
from demoai.store.git.worktree import (drop_sync, recover_sync, switch_worktree, sync_pending,
                                       sync_worktree, worktree_path)

__all__ = ["Repository", "CommitInfo", "find_root", "CONTROL_DIR", "LINEAGE_PATH",
           "check_ref_name", "check_repo_name", "parse_remote_url", "normalize_path",
           "check_entry", "default_identity", "Index", "IndexState", "fingerprint",
           "content_hash", "stat_record", "environment", "make_lineage", "check_git_objects",
           "reachable", "reflog_commits", "switch_worktree", "sync_worktree", "recover_sync",
           "drop_sync", "sync_pending", "worktree_path", "BlobStore", "MemoryBlobStore",
           "DiskBlobStore", "BlobManifest", "compute_manifest", "FileLock", "atomic_write"]
