"""Data preparation: the computational core of the ``demoai data`` steps.

- :mod:`demoai.prep.clean`: configurable cleaning rules (Unicode, whitespace, control
  characters, empty/length filters, Gopher repetition filters, PII redaction) applied to the
  text columns of an Arrow table, recording which rule removed or changed each row.
- :mod:`demoai.prep.minhash`: MinHash signatures (numpy, datasketch's ``affine32`` scheme),
  normalized-text hashes, LSH band parameters, and the :class:`Signatures` stored with a
  dataset version.
- :mod:`demoai.prep.dedup`: exact, MinHash-LSH and semantic deduplication, incremental and
  across datasets through stored signatures, with a record of which row each dropped row
  duplicates.
- :mod:`demoai.prep.hf`: Hugging Face ``datasets`` <-> Arrow tables with the schema kept.
- :mod:`demoai.prep.rougeindex`: ROUGE-L near-duplicate search over a growing pool
  (prefix-filtered inverted index, exact bit-parallel LCS on the candidates).
- :mod:`demoai.prep.selfinstruct`: self-instruct generation and the paper's filters.
- :mod:`demoai.prep.augment`: template and model-based augmentation.
- :mod:`demoai.prep.search`: semantic search (wordllama embeddings in a LanceDB table).

- :mod:`demoai.prep.stats`: the quality and diversity report, its stored table form and
  its PNG plots; :mod:`demoai.prep.language` (language identification with py3langid, where
  installed) and :mod:`demoai.prep.diversity` (embedding diversity, where wordllama is).
- :mod:`demoai.prep.steps`: step files for ``data run``, every step checked before any runs.

Other modules: ``split``, ``contamination``.

These functions take and return Arrow tables, arrays and numpy arrays; committing the results
with their lineage is the job of the layers above.
"""
from demoai.prep.clean import (
    GOPHER_THRESHOLDS, PII_KINDS, CleanResult, Rule, apply_rules, luhn_valid, parse_rules,
    redact_pii, repetition_stats, rule_names, text_column,
)
from demoai.prep.dedup import (
    DEFAULT_THRESHOLD, DedupResult, band_keys, connected_components, dedup, estimated_jaccard,
    lsh_pairs,
)
from demoai.prep.minhash import (
    EMPTY_HASH, MinHashParams, Signatures, check_threshold, minhash_signatures,
    normalize_texts, optimal_bands, permutations, shingle_hashes, text_hashes,
)

__all__ = [
    "CleanResult", "Rule", "apply_rules", "parse_rules", "rule_names", "text_column",
    "repetition_stats", "redact_pii", "luhn_valid", "GOPHER_THRESHOLDS", "PII_KINDS",
    "MinHashParams", "Signatures", "minhash_signatures", "shingle_hashes", "normalize_texts",
    "text_hashes", "permutations", "optimal_bands", "check_threshold", "EMPTY_HASH",
    "DedupResult", "dedup", "lsh_pairs", "band_keys", "connected_components",
    "estimated_jaccard", "DEFAULT_THRESHOLD",
]
