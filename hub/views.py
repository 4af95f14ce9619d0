"""Read-side views of a hub repository, shared by the JSON API (hub/api.py) and the web
pages (hub/pages.py): plain JSON-ready dicts built from store and porcelain calls, so the
two faces always show the same thing.

Every function takes an open :class:`Repository` (see :func:`open_repo`) and user input
as strings; bad input raises the typed errors (``RefNotFound``, ``PathNotFound``,
``SessionNotFound``), which the faces turn into 404s. Dataset previews read only the first
rows of a table (a Lance scan with a limit), never the whole table.
"""
from __future__ import annotations

import contextlib
import math
import re
from typing import TYPE_CHECKING, Any, Iterator

from demoai.errors import (DemoAIError, InvalidArtifact, PathNotFound, RefNotFound,
                           SessionNotFound)
from demoai.objects import (Adapter, Agent, Artifact, Dataset, EvalResult, Model, Prompt,
                            Session, decode_manifest)
from demoai.objects.textspec import PLACEHOLDER, parse_yaml
from demoai.porcelain.diff import diff, diff_artifacts
from demoai.porcelain.log import decorations
from demoai.runtime.inspect import event_summary
from demoai.store.sessions.log import SESSION_REF, list_sessions, open_session, read_workspace
from demoai.store.git.repo import CommitInfo, Repository, normalize_path
from demoai.store.tables.io import jsonable

if TYPE_CHECKING:
    from demoai.hub.app import Hub, Principal
    from demoai.hub.meta import RepoInfo

__all__ = ["open_repo", "clean", "default_branch", "resolve_ref", "repo_detail", "history",
           "commit_detail", "tree", "artifact_detail", "split_ref_path", "sessions", "session_timeline",
           "search", "PREVIEW_ROWS"]

PREVIEW_ROWS = 20          # dataset rows an artifact page shows
MAX_EVENTS = 2000          # events one timeline answer carries
_LINEAGE_WALK = 2000       # first-parent commits searched for the last change of a path
_MAX_REF = 256
_CTRL = re.compile(r"[\x00-\x1f\x7f]")
# What reading malformed pushed content (a hand-made session, a damaged table reference)
# raises besides typed errors: reported as an unreadable item, not as a server error.
_BAD_DATA = (DemoAIError, KeyError, ValueError, TypeError, AttributeError)


@contextlib.contextmanager
def open_repo(hub: "Hub", owner: str, name: str, who: "Principal") -> Iterator[tuple["RepoInfo", Repository]]:
    """The repository ``owner/name`` if ``who`` may read it (typed 404 otherwise); closed
    on exit."""
    info = hub.access(owner, name, who)
    repo = hub.storage.open(owner, name)
    try:
        yield info, repo
    finally:
        repo.close()


