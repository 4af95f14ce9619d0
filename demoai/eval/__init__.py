"""Evaluation: perplexity, exact match, sanity suites, regression gates, arena (a later issue)."""
