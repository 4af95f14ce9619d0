"""What uses a model or adapter (``demoai model show``'s "used by"): agents whose model names
it, aliases, adapters built on it, evaluations, training configs and deployments. Each
section is a collector registered with :func:`register_used_by`, so a new artifact kind (the
deployment packages) plugs in its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from demoai.errors import PathNotFound
from demoai.objects import Adapter, Agent, Model, TrainConfig
from demoai.store.git.repo import Repository, normalize_path
from demoai.store.kinds import artifacts_using
from demoai.train.registry import evals_for, list_aliases

__all__ = ["UsageContext", "used_by", "register_used_by", "USED_BY_SECTIONS"]


@dataclass
class UsageContext:
    """What a "used by" collector looks at: the model/adapter (``path``, ``art``) at
    ``commit``, every artifact there (``arts``), the aliases (:func:`list_aliases`) and the
    names that refer to it (its path, the aliases naming it, ``smollm2`` for the embedded
    model's bytes)."""

    repo: Repository
    path: str
    art: Model | Adapter
    commit: str
    arts: dict[str, Any]
    aliases: dict[str, dict[str, Any]]
    names: set[str]


UsedByCollector = Callable[[UsageContext], list[dict[str, Any]]]
_COLLECTORS: dict[str, UsedByCollector] = {}
USED_BY_SECTIONS = ("agents", "aliases", "adapters", "evaluations", "train_configs", "deployments")
"""The sections of :func:`used_by`, in order; ``deployments`` is always present (empty: "no
deployments"). A kind that deploys models adds itself with :func:`register_used_by`, or
simply names the model in its manifest and declares it in its handler's ``uses()``."""


def register_used_by(section: str) -> Callable[[UsedByCollector], UsedByCollector]:
    """Decorator: ``fn(ctx) -> [{"path": ..., ...}]`` lists what in ``section`` uses the
    model; a later registration of a section replaces the earlier one (a deployment package
    can take over ``deployments``)."""
    def deco(fn: UsedByCollector) -> UsedByCollector:
        _COLLECTORS[section] = fn
        return fn
    return deco


def _names(repo: Repository, path: str, art: Model | Adapter, aliases: dict[str, dict]) -> set[str]:
    names = {path} | {a for a, r in aliases.items() if r.get("path") == path}
    if isinstance(art, Model) and art.format == "gguf":
        try:
            from demoai.registry.defaults import default_gguf_path
            from demoai.registry.resolve import BUILTIN_MODELS, builtin_digest
            # the size first: only a file as large as the embedded one is hashed (once)
            if default_gguf_path().stat().st_size == art.size and builtin_digest(repo)[1] == art.digest:
                names |= set(BUILTIN_MODELS)
        except (PathNotFound, OSError):
            pass
    return names


def _norm(ref: Any) -> str | None:
    if not isinstance(ref, str) or not ref:
        return None
    try:
        return normalize_path(ref)
    except Exception:  # noqa: BLE001 (a name that is no path: compare it as it is)
        return ref


def _refers(ref: Any, names: set[str]) -> bool:
    return isinstance(ref, str) and (ref in names or _norm(ref) in names)


@register_used_by("agents")
def _agents(ctx: UsageContext) -> list[dict[str, Any]]:
    field_ = "adapter" if isinstance(ctx.art, Adapter) else "model"
    return [{"path": p, "field": field_, "names": a.meta.get(field_)} for p, a in sorted(ctx.arts.items())
            if isinstance(a, Agent) and _refers(a.meta.get(field_), ctx.names)]


@register_used_by("aliases")
def _aliases(ctx: UsageContext) -> list[dict[str, Any]]:
    return [{"alias": name, "path": rec["path"], "digest": rec.get("digest"), "commit": rec.get("commit"),
             "current": rec.get("digest") == ctx.art.digest}
            for name, rec in sorted(ctx.aliases.items()) if rec.get("path") == ctx.path]


@register_used_by("adapters")
def _adapters(ctx: UsageContext) -> list[dict[str, Any]]:
    if not isinstance(ctx.art, Model):
        return []
    return [{"path": p, "digest": a.digest, "base": a.config.get("base_model_name_or_path")}
            for p, a in sorted(ctx.arts.items())
            if isinstance(a, Adapter) and _refers(a.config.get("base_model_name_or_path"), ctx.names)]


@register_used_by("evaluations")
def _evaluations(ctx: UsageContext) -> list[dict[str, Any]]:
    return evals_for(ctx.arts, ctx.art.digest)


@register_used_by("train_configs")
def _train_configs(ctx: UsageContext) -> list[dict[str, Any]]:
    if not isinstance(ctx.art, Model):
        return []
    return [{"path": p, "base": a.meta.get("base")} for p, a in sorted(ctx.arts.items())
            if isinstance(a, TrainConfig) and _refers(a.meta.get("base"), ctx.names)]


@register_used_by("deployments")
def _deployments(ctx: UsageContext) -> list[dict[str, Any]]:
    # Until a deployment kind registers its own collector: any artifact of a kind named
    # "deployment" whose handler says it uses this path.
    return [{"path": p, "kind": a.kind} for p, a in artifacts_using(ctx.repo, ctx.commit, ctx.path)
            if a.kind == "deployment"]


def used_by(repo: Repository, path: str, art: Model | Adapter, commit: str, *,
            arts: dict[str, Any] | None = None,
            aliases: dict[str, dict[str, Any]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """What uses the model/adapter at ``path`` in ``commit``: section -> entries, for every
    registered section (:data:`USED_BY_SECTIONS` first): agents whose ``model`` (or
    ``adapter``) names it, aliases pointing at the path, adapters built on it, evaluations
    of it, training configs whose base it is, and deployments."""
    arts = repo.artifacts(commit) if arts is None else arts
    aliases = list_aliases(repo) if aliases is None else aliases
    ctx = UsageContext(repo, path, art, commit, arts, aliases, _names(repo, path, art, aliases))
    order = list(USED_BY_SECTIONS) + sorted(set(_COLLECTORS) - set(USED_BY_SECTIONS))
    return {s: _COLLECTORS[s](ctx) for s in order if s in _COLLECTORS}
