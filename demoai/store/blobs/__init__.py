"""Large files as content-defined chunks: chunking, manifests and the store interface
(``chunks``), how one chunk is named, compressed and checked (``codec``), the shared thread
pools and background flushes (``workers``), and the on-disk pack format with its store
(``packs``)."""
from demoai.store.blobs.chunks import BlobManifest, BlobStore, MemoryBlobStore, compute_manifest
from demoai.store.blobs.packs import DiskBlobStore

__all__ = ["BlobManifest", "BlobStore", "MemoryBlobStore", "DiskBlobStore", "compute_manifest"]
