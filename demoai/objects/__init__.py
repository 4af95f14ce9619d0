"""Typed artifacts as value types: serialize, deserialize, check, diff.

Imports nothing from the store or the faces; everything here is pure data.
"""
from demoai.objects.base import (ARTIFACT_TYPES, Artifact, blake3_hex, decode_manifest,
                                 digest_bytes, encode_manifest)
from demoai.objects.dataset import Dataset
from demoai.objects.detect import KINDS, dataset_format, detect_kind
from demoai.objects.model import Adapter, Model, files_digest
from demoai.objects.records import ArenaResult, EvalResult, GateRecord, Session
from demoai.objects.suite import Suite
from demoai.objects.text import line_stats, merge_text, unified_diff
from demoai.objects.textspec import Agent, Prompt
from demoai.objects.trainconfig import TrainConfig

__all__ = ["Artifact", "Dataset", "Prompt", "Model", "Adapter", "EvalResult", "GateRecord", "ArenaResult", "Suite",
           "Session", "Agent", "TrainConfig",
           "ARTIFACT_TYPES", "KINDS", "encode_manifest", "decode_manifest", "detect_kind",
           "dataset_format", "files_digest", "digest_bytes", "blake3_hex", "merge_text",
           "unified_diff", "line_stats"]
