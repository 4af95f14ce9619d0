"""Versioned dataset tables: Arrow in memory, Lance on disk, deltas between versions.

Layout under a store ``root``::

    <root>/<table_id>.lance/   one Lance dataset per lineage (stable row ids on), and in
                               its ``data/demoai-order-*.bin`` the row orders of its versions,
                               ``data/demoai-rowhash-*.bin`` the row hashes of each data file
    <root>/<table_id>~<h>.lance/  an alternate of it: only ``_versions/``, with the data,
                               deletion, transaction and index folders linked to the primary's
    <root>/<table_id>.lock     writers of that lineage take this lock
    <root>/_digests/<hex>.json content digest -> TableRef (reuse identical content)
    <root>/_digests/shapes/<hex> a stored table has this schema, key and row count
    <root>/_spill/<id>/        row hashes and keys of a large table being written (removed
                               when it is; gc removes what a killed writer left)
    <cache>/fasthash/          fingerprints and sorted row hashes of recent versions, a
                               cache (:mod:`demoai.store.tables.fasthash`); a repository's
                               is ``.demoai/cache/tables``

A :class:`TableRef` names one Lance version of one lineage plus what is needed to trust
it: row count, content digest (order-insensitive, see :mod:`demoai.store.tables.io`), key,
schema, and the BLAKE3 of every file that version is made of (manifest, data files,
deletion files). Lance files are immutable, so a later version shares the hashes of the
files it inherits.

Writing a new version with ``base`` stores a *delta*: the base version is restored
(branches may fork from any version), rows are matched (by key, else by content hash),
and only changes are written: deletes become Lance deletion vectors, edited rows go
as their old row deleted and the new one appended (``merge_insert`` in the in-memory
writer, which keeps their stable ``_rowid``), new rows are appended.
A version that edits 1% of rows costs about 1% more storage.

Alternates exist because Lance numbers versions: two clones that each write a new version
of the same lineage both write ``_versions/<n+1>``, with different contents. Every other
Lance file has a unique name, so when a version file arrives (push, fetch) whose name is
taken by other bytes, it goes into an alternate folder instead. A ref is read from the
folder whose manifest file hashes to what the ref recorded, and new versions built on it
are written there, so divergent histories of one lineage coexist and still share every
data file.

``diff`` of two versions of one lineage reads only Lance metadata (fragment lists,
deletion files, row-id sequences; see :mod:`demoai.store.tables.lancemeta`), never a data page,
to find the rows the versions do not share, then fetches just those rows; stable
``_rowid``s pair rows edited in place. Other pairs (different lineages, schema changes,
mostly rewritten tables) fall back to a full row-hash comparison.

This module holds the store's folders and files, reading and gc; writing versions is
:mod:`demoai.store.tables.write`, diffs and merges :mod:`demoai.store.tables.compare`, hash
checks :mod:`demoai.store.tables.verify`. Row matching and merging live in
:mod:`demoai.store.tables.diff`; hashing and file formats in :mod:`demoai.store.tables.io`.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator


def _load_arrow_datasets() -> None:
    """Import ``pyarrow.dataset`` (which Lance imports) without importing pandas.

    Loading ``pyarrow._dataset`` builds an expression scalar, which makes pyarrow's pandas
    shim import pandas: ~0.1-0.2 s and ~50 MB on every CLI call that touches a table, for
    a library DemoAI never uses. The shim treats an ImportError as "no pandas" and retries
    the import whenever a pandas conversion is actually asked for (``to_pandas``), and Lance
    imports pandas lazily itself, so both still work later in the process.
    """
    if "pandas" in sys.modules or "pyarrow._dataset" in sys.modules:
        return

    class _DeferPandas:
        @staticmethod
        def find_spec(name: str, path: Any = None, target: Any = None) -> None:
            if name == "pandas" or name.startswith("pandas."):
                raise ImportError("pandas is not needed to load pyarrow.dataset")

    finder = _DeferPandas()
    sys.meta_path.insert(0, finder)
    try:
        import pyarrow._dataset  # noqa: F401
    finally:
        sys.meta_path.remove(finder)


_load_arrow_datasets()

import lance  # noqa: E402
import pyarrow as pa  # noqa: E402

from demoai.errors import IntegrityError, InvalidArtifact, LockTimeout, MissingObject  # noqa: E402
from demoai.store.fsutil import FileLock, fsync_dir  # noqa: E402
from demoai.store.tables.compare import CompareMixin  # noqa: E402
from demoai.store.tables.diff import MergeResult, TableDiff  # noqa: E402
from demoai.store.tables.io import content_digest, one_line, read_file, write_file  # noqa: E402
from demoai.store.tables.order import ORDER_PREFIX, OrderMixin, apply_order, is_order_file  # noqa: E402
from demoai.store.tables.ref import TABLE_ID, DigestIndex, TableRef, file_blake3  # noqa: E402
from demoai.store.tables.ingest import IngestMixin  # noqa: E402
from demoai.store.tables.mergedelta import MergeDeltaMixin  # noqa: E402
from demoai.store.tables.partdelta import PartitionedDeltaMixin  # noqa: E402
from demoai.store.tables.rowhash import ROWHASH_PREFIX, RowHashMixin, is_rowhash_file  # noqa: E402
from demoai.store.tables.spill import SPILL_DIR  # noqa: E402
from demoai.store.tables.stream import memory_budget  # noqa: E402
from demoai.store.tables.verify import VerifyMixin  # noqa: E402
from demoai.store.tables.write import Progress, WriteMixin  # noqa: E402

__all__ = ["TableRef", "TableStore", "TableDiff", "MergeResult", "content_digest",
           "read_file", "write_file", "Progress"]

_U64 = (1 << 64) - 1


class TableStore(WriteMixin, IngestMixin, PartitionedDeltaMixin, CompareMixin,
                 MergeDeltaMixin, VerifyMixin, OrderMixin, RowHashMixin):
    """Versioned tables under one folder; see the module docstring for the layout. Writing
    is :class:`~demoai.store.tables.write.WriteMixin`, diffs and merges
    :class:`~demoai.store.tables.compare.CompareMixin`, hash checks
    :class:`~demoai.store.tables.verify.VerifyMixin`, row orders
    :class:`~demoai.store.tables.order.OrderMixin`, row-hash side files
    :class:`~demoai.store.tables.rowhash.RowHashMixin`, streaming writes
    :class:`~demoai.store.tables.ingest.IngestMixin` (large keyed deltas
    :class:`~demoai.store.tables.partdelta.PartitionedDeltaMixin`), merges written as deltas
    :class:`~demoai.store.tables.mergedelta.MergeDeltaMixin`; folders, files, reads and gc
    are here."""

    def __init__(self, root: str | os.PathLike, *, lock_timeout: float = 60.0,
                 cache: str | os.PathLike | None = None) -> None:
        self.root = Path(root)
        # what can be rebuilt from the store (fingerprints, sorted hashes: fasthash.py)
        self.cache = Path(cache) if cache is not None else self.root / "_cache"
        self.digests = DigestIndex(self.root / "_digests", self._dir_for)
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock_timeout = lock_timeout

    # -- paths ------------------------------------------------------------------
    def _uri(self, table_id: str) -> Path:
        if not TABLE_ID.match(table_id):
            raise InvalidArtifact(f"invalid table id {table_id!r}")
        return self.root / f"{table_id}.lance"

    def _dirs(self, table_id: str) -> list[Path]:
        """The primary folder of a lineage, then its alternates."""
        return [self._uri(table_id), *sorted(self.root.glob(f"{table_id}~*.lance"))]

    def _dir_for(self, ref: TableRef) -> Path:
        """The folder holding ``ref``'s version: the one whose manifest file has the
        recorded hash (the primary when no alternate exists, or none matches)."""
        dirs = self._dirs(ref.table_id)
        rel = next((r for r in ref.files if r.startswith("_versions/")), None)
        if len(dirs) == 1 or rel is None:
            return dirs[0]
        for d in dirs:
            try:
                if file_blake3(d / rel) == ref.files[rel]:
                    return d
            except OSError:
                continue
        return dirs[0]

    def find_file(self, table_id: str, rel: str, digest: str) -> Path | None:
        """A stored file of the lineage named ``rel`` whose BLAKE3 is ``digest``."""
        for d in self._dirs(table_id):
            try:
                if file_blake3(d / rel) == digest:
                    return d / rel
            except OSError:
                continue
        return None

    def damaged_files(self, ref: TableRef) -> list[str]:
        """Files of ``ref`` (relative names) that are missing or do not hash (uncached) to
        what was recorded."""
        uri = self._dir_for(ref)
        bad = []
        for rel, want in sorted(ref.files.items()):
            try:
                if file_blake3(uri / rel, cache=False) != want:
                    bad.append(rel)
            except OSError:
                bad.append(rel)
        return bad

    def replace_file(self, ref: TableRef, rel: str, src: Path) -> Path:
        """Put the good bytes ``src`` (checked against the recorded hash) where ``ref``'s
        damaged or missing file ``rel`` belongs."""
        want = ref.files.get(rel)
        if want is None:
            raise InvalidArtifact(f"table {ref.table_id} v{ref.version}: no file {rel!r}")
        if file_blake3(src, cache=False) != want:
            raise IntegrityError(f"table {ref.table_id}: {rel}: repair data hash to something "
                                 "other than the recorded hash", table_id=ref.table_id, file=rel)
        with self._lock(ref.table_id):
            dest = self._dir_for(ref) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
            fsync_dir(dest.parent)
        return dest

    def install_file(self, table_id: str, rel: str, src: Path) -> Path:
        """Move a received, verified file into the lineage as ``rel``: into the primary
        folder, or, when a version file of that name already holds other bytes there, into
        the first alternate where the name is free (a new one if needed)."""
        with self._lock(table_id):
            primary = self._uri(table_id)
            dirs = self._dirs(table_id)
            target = next((d for d in dirs if not (d / rel).exists()), None)
            if target is None:
                if not rel.startswith("_versions/"):
                    raise IntegrityError(f"table {table_id}: {rel} exists with other content",
                                         table_id=table_id, file=rel)
                target = self.root / f"{table_id}~{uuid.uuid4().hex[:16]}.lance"
                tmp = self.root / f".{target.name}.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                (tmp / "_versions").mkdir(parents=True)
                for sub in ("data", "_deletions", "_transactions", "_indices"):
                    (primary / sub).mkdir(parents=True, exist_ok=True)
                    os.symlink(f"../{primary.name}/{sub}", tmp / sub)
                os.replace(tmp, target)
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
            fd = os.open(dest.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return dest

    def _lock(self, table_id: str, timeout: float | None = None) -> FileLock:
        return FileLock(self.root / f"{table_id}.lock",
                        self.lock_timeout if timeout is None else timeout)

    @staticmethod
    def _manifest_rel(uri: Path, version: int) -> str:
        rel = f"_versions/{_U64 - version:020d}.manifest"
        if (uri / rel).exists() or not (uri / f"_versions/{version}.manifest").exists():
            return rel
        return f"_versions/{version}.manifest"  # datasets with v1 manifest naming

    def _version_files(self, ds: lance.LanceDataset, uri: Path) -> list[str]:
        """Every file the checked-out version is read from, relative to the dataset."""
        rels = {self._manifest_rel(uri, ds.version)}
        for frag in ds.get_fragments():
            md = frag.metadata
            for df in md.files:
                if getattr(df, "base_id", None) not in (None, 0):
                    raise InvalidArtifact(f"table {uri.name}: multi-base Lance data unsupported")
                rels.add(f"data/{df.path}")
            if md.deletion_file is not None:
                rels.add(md.deletion_file.path(frag.fragment_id))
            if md.row_id_meta is not None:
                meta = json.loads(md.row_id_meta.json())
                ext = meta.get("External") if isinstance(meta, dict) else None
                if ext and ext.get("path"):
                    rels.add(str(ext["path"]))
        rels.update(self.rowhash_files(ds, uri))
        return sorted(rels)

    def _hash_files(self, uri: Path, rels: list[str], known: dict[str, str]) -> dict[str, str]:
        # Lance never rewrites a file in place: hashes of inherited files carry over.
        return {rel: known.get(rel) or file_blake3(uri / rel) for rel in rels}


    # -- read -------------------------------------------------------------------
    def _checked(self, ref: TableRef, verify: bool = True) -> lance.LanceDataset:
        """Open ``ref``'s version after checking the hashes of every file it is made of."""
        uri = self._dir_for(ref)
        if not uri.exists():
            raise MissingObject(f"table {ref.table_id} is not in this store",
                                table_id=ref.table_id)
        if verify:
            self._verify(ref)
        try:
            return lance.dataset(str(uri), version=ref.version)
        except (ValueError, OSError, RuntimeError) as e:
            raise MissingObject(f"table {ref.table_id} v{ref.version} cannot be opened: "
                                f"{one_line(e)}", table_id=ref.table_id,
                                version=ref.version) from None


    def read(self, ref: TableRef, columns: list[str] | None = None,
             verify: bool = True, ordered: bool = True) -> pa.Table:
        """The rows of ``ref`` (user columns only), hashes checked first: in the order of
        the file the version was made from (``ordered``), else in Lance's scan order
        (cheaper, for callers that treat rows as a multiset).

        Raises IntegrityError naming the file whose BLAKE3 does not match, MissingObject
        if the version or a file is gone.
        """
        names, target = _projection(ref, columns)
        ds = self._checked(ref, verify)
        t = ds.to_table(columns=names)
        if t.num_rows != ref.rows:
            raise IntegrityError(f"table {ref.table_id} v{ref.version}: read {t.num_rows} rows, "
                                 f"recorded {ref.rows}", table_id=ref.table_id)
        perm = self.order_of(ref) if ordered else None
        if perm is not None:
            t = apply_order(t, perm)
        try:
            return t.cast(target)
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
            return t

    def read_batches(self, ref: TableRef, columns: list[str] | None = None, verify: bool = True,
                     batch_rows: int = 1 << 16) -> Iterator[pa.RecordBatch]:
        """The rows of :meth:`read`, in file order, as record batches of at most
        ``batch_rows`` rows, so memory holds one batch whatever the table's size: a scan where
        the stored order is the file order, else takes of the permutation a slice at a time.
        The row count is checked at the end (IntegrityError)."""
        names, target = _projection(ref, columns)
        ds = self._checked(ref, verify)
        perm = self.order_of(ref)
        if perm is None:
            # little read-ahead: Lance's defaults buffer hundreds of MB on a big fragment
            parts: Iterator[pa.RecordBatch | pa.Table] = ds.to_batches(
                columns=names, batch_size=batch_rows, batch_readahead=2, fragment_readahead=1)
        elif self._data_bytes(ref) * 8 <= memory_budget():
            # small enough to hold: one scan, then the file order by slicing its runs (a
            # dataset take costs ~1.7 ms a position on some versions: 100k rows, 50 s)
            whole = apply_order(ds.to_table(columns=names), perm)
            parts = (whole.slice(i, batch_rows).combine_chunks()
                     for i in range(0, whole.num_rows, batch_rows))
        else:
            parts = (ds.take(perm[i:i + batch_rows], columns=names)
                     for i in range(0, len(perm), batch_rows))
        n = 0
        for part in parts:
            for b in part.to_batches() if isinstance(part, pa.Table) else [part]:
                n += b.num_rows
                try:
                    yield b.cast(target)
                except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
                    yield b
        if n != ref.rows:
            raise IntegrityError(f"table {ref.table_id} v{ref.version}: read {n} rows, "
                                 f"recorded {ref.rows}", table_id=ref.table_id)

    def _data_bytes(self, ref: TableRef) -> int:
        """Bytes of the Lance data files ``ref`` is made of (compressed: about a third to
        a half of the rows in memory)."""
        folder = self._dir_for(ref)
        return sum((folder / rel).stat().st_size for rel in ref.files
                   if rel.startswith("data/") and rel.endswith(".lance"))

    def scanner_dataset(self, ref: TableRef) -> lance.LanceDataset:
        """The verified, checked-out Lance dataset of ``ref`` (DuckDB can query it directly)."""
        return self._checked(ref, True)

    def files_of(self, ref: TableRef) -> dict[str, str]:
        """The files of ``ref`` as ``{path relative to the store root: blake3 hex}``."""
        return {f"{ref.table_id}.lance/{rel}": h for rel, h in sorted(ref.files.items())}

    def table_path(self, table_id: str) -> Path:
        """The Lance dataset folder of a lineage."""
        return self._uri(table_id)

    def stored_bytes(self, table_id: str | None = None) -> int:
        """Bytes on disk of one lineage, or of the whole store."""
        top = self._uri(table_id) if table_id else self.root
        return sum(e.stat().st_size for e in top.rglob("*") if e.is_file())

    def gc(self, live: list[TableRef], *, grace_seconds: float = 3600.0,
           lock_timeout: float = 5.0) -> dict:
        """Delete Lance versions and files that no live ref needs.

        Versions a live ref names are kept (and so every file they use); Lance always
        keeps each lineage's latest version too. A lineage no live ref names is deleted
        whole. Nothing younger than ``grace_seconds`` is touched (a writer may not have
        recorded its ref yet), and a lineage whose lock is held is skipped.
        """
        live_versions: dict[str, set[int]] = {}
        with_alternates = {d.name.split("~", 1)[0] for d in self.root.glob("*~*.lance")}
        for r in live:
            if r.table_id in with_alternates:
                continue   # alternates share the primary's data files: keep the lineage whole
            live_versions.setdefault(r.table_id, set()).add(r.version)
        live_ids = {r.table_id for r in live}
        stats = {"versions_removed": 0, "tables_removed": 0, "bytes_removed": 0,
                 "skipped": [], "problems": []}
        now = time.time()
        for d in sorted(self.root.glob("*.lance")):
            tid = d.name[:-len(".lance")]
            if not TABLE_ID.match(tid) or tid in (with_alternates & live_ids):
                continue
            try:
                with self._lock(tid, lock_timeout):
                    self._gc_table(d, tid, live_versions.get(tid), now, grace_seconds, stats)
            except LockTimeout:
                stats["skipped"].append(tid)
        for tid in with_alternates - live_ids:   # a dead lineage goes with its alternates
            for d in self.root.glob(f"{tid}~*.lance"):
                if not (self._uri(tid)).exists():
                    shutil.rmtree(d, ignore_errors=True)
        self._gc_orders(live, now, grace_seconds, stats)
        for f in (self.cache / "fasthash").glob("*.bin"):   # caches of gone lineages
            if not self._uri(f.name.split(".", 1)[0]).exists():
                f.unlink(missing_ok=True)
        for d in sorted((self.root / SPILL_DIR).glob("*")):   # left by a killed ingest
            try:
                if now - d.stat().st_mtime >= grace_seconds:
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                continue
        for r in live:  # the promise: nothing a live ref lists is gone
            for rel in r.files:
                if not (self._dir_for(r) / rel).exists():
                    stats["problems"].append(f"{r.table_id}.lance/{rel}: missing after gc")
        self.digests.gc()
        return stats

    def _gc_orders(self, live: list[TableRef], now: float, grace: float, stats: dict) -> None:
        """Remove row-order and row-hash side files no live ref lists (older than
        ``grace``)."""
        keep = {(r.table_id, rel) for r in live for rel in r.files
                if is_order_file(rel) or is_rowhash_file(rel)}
        for d in sorted(self.root.glob("*.lance")):
            tid = d.name[:-len(".lance")]
            if not TABLE_ID.match(tid) or (d / "data").is_symlink():   # alternates share data/
                continue
            for f in [*(d / "data").glob(f"{ORDER_PREFIX[len('data/'):]}*.bin"),
                      *(d / "data").glob(f"{ROWHASH_PREFIX[len('data/'):]}*.bin")]:
                try:
                    st = f.stat()
                except OSError:
                    continue
                if (tid, f"data/{f.name}") not in keep and now - st.st_mtime >= grace:
                    f.unlink(missing_ok=True)
                    stats["bytes_removed"] += st.st_size

    def _gc_table(self, d: Path, tid: str, keep: set[int] | None, now: float,
                  grace: float, stats: dict) -> None:
        if keep is None:
            newest = max((e.stat().st_mtime for e in d.rglob("*")), default=0.0)
            if now - newest >= grace:
                size = sum(e.stat().st_size for e in d.rglob("*") if e.is_file())
                shutil.rmtree(d)
                stats["tables_removed"] += 1
                stats["bytes_removed"] += size
            return
        ds = lance.dataset(str(d))
        drop = []
        for v in ds.versions():
            ver = int(v["version"])
            if ver in keep or ver == ds.version:
                continue
            man = d / self._manifest_rel(d, ver)
            if man.exists() and now - man.stat().st_mtime >= grace:
                drop.append(ver)
        if not drop:
            return
        res = ds.cleanup_old_versions(older_than=timedelta(seconds=grace), versions=drop,
                                      delete_unverified=grace <= 0,
                                      error_if_tagged_old_versions=False)
        stats["versions_removed"] += int(res.old_versions)
        stats["bytes_removed"] += int(res.bytes_removed)


def _projection(ref: TableRef, columns: list[str] | None) -> tuple[list[str], pa.Schema]:
    """The column names a read asks for (all by default) and their exact schema;
    InvalidArtifact naming the unknown ones."""
    schema = ref.arrow_schema()
    names = list(columns) if columns is not None else schema.names
    unknown = [c for c in names if c not in schema.names]
    if unknown:
        raise InvalidArtifact(f"table has no column(s) {unknown}; it has {schema.names}")
    return names, pa.schema([schema.field(n) for n in names], metadata=schema.metadata)
