"""Matching a new version's rows against its base while the new file streams by.

A delta onto a stored version keeps, of the new file, only the rows the base does not
hold as they are (edited and new rows); everything else is known from the base's row-hash
side files (:mod:`~demoai.store.tables.rowhash`). Two matchers decide it batch by batch:

* :class:`KeyMatcher`, for an integer key the base was stored with: each row's key is
  looked up among the base's sorted keys, and the row is unchanged when its hash equals
  that base row's. The plan (rows to delete, rows to upsert, edited pairs) falls out of
  the same lookups, and so does the key check: the base's keys are unique, so the new
  file's keys are unique when no base row is matched twice and the keys the base lacks
  are unique among themselves. Nothing but these lookups is kept per row (the base
  position, 8 bytes).
* :class:`HashMatcher` otherwise (no key, other key types): a row is unchanged when its
  hash is among the base's; the caller plans from the keys and hashes afterwards
  (:func:`~demoai.store.tables.diff.plan_keyed`).

Lookups are made with the batch's needles sorted: a binary search over sorted needles
walks the sorted haystack forwards, several times faster than random probes.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import pyarrow as pa

from demoai.store.tables.diff import int_keys
from demoai.store.tables.order import hash_order

__all__ = ["KeyMatcher", "HashMatcher", "KeyPlan", "KeysNotClean", "sorted_lookup",
           "int_key_type", "delta_perm"]


_BLOCK = 1 << 20


class KeysNotClean(Exception):
    """The new file's key has nulls or repeats: the caller checks the keys in full, for
    the exact error."""


class KeyPlan(NamedTuple):
    """The change from base to new file: base scan positions to delete, file positions to
    upsert (sorted), and the edited pairs (base position, file position)."""

    dele: np.ndarray
    upsert: np.ndarray
    edit_a: np.ndarray
    edit_b: np.ndarray


def int_key_type(t: pa.DataType) -> bool:
    """Whether keys of type ``t`` go through :class:`KeyMatcher` (integers that fit int64)."""
    return pa.types.is_integer(t) and not pa.types.is_uint64(t)


def sorted_lookup(haystack: np.ndarray, needles: np.ndarray,
                  order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(position in ``haystack`` (sorted, 1-d) of each needle, or any index; found mask),
    searched with the needles in sorted order (``order`` sorts them; None: they are, or
    they are sorted here)."""
    if len(haystack) == 0:
        return np.zeros(len(needles), dtype=np.int64), np.zeros(len(needles), dtype=bool)
    if order is None and len(needles) > 1 and not np.all(needles[1:] >= needles[:-1]):
        order = np.argsort(needles, kind="stable")
    if order is not None:
        pos = np.empty(len(needles), dtype=np.int64)
        pos[order] = np.searchsorted(haystack, needles[order])
    else:
        pos = np.searchsorted(haystack, needles).astype(np.int64, copy=False)
    np.minimum(pos, len(haystack) - 1, out=pos)
    return pos, haystack[pos] == needles


class HashMatcher:
    """Rows whose hash the base does not hold (no key, or a key of another type)."""

    def __init__(self, base_h: np.ndarray) -> None:
        order = hash_order(base_h)
        self._hi, self._lo = base_h[order, 0], base_h[order, 1]

    def probe(self, h: np.ndarray) -> np.ndarray:
        """Mask of the batch's rows (hashes ``h``) that the base does not hold."""
        if not len(self._lo):           # an empty base holds nothing
            return np.ones(len(h), dtype=bool)
        pos, found = sorted_lookup(self._hi, h[:, 0])
        return ~(found & (self._lo[pos] == h[:, 1]))


