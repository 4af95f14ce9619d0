"""Versioned dataset tables: Arrow in memory, Lance on disk, deltas between versions.

Layout under a store ``root``::

    <root>/<table_id>.lance/   one Lance dataset per lineage (stable row ids on)
    <root>/<table_id>~<h>.lance/  an alternate of it: only ``_versions/``, with the data,
                               deletion, transaction and index folders linked to the primary's
    <root>/<table_id>.lock     writers of that lineage take this lock
    <root>/_digests/<hex>.json content digest -> TableRef (reuse identical content)
    <root>/_digests/shapes/<hex> a stored table has this schema, key and row count

A :class:`TableRef` names one Lance version of one lineage plus what is needed to trust
it: row count, content digest (order-insensitive, see :mod:`demoai.store.tables.io`), key,
schema, and the BLAKE3 of every file that version is made of (manifest, data files,
deletion files). Lance files are immutable, so a later version shares the hashes of the
files it inherits.

Writing a new version with ``base`` stores a *delta*: the base version is restored
(branches may fork from any version), rows are matched (by key, else by content hash),
and only changes are written: deletes become Lance deletion vectors, edited rows go
through ``merge_insert`` (which keeps their stable ``_rowid``), new rows are appended.
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
mostly rewritten tables) fall back to a full row-hash comparison. Row matching and
merging live in :mod:`demoai.store.tables.diff`; hashing and file formats in
:mod:`demoai.store.tables.io`.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator


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
import numpy as np  # noqa: E402
import pyarrow as pa
import pyarrow.compute as pc

from demoai.errors import IntegrityError, InvalidArtifact, LockTimeout, MissingObject
from demoai.store.fsutil import FileLock, fsync_dir
from demoai.store.tables.lancemeta import candidates, take_picked, take_rows
from demoai.store.tables.diff import (Changes, MergeResult, TableDiff, build_diff, check_keys,
                                    cells_changed, classify, key_order, keys_usable,
                                    match_keys, merge_keyed, merge_multiset, multiset_minus,
                                    plan_keyed, schema_changes)
from demoai.store.tables.io import (canonical_schema, check_arrow_data, canonical_type, content_digest,
                                  digest_from_hashes, one_line, read_file, row_hashes,
                                  write_file)
from demoai.store.tables.ref import (TABLE_ID, DigestIndex, TableRef, file_blake3, schema_meta,
                                   sub_schema)

__all__ = ["TableRef", "TableStore", "TableDiff", "MergeResult", "content_digest",
           "read_file", "write_file", "Progress"]

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages: ``hash``, ``write``, ``verify``."""

RESERVED_COLUMNS = frozenset({"_rowid", "_rowaddr", "_rowoffset", "_row_offset", "_distance",
                              "_score", "_row_created_at_version",
                              "_row_last_updated_at_version", "_fragid"})
_OVERWRITE_FRACTION = 0.5   # above this share of changed rows a full rewrite is cheaper
_FULL_DIFF_ROWS = 200_000   # past this many candidate rows, and ...
_FULL_DIFF_FRACTION = 0.3   # ... this share of both tables, diff reads and hashes all rows
_U64 = (1 << 64) - 1


