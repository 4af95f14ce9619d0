"""Lineage: what every commit records about how it was made.

The record is stored in the commit's tree at ``.demoai/lineage.json`` so that any tool
(git included) can read it, and ``query`` exposes its fields as columns of ``commits``.
"""
from __future__ import annotations

import functools
import os
import platform
import sys
from typing import Any

import demoai

__all__ = ["environment", "make_lineage", "KEY_PACKAGES"]

KEY_PACKAGES = ("dulwich", "pylance", "pyarrow", "duckdb", "blake3", "zstandard", "pyfastcdc",
                "llama_cpp_python", "torch", "transformers", "peft", "vllm")


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """Python, key package versions and host hardware (computed once per process)."""
    from importlib import metadata  # ~20 ms of imports: paid only when a commit is written

    pkgs = {}
    for name in KEY_PACKAGES:
        try:
            pkgs[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            continue
    return {
        "demoai": demoai.__version__,
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "packages": pkgs,
        "host": {"os": platform.system(), "release": platform.release(), "machine": platform.machine(),
                 "cpu": _cpu_model(), "cpus": os.cpu_count(), "memory_bytes": _memory_bytes()},
    }


def make_lineage(command: str, *, inputs: dict[str, str] | None = None,
                 outputs: dict[str, str] | None = None, parameters: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A lineage record: the command, inputs and outputs by digest, parameters, environment."""
    rec: dict[str, Any] = {"command": command, "inputs": inputs or {}, "outputs": outputs or {},
                           "parameters": parameters or {}, "environment": environment()}
    if extra:
        rec.update(extra)
    return rec
