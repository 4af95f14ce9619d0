"""The model registry: a view over commits, refs and artifact manifests, not a second database.

A registered model is a Model or Adapter committed at a path of the tree. What ``model
list``/``show`` print is read from the commit at a revision: the manifest (format, files,
size), the weights' own header (GGUF metadata or ``config.json`` / safetensors headers,
cached by digest under ``.demoai/cache/model-meta``), the lineage of the commit that added
the artifact (for an adapter: the training run, dataset and config it names) and the
EvalResults at that revision that pin its digest.

Aliases are refs: ``refs/aliases/<alias>`` points at an alias commit whose lineage records
``{alias, path, digest, commit}`` and whose parents are the previous alias commit (the
audit trail, newest first) and the commit the alias names (kept reachable).
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from demoai.errors import InvalidArtifact, PathNotFound, RefNotFound
from demoai.objects import Adapter, EvalResult, Model
from demoai.store.fsutil import atomic_write
from demoai.store.git.lineage import make_lineage
from demoai.store.git.repo import Repository, normalize_path

__all__ = ["ModelEntry", "ModelInfo", "AliasEvent", "ALIAS_PREFIX", "list_models", "model_info",
           "find_model", "local_path", "weights_meta", "list_aliases", "set_alias",
           "alias_history", "delete_alias", "check_alias_name", "evals_for", "added_in"]

ALIAS_PREFIX = "refs/aliases/"
_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_META_VERSION = 1


@dataclass
class ModelEntry:
    """One row of ``model list``: a Model or Adapter at a revision."""

    path: str
    kind: str
    format: str
    digest: str
    size: int
    files: int
    parameters: int | None = None
    quantization: str | None = None
    architecture: str | None = None
    base_model: str | None = None
    aliases: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


@dataclass
class ModelInfo:
    """``model show``: the entry plus configuration, files, lineage and evaluations."""

    entry: ModelEntry
    rev: str
    commit: str
    meta: dict[str, Any]
    file_list: list[dict[str, Any]]
    lineage: dict[str, Any]
    evals: list[dict[str, Any]]
    used_by: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {**self.entry.to_dict(), "rev": self.rev, "commit": self.commit, "meta": self.meta,
                "file_list": self.file_list, "lineage": self.lineage, "evals": self.evals,
                "used_by": self.used_by}


@dataclass
class AliasEvent:
    """One move of an alias: which model it named, from which commit, when."""

    alias: str
    path: str | None
    digest: str | None
    commit: str | None
    alias_commit: str
    time: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)


# --- reading weights' headers --------------------------------------------------------------
def local_path(repo: Repository, art: Model | Adapter) -> Path:
    """Verified local bytes of a stored model/adapter (see
    :func:`demoai.registry.resolve.local_copy`, whose cache this shares)."""
    from demoai.registry.resolve import local_copy
    return local_copy(repo, art)


def _gguf_meta(path: Path) -> dict[str, Any]:
    import gguf
    r = gguf.GGUFReader(str(path))

    def val(key: str) -> Any:
        f = r.fields.get(key)
        if f is None:
            return None
        try:
            return f.contents()
        except Exception:  # noqa: BLE001 (an odd field type: leave it out)
            return None

    arch = val("general.architecture") or "?"
    config = {k.split(".", 1)[1]: val(k) for k in r.fields if k.startswith(arch + ".")}
    ftype = val("general.file_type")
    try:
        quant = gguf.LlamaFileType(ftype).name.removeprefix("MOSTLY_") if ftype is not None else None
    except ValueError:
        quant = None
    types: dict[str, int] = {}
    for t in r.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    template = val("tokenizer.chat_template")
    tokens = r.fields.get("tokenizer.ggml.tokens")
    return {"architecture": arch, "config": config, "name": val("general.name"),
            "license": val("general.license"), "quantization": quant or _main_type(types),
            "tensor_types": types, "parameters": int(sum(int(t.n_elements) for t in r.tensors)),
            "tokenizer": {"model": val("tokenizer.ggml.model"), "pre": val("tokenizer.ggml.pre"),
                          "vocab_size": len(tokens.data) if tokens is not None else None,
                          "bos_token_id": val("tokenizer.ggml.bos_token_id"),
                          "eos_token_id": val("tokenizer.ggml.eos_token_id")},
            "chat_template_digest": _text_digest(template) if isinstance(template, str) else None}


def _main_type(types: dict[str, int]) -> str | None:
    return max(types, key=lambda k: types[k]) if types else None


def _text_digest(text: str) -> str:
    import blake3
    return "blake3:" + blake3.blake3(text.encode()).hexdigest()


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor name -> dtype, shape, offsets)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n <= 0 or n > 100_000_000:
            raise InvalidArtifact(f"{path.name}: not a safetensors file", path=str(path))
        try:
            return json.loads(f.read(n))
        except ValueError:
            raise InvalidArtifact(f"{path.name}: not a safetensors file", path=str(path)) from None


def _folder_meta(root: Path) -> dict[str, Any]:
    files = [root] if root.is_file() else sorted(root.rglob("*.safetensors"))
    params, types = 0, {}
    for f in files:
        for name, t in safetensors_header(f).items():
            if name == "__metadata__":
                continue
            n = 1
            for d in t["shape"]:
                n *= int(d)
            params += n
            types[t["dtype"]] = types.get(t["dtype"], 0) + 1
    meta: dict[str, Any] = {"parameters": params or None, "tensor_types": types,
                            "quantization": _main_type(types)}
    if root.is_dir():
        for name in ("config.json", "adapter_config.json"):
            p = root / name
            if p.is_file():
                cfg = json.loads(p.read_text())
                meta["config"] = cfg
                archs = cfg.get("architectures") or []
                meta["architecture"] = archs[0] if archs else cfg.get("model_type") or cfg.get("peft_type")
                meta["base_model"] = cfg.get("base_model_name_or_path") or cfg.get("_name_or_path")
                qc = cfg.get("quantization_config")
                if isinstance(qc, dict):
                    meta["quantization"] = qc.get("quant_method") or meta["quantization"]
        tc = root / "tokenizer_config.json"
        if tc.is_file():
            tok = json.loads(tc.read_text())
            template = tok.get("chat_template")
            if not isinstance(template, str) and (root / "chat_template.jinja").is_file():
                template = (root / "chat_template.jinja").read_text()
            meta["tokenizer"] = {"class": tok.get("tokenizer_class"),
                                 "eos_token": tok.get("eos_token"), "pad_token": tok.get("pad_token")}
            meta["chat_template_digest"] = _text_digest(template) if isinstance(template, str) else None
        lic = next((p for p in root.iterdir() if p.name.upper().startswith("LICENSE")), None)
        meta["license"] = lic.name if lic else None
    return meta


def weights_meta(repo: Repository, art: Model | Adapter) -> dict[str, Any]:
    """What the weights say about themselves (architecture, config, parameters,
    quantization, tokenizer, chat template digest, license), cached by digest."""
    cache = repo.control / "cache" / "model-meta" / (art.digest.removeprefix("blake3:") + ".json")
    try:
        saved = json.loads(cache.read_text())
        if saved.get("v") == _META_VERSION:
            return saved["meta"]
    except (OSError, ValueError, KeyError):
        pass
    path = local_path(repo, art)
    try:
        meta = _gguf_meta(path) if art.format == "gguf" else _folder_meta(path)
    except (OSError, ValueError, KeyError) as e:
        raise InvalidArtifact(f"cannot read the weights' header: {e}") from None
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(cache, json.dumps({"v": _META_VERSION, "meta": meta}, default=str).encode(),
                 durable=False)
    return meta


# --- aliases ---------------------------------------------------------------------------------
def check_alias_name(alias: str) -> str:
    """``alias`` when it is a valid alias name (letters, digits, ``._-``, at most 64)."""
    if not _ALIAS_RE.match(alias or ""):
        raise InvalidArtifact(f"bad alias name {alias!r}: letters, digits, '.', '_' or '-', "
                              "at most 64, starting with a letter or digit", alias=alias)
    return alias


def _alias_record(repo: Repository, alias_commit: str) -> dict[str, Any]:
    return (repo.lineage(alias_commit).get("parameters") or {}).get("alias_record") or {}


def list_aliases(repo: Repository) -> dict[str, dict[str, Any]]:
    """alias -> its record ``{path, digest, commit}`` (``alias_commit`` added)."""
    out = {}
    for ref, cid in sorted(repo.refs().items()):
        if ref.startswith(ALIAS_PREFIX):
            rec = _alias_record(repo, cid)
            if rec.get("path"):
                out[ref[len(ALIAS_PREFIX):]] = {**rec, "alias_commit": cid}
    return out


def set_alias(repo: Repository, path: str, alias: str, rev: str = "HEAD") -> AliasEvent:
    """Point ``alias`` at the model/adapter committed at ``path`` in ``rev``; the ref moves
    by compare-and-swap onto a new alias commit (its first parent the previous one)."""
    check_alias_name(alias)
    commit = repo.resolve(rev)
    art = repo.artifact_at(commit, path)
    if not isinstance(art, (Model, Adapter)):
        raise InvalidArtifact(f"{path} is a {art.kind}, not a model or adapter", path=path)
    ref = ALIAS_PREFIX + alias
    old = repo.ref_value(ref)
    record = {"alias": alias, "path": path, "digest": art.digest, "commit": commit}
    lineage = make_lineage(f"demoai model alias {path} {alias}", inputs={path: art.digest},
                           parameters={"alias_record": record})
    tree = repo.write_tree({}, lineage)
    msg = f"alias {alias} -> {path} ({art.digest[:19]}) at {commit[:12]}"
    new = repo.make_commit(tree, [p for p in (old, commit) if p], msg)
    repo.set_ref(ref, new, old, msg)
    info = repo.commit_info(new)
    return AliasEvent(alias, path, art.digest, commit, new, info.time, msg)


def delete_alias(repo: Repository, alias: str) -> str:
    """Remove the alias ref; its history goes with it (the reflog keeps the last moves)."""
    ref = ALIAS_PREFIX + check_alias_name(alias)
    old = repo.ref_value(ref)
    if old is None:
        raise RefNotFound(f"no alias {alias!r}", ref=ref)
    repo.delete_ref(ref, old)
    return old


def alias_history(repo: Repository, alias: str) -> list[AliasEvent]:
    """Every model ``alias`` named, newest first: the chain of alias commits."""
    ref = ALIAS_PREFIX + check_alias_name(alias)
    cid = repo.ref_value(ref)
    if cid is None:
        raise RefNotFound(f"no alias {alias!r} (see `demoai model list`)", ref=ref)
    out = []
    while cid:
        info = repo.commit_info(cid)
        rec = _alias_record(repo, cid)
        out.append(AliasEvent(alias, rec.get("path"), rec.get("digest"), rec.get("commit"), cid,
                              info.time, info.summary))
        prev = info.parents[0] if info.parents else None
        cid = prev if prev and prev != rec.get("commit") and _alias_record(repo, prev) else None
    return out


# --- listing -------------------------------------------------------------------------------
def evals_for(arts: dict[str, Any], digest: str) -> list[dict[str, Any]]:
    """The EvalResults among ``arts`` that pin ``digest`` (as model without adapter, or as
    adapter), with their scores."""
    out = []
    for p, a in sorted(arts.items()):
        if isinstance(a, EvalResult) and (a.adapter == digest or (a.model == digest and a.adapter is None)):
            out.append({"path": p, "suite": a.suite_name, "task": a.task, "scores": a.scores,
                        "digest": a.digest})
    return out


def _best(evals: list[dict[str, Any]]) -> dict[str, float]:
    best: dict[str, float] = {}
    for e in evals:
        for metric, s in e["scores"].items():
            k = f"{e['suite']}/{metric}" if e["suite"] else metric
            best[k] = max(best.get(k, float("-inf")), s["value"])
    return best


def _entry(repo: Repository, path: str, art: Model | Adapter, arts: dict[str, Any],
           aliases: dict[str, dict], commit: str, read_meta: bool = True) -> tuple[ModelEntry, dict]:
    meta: dict[str, Any] = {}
    if read_meta:
        try:
            meta = weights_meta(repo, art)
        except InvalidArtifact:
            meta = {}
    base = (art.config.get("base_model_name_or_path") if isinstance(art, Adapter) else None) or meta.get("base_model")
    if isinstance(art, Model):
        base = None if base in (None, "", path) else base
    names = sorted(a for a, r in aliases.items() if r["path"] == path and r["digest"] == art.digest)
    e = ModelEntry(path=path, kind=art.kind, format=art.format, digest=art.digest, size=art.size,
                   files=len(art.files), parameters=meta.get("parameters"),
                   quantization=meta.get("quantization"), architecture=meta.get("architecture"),
                   base_model=base, aliases=names, scores=_best(evals_for(arts, art.digest)))
    return e, meta


def list_models(repo: Repository, rev: str = "HEAD", *, read_meta: bool = True) -> list[ModelEntry]:
    """Every Model and Adapter committed at ``rev``, with header facts, aliases and best scores."""
    commit = repo.resolve(rev)
    arts = repo.artifacts(commit)
    aliases = list_aliases(repo)
    return [_entry(repo, p, a, arts, aliases, commit, read_meta)[0]
            for p, a in sorted(arts.items()) if isinstance(a, (Model, Adapter))]


def find_model(repo: Repository, name: str, rev: str = "HEAD") -> tuple[str, str, Model | Adapter]:
    """(path, commit, artifact) a name means: an alias (at the commit it names, ``rev``
    ignored), a path at ``rev``, or a unique file/folder name (or stem) at ``rev``."""
    aliases = list_aliases(repo)
    if name in aliases and rev == "HEAD":
        rec = aliases[name]
        return rec["path"], rec["commit"], repo.artifact_at(rec["commit"], rec["path"])
    commit = repo.resolve(rev)
    arts = {p: a for p, a in repo.artifacts(commit).items() if isinstance(a, (Model, Adapter))}
    norm = name.strip("/")
    if norm in arts:
        return norm, commit, arts[norm]
    try:
        norm = normalize_path(name)
    except Exception:  # noqa: BLE001 (not a path: try it as a short name)
        pass
    if norm in arts:
        return norm, commit, arts[norm]
    hits = [p for p in arts if p.rsplit("/", 1)[-1] == name or p.rsplit("/", 1)[-1].split(".")[0] == name]
    if len(hits) == 1:
        return hits[0], commit, arts[hits[0]]
    if len(hits) > 1:
        raise InvalidArtifact(f"{name!r} is ambiguous: {', '.join(sorted(hits))}", name=name)
    raise PathNotFound(f"no model, adapter or alias {name!r} at {rev} (see `demoai model list`)",
                       path=name, ref=rev)


def added_in(repo: Repository, commit: str, path: str) -> str:
    """The oldest commit on the first-parent chain from ``commit`` since which ``path`` has
    held the same manifest."""
    want = repo.entry_id(commit, path)
    added = commit
    cur = commit
    while True:
        parents = repo.commit_info(cur).parents
        if not parents or repo.entry_id(parents[0], path) != want:
            return added
        cur = added = parents[0]


def _describe_inputs(repo: Repository, commit: str, inputs: dict[str, str]) -> dict[str, Any]:
    """Each lineage input with the path that held its digest in ``commit``'s tree (if any)."""
    by_digest: dict[str, str] = {}
    for p, a in repo.artifacts(commit).items():
        by_digest.setdefault(a.digest, p)
    return {k: {"digest": v, "path": by_digest.get(v)} for k, v in inputs.items()}