class KeyMatcher:
    """Rows matched to the base by an integer key (see the module docstring)."""

    def __init__(self, base_keys: np.ndarray, base_h: np.ndarray) -> None:
        n = len(base_keys)
        if n > 1 and not np.all(base_keys[1:] > base_keys[:-1]):
            self._order: np.ndarray | None = np.argsort(base_keys, kind="stable")
            self._sorted = base_keys[self._order]
        else:   # scan order is key order (a table written in key order): no sort
            self._order, self._sorted = None, base_keys
        self._keys, self._h = base_keys, base_h
        self._seen = np.zeros(n, dtype=bool)
        self._bpos: list[np.ndarray] = []       # base position of each file row, -1: none
        self._changed: list[np.ndarray] = []    # file positions not in the base as they are
        self._fresh_keys: list[np.ndarray] = []  # keys the base lacks
        self._rows = 0

    def probe(self, keys: pa.Array | pa.ChunkedArray, h: np.ndarray) -> np.ndarray:
        """Mask of the batch's rows (keys, hashes ``h``) that the base does not hold as
        they are; raises :class:`KeysNotClean` on a null or repeated key."""
        k, bpos, found, hit = self._locate(keys)
        return self._record(k, bpos, found, hit, h)

    def probe_fast(self, keys: pa.Array | pa.ChunkedArray, fast: np.ndarray,
                   base_fast: np.ndarray,
                   hash_rows: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`probe` with the batch's row hashes made here: a row whose key finds a base
        row with the same fingerprint (``fast``; the base's: ``base_fast``, scan order)
        takes that row's hash, the others are hashed by ``hash_rows(positions)``
        (:mod:`~demoai.store.tables.fasthash`). Returns (mask, hashes)."""
        k, bpos, found, hit = self._locate(keys)
        take = np.zeros(len(k), dtype=bool)
        if len(hit):
            take[found] = base_fast[hit] == fast[found]
        h = np.empty((len(k), 2), dtype=np.uint64)
        h[take] = self._h[bpos[take]]
        rest = np.flatnonzero(~take)
        if len(rest):
            h[rest] = hash_rows(rest)
        return self._record(k, bpos, found, hit, h), h

    def _locate(self, keys: pa.Array | pa.ChunkedArray):
        """(keys, base position or -1, found mask, base positions found) of a batch."""
        k = int_keys(keys)
        if k is None:
            raise KeysNotClean()
        order = None
        if len(k) > 1 and not np.all(k[1:] > k[:-1]):
            order = np.argsort(k, kind="stable")
            ks = k[order]
            if np.any(ks[1:] == ks[:-1]):     # a key twice within the batch
                raise KeysNotClean()
        pos, found = sorted_lookup(self._sorted, k, order)
        bpos = pos if self._order is None else self._order[pos]
        bpos = np.where(found, bpos, -1)
        hit = bpos[found]
        if len(hit):
            if self._seen[hit].any():          # a key an earlier batch had
                raise KeysNotClean()
            self._seen[hit] = True
        return k, bpos, found, hit

    def _record(self, k: np.ndarray, bpos: np.ndarray, found: np.ndarray, hit: np.ndarray,
                h: np.ndarray) -> np.ndarray:
        same = np.zeros(len(k), dtype=bool)
        if len(hit):
            same[found] = (self._h[hit] == h[found]).all(axis=1)
        changed = ~same
        self._bpos.append(bpos)
        self._changed.append(np.flatnonzero(changed) + self._rows)
        self._fresh_keys.append(k[~found])
        self._rows += len(k)
        return changed

    def plan(self) -> KeyPlan:
        """The plan once every batch was probed; raises :class:`KeysNotClean` when keys
        the base lacks repeat."""
        fresh = np.concatenate(self._fresh_keys) if self._fresh_keys else np.zeros(0, np.int64)
        if len(fresh) > 1:
            s = np.sort(fresh)
            if np.any(s[1:] == s[:-1]):
                raise KeysNotClean()
        bpos = self.base_positions()
        upsert = (np.concatenate(self._changed) if self._changed
                  else np.zeros(0, dtype=np.int64)).astype(np.int64)
        edit_b = upsert[bpos[upsert] >= 0]
        return KeyPlan(np.flatnonzero(~self._seen), upsert, bpos[edit_b], edit_b)

    def base_positions(self) -> np.ndarray:
        """The base scan position of every file row so far (-1: a key the base lacks)."""
        if len(self._bpos) != 1:   # joined once, kept joined: no second copy
            self._bpos = [np.concatenate(self._bpos) if self._bpos
                          else np.zeros(0, dtype=np.int64)]
        return self._bpos[0]

    def file_keys(self) -> np.ndarray:
        """Every file row's key, in file order."""
        bpos = self.base_positions()
        out = (self._keys[np.maximum(bpos, 0)] if len(self._keys)
               else np.zeros(len(bpos), dtype=np.int64))
        fresh = np.concatenate(self._fresh_keys) if self._fresh_keys else np.zeros(0, np.int64)
        out[bpos < 0] = fresh
        return out


def delta_perm(base_keys: np.ndarray, file_keys: np.ndarray, bpos: np.ndarray,
               plan: KeyPlan, final_keys: np.ndarray) -> np.ndarray | None:
    """The file order of a keyed delta written with ``plan`` (``perm[i]``: the final scan
    position of file row ``i``) without sorting the table: Lance keeps the base rows that
    survive in their scan order and puts the upserted rows after them, so a kept row's
    place is its rank among the survivors, and only the upserted rows are looked up.
    None when ``final_keys`` (the final version's keys, in scan order) do not have that
    shape. Checks go a block at a time: no temporary copy of a whole key column."""
    alive = np.ones(len(base_keys), dtype=bool)
    alive[plan.dele] = False
    alive[plan.edit_a] = False
    n_alive = int(alive.sum())
    if len(final_keys) != n_alive + len(plan.upsert):
        return None
    at = 0
    for s in range(0, len(base_keys), _BLOCK):
        kept = base_keys[s:s + _BLOCK][alive[s:s + _BLOCK]]
        if not np.array_equal(final_keys[at:at + len(kept)], kept):
            return None
        at += len(kept)
    rank = np.cumsum(alive, dtype=np.int64)
    del alive
    rank -= 1
    perm = np.empty(len(bpos), dtype=np.int64)
    for s in range(0, len(bpos), _BLOCK):
        perm[s:s + _BLOCK] = rank[np.maximum(bpos[s:s + _BLOCK], 0)]
    del rank
    tail = final_keys[n_alive:]
    pos, found = sorted_lookup(np.sort(tail), file_keys[plan.upsert])
    if not found.all():
        return None
    perm[plan.upsert] = n_alive + np.argsort(tail, kind="stable")[pos]
    for s in range(0, len(perm), _BLOCK):
        if not np.array_equal(final_keys[perm[s:s + _BLOCK]], file_keys[s:s + _BLOCK]):
            return None
    return perm
