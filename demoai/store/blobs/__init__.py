"""Large files as content-defined chunks: chunking, ids, compression and the store
interface (``chunks``), and the on-disk pack format with its store (``packs``)."""
from demoai.store.blobs.chunks import BlobManifest, BlobStore, MemoryBlobStore, compute_manifest
from demoai.store.blobs.packs import DiskBlobStore

__all__ = ["BlobManifest", "BlobStore", "MemoryBlobStore", "DiskBlobStore", "compute_manifest"]
