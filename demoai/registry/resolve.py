"""Resolve what a run needs into pinned, local things: the Agent at a revision, its
system prompt (inline or a Prompt reference), and its model as a backend spec whose weights
are verified bytes on local disk, with the digest recorded."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from demoai.errors import InvalidArtifact, PathNotFound, RefNotFound
from demoai.objects import Adapter, Agent, Model, Prompt
from demoai.store.fsutil import atomic_write
from demoai.store.git.repo import Repository, normalize_path

__all__ = ["load_agent", "load_text_artifact", "system_prompt", "resolve_model", "check_model_ref",
           "split_model_id", "resolve_model_id", "BUILTIN_MODELS", "builtin_digest", "local_copy"]

BUILTIN_MODELS = ("smollm2", "builtin:smollm2")


def load_text_artifact(repo: Repository, path: str, rev: str | None = "HEAD",
                       cls: type = Agent) -> tuple[Any, dict]:
    """An Agent or Prompt and where it came from: (artifact, source).

    ``rev`` None reads the file in the working tree, committed or not, as ``git`` and
    ``dvc repro`` run what is on disk (the source names the commit too when the file is the
    one committed at HEAD); without such a file, the one committed at HEAD. A ``rev`` reads
    the file committed there, else the working-tree file. The digest pins it either way."""
    norm = normalize_path(path)
    if rev is None:
        f = repo.workpath(norm)
        if f.is_file():
            art = cls.from_text(f.read_text(encoding="utf-8"), norm)
            try:
                head = repo.artifact_at("HEAD", norm)
                if head.digest == art.digest:
                    return head, {"path": norm, "rev": "HEAD", "commit": repo.resolve("HEAD")}
            except (PathNotFound, RefNotFound):
                pass
            return art, {"path": norm, "rev": None, "commit": None, "worktree": True}
        rev = "HEAD"
    try:
        art = repo.artifact_at(rev, norm)
        if not isinstance(art, cls):
            raise InvalidArtifact(f"{norm} at {rev} is a {art.kind}, not a{'n' if cls is Agent else ''} "
                                  f"{cls.kind}", path=norm)
        return art, {"path": norm, "rev": rev, "commit": repo.resolve(rev)}
    except (PathNotFound, RefNotFound):
        f = repo.workpath(norm)
        if not f.is_file():
            raise PathNotFound(f"no {cls.kind} at {norm} (neither committed at {rev} nor in the "
                               "working tree)", path=norm) from None
        art = cls.from_text(f.read_text(encoding="utf-8"), norm)
        return art, {"path": norm, "rev": None, "commit": None, "worktree": True}


def load_agent(repo: Repository, path: str, rev: str | None = "HEAD") -> tuple[Agent, dict]:
    """The Agent at ``path`` and its source (see :func:`load_text_artifact` for ``rev``)."""
    return load_text_artifact(repo, path, rev, Agent)


def system_prompt(repo: Repository, agent: Agent, rev: str | None = "HEAD",
                  prompt_ref: str | None = None) -> tuple[str, dict | None]:
    """The system text: a Prompt reference (its ``system`` plus template text) or the
    agent's inline ``system``. Returns (text, pin of the prompt or None)."""
    ref = prompt_ref or agent.meta.get("prompt")
    if ref:
        p, src = load_text_artifact(repo, ref, rev, Prompt)
        parts = [p.meta.get("system") or "", p.meta.get("template") or ""]
        return "\n".join(x.strip() for x in parts if x and x.strip()), {"digest": p.digest, **src}
    return agent.meta.get("system") or "", None


def _cache(repo: Repository) -> Path:
    d = repo.control / "cache"
    d.mkdir(exist_ok=True)
    return d


def builtin_digest(repo: Repository) -> tuple[Path, str]:
    """The embedded SmolLM2 GGUF and its digest, hashed once per file version."""
    from demoai.registry.defaults import default_gguf_path
    path = default_gguf_path()
    st = path.stat()
    key = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    memo = _cache(repo) / "builtin-models.json"
    try:
        saved = json.loads(memo.read_text())
        if {k: saved.get(k) for k in key} == key:
            return path, saved["digest"]
    except (OSError, ValueError, KeyError):
        pass
    from demoai.store.blobs.chunks import compute_manifest
    digest = compute_manifest(path).digest      # the same id `demoai add` gives the file
    atomic_write(memo, json.dumps({**key, "digest": digest}).encode(), durable=False)
    return path, digest


