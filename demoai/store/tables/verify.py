"""Verifying table versions: every file a version is made of hashes (BLAKE3) to what its
ref recorded. Reads check this before they trust a byte (:meth:`VerifyMixin._verify`);
``fsck`` goes further (:meth:`VerifyMixin.verify`): uncached hashes, exactly the recorded
files, the row count, the content digest and the recorded delta.

:class:`VerifyMixin` is part of :class:`~demoai.store.tables.store.TableStore`.
"""
from __future__ import annotations

from dataclasses import replace

import lance
import numpy as np

from demoai.errors import IntegrityError, InvalidArtifact, MissingObject
from demoai.store.tables.io import digest_from_hashes, one_line, row_hashes
from demoai.store.tables.order import is_order_file, sequence_digest
from demoai.store.tables.ref import TableRef, file_blake3
from demoai.store.tables.write import Progress, report

__all__ = ["VerifyMixin"]


class VerifyMixin:
    """Hash checks of versions (part of ``TableStore``: uses its folders and file lists)."""

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
            report(progress, "verify", i + 1, len(items))
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
            listed |= {r for r in ref.files if is_order_file(r)}
            problems += [f"{ref.table_id}.lance/{r}: part of v{ref.version} but not recorded"
                         for r in sorted(listed - set(ref.files))]
            problems += [f"{ref.table_id}.lance/{r}: recorded but not part of v{ref.version}"
                         for r in sorted(set(ref.files) - listed)]
            rows = ds.count_rows()
            if rows != ref.rows:
                problems.append(f"{ref.table_id} v{ref.version}: {rows} rows, recorded {ref.rows}")
            elif deep and not problems:
                rows = self.read(ref, verify=False, ordered=False)
                hashes = row_hashes(rows)
                got = digest_from_hashes(rows.schema, ref.key, hashes)
                seq = ref.order.get("digest") if ref.order else None
                perm = self.order_of(ref) if seq else None
                if got != ref.digest:
                    problems.append(f"{ref.table_id} v{ref.version}: content digest {got} "
                                    f"!= recorded {ref.digest}")
                elif (kept := self.version_hashes(ds, uri, ref.files)) is not None and \
                        not np.array_equal(kept, hashes):
                    problems.append(f"{ref.table_id} v{ref.version}: the row hash files do "
                                    "not hold the hashes of the version's rows")
                elif seq and sequence_digest(hashes if perm is None else hashes[perm]) != seq:
                    problems.append(f"{ref.table_id} v{ref.version}: the rows in the "
                                    "recorded order do not hash to the recorded order digest")
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
