"""Evaluation: metrics (this package's first piece); perplexity runs, sanity suites, regression
gates and the arena come in later issues.

``demoai.eval.metrics`` holds the metrics as plain functions over predictions and references,
each returning per-example scores and a corpus aggregate, registered by name
(``register_metric`` / ``get_metric`` / ``metric_names``).
"""
from demoai.eval.metrics import (
    MetricFn, MetricResult, accuracy, accuracy_norm, bits_per_byte, bleu, contains, exact_match,
    get_metric, json_schema_valid, json_valid, length, metric_names, normalize_answer,
    perplexity, regex_match, register_metric, rouge_l, rouge_tokenize, token_f1, word_perplexity,
)

__all__ = [
    "MetricResult", "MetricFn", "register_metric", "get_metric", "metric_names",
    "normalize_answer", "exact_match", "token_f1", "rouge_tokenize", "rouge_l", "bleu",
    "accuracy", "accuracy_norm", "perplexity", "word_perplexity", "bits_per_byte",
    "regex_match", "contains", "json_valid", "json_schema_valid", "length",
]
