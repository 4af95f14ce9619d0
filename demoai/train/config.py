"""Resolving a training config against a repository: the config (working tree or committed),
its base model as verified local weights with their digest, its dataset(s) as rows with their
digests, and the checks that need the repository (the base is a model, the columns exist,
the validation split leaves rows on both sides). Everything here runs before training
starts, so bad input fails before any work or any commit."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demoai.errors import InvalidArtifact, PathNotFound, RefNotFound
from demoai.objects import Dataset, TrainConfig
from demoai.registry.resolve import BUILTIN_MODELS, load_text_artifact, resolve_model
from demoai.store.git.repo import Repository, normalize_path
from demoai.store.kinds import load_table

__all__ = ["TrainPlan", "load_config", "plan_training", "code_digest", "BaseModel", "resolve_base",
           "CODE_MODULES"]


@dataclass
class BaseModel:
    """Where the base weights are on local disk: a folder, and the GGUF file in it when the
    base is a GGUF (transformers dequantizes it)."""

    ref: str
    path: str
    digest: str
    gguf_file: str | None = None


@dataclass
class TrainPlan:
    """Everything a run needs, resolved and checked: the config and where it sits, the base,
    the train and validation rows, and the digests the run's lineage records."""

    config: TrainConfig
    config_path: str
    base: BaseModel
    dataset_digest: str
    train_rows: list[dict[str, Any]]
    val_rows: list[dict[str, Any]]
    val_digest: str | None = None
    rev: str = "HEAD"
    code: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def meta(self) -> dict[str, Any]:
        """The config's checked values."""
        return self.config.meta

    def inputs(self) -> dict[str, str]:
        """The lineage inputs by digest (base, dataset, config, code, validation set)."""
        out = {"base_model": self.base.digest, "dataset": self.dataset_digest,
               "config": self.config.digest, "code": self.code}
        if self.val_digest:
            out["validation_dataset"] = self.val_digest
        return out


CODE_MODULES = ("config.py", "data.py", "lora.py", "run.py")
"""The modules whose code decides what a run trains (the registry, scan and plot beside
them do not)."""


def code_digest() -> str:
    """A digest of the training code (:data:`CODE_MODULES` of ``demoai/train``): a run
    trained by other code records another digest."""
    h = hashlib.blake2b(digest_size=32)
    for p in (Path(__file__).parent / n for n in CODE_MODULES):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return "blake2b:" + h.hexdigest()


def load_config(repo: Repository, path: str, rev: str | None = None) -> tuple[TrainConfig, str]:
    """The TrainConfig at ``path`` (working tree first, like ``agent run``; ``rev``: the one
    committed there) and its normalized path."""
    norm = normalize_path(path)
    if not norm.endswith((".train.yaml", ".train.yml")):
        raise InvalidArtifact(f"{norm}: a training config is a *.train.yaml file", path=norm)
    art, _ = load_text_artifact(repo, norm, rev, TrainConfig)
    return art, norm


def _dataset(repo: Repository, path: str, rev: str, what: str) -> Dataset:
    norm = normalize_path(path)
    try:
        art = repo.artifact_at(rev, norm)
    except (PathNotFound, RefNotFound):
        where = "in the working tree but not committed" if repo.workpath(norm).exists() else \
            f"not committed at {rev}"
        raise PathNotFound(f"{what} {norm} is {where}: `demoai add {norm} && demoai commit -m data` "
                           "first (a run pins its data by digest)", path=norm) from None
    if not isinstance(art, Dataset):
        raise InvalidArtifact(f"{what} {norm} is a {art.kind}, not a dataset", path=norm)
    return art


def _needed_columns(meta: dict[str, Any]) -> list[str]:
    cols = list(meta["columns"].values())
    return list(dict.fromkeys(cols + list(meta.get("variables") or [])))


def _check_columns(ds: Dataset, meta: dict[str, Any], what: str) -> None:
    missing = [c for c in _needed_columns(meta) if c not in ds.columns]
    if missing:
        raise InvalidArtifact(f"{what}: column {missing[0]!r} is not in the dataset (its columns: "
                              f"{', '.join(ds.columns)})", column=missing[0], columns=ds.columns)


def resolve_base(repo: Repository, ref: str, rev: str) -> BaseModel:
    """The base model as local weights: the embedded SmolLM2 GGUF or a Model committed at
    ``rev`` (anything else, an adapter or a dataset, is refused)."""
    try:
        spec = resolve_model(repo, ref, rev, {"name": "transformers"})
    except InvalidArtifact as e:
        raise InvalidArtifact(f"base {ref!r}: {e.message}; the base must be a model (a GGUF, "
                              "safetensors or transformers folder) or smollm2", path=ref) from None
    path = Path(spec["path"])
    gguf = spec.get("gguf_file")
    if path.is_file():
        path, gguf = path.parent, path.name
    if ref in BUILTIN_MODELS:
        ref = "smollm2"
    return BaseModel(ref, str(path), spec["digest"], gguf)


def _split(rows: list[dict[str, Any]], share: float, seed: int) -> tuple[list[dict], list[dict]]:
    import random
    n_val = int(round(len(rows) * share))
    if share and n_val == 0:
        raise InvalidArtifact(f"validation share {share:g} of {len(rows)} rows holds out no row: "
                              "the dataset is too small for it", rows=len(rows))
    if n_val >= len(rows):
        raise InvalidArtifact(f"validation share {share:g} of {len(rows)} rows leaves no row to "
                              "train on", rows=len(rows))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_val])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


def plan_training(repo: Repository, config_path: str, *, rev: str | None = None,
                  config: TrainConfig | None = None, base_rev: str = "HEAD") -> TrainPlan:
    """Resolve and check ``config_path`` (or ``config``, when given): base and datasets
    committed at ``base_rev``, columns present, validation split possible."""
    if config is None:
        config, norm = load_config(repo, config_path, rev)
    else:
        norm = normalize_path(config_path)
    meta = config.meta
    base_commit = repo.resolve(base_rev)
    ds = _dataset(repo, meta["dataset"], base_commit, "dataset")
    _check_columns(ds, meta, f"{norm}: dataset {meta['dataset']}")
    rows = load_table(repo, ds, columns=_needed_columns(meta)).to_pylist()
    if not rows:
        raise InvalidArtifact(f"{norm}: dataset {meta['dataset']} has no rows", path=meta["dataset"])
    val = meta["validation"]
    val_digest = None
    if val["dataset"]:
        vds = _dataset(repo, val["dataset"], base_commit, "validation dataset")
        _check_columns(vds, meta, f"{norm}: validation dataset {val['dataset']}")
        val_rows = load_table(repo, vds, columns=_needed_columns(meta)).to_pylist()
        if not val_rows:
            raise InvalidArtifact(f"{norm}: validation dataset {val['dataset']} has no rows")
        train_rows, val_digest = rows, vds.digest
    else:
        train_rows, val_rows = _split(rows, val["share"], meta["seed"])
    base = resolve_base(repo, meta["base"], base_commit)
    return TrainPlan(config, norm, base, ds.digest, train_rows, val_rows, val_digest,
                     base_commit, code_digest())
