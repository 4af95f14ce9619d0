"""Data preparation verbs (``demoai data ...``), one module per group of verbs:

- :mod:`.prepare`: clean, dedup (exact, MinHash, semantic), split, contamination and why;
  the helpers every verb shares.
- :mod:`.stats`: the quality and diversity report, stored with the version, and its history.
- :mod:`.run`: step files (``demoai data run``).
- :mod:`.io`: import and export of Hugging Face ``datasets`` (``save_to_disk`` folders,
  ``Dataset``/``DatasetDict`` objects), Parquet, JSONL and CSV, schema kept.
- :mod:`.generate`: self-instruct and augment, model calls recorded and replayable.
- :mod:`.label`: a human-feedback loop (labels or pairwise preferences).
- :mod:`.search`: semantic search over a dataset's rows (LanceDB, wordllama).

Each verb that writes commits what it wrote with lineage (verb, parameters, input digests).
"""
from demoai.porcelain.data.generate import (
    AugmentResult, SelfInstructResult, augment, self_instruct,
)
from demoai.porcelain.data.io import (
    ExportResult, ImportResult, export_data, import_data, import_hf, to_hf,
)
from demoai.porcelain.data.label import LabelItem, LabelResult, label
from demoai.porcelain.data.prepare import (
    DEFAULT_NGRAM, DEFAULT_THRESHOLD, ContaminationReport, StepResult, WhyEntry, clean,
    contamination, dedup, load_rules, rule_spec, sidecar_path, split, why,
)
from demoai.porcelain.data.run import run_steps
from demoai.porcelain.data.stats import StatsReport, stats, stats_history
from demoai.porcelain.data.search import SearchResult, search

__all__ = ["StepResult", "clean", "dedup", "split", "contamination", "stats", "stats_history",
           "why", "WhyEntry", "StatsReport", "ContaminationReport", "run_steps", "rule_spec",
           "load_rules", "sidecar_path", "DEFAULT_THRESHOLD", "DEFAULT_NGRAM",
           "import_data", "import_hf", "export_data", "to_hf", "ImportResult", "ExportResult",
           "self_instruct", "SelfInstructResult", "augment", "AugmentResult",
           "label", "LabelItem", "LabelResult", "search", "SearchResult"]