def model_info(repo: Repository, name: str, rev: str = "HEAD") -> ModelInfo:
    """``model show NAME``: header facts, files, lineage (the commit that added it, its
    command, inputs and parameters: an adapter's training run, dataset and config) and the
    evaluations at ``rev`` that pin its digest."""
    path, commit, art = find_model(repo, name, rev)
    arts = repo.artifacts(commit)
    aliases = list_aliases(repo)
    entry, meta = _entry(repo, path, art, arts, aliases, commit)
    added = added_in(repo, commit, path)
    info = repo.commit_info(added)
    lin = repo.lineage(added)
    lineage = {"commit": added, "message": info.summary, "time": info.time, "author": info.author,
               "command": lin.get("command"),
               "inputs": _describe_inputs(repo, added, {k: v for k, v in (lin.get("inputs") or {}).items()
                                                        if k != path}),
               "parameters": lin.get("parameters") or {}}
    if isinstance(art, Adapter):
        lineage["adapter_config"] = {k: art.config.get(k) for k in
                                     ("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules",
                                      "base_model_name_or_path", "task_type") if k in art.config}
    pulled = (lin.get("parameters") or {}).get("pull")
    if isinstance(pulled, dict):
        lineage["pulled_from"] = pulled
    files = [{"path": p, "size": f["size"], "digest": f["digest"], "chunks": len(f["chunks"])}
             for p, f in sorted(art.files.items())]
    return ModelInfo(entry=entry, rev=rev, commit=commit, meta=meta, file_list=files,
                     lineage=lineage, evals=evals_for(arts, art.digest),
                     used_by=_used_by_now(repo, path, art, commit, rev, arts, aliases))


def _used_by_now(repo: Repository, path: str, art: Model | Adapter, commit: str, rev: str,
                 arts: dict[str, Any], aliases: dict[str, dict]) -> dict[str, list[dict[str, Any]]]:
    """:func:`demoai.train.usage.used_by` at ``rev`` (what uses the model now) when ``path``
    holds the same version there; otherwise (an alias naming an older version) at the commit
    it was read from."""
    from demoai.train.usage import used_by     # usage reads this module's aliases and evals
    try:
        now = repo.resolve(rev)
    except RefNotFound:
        now = commit
    if now != commit:
        other = repo.artifacts(now)
        held = other.get(path)
        if held is not None and held.digest == art.digest:
            return used_by(repo, path, art, now, arts=other, aliases=aliases)
    return used_by(repo, path, art, commit, arts=arts, aliases=aliases)
