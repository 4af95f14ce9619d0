"""``demoai scan``: weight, adapter, diff and activation statistics of registered models.

``scan_weights`` and ``scan_activations`` commit their table beside the model, as a
Dataset at ``scans/<name>.weights.parquet`` / ``scans/<name>.activations.parquet`` (one row
per tensor or layer, queryable with ``demoai query``), in a commit of that path alone whose
lineage names the model (and adapter) digests. The same scan of the same weights gives the
same table, so a re-run commits nothing. PNG heatmaps (layer x module) go to ``plot_dir``.
A MODEL is a registered path, short name or alias, or ``smollm2`` (the embedded GGUF).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demoai.errors import InvalidArtifact, NothingToCommit, PathNotFound
from demoai.objects import Adapter, Model
from demoai.porcelain.commit import commit
from demoai.store import Repository
from demoai.train import registry
from demoai.train import scan as S

__all__ = ["scan_weights", "scan_diff", "scan_activations", "ScanRun", "read_prompts"]


@dataclass
class ScanRun:
    """A scan: what was scanned, the rows (one per tensor or layer), where the table was
    committed (None: not committed, or HEAD already had it) and the PNGs written."""

    kind: str
    model: str
    model_digest: str
    adapter: str | None
    adapter_digest: str | None
    rows: list[dict[str, Any]]
    path: str | None = None
    commit: str | None = None
    plots: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {k: getattr(self, k) for k in ("kind", "model", "model_digest", "adapter",
                                              "adapter_digest", "path", "commit", "plots",
                                              "seconds", "rows")}


def _resolve(repo: Repository, name: str, rev: str) -> tuple[str, Path, Model | Adapter | None, str]:
    """(name, local weights path, artifact or None for the builtin, digest)."""
    if name in ("smollm2", "builtin:smollm2"):
        from demoai.registry.resolve import builtin_digest
        path, digest = builtin_digest(repo)
        return "smollm2", path, None, digest
    p, _, art = registry.find_model(repo, name, rev)
    return p, registry.local_path(repo, art), art, art.digest


def _stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name.rsplit("/", 1)[-1]).removesuffix(".gguf").strip("-.") or "model"


def _commit_rows(repo: Repository, rows: list[dict[str, Any]], rel: str, message: str,
                 inputs: dict[str, str], parameters: dict[str, Any]) -> str | None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    target = repo.workpath(rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    flat = [{k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()} for r in rows]
    pq.write_table(pa.Table.from_pylist(flat), target)
    try:
        return commit(repo, message, paths=[target], inputs=inputs, parameters=parameters)
    except NothingToCommit:
        return None


def scan_weights(repo: Repository, spec: str, *, rev: str = "HEAD", plot_dir: str | None = None,
                 save: bool = True) -> ScanRun:
    """``MODEL`` or ``MODEL+ADAPTER``: per tensor norm, max |w|, mean, std, near-zero share,
    NaN/Inf counts; for an adapter, its update ``B @ A * scaling`` per module and the ratio
    to the base weight. Committed at ``scans/<name>.weights.parquet`` unless ``save`` is False."""
    t0 = time.perf_counter()
    base_name, _, ad_name = spec.partition("+")
    name, path, art, digest = _resolve(repo, base_name, rev)
    ad_digest = None
    if ad_name:
        ad_path_name, ad_path, ad, ad_digest = _resolve(repo, ad_name, rev)
        if not isinstance(ad, Adapter):
            raise InvalidArtifact(f"{ad_name} is not an adapter", path=ad_name)
        arch = None
        if art is None or art.format == "gguf":
            arch = (registry.weights_meta(repo, art) if art is not None else {}).get("architecture") or "llama"
        stats = S.scan_adapter(path, ad_path, arch)
        label, kind = f"{_stem(name)}+{_stem(ad_path_name)}", "adapter"
    else:
        stats = S.scan_weights(path)
        label, kind, ad_path_name = _stem(name), "weights", None
    run = ScanRun(kind, name, digest, ad_path_name, ad_digest, [s.to_dict() for s in stats])
    if plot_dir:
        for value in (("norm", "ratio") if ad_name else ("norm", "max_abs", "std")):
            png = S.heatmap(stats, Path(plot_dir) / f"{label}.{value}.png", value, f"{label}: {value}")
            if png:
                run.plots.append(str(png))
    if save:
        run.path = f"scans/{label}.{kind}.parquet"
        inputs = {"model": digest, **({"adapter": ad_digest} if ad_digest else {})}
        run.commit = _commit_rows(repo, run.rows, run.path, f"Scan {kind} of {spec}", inputs,
                                  {"scan": {"kind": kind, "model": name, "adapter": ad_path_name,
                                            "near_zero": S.NEAR_ZERO}})
    run.seconds = time.perf_counter() - t0
    return run


def scan_diff(repo: Repository, a: str, b: str, *, rev: str = "HEAD",
              plot_dir: str | None = None) -> ScanRun:
    """Per tensor both models hold: the change ``B - A`` (norm, max, ...) and its size
    relative to A (``ratio``). Not committed."""
    t0 = time.perf_counter()
    na, pa_, _, da = _resolve(repo, a, rev)
    nb, pb, _, db = _resolve(repo, b, rev)
    stats = S.scan_diff(pa_, pb)
    run = ScanRun("diff", na, da, nb, db, [s.to_dict() for s in stats])
    if plot_dir:
        png = S.heatmap(stats, Path(plot_dir) / f"{_stem(na)}-vs-{_stem(nb)}.ratio.png", "ratio",
                        f"{na} -> {nb}: relative change")
        if png:
            run.plots.append(str(png))
    run.seconds = time.perf_counter() - t0
    return run


def read_prompts(path: str | Path) -> list[str]:
    """Probe prompts: a ``.jsonl`` file (``prompt`` or ``text`` per row) or one per line."""
    p = Path(path)
    if not p.is_file():
        raise PathNotFound(f"{path}: no such file", path=str(path))
    if p.suffix == ".jsonl":
        out = []
        for i, line in enumerate(p.read_text().splitlines()):
            if line.strip():
                row = json.loads(line)
                text = row.get("prompt") or row.get("text") if isinstance(row, dict) else None
                if not isinstance(text, str):
                    raise InvalidArtifact(f"{path}: row {i + 1} has no prompt/text string", path=str(path))
                out.append(text)
    else:
        out = [line for line in p.read_text().splitlines() if line.strip()]
    if not out:
        raise InvalidArtifact(f"{path}: no prompts", path=str(path))
    return out


def scan_activations(repo: Repository, name: str, prompts: list[str], *, rev: str = "HEAD",
                     top_k: int = 5, threads: int = 1, save: bool = True) -> ScanRun:
    """Per decoder layer: MLP activation mean, std, max |a|, dead-unit share over the probe
    prompts, and the top units of the first prompt (transformers forward hooks)."""
    t0 = time.perf_counter()
    label, path, art, digest = _resolve(repo, name, rev)
    gguf_file = None
    if path.is_file():
        if not path.name.lower().endswith(".gguf"):
            raise InvalidArtifact("scan activations needs a transformers folder or a GGUF", path=name)
        path, gguf_file = path.parent, path.name
    stats = S.scan_activations(path, prompts, gguf_file=gguf_file, top_k=top_k, threads=threads)
    run = ScanRun("activations", label, digest, None, None, [s.to_dict() for s in stats])
    if save:
        run.path = f"scans/{_stem(label)}.activations.parquet"
        import blake3
        probe = "blake3:" + blake3.blake3(json.dumps(prompts).encode()).hexdigest()
        run.commit = _commit_rows(repo, run.rows, run.path, f"Scan activations of {name}",
                                  {"model": digest, "prompts": probe},
                                  {"scan": {"kind": "activations", "model": label, "top_k": top_k,
                                            "prompts": len(prompts)}})
    run.seconds = time.perf_counter() - t0
    return run