def local_copy(repo: Repository, art: Model | Adapter) -> Path:
    """Verified local bytes of a stored model/adapter: the embedded file when it is the same
    content, otherwise a copy materialized once under ``.demoai/cache/models/<digest>``: the
    file for a single-file GGUF or safetensors model, else the folder ``files``."""
    if art.format == "gguf" and len(art.files) == 1:
        try:
            path, digest = builtin_digest(repo)
            if digest == art.digest:
                return path
        except PathNotFound:
            pass
    from demoai.store.kinds import materialize
    hexd = art.digest.removeprefix("blake3:")
    out = _cache(repo) / "models" / hexd
    single = len(art.files) == 1 and art.format in ("gguf", "safetensors")
    target = out / next(iter(art.files)) if single else out / "files"
    if not target.exists():
        out.mkdir(parents=True, exist_ok=True)
        materialize(repo, art, target)
    return target


def _model_at(repo: Repository, ref: str, rev: str) -> Model:
    """The Model committed at ``ref`` in ``rev``; a PathNotFound that says what to do when
    there is none (commit the file, use the embedded model, or override the model)."""
    norm = normalize_path(ref)
    try:
        art = repo.artifact_at(rev, norm)
    except (PathNotFound, RefNotFound):
        if repo.workpath(norm).exists():
            where = f"model {norm} is in the working tree but not committed"
        elif repo.head_commit() is None:
            where = f"model {norm} is not committed (the repository has no commits yet)"
        else:
            where = f"model {norm} is not committed at {rev}"
        raise PathNotFound(f"{where}: commit a GGUF file there with `demoai add {norm} && demoai commit "
                           "-m model`, or use the embedded SmolLM2 (`model: smollm2` in the agent, or "
                           "`--model smollm2`)", path=norm) from None
    if not isinstance(art, Model):
        raise InvalidArtifact(f"{norm} is a {art.kind}, not a model", path=norm)
    return art


def resolve_model(repo: Repository, ref: str, rev: str | None = "HEAD", backend: dict | None = None,
                  adapter: str | None = None) -> dict[str, Any]:
    """A backend spec for ``open_backend``: ``ref`` is ``smollm2`` (the embedded default),
    a Model path committed at ``rev`` (None: HEAD), or ``openai:NAME`` for an
    OpenAI-compatible endpoint (``backend.base_url``)."""
    rev = rev or "HEAD"
    settings = dict(backend or {})
    name = settings.pop("name", None)
    if ref.startswith("openai:"):
        return {"backend": "openai", "model": ref[len("openai:"):], "digest": None, **settings}
    if ref in BUILTIN_MODELS:
        path, digest = builtin_digest(repo)
        spec = {"backend": name or "llamacpp", "path": str(path), "digest": digest,
                "source": {"builtin": "smollm2"}}
    else:
        art = _model_at(repo, ref, rev)
        norm = normalize_path(ref)
        path = local_copy(repo, art)
        default = "llamacpp" if art.format == "gguf" else "transformers"
        spec = {"backend": name or default, "path": str(path), "digest": art.digest,
                "source": {"path": norm, "rev": rev}}
        if art.format == "gguf" and spec["backend"] == "transformers":
            spec["path"], spec["gguf_file"] = str(path.parent), path.name
    if adapter:
        ad = repo.artifact_at(rev, normalize_path(adapter))
        if not isinstance(ad, Adapter):
            raise InvalidArtifact(f"{adapter} is not an adapter", path=adapter)
        spec["adapter_path"] = str(local_copy(repo, ad))
        spec["adapter_digest"] = ad.digest
        spec["backend"] = "transformers"
    if os.environ.get("DEMOAI_LLM_THREADS") and "threads" not in settings:
        settings["threads"] = int(os.environ["DEMOAI_LLM_THREADS"])
    spec.update(settings)
    return spec


def check_model_ref(repo: Repository, ref: str | None, rev: str | None = "HEAD") -> None:
    """Refuse a model reference that names no model at ``rev`` (cheap: nothing is read
    but the tree; the weights are materialized only when a run resolves it)."""
    if ref is None or ref in BUILTIN_MODELS or ref.startswith("openai:"):
        return
    _model_at(repo, ref, rev or "HEAD")


def split_model_id(model_id: str) -> tuple[str, str | None]:
    """``MODEL+ADAPTER`` -> (MODEL, ADAPTER); ``MODEL`` -> (MODEL, None)."""
    base, plus, adapter = model_id.partition("+")
    if plus and not (base and adapter):
        raise InvalidArtifact(f"model id {model_id!r}: expected MODEL+ADAPTER_PATH", model=model_id)
    return base, adapter or None


def resolve_model_id(repo: Repository, model_id: str) -> dict[str, Any]:
    """The backend spec a served model id (``smollm2``, ``models/x.gguf``,
    ``MODEL+ADAPTER_PATH``) names at HEAD: only the repository's own models, never a
    remote endpoint."""
    base, adapter = split_model_id(model_id)
    if base.startswith("openai:"):
        raise InvalidArtifact(f"model {model_id!r}: this server serves the repository's models "
                              "(see GET /v1/models), not remote ones", model=model_id)
    return resolve_model(repo, base, "HEAD", None, adapter)
