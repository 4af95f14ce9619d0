"""Evaluation: judge models on suites, every result pinned and committed by the porcelain.

One module per concern:

- ``metrics``: metric functions (per-example scores and a corpus aggregate), registered by
  name; a plug-in is a function decorated with ``register_metric``.
- ``plan``: a suite at a revision, checked, turned into items; ``tasks``: one item on a
  backend; ``scoring``: metrics with standard errors and bootstrap intervals; ``cache``: the
  predictions keyed by what fixes them (reuse, re-scoring, resuming); ``run``: ``evaluate``.
- ``compare`` (paired tests, flips), ``gate`` (pass / fail / inconclusive), ``stats``
  (bootstrap, paired bootstrap, McNemar, the gate rule).
- ``cases``, ``assertions``, ``junit``, ``sanity``: sanity suites that run like unit tests.
- ``arena``, ``battles``, ``arena_run``: pairwise battles and Bradley-Terry ratings;
  ``plots``: PNG plots.

Only the metric names are re-exported here; import the rest from its module.
"""
from demoai.eval.metrics import (
    MetricFn, MetricResult, accuracy, accuracy_norm, bits_per_byte, bleu, contains, exact_match,
    get_metric, greedy_acc, json_schema_valid, json_valid, length, metric_names, normalize_answer,
    perplexity, regex_match, register_metric, rouge_l, rouge_tokenize, token_f1, word_perplexity,
)

__all__ = [
    "MetricResult", "MetricFn", "register_metric", "get_metric", "metric_names",
    "normalize_answer", "exact_match", "token_f1", "rouge_tokenize", "rouge_l", "bleu",
    "accuracy", "accuracy_norm", "perplexity", "word_perplexity", "bits_per_byte",
    "regex_match", "contains", "json_valid", "json_schema_valid", "length", "greedy_acc",
]