def _report(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


def _hashed(table: pa.Table, progress: Progress | None) -> np.ndarray:
    """:func:`row_hashes` of ``table``, reported as the ``hash`` stage."""
    _report(progress, "hash", 0, table.num_rows)
    hashes = row_hashes(table)
    _report(progress, "hash", table.num_rows, table.num_rows)
    return hashes


# ----------------------------------------------------------------------------- store

class TableStore:
    """Versioned tables under one folder; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike, *, lock_timeout: float = 60.0) -> None:
        self.root = Path(root)
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
        return sorted(rels)

    def _hash_files(self, uri: Path, rels: list[str], known: dict[str, str]) -> dict[str, str]:
        # Lance never rewrites a file in place: hashes of inherited files carry over.
        return {rel: known.get(rel) or file_blake3(uri / rel) for rel in rels}

    # -- integrity --------------------------------------------------------------
    def _check_files(self, ref: TableRef, *, cache: bool = True,
                     progress: Progress | None = None) -> list[str]:
        uri = self._dir_for(ref)
        problems = []
        items = sorted(ref.files.items())
        for i, (rel, want) in enumerate(items):
            p = uri / rel
            try:
                got = file_blake3(p, cache=cache)
            except FileNotFoundError:
                problems.append(f"{ref.table_id}.lance/{rel}: missing")
                continue
            except OSError as e:
                problems.append(f"{ref.table_id}.lance/{rel}: unreadable ({one_line(e)})")
                continue
            if got != want:
                problems.append(f"{ref.table_id}.lance/{rel}: BLAKE3 mismatch (recorded "
                                f"{want[:16]}..., found {got[:16]}...)")
            _report(progress, "verify", i + 1, len(items))
        return problems

    def _verify(self, ref: TableRef) -> None:
        """Raise ``IntegrityError`` (``MissingObject``) unless every file of ``ref`` hashes
        to what was recorded."""
        problems = self._check_files(ref)
        if problems:
            missing = [p for p in problems if p.endswith(": missing")]
            only_missing = missing and len(missing) == len(problems)
            cls = MissingObject if only_missing else IntegrityError
            raise cls(f"table {ref.table_id} v{ref.version}: {problems[0]}"
                      + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""),
                      table_id=ref.table_id, version=ref.version, problems=problems)

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

    # -- write ------------------------------------------------------------------
    def write(self, table: pa.Table, *, key: str | None = None, base: TableRef | None = None,
              progress: Progress | None = None) -> TableRef:
        """Store ``table`` and return its ref.

        Without ``base`` a new lineage (random table id) is created, unless a live table
        with the same content digest exists, whose ref is returned. With ``base`` the new
        version is a delta on base's lineage (base may be any version, not just the
        latest); if the content equals base's, base itself is returned. ``key`` names a
        unique, non-null column used to match rows (edits become in-place updates).
        """
        table = _check_table(table, key)
        if base is None:
            return self._write_new(table, key, progress)
        hashes = _hashed(table, progress)
        digest = digest_from_hashes(table.schema, key, hashes)
        if digest == base.digest:
            return base
        ref = self._write_delta(table, hashes, key, base, digest, progress)
        _report(progress, "write", table.num_rows, table.num_rows)
        self.digests.record(ref)
        return ref

    def _write_new(self, table: pa.Table, key: str | None,
                   progress: Progress | None) -> TableRef:
        """A new lineage. Lance encodes the rows in one thread while DuckDB hashes them in
        another (both native, both release the GIL), so the two costs overlap instead of
        adding up. When the digest then names a stored table, that one is returned and
        the folder just written is removed; so is a folder whose write failed. Content
        that may be stored already (a stored table has its schema, key and row count) is
        hashed first instead, and not written at all when it is."""
        n = table.num_rows
        hashes = None
        if self.digests.may_hold(table.schema, key, n):
            hashes = _hashed(table, progress)
            found = self.digests.lookup(digest_from_hashes(table.schema, key, hashes))
            if found is not None:
                return found
        table_id = uuid.uuid4().hex
        uri = self._uri(table_id)
        with self._lock(table_id):
            _report(progress, "write", 0, n)
            try:
                with ThreadPoolExecutor(1, thread_name_prefix="demoai-table-write") as pool:
                    written = pool.submit(lance.write_dataset, table, str(uri), mode="create",
                                          enable_stable_row_ids=True)
                    try:
                        if hashes is None:
                            hashes = _hashed(table, progress)
                    finally:
                        ds = written.result()
                digest = digest_from_hashes(table.schema, key, hashes)
                found = self.digests.lookup(digest)
                ref = found or self._make_ref(ds, uri, table_id, table, digest, key, {})
            except BaseException:
                self._discard_new(table_id)
                raise
            if found is not None:
                self._discard_new(table_id)
                return found
        _report(progress, "write", n, n)
        self.digests.record(ref)
        return ref

    def _discard_new(self, table_id: str) -> None:
        """Remove a lineage this process just created and nobody else knows the id of."""
        shutil.rmtree(self._uri(table_id), ignore_errors=True)
        (self.root / f"{table_id}.lock").unlink(missing_ok=True)

    def _make_ref(self, ds: lance.LanceDataset, uri: Path, table_id: str, table: pa.Table,
                  digest: str, key: str | None, known: dict[str, str],
                  delta: dict | None = None) -> TableRef:
        rows = ds.count_rows()
        if rows != table.num_rows:
            raise IntegrityError(f"table {table_id} v{ds.version}: wrote {rows} rows, "
                                 f"expected {table.num_rows}", table_id=table_id)
        files = self._hash_files(uri, self._version_files(ds, uri), known)
        return TableRef(table_id, ds.version, rows, digest, key, schema_meta(table.schema), files,
                        delta)

    def _write_delta(self, table: pa.Table, hashes: np.ndarray, key: str | None,
                     base: TableRef, digest: str, progress: Progress | None) -> TableRef:
        uri = self._dir_for(base)
        with self._lock(base.table_id):
            ds_base = self._checked(base)  # never build on corrupt files
            stored = ds_base.schema
            data = None
            if canonical_schema(stored) == canonical_schema(table.schema):
                try:
                    data = table.cast(stored)
                except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
                    data = None
            if data is None:  # schema changed: a full new version of the lineage
                return self._overwrite(uri, base, table, digest, key, progress)
            scan = ds_base.to_table(with_row_id=True)
            rowids = scan["_rowid"].to_numpy()
            base_tbl = scan.drop_columns(["_rowid"])
            del scan
            base_h = row_hashes(base_tbl)
            keyed = key is not None and keys_usable(base_tbl, key)
            delta = None
            if keyed:
                dele, upsert, edit_a, edit_b = plan_keyed(base_tbl[key], base_h, table[key],
                                                           hashes)
                cells = cells_changed(base_tbl, data.select(base_tbl.column_names),
                                      edit_a, edit_b)
                delta = {"base": base.digest, "key": key, "added": len(upsert) - len(edit_b),
                         "removed": len(dele), "modified": int(cells.any(axis=1).sum()),
                         "columns": {c: int(n) for c, n in zip(base_tbl.column_names,
                                                               cells.sum(axis=0)) if n}}
            else:  # rows as a multiset: delete what is gone, append what is new
                dele, upsert = multiset_minus(base_h, hashes)
            del base_tbl
            n_change = len(dele) + len(upsert)
            if n_change == 0:  # same rows; only key or exact types differ
                return replace(base, digest=digest, key=key, rows=table.num_rows,
                               schema=schema_meta(table.schema), delta=None)
            if n_change > _OVERWRITE_FRACTION * max(base.rows, table.num_rows, 1):
                return self._overwrite(uri, base, table, digest, key, progress)
            _report(progress, "write", 0, n_change)
            if lance.dataset(str(uri)).version != base.version:
                ds_base.restore()  # branch from an older version: it becomes the latest
            if len(dele):
                ids = ",".join(map(str, rowids[dele].tolist()))
                lance.dataset(str(uri)).delete(f"_rowid IN ({ids})")
            if len(upsert):
                rows = data.take(pa.array(np.sort(upsert), type=pa.int64()))
                ds = lance.dataset(str(uri))
                if keyed:
                    # merge_insert keeps the stable _rowid of edited rows
                    ds.merge_insert(key).when_matched_update_all() \
                      .when_not_matched_insert_all().execute(rows)
                else:
                    ds.insert(rows)
            final = lance.dataset(str(uri))
            return self._make_ref(final, uri, base.table_id, table, digest, key, base.files,
                                  delta)

    def _overwrite(self, uri: Path, base: TableRef, table: pa.Table, digest: str,
                   key: str | None, progress: Progress | None) -> TableRef:
        _report(progress, "write", 0, table.num_rows)
        ds = lance.write_dataset(table, str(uri), mode="overwrite", enable_stable_row_ids=True)
        return self._make_ref(ds, uri, base.table_id, table, digest, key, base.files)

    # -- read -------------------------------------------------------------------
    def read(self, ref: TableRef, columns: list[str] | None = None,
             verify: bool = True) -> pa.Table:
        """The rows of ``ref`` (user columns only, stored order), hashes checked first.

        Raises IntegrityError naming the file whose BLAKE3 does not match, MissingObject
        if the version or a file is gone.
        """
        schema = ref.arrow_schema()
        names = list(columns) if columns is not None else schema.names
        unknown = [c for c in names if c not in schema.names]
        if unknown:
            raise InvalidArtifact(f"table has no column(s) {unknown}; it has {schema.names}")
        ds = self._checked(ref, verify)
        t = ds.to_table(columns=names)
        if t.num_rows != ref.rows:
            raise IntegrityError(f"table {ref.table_id} v{ref.version}: read {t.num_rows} rows, "
                                 f"recorded {ref.rows}", table_id=ref.table_id)
        target = pa.schema([schema.field(n) for n in names], metadata=schema.metadata)
        try:
            return t.cast(target)
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError):
            return t

    def scanner_dataset(self, ref: TableRef) -> lance.LanceDataset:
        """The verified, checked-out Lance dataset of ``ref`` (DuckDB can query it directly)."""
        return self._checked(ref, True)

    # -- diff / merge -------------------------------------------------------------
    def diff(self, a: TableRef, b: TableRef, *, key: str | None = None, sample: int = 5,
             verify: bool = True) -> TableDiff:
        """Row-level changes from ``a`` to ``b``.

        ``key`` defaults to the refs' common key. Versions of one lineage are compared
        from Lance metadata at a cost that grows with the change, not the table; other
        pairs by hashing every row. Without a key, rows edited in place (same stable row
        id) count as modified; otherwise unkeyed rows are a multiset (removed + added).
        """
        key = key if key is not None else (a.key if a.key == b.key else None)
        sa, sb = a.arrow_schema(), b.arrow_schema()
        sch = schema_changes(sa, sb, a.key, b.key)
        if a.digest == b.digest or (a.table_id == b.table_id and a.version == b.version):
            if verify:
                self._checked(a)
                self._checked(b)
            return TableDiff(0, 0, 0, {"added": [], "removed": [], "modified": []}, {}, sch,
                             unchanged=b.rows, key=key, method="identical")
        recorded = self._diff_recorded(a, b, key, sample, sch, verify)
        if recorded is not None:
            return recorded
        ch = self._changes(a, b, key, verify)
        return build_diff(ch, sample=sample, schema_changes=sch, rows_b=b.rows)

    def _diff_recorded(self, a: TableRef, b: TableRef, key: str | None, sample: int,
                       sch: list[str], verify: bool) -> TableDiff | None:
        """The diff of ``b`` against the version it was written on, from ``b.delta``.

        Which rows changed comes from Lance metadata and the key column alone; the
        per-column counts were recorded when ``b`` was written (when every modified row
        was in memory anyway), so only the sampled rows are read whole. Any disagreement
        between the record and the metadata returns None: the diff is then computed.
        """
        d = b.delta
        if (not d or key is None or d.get("key") != key or d.get("base") != a.digest
                or a.table_id != b.table_id or self._dir_for(a) != self._dir_for(b)):
            return None
        sa, sb = a.arrow_schema(), b.arrow_schema()
        if canonical_schema(sa) != canonical_schema(sb):
            return None
        with self._verified([a, b] if verify else []):
            dsa, dsb = self._checked(a, False), self._checked(b, False)
            picks_a, picks_b = candidates(self._dir_for(a), dsa, dsb)
            ka, _ = take_rows(dsa, picks_a, [key], False)
            kb, _ = take_rows(dsb, picks_b, [key], False)
            ka, kb = ka[key].combine_chunks(), kb[key].combine_chunks()
            check_keys(ka, key, "the old version")
            check_keys(kb, key, "the new version")
            mod_a, mod_b, only_a, only_b = match_keys(ka, kb)
            if (len(only_b), len(only_a), len(mod_b)) != (d["added"], d["removed"],
                                                          d["modified"]):
                return None
            k = max(sample, 0)
            order = key_order(pc.take(kb, pa.array(mod_b, type=pa.int64())))[:k]
            mod_a, mod_b = mod_a[order], mod_b[order]
            only_a = only_a[key_order(pc.take(ka, pa.array(only_a, type=pa.int64())))[:k]]
            only_b = only_b[key_order(pc.take(kb, pa.array(only_b, type=pa.int64())))[:k]]
            columns = sb.names
            cast_a, cast_b = sub_schema(a, columns), sub_schema(b, columns)
            before = take_picked(dsa, picks_a, mod_a, columns).cast(cast_a)
            after = take_picked(dsb, picks_b, mod_b, columns).cast(cast_b)
            removed = take_picked(dsa, picks_a, only_a, columns).cast(cast_a)
            added = take_picked(dsb, picks_b, only_b, columns).cast(cast_b)
        changed = cells_changed(before, after)
        mods = [{"key": af[key], "before": bf, "after": af,
                 "changed": [c for c, x in zip(columns, flags) if x]}
                for bf, af, flags in zip(before.to_pylist(), after.to_pylist(), changed)]
        if not all(m["changed"] for m in mods):
            return None  # a "modified" sample with no changed cell: the record is not this diff
        samples = {"added": added.to_pylist(), "removed": removed.to_pylist(), "modified": mods}
        return TableDiff(added=d["added"], removed=d["removed"], modified=d["modified"],
                         samples=samples,
                         column_changes={c: int(d["columns"][c]) for c in columns
                                         if d["columns"].get(c)},
                         schema_changes=sch,
                         unchanged=max(b.rows - d["added"] - d["modified"], 0), key=key,
                         method="recorded")

    @contextlib.contextmanager
    def _verified(self, refs: list[TableRef]) -> Iterator[None]:
        """Hash the files of ``refs`` in the background while the body reads them: nothing
        read leaves the block before the check has passed, and a failed check's
        IntegrityError wins over any error of the body."""
        errors: list[BaseException] = []

        def run() -> None:
            try:
                for ref in refs:
                    self._verify(ref)
            except BaseException as e:  # noqa: BLE001 - raised by the waiting thread
                errors.append(e)

        check = None
        if refs:
            check = threading.Thread(target=run, name="demoai-table-verify", daemon=True)
            check.start()
        try:
            yield
        finally:
            if check is not None:
                check.join()
                if errors:
                    raise errors[0]

    def _changes(self, a: TableRef, b: TableRef, key: str | None, verify: bool) -> Changes:
        sa, sb = a.arrow_schema(), b.arrow_schema()
        ta = {f.name: canonical_type(f.type) for f in sa}
        common = [f.name for f in sb if ta.get(f.name) == canonical_type(f.type)]
        if key is not None and key not in common:
            raise InvalidArtifact(f"key column {key!r} is not in both versions with one type",
                                  key=key)
        if not common:
            raise InvalidArtifact("the two versions share no column to compare")
        # Row ids pair rows only inside one folder: an alternate allocated its own.
        if (a.table_id == b.table_id and canonical_schema(sa) == canonical_schema(sb)
                and self._dir_for(a) == self._dir_for(b)):
            fast = self._changes_fast(a, b, key, common, verify)
            if fast is not None:
                return fast
        ta_ = self.read(a, columns=common, verify=verify)
        tb_ = self.read(b, columns=common, verify=verify)
        ia, ib = multiset_minus(row_hashes(ta_), row_hashes(tb_))
        return classify(ta_.take(pa.array(ia, type=pa.int64())),
                        tb_.take(pa.array(ib, type=pa.int64())), key, method="full",
                        matched=True)

    def _changes_fast(self, a: TableRef, b: TableRef, key: str | None, columns: list[str],
                      verify: bool) -> Changes | None:
        with self._verified([a, b] if verify else []):
            dsa, dsb = self._checked(a, False), self._checked(b, False)
            picks_a, picks_b = candidates(self._dir_for(a), dsa, dsb)
            n = sum(len(p[1]) for p in picks_a) + sum(len(p[1]) for p in picks_b)
            if n > _FULL_DIFF_ROWS and n > _FULL_DIFF_FRACTION * (a.rows + b.rows):
                picks_a = None  # most rows differ (e.g. a rewrite): one full read is cheaper
            else:
                ta, rid_a = take_rows(dsa, picks_a, columns, key is None)
                tb, rid_b = take_rows(dsb, picks_b, columns, key is None)
        if picks_a is None:
            return None
        ta, tb = ta.cast(sub_schema(a, columns)), tb.cast(sub_schema(b, columns))
        return classify(ta, tb, key, rid_a, rid_b, method="metadata")

    def merge3(self, base: TableRef, ours: TableRef, theirs: TableRef, *, key: str | None,
               prefer: str | None = None) -> MergeResult:
        """Row-level three-way merge of two versions descending from ``base``.

        Keyed: cell-level (edits to different columns of a row merge; the same cell
        changed differently, or delete vs modify, is a conflict). Unkeyed: a multiset
        merge that applies the removals and additions of both sides (no conflicts).
        With conflicts ``table`` is None unless ``prefer`` ("ours"/"theirs") picks a side.
        """
        if prefer not in (None, "ours", "theirs"):
            raise ValueError("prefer must be None, 'ours' or 'theirs'")
        for r in (ours, theirs):
            if r.digest == base.digest:
                other = theirs if r is ours else ours
                return MergeResult(self.read(other), [], other, {"trivial": True})
        if ours.digest == theirs.digest:
            return MergeResult(self.read(ours), [], ours, {"trivial": True})
        s = [canonical_schema(r.arrow_schema()) for r in (base, ours, theirs)]
        if not (s[0] == s[1] == s[2]):
            return MergeResult(None, [{"key": None, "column": None, "base": None, "ours": None,
                                       "theirs": None, "reason": "schema changed; "
                                       "row-level merge needs one schema on all sides"}])
        co = self._changes(base, ours, key, True)
        ct = self._changes(base, theirs, key, True)
        base_tbl = self.read(base)
        if key is not None:
            table, conflicts, stats = merge_keyed(base_tbl, co, ct, key, prefer)
        else:
            (table, stats), conflicts = merge_multiset(base_tbl, co, ct), []
        if table is not None:
            table = table.cast(ours.arrow_schema())
        return MergeResult(table, conflicts, None, stats)

    # -- fsck / files / gc --------------------------------------------------------
    def verify(self, ref: TableRef, progress: Progress | None = None, *,
               deep: bool = True, base: TableRef | None = None) -> list[str]:
        """Check ``ref`` without raising: every file's BLAKE3 (uncached), that the version
        is made of exactly the recorded files, its row count and (``deep``) its content
        digest and, given the version its delta record names as ``base``, that the record
        matches the diff computed from the rows. Returns problem strings; empty means
        healthy."""
        try:
            uri = self._dir_for(ref)
        except InvalidArtifact as e:
            return [str(e)]
        if not uri.exists():
            return [f"{ref.table_id}.lance: table folder missing"]
        problems = self._check_files(ref, cache=False, progress=progress)
        if problems:
            return problems
        try:
            ds = lance.dataset(str(uri), version=ref.version)
            listed = set(self._version_files(ds, uri))
            problems += [f"{ref.table_id}.lance/{r}: part of v{ref.version} but not recorded"
                         for r in sorted(listed - set(ref.files))]
            problems += [f"{ref.table_id}.lance/{r}: recorded but not part of v{ref.version}"
                         for r in sorted(set(ref.files) - listed)]
            rows = ds.count_rows()
            if rows != ref.rows:
                problems.append(f"{ref.table_id} v{ref.version}: {rows} rows, recorded {ref.rows}")
            elif deep and not problems:
                got = content_digest(self.read(ref, verify=False), ref.key)
                if got != ref.digest:
                    problems.append(f"{ref.table_id} v{ref.version}: content digest {got} "
                                    f"!= recorded {ref.digest}")
                elif ref.delta and base is not None and base.digest == ref.delta["base"]:
                    problems += self._check_delta_record(ref, base)
        except Exception as e:  # fsck reports, never raises
            problems.append(f"{ref.table_id} v{ref.version}: cannot read: {one_line(e)}")
        return problems

    def _check_delta_record(self, ref: TableRef, base: TableRef) -> list[str]:
        d = ref.delta or {}
        got = self.diff(base, replace(ref, delta=None), key=d.get("key"), sample=0,
                        verify=False)
        want = (d["added"], d["removed"], d["modified"], d["columns"])
        if (got.added, got.removed, got.modified, got.column_changes) != want:
            return [f"{ref.table_id} v{ref.version}: recorded delta {want} != computed "
                    f"{(got.added, got.removed, got.modified, got.column_changes)}"]
        return []

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
        for r in live:  # the promise: nothing a live ref lists is gone
            for rel in r.files:
                if not (self._dir_for(r) / rel).exists():
                    stats["problems"].append(f"{r.table_id}.lance/{rel}: missing after gc")
        self.digests.gc()
        return stats

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



# ----------------------------------------------------------------------------- helpers

def _check_table(table: Any, key: str | None) -> pa.Table:
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if not isinstance(table, pa.Table):
        raise InvalidArtifact(f"expected a pyarrow Table, got {type(table).__name__}")
    names = table.column_names
    if not names:
        raise InvalidArtifact("a table needs at least one column")
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise InvalidArtifact(f"duplicate column name(s): {dups}")
    bad = [n for n in names if n in RESERVED_COLUMNS or not n]
    if bad:
        raise InvalidArtifact(f"reserved or empty column name(s): {bad}")
    dotted = [n for n in names if "." in n]
    if dotted:  # Lance reads "a.b" as a path into a struct
        raise InvalidArtifact(f"column names cannot contain '.': {dotted}")
    # Lance stores what it is given and only fails when reading it back: whatever is
    # accepted must be readable, so the Arrow data is checked in full (UTF-8 included).
    check_arrow_data(table)
    if key is not None:
        if key not in names:
            raise InvalidArtifact(f"key column {key!r} not in table columns {names}", key=key)
        if pa.types.is_nested(table.schema.field(key).type):
            raise InvalidArtifact(f"key column {key!r} must be a scalar type", key=key)
        check_keys(table[key], key, "the table")
    return table