def clean(v: Any) -> Any:
    """A JSON-safe copy: bytes as base64, dates as ISO text, NaN and infinities as None
    (strict JSON has no NaN, and a dataset cell may hold one)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    return jsonable(v)


def _check_input(value: str, what: str) -> str:
    # Refs and names reach dulwich as file names: refuse what can only be an attack or a
    # typo before it turns into an OS error (name too long, NUL byte).
    if (not value or len(value) > _MAX_REF or _CTRL.search(value)
            or (what == "revision" and ("//" in value or value[0] == "/" or value[-1] == "/"))):
        if what == "session":
            raise SessionNotFound(f"no session named {value[:80]!r}", session=value[:80])
        raise RefNotFound(f"unknown {what} {value[:80]!r}", ref=value[:80])
    return value


def default_branch(repo: Repository) -> str | None:
    """The full ref of the branch a visitor sees first: HEAD's branch when it has commits,
    else ``main``, else the first branch by name; None for an empty repository."""
    head = repo.head_ref()
    if head and repo.ref_value(head):
        return head
    branches = repo.branches()
    if "refs/heads/main" in branches:
        return "refs/heads/main"
    return min(branches) if branches else None


def resolve_ref(repo: Repository, ref: str | None) -> tuple[str, str]:
    """(display name, commit id) of a revision; the default branch when ``ref`` is empty."""
    if not ref or (ref == "HEAD" and repo.head_commit() is None):
        # A hub repository's HEAD may name a branch nobody pushed: show the default one.
        full = default_branch(repo)
        if full is None:
            raise RefNotFound("this repository has no commits yet", ref="HEAD")
        return full.removeprefix("refs/heads/"), repo.resolve(full)
    return ref, repo.resolve(_check_input(ref, "revision"))


def _short(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/", "refs/sessions/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def _lineage(repo: Repository, commit: str) -> dict[str, Any]:
    """A commit's lineage record; a pushed record that is not a JSON object is shown as
    such rather than failing the page (the hub stores what clients send)."""
    try:
        rec = repo.lineage(commit)
    except ValueError as e:
        return {"error": f"unreadable lineage record ({e})"}
    return clean(rec) if isinstance(rec, dict) else {"value": clean(rec)}


def commit_summary(ci: CommitInfo, deco: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """A commit for lists: ids, parents, author, time, message, the refs pointing at it."""
    return {"id": ci.id, "short_id": ci.id[:12], "parents": list(ci.parents), "author": ci.author,
            "time": ci.time, "tz": ci.tz, "message": ci.message, "summary": ci.summary,
            "refs": (deco or {}).get(ci.id, [])}


def _session_rows(repo: Repository) -> list[dict[str, Any]]:
    try:
        infos = [s.to_dict() for s in list_sessions(repo)]
    except _BAD_DATA:
        # One malformed session ref must not hide the others: read them one by one.
        infos = []
        for ref in sorted(r for r in repo.refs() if r.startswith(SESSION_REF)):
            name = ref[len(SESSION_REF):]
            try:
                with open_session(repo, name) as log:
                    infos.append(log.info().to_dict())
            except _BAD_DATA as e:
                infos.append({"name": name, "commit": repo.ref_value(ref), "steps": 0,
                              "status": "unreadable", "agent": "", "head": "", "parent": None,
                              "meta": {"error": str(e)}, "updated": 0})
    return clean(infos)


def repo_detail(info: "RepoInfo", repo: Repository) -> dict[str, Any]:
    """Everything the repository page shows above its history: branches, tags, sessions,
    HEAD and the default branch."""
    default = default_branch(repo)
    branches = [{"name": _short(r), "ref": r, "commit": c, "default": r == default}
                for r, c in sorted(repo.branches().items())]
    tags = [{"name": _short(r), "ref": r, "commit": c} for r, c in sorted(repo.tags().items())]
    return {**info.to_dict(), "head": repo.head_ref(),
            "default_branch": _short(default) if default else None,
            "head_commit": repo.ref_value(default) if default else None,
            "branches": branches, "tags": tags, "sessions": _session_rows(repo)}


def history(repo: Repository, ref: str | None, limit: int = 50) -> dict[str, Any]:
    """Commits reachable from ``ref`` (default branch), newest first, at most ``limit``."""
    name, cid = resolve_ref(repo, ref)
    deco = decorations(repo)
    commits = [commit_summary(ci, deco) for ci in repo.walk(cid, limit + 1)]
    return {"ref": name, "commit": cid, "commits": commits[:limit], "truncated": len(commits) > limit}


def commit_detail(repo: Repository, rev: str, sample: int = 5) -> dict[str, Any]:
    """A commit with its lineage and the typed diff against its first parent (against
    nothing for a root commit)."""
    cid = repo.resolve(_check_input(rev, "commit"))
    ci = repo.commit_info(cid)
    parent = ci.parents[0] if ci.parents else None
    if parent is not None:
        changes = diff(repo, parent, cid, sample=sample)
    else:
        changes = [diff_artifacts(repo, p, None, a, sample=sample)
                   for p, a in sorted(repo.artifacts(cid).items())]
    return {"commit": commit_summary(ci, decorations(repo)), "parent": parent,
            "lineage": _lineage(repo, cid), "changes": clean(changes)}


def _entry(path: str, raw: bytes) -> dict[str, Any]:
    try:
        art = decode_manifest(raw, path)
    except DemoAIError as e:   # a kind from a newer DemoAI, or a damaged manifest
        return {"path": path, "kind": "unknown", "summary": str(e), "digest": None, "size": 0}
    return {"path": path, "kind": art.kind, "summary": art.summary(), "digest": art.digest,
            "size": art.size}


def tree(repo: Repository, ref: str | None) -> dict[str, Any]:
    """The artifacts at ``ref``: path, kind, one-line summary, digest, size."""
    name, cid = resolve_ref(repo, ref)
    entries = [_entry(p, b) for p, b in sorted(repo.tree_entries(cid).items())]
    return {"ref": name, "commit": cid, "entries": entries}


def _blob_at(repo: Repository, commit: str, path: str) -> bytes | None:
    tree_id = repo.git[commit.encode()].tree
    try:
        return repo.git[tree_id].lookup_path(repo.git.__getitem__, path.encode())[1]
    except KeyError:
        return None


def last_change(repo: Repository, commit: str, path: str) -> dict[str, Any] | None:
    """The commit (first-parent history) that last changed ``path``, with its lineage."""
    c = commit
    blob = _blob_at(repo, c, path)
    for _ in range(_LINEAGE_WALK):
        parents = repo.commit_info(c).parents
        if not parents or _blob_at(repo, parents[0], path) != blob:
            break
        c = parents[0]
    else:
        return None
    return {"commit": commit_summary(repo.commit_info(c)), "lineage": _lineage(repo, c)}


def _preview(repo: Repository, ds: Dataset, rows: int) -> list[dict[str, Any]]:
    """The first ``rows`` rows, scanned with a limit (the files are hash-verified first)."""
    from demoai.store.tables.store import TableRef
    if rows <= 0 or ds.rows == 0:
        return []
    ref = TableRef.from_dict(ds.table)
    try:
        names = ref.arrow_schema().names
    except (ValueError, TypeError, KeyError) as e:   # the manifest's schema is not Arrow IPC
        raise InvalidArtifact(f"dataset table {ref.table_id}: unreadable schema ({e})") from None
    table = repo.tables.scanner_dataset(ref).to_table(columns=names, limit=rows)
    return clean(table.to_pylist())


def _example(repo: Repository, commit: str, prompt: Prompt) -> tuple[str, dict | None]:
    """The prompt rendered with the first row of a dataset in the same commit that has
    every variable as a column, else with ``<variable>`` placeholders."""
    variables = prompt.meta["variables"]
    if variables:
        for path, raw in sorted(repo.tree_entries(commit).items()):
            if b'"dataset"' not in raw:
                continue
            art = decode_manifest(raw, path)
            if isinstance(art, Dataset) and art.rows and set(variables) <= set(art.columns):
                row = _preview(repo, art, 1)[0]
                return prompt.render(**{v: row[v] for v in variables}), {"path": path, "row": 0}
    return PLACEHOLDER.sub(lambda m: f"<{m.group(1)}>", prompt.meta["template"]), None


def _related_sessions(repo: Repository, commit: str, path: str, art: Artifact) -> list[dict[str, Any]]:
    """Sessions run with this agent, or with an agent (in the same commit) using this prompt."""
    if isinstance(art, Agent):
        digests, paths = {art.digest}, {path}
    else:
        digests, paths = set(), set()
        for p, raw in repo.tree_entries(commit).items():
            if b'"agent"' in raw:
                a = decode_manifest(raw, p)
                if isinstance(a, Agent) and a.meta.get("prompt") == path:
                    digests.add(a.digest)
                    paths.add(p)
    if not digests:
        return []
    return [s for s in _session_rows(repo)
            if s.get("agent") in digests or (s.get("meta") or {}).get("agent") in paths]


def artifact_detail(repo: Repository, ref: str | None, path: str, rows: int = PREVIEW_ROWS) -> dict[str, Any]:
    """One artifact at ``ref``, typed: a prompt's template, variables, rendered example and
    parameters; an agent's YAML fields; a dataset's schema and first rows; a model's or
    adapter's files. Always: the commit that last changed it and that commit's lineage."""
    name, cid = resolve_ref(repo, ref)
    path = normalize_path(_check_input(path, "path"))
    raw = repo.tree_entries(cid).get(path)
    if raw is None:
        raise PathNotFound(f"{path} is not in {name}", path=path, ref=name)
    art = decode_manifest(raw, path)
    out: dict[str, Any] = {"path": path, "ref": name, "commit": cid, "kind": art.kind,
                           "digest": art.digest, "summary": art.summary(), "size": art.size,
                           "last_change": last_change(repo, cid, path)}
    if isinstance(art, Prompt):
        m = art.meta
        example, source = _example(repo, cid, art)
        out["prompt"] = {"name": m.get("name"), "template": m["template"], "system": m.get("system"),
                         "variables": m["variables"], "model": m.get("model"),
                         "parameters": m.get("parameters") or {}, "rendered_example": example,
                         "example_source": source, "text": art.text}
    elif isinstance(art, Agent):
        out["agent"] = {"fields": parse_yaml(art.text, path), "text": art.text,
                        "tools": art.meta["tools"], "model": art.meta["model"]}
    elif isinstance(art, Dataset):
        out["dataset"] = {"rows": art.rows, "columns": art.schema.get("fields", []), "key": art.key,
                          "format": art.format, "preview": _preview(repo, art, max(0, min(rows, 500)))}
    elif isinstance(art, (Model, Adapter)):
        out["files"] = [{"path": p, "size": f["size"], "digest": f["digest"], "chunks": len(f["chunks"])}
                        for p, f in sorted(art.files.items())]
        out["format"] = art.format
        if isinstance(art, Adapter):
            out["config"] = art.config
    elif isinstance(art, EvalResult):
        out["eval"] = {"metrics": art.metrics, "params": art.params, "model": art.model,
                       "dataset": art.dataset, "adapter": art.adapter, "suite": art.suite}
    elif isinstance(art, Session):
        out["session"] = {"steps": art.steps, "status": art.status, "agent": art.agent,
                          "parent": art.parent}
    if isinstance(art, (Prompt, Agent)):
        out["sessions"] = _related_sessions(repo, cid, path, art)
    return clean(out)


def split_ref_path(repo: Repository, rest: str) -> tuple[str, str]:
    """``REF/PATH`` (as in a blob URL, where a branch name may hold slashes) -> (REF, PATH):
    the shortest prefix that names a revision holding the rest as an artifact path."""
    segs = [s for s in rest.split("/") if s]
    first: DemoAIError | None = None
    for i in range(1, len(segs)):
        ref, path = "/".join(segs[:i]), "/".join(segs[i:])
        try:
            _, cid = resolve_ref(repo, ref)
            if normalize_path(path) in repo.tree_entries(cid):
                return ref, path
            raise PathNotFound(f"{path} is not in {ref}", path=path, ref=ref)
        except (RefNotFound, PathNotFound) as e:
            first = first or e
    raise first or PathNotFound(f"no artifact at {rest!r} (use REF/PATH)", path=rest)


def sessions(repo: Repository) -> list[dict[str, Any]]:
    """Every session: name, status, steps, agent, where it was forked from."""
    return _session_rows(repo)


def session_timeline(repo: Repository, name: str, limit: int = MAX_EVENTS) -> dict[str, Any]:
    """A session's steps (commit, events with one-line summaries), the workspace after the
    last step, and the sessions forked from it."""
    _check_input(name, "session")
    try:
        with open_session(repo, name) as log:
            info = log.info()
            events = log.events()
            steps: list[dict[str, Any]] = []
            for e in events[:limit]:
                step = _int(e.body.get("step"), 0, log.steps)
                if not steps or steps[-1]["step"] != step:
                    steps.append({"step": step, "commit": log.step_commit(step), "events": []})
                t = e.body.get("t")
                steps[-1]["events"].append({"id": "blake3:" + e.id, "type": str(e.type),
                                            "t": t if isinstance(t, (int, float)) else None,
                                            "summary": event_summary(e)})
            workspace = read_workspace(repo, log.tip)
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        if isinstance(e, DemoAIError):
            raise
        raise InvalidArtifact(f"session {name!r} is malformed ({type(e).__name__}: {e})",
                              session=name) from None
    forks = [s["name"] for s in _session_rows(repo) if (s.get("parent") or {}).get("session") == name]
    return clean({"session": info.to_dict(), "events": len(events), "truncated": len(events) > limit,
                  "steps": steps, "workspace": [{"path": p, "size": len(b)} for p, b in sorted(workspace.items())],
                  "forks": forks, "agent_source": _agent_source(repo, events[0].body if events else {})})


def _int(v: Any, lo: int, hi: int) -> int:
    try:
        return min(max(int(v), lo), hi)
    except (TypeError, ValueError, OverflowError):
        return lo


def _agent_source(repo: Repository, start: dict[str, Any]) -> dict[str, str] | None:
    """Where the agent definition of a run was read from (path and commit, as its
    ``run_start`` event pins it), when that commit is on the hub."""
    agent = start.get("agent") if start.get("type") == "run_start" else None
    if not isinstance(agent, dict):
        return None
    path, commit = agent.get("path"), agent.get("commit")
    if isinstance(path, str) and isinstance(commit, str) and re.fullmatch(r"[0-9a-f]{40}", commit) \
            and commit.encode() in repo.git.object_store:
        return {"path": path, "commit": commit}
    return None


def search(hub: "Hub", who: "Principal", query: str, limit: int = 50) -> list[dict[str, Any]]:
    """Full-text matches in the prompts and agents of repositories ``who`` may read."""
    limit = max(1, min(limit, 200))
    seen: dict[tuple[str, str], bool] = {}
    out = []
    # Ask for more than needed: hits in repositories the caller cannot read are dropped.
    for hit in hub.meta.search(query, limit * 4):
        key = (hit["owner"], hit["name"])
        if key not in seen:
            info = hub.meta.get_repo(*key)
            seen[key] = info is not None and hub.can_read(info, who)
        if seen[key]:
            out.append(clean(hit))
            if len(out) >= limit:
                break
    return out
