"""The evaluation cache: predictions keyed by everything that fixes them.

The key is the digest of the suite's generation spec (task, template, columns, parameters,
seed, dataset and prompt digests), the model and adapter digests, the backend and its
settings, and the engine's version; the metrics are not part of it, so changing only the
metrics re-scores stored predictions without the model. Each key has a folder under
``.demoai/cache/eval/``: ``partial.jsonl`` grows one line per finished item (flushed, so a
killed run resumes from it; a torn last line is ignored), and is renamed to
``complete.jsonl`` with ``run.json`` (the backend's description and the run's speed) when
the run ends. The cache is local and disposable: deleting it only costs re-running.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from demoai.engines.llm import digest_json
from demoai.store.fsutil import atomic_write
from demoai.store.git.lineage import environment

__all__ = ["predictions_key", "EvalCache", "ENGINE_PACKAGES"]

ENGINE_PACKAGES = {"llamacpp": "llama_cpp_python", "transformers": "transformers",
                   "openai": "openai", "vllm": "vllm"}
_NOT_SETTINGS = ("path", "digest", "source", "adapter_path", "adapter_digest", "gguf_file", "api_key")


def predictions_key(generation: dict[str, Any], spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(key, what it covers): the digest of the generation spec and the model spec."""
    backend = spec.get("backend", "llamacpp")
    pkgs = environment()["packages"]
    covered = {
        "generation": generation, "model": spec.get("digest"), "adapter": spec.get("adapter_digest"),
        "backend": backend, "engine": {ENGINE_PACKAGES.get(backend, backend):
                                       pkgs.get(ENGINE_PACKAGES.get(backend, backend))},
        "settings": {k: v for k, v in sorted(spec.items()) if k not in _NOT_SETTINGS and k != "backend"},
    }
    if backend == "openai":                    # a remote model: its name and endpoint stand for it
        covered["endpoint"] = {"base_url": spec.get("base_url"), "model": spec.get("model")}
    return digest_json(covered), covered


class EvalCache:
    """The cache folder of one predictions key."""

    def __init__(self, control: Path, key: str) -> None:
        self.dir = Path(control) / "cache" / "eval" / key.removeprefix("blake3:")
        self.partial = self.dir / "partial.jsonl"
        self.complete = self.dir / "complete.jsonl"
        self.run_file = self.dir / "run.json"

    def finished(self) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
        """(rows, run info) of a finished run with this key, or None."""
        if not (self.complete.is_file() and self.run_file.is_file()):
            return None
        try:
            run = json.loads(self.run_file.read_text())
        except ValueError:
            return None
        rows = list(_read_lines(self.complete))
        if len(rows) != run.get("rows"):
            return None
        return rows, run

    def resumable(self) -> dict[int, dict[str, Any]]:
        """Rows already stored by a half-finished run, by item index (rows whose model call
        failed are left out: they run again)."""
        return {r["index"]: r for r in _read_lines(self.partial) if not r.get("retry")}

    def reopen(self) -> None:
        """Turn a finished run whose model calls failed on some items back into a
        half-finished one, so the next run repeats only those items."""
        rows = [r for r in _read_lines(self.complete) if not r.get("retry")]
        self.dir.mkdir(parents=True, exist_ok=True)
        body = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
        atomic_write(self.partial, body.encode(), durable=False)
        self.complete.unlink(missing_ok=True)
        self.run_file.unlink(missing_ok=True)

    def writer(self) -> "_Journal":
        """An append-only journal of finished items."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return _Journal(self.partial)

    def finish(self, rows: list[dict[str, Any]], run: dict[str, Any]) -> None:
        """Record the run as complete: every row (in index order) and the run info."""
        self.dir.mkdir(parents=True, exist_ok=True)
        body = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows)
        atomic_write(self.complete, body.encode(), durable=False)
        atomic_write(self.run_file, json.dumps({**run, "rows": len(rows)}, sort_keys=True).encode(),
                     durable=False)
        self.partial.unlink(missing_ok=True)


class _Journal:
    def __init__(self, path: Path) -> None:
        self.f = open(path, "a", encoding="utf-8")

    def append(self, row: dict[str, Any]) -> None:
        self.f.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
        self.f.flush()          # a killed process keeps every finished item

    def close(self) -> None:
        self.f.close()

    def __enter__(self) -> "_Journal":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    return                    # a torn last line: the item runs again
                try:
                    row = json.loads(line)
                except ValueError:
                    return
                if isinstance(row, dict) and isinstance(row.get("index"), int):
                    yield row
    except FileNotFoundError:
        return
