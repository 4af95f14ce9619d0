"""Browsing a repository, read-only: what the hub pages, the JSON API, the CLI and the TUI
show, computed once.

Verbs: :func:`tree` (the artifacts at a revision), :func:`history` (commits), :func:`last_change`
(the commit that last changed a path), :func:`commit_detail` (a commit, its lineage and typed
diff), :func:`artifact_detail` (one artifact, by kind), :func:`preview` (rows of a dataset,
read with a limit), :func:`repo_summary` (branches, tags, sessions), :func:`session_list` and
:func:`session_timeline`, and :func:`search_documents` (what a search index holds:
prompts, agents and dataset cards).

Each returns a dataclass whose ``to_dict()`` is JSON-ready (strict JSON: NaN and infinities
become None, bytes base64, dates ISO text). User input arrives as strings; bad input raises
typed errors (``RefNotFound``, ``PathNotFound``, ``SessionNotFound``). Repositories may hold
what others pushed: malformed sessions and lineage records are reported as such, not raised.
What differs by artifact kind comes from the kind's handler (``demoai.store.kinds``).
"""
from __future__ import annotations

import base64
import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from demoai.errors import (DemoAIError, InvalidArtifact, PathNotFound, RefNotFound,
                           SessionNotFound)
from demoai.objects import Artifact, Dataset, decode_manifest
from demoai.porcelain.diff import diff, diff_artifacts
from demoai.porcelain.log import decorations
from demoai.runtime.inspect import event_summary
from demoai.store import CommitInfo, Repository, normalize_path
from demoai.store.kinds import handler_for, handlers
from demoai.store.sessions.log import SESSION_REF, list_sessions, open_session, read_workspace

__all__ = ["clean", "default_branch", "resolve_ref", "split_ref_path", "tree", "history",
           "last_change", "commit_detail", "artifact_detail", "preview", "repo_summary",
           "session_list", "session_timeline", "search_documents", "dataset_card",
           "CommitSummary", "LastChange", "History", "CommitDetail", "TreeEntry", "Tree",
           "ArtifactDetail", "Preview", "BranchInfo", "TagInfo", "RepoSummary", "SessionSummary",
           "TimelineEvent", "TimelineStep", "WorkspaceFile", "Timeline", "SearchDocument",
           "PREVIEW_ROWS", "MAX_PREVIEW_ROWS", "MAX_EVENTS"]

PREVIEW_ROWS = 20          # dataset rows an artifact view shows
MAX_PREVIEW_ROWS = 500     # the most rows one preview reads
MAX_EVENTS = 2000          # events one timeline answer carries
_LINEAGE_WALK = 2000       # first-parent commits searched for the last change of a path
_MAX_REF = 256
_MAX_TEXT = 64 << 10       # a search document's text; a longer prompt is cut, not refused
_CTRL = re.compile(r"[\x00-\x1f\x7f]")
_SHA = re.compile(r"[0-9a-f]{40}")
# What reading malformed pushed content (a hand-made session, a damaged table reference)
# raises besides typed errors: reported as an unreadable item, not as a server error.
_BAD_DATA = (DemoAIError, KeyError, ValueError, TypeError, AttributeError)


def clean(v: Any) -> Any:
    """A JSON-safe copy: bytes as base64, dates as ISO text, NaN and infinities as None
    (strict JSON has no NaN, and a dataset cell may hold one), anything else unknown as
    its text. (Written here rather than borrowed from the table code, so that browsing
    loads no Lance or Arrow until a table is read.)"""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


class _Result:
    """``to_dict()`` for the result dataclasses: the fields, nested results as dicts, made
    JSON-safe once at the top (the dataclasses keep values as read)."""

    def _fields(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        return clean(self._fields())


def _plain(v: Any) -> Any:
    if isinstance(v, _Result):
        return v._fields()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class CommitSummary(_Result):
    """A commit for lists: ids, parents, author, time, message, the refs pointing at it."""

    id: str
    short_id: str
    parents: list[str]
    author: str
    time: int
    tz: int
    message: str
    summary: str
    refs: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, ci: CommitInfo, deco: dict[str, list[str]] | None = None) -> "CommitSummary":
        """The summary of ``ci``, decorated from ``deco`` (commit id -> ref names)."""
        return cls(ci.id, ci.id[:12], list(ci.parents), ci.author, ci.time, ci.tz, ci.message,
                   ci.summary, list((deco or {}).get(ci.id, [])))


@dataclass(frozen=True)
class LastChange(_Result):
    """The commit that last changed a path, and its lineage record."""

    commit: CommitSummary
    lineage: dict[str, Any]


@dataclass(frozen=True)
class History(_Result):
    """Commits reachable from a revision, newest first."""

    ref: str
    commit: str
    commits: list[CommitSummary]
    truncated: bool


@dataclass(frozen=True)
class CommitDetail(_Result):
    """A commit, its lineage and the typed diff against its first parent (``changes``:
    one dict per path, see ``demoai.porcelain.diff``)."""

    commit: CommitSummary
    parent: str | None
    lineage: dict[str, Any]
    changes: list[dict[str, Any]]


@dataclass(frozen=True)
class TreeEntry(_Result):
    """An artifact in a tree: ``kind`` is ``unknown`` for a manifest this version cannot read."""

    path: str
    kind: str
    summary: str
    digest: str | None
    size: int


@dataclass(frozen=True)
class Tree(_Result):
    """The artifacts at a revision."""

    ref: str
    commit: str
    entries: list[TreeEntry]


@dataclass(frozen=True)
class SessionSummary(_Result):
    """A session in lists: status ``unreadable`` (and ``meta.error``) for a malformed one."""

    name: str
    commit: str | None
    steps: int
    status: str
    agent: str
    head: str
    parent: dict[str, Any] | None
    meta: dict[str, Any]
    updated: int

    @property
    def forked_from(self) -> str | None:
        """The name of the session this one was forked from."""
        p = self.parent.get("session") if isinstance(self.parent, dict) else None
        return p if isinstance(p, str) else None


@dataclass(frozen=True)
class ArtifactDetail(_Result):
    """One artifact at a revision. ``sections`` holds the kind's own keys (``prompt``,
    ``agent``, ``dataset``, ``files`` + ``format`` (+ ``config``), ``eval``, ``session``);
    ``sessions`` the related sessions, for the kinds that have some (prompts, agents)."""

    path: str
    ref: str
    commit: str
    kind: str
    digest: str
    summary: str
    size: int
    last_change: LastChange | None
    sections: dict[str, Any] = field(default_factory=dict)
    sessions: list[SessionSummary] | None = None

    def _fields(self) -> dict[str, Any]:
        # The common keys, then the kind's sections, then ``sessions`` where it applies.
        out = super()._fields()
        related = out.pop("sessions")
        out.update(out.pop("sections"))
        if related is not None:
            out["sessions"] = related
        return out


@dataclass(frozen=True)
class Preview(_Result):
    """Rows ``offset`` .. ``offset + len(rows)`` of a tabular artifact (of ``total``)."""

    path: str
    ref: str
    commit: str
    kind: str
    columns: list[str]
    rows: list[dict[str, Any]]
    offset: int
    total: int


@dataclass(frozen=True)
class BranchInfo(_Result):
    """A branch: short name, full ref, commit, whether it is the default one."""

    name: str
    ref: str
    commit: str
    default: bool = False


@dataclass(frozen=True)
class TagInfo(_Result):
    """A tag: short name, full ref, what it points at."""

    name: str
    ref: str
    commit: str


@dataclass(frozen=True)
class RepoSummary(_Result):
    """What a repository's front page shows above its history."""

    head: str | None
    default_branch: str | None
    head_commit: str | None
    branches: list[BranchInfo]
    tags: list[TagInfo]
    sessions: list[SessionSummary]


@dataclass(frozen=True)
class TimelineEvent(_Result):
    """One event of a session, in one line."""

    id: str
    type: str
    t: float | None
    summary: str


@dataclass(frozen=True)
class TimelineStep(_Result):
    """A step of a session: the commit recording it and its events."""

    step: int
    commit: str
    events: list[TimelineEvent]


@dataclass(frozen=True)
class WorkspaceFile(_Result):
    """A file of a session's workspace."""

    path: str
    size: int


@dataclass(frozen=True)
class Timeline(_Result):
    """A session's steps (at most ``MAX_EVENTS`` events: ``truncated``), the workspace after
    the last step, the sessions forked from it and where its agent definition came from."""

    session: SessionSummary
    events: int
    truncated: bool
    steps: list[TimelineStep]
    workspace: list[WorkspaceFile]
    forks: list[str]
    agent_source: dict[str, str] | None = None


@dataclass(frozen=True)
class SearchDocument(_Result):
    """A document for search: a prompt, agent or dataset card at the head of the default branch."""

    path: str
    kind: str
    title: str
    text: str


# ---------------------------------------------------------------------------- revisions
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
        # A shared repository's HEAD may name a branch nobody pushed: show the default one.
        full = default_branch(repo)
        if full is None:
            raise RefNotFound("this repository has no commits yet", ref="HEAD")
        return full.removeprefix("refs/heads/"), repo.resolve(full)
    return ref, repo.resolve(_check_input(ref, "revision"))


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


def _short(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/", SESSION_REF):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref


def _lineage(repo: Repository, commit: str) -> dict[str, Any]:
    """A commit's lineage record; a pushed record that is not a JSON object is shown as
    such rather than failing the view (a shared repository holds what clients send)."""
    try:
        rec = repo.lineage(commit)
    except ValueError as e:
        return {"error": f"unreadable lineage record ({e})"}
    return clean(rec) if isinstance(rec, dict) else {"value": clean(rec)}


# ---------------------------------------------------------------------------- commits
def history(repo: Repository, ref: str | None = None, limit: int = 50) -> History:
    """Commits reachable from ``ref`` (default branch), newest first, at most ``limit``."""
    name, cid = resolve_ref(repo, ref)
    deco = decorations(repo)
    commits = [CommitSummary.of(ci, deco) for ci in repo.walk(cid, limit + 1)]
    return History(name, cid, commits[:limit], len(commits) > limit)


def commit_detail(repo: Repository, rev: str, sample: int = 5) -> CommitDetail:
    """A commit with its lineage and the typed diff against its first parent (against
    nothing for a root commit); ``sample`` changed rows per dataset."""
    cid = repo.resolve(_check_input(rev, "commit"))
    ci = repo.commit_info(cid)
    parent = ci.parents[0] if ci.parents else None
    if parent is not None:
        changes = diff(repo, parent, cid, sample=sample)
    else:
        changes = [diff_artifacts(repo, p, None, a, sample=sample)
                   for p, a in sorted(repo.artifacts(cid).items())]
    return CommitDetail(CommitSummary.of(ci, decorations(repo)), parent, _lineage(repo, cid), changes)


def _entry_id(repo: Repository, commit: str, path: str) -> str | None:
    # The blob id only, never its bytes: a model's manifest may be megabytes, and the walk
    # below may look at thousands of commits.
    return repo.entry_id(commit, path)


def last_change(repo: Repository, commit: str, path: str) -> LastChange | None:
    """The commit (first-parent history from ``commit``) that last changed ``path``, with
    its lineage; None when that is further back than the walk goes."""
    c = commit
    blob = _entry_id(repo, c, path)
    for _ in range(_LINEAGE_WALK):
        parents = repo.commit_info(c).parents
        if not parents or _entry_id(repo, parents[0], path) != blob:
            break
        c = parents[0]
    else:
        return None
    return LastChange(CommitSummary.of(repo.commit_info(c)), _lineage(repo, c))


# ---------------------------------------------------------------------------- artifacts
def _tree_entry(path: str, raw: bytes) -> TreeEntry:
    try:
        art = decode_manifest(raw, path)
    except DemoAIError as e:   # a kind from a newer DemoAI, or a damaged manifest
        return TreeEntry(path, "unknown", str(e), None, 0)
    return TreeEntry(path, art.kind, art.summary(), art.digest, art.size)


def tree(repo: Repository, ref: str | None = None) -> Tree:
    """The artifacts at ``ref`` (default branch): path, kind, one-line summary, digest, size."""
    name, cid = resolve_ref(repo, ref)
    return Tree(name, cid, [_tree_entry(p, b) for p, b in sorted(repo.tree_entries(cid).items())])


def _artifact(repo: Repository, ref: str | None, path: str) -> tuple[str, str, str, Artifact]:
    name, cid = resolve_ref(repo, ref)
    path = normalize_path(_check_input(path, "path"))
    raw = repo.tree_entries(cid).get(path)
    if raw is None:
        raise PathNotFound(f"{path} is not in {name}", path=path, ref=name)
    return name, cid, path, decode_manifest(raw, path)


def artifact_detail(repo: Repository, ref: str | None, path: str,
                    rows: int = PREVIEW_ROWS) -> ArtifactDetail:
    """One artifact at ``ref`` (default branch), typed by its kind's handler: a prompt's
    template, variables, rendered example and parameters; an agent's YAML fields; a
    dataset's schema and first ``rows`` rows; a model's or adapter's files. Always: the
    commit that last changed it and that commit's lineage; for prompts and agents, the
    sessions run with them."""
    name, cid, path, art = _artifact(repo, ref, path)
    h = handler_for(art)
    sections = h.detail(repo, art, commit=cid, path=path, rows=max(0, min(rows, MAX_PREVIEW_ROWS)))
    agents = h.session_agents(repo, cid, path, art)
    related = None if agents is None else _sessions_of(repo, *agents)
    return ArtifactDetail(path, name, cid, art.kind, art.digest, art.summary(), art.size,
                          last_change(repo, cid, path), sections, related)


def preview(repo: Repository, ref: str | None, path: str, rows: int = PREVIEW_ROWS,
            offset: int = 0) -> Preview:
    """Rows ``offset`` .. ``offset + rows`` (at most ``MAX_PREVIEW_ROWS``) of the tabular
    artifact at ``path``, read with a limit, never the whole table; no rows for other kinds."""
    name, cid, path, art = _artifact(repo, ref, path)
    h = handler_for(art)
    rows = max(0, min(rows, MAX_PREVIEW_ROWS))
    offset = max(0, offset)
    got = h.preview_rows(repo, art, rows, offset) if h.tabular else []
    return Preview(path, name, cid, art.kind, h.columns(art), got, offset, h.row_count(art))


_CARD_KEYS = ("description", "readme", "card", "summary")   # a dataset manifest's meta texts
_CARD_COLUMNS = 200        # columns a dataset card lists


def dataset_card(path: str, ds: Dataset) -> tuple[str, str]:
    """(title, text) of a dataset's card: its name (``meta.name``, else the file name), the
    texts its manifest's ``meta`` holds (description, readme, card, summary) and a summary
    of its schema (rows, format, key, columns with their types)."""
    meta = ds.meta if isinstance(ds.meta, dict) else {}
    title = meta.get("name") if isinstance(meta.get("name"), str) and meta.get("name") else None
    lines = [str(meta[k]) for k in _CARD_KEYS if isinstance(meta.get(k), str) and meta[k].strip()]
    fields = [f for f in ds.schema.get("fields", []) if isinstance(f, dict)][:_CARD_COLUMNS]
    cols = ", ".join(f"{f.get('name')} ({f.get('type')}{', key' if f.get('name') == ds.key else ''})"
                     for f in fields)
    lines.append(f"Dataset of {ds.rows} rows ({ds.format}). Columns: {cols}.")
    return title or path.rsplit("/", 1)[-1], "\n".join(lines)


def search_documents(repo: Repository) -> list[SearchDocument]:
    """The searchable documents of a repository: one per prompt, agent (the searchable
    kinds) and dataset (its card, :func:`dataset_card`; kind ``dataset``) at the head of its
    default branch, text cut at 64 KiB. Only manifests are read, so this costs milliseconds
    whatever the size of the datasets and models beside them."""
    ref = default_branch(repo)
    commit = repo.ref_value(ref) if ref else None
    if commit is None:
        return []
    kinds = [k for k, h in handlers().items() if h.searchable] + [Dataset.kind]
    needles = [f'"{k}"'.encode() for k in kinds]
    docs = []
    for path, raw in sorted(repo.tree_entries(commit).items()):
        if not any(n in raw for n in needles):
            continue        # cheap pre-filter: models are most other manifests
        try:
            art = decode_manifest(raw, path)
            found = (dataset_card(path, art) if isinstance(art, Dataset)
                     else handler_for(art).search_text(path, art))
        except DemoAIError:
            continue
        if found is None:
            continue
        title, text = found
        # The path is indexed with the text, so a search by file name finds it too.
        docs.append(SearchDocument(path, art.kind, title, f"{path}\n{text}"[:_MAX_TEXT]))
    return docs


# ---------------------------------------------------------------------------- repository
def repo_summary(repo: Repository) -> RepoSummary:
    """Branches, tags, sessions, HEAD, the default branch and its commit."""
    default = default_branch(repo)
    branches = [BranchInfo(_short(r), r, c, r == default) for r, c in sorted(repo.branches().items())]
    tags = [TagInfo(_short(r), r, c) for r, c in sorted(repo.tags().items())]
    return RepoSummary(repo.head_ref(), _short(default) if default else None,
                       repo.ref_value(default) if default else None, branches, tags, session_list(repo))


# ---------------------------------------------------------------------------- sessions
def _summary_of(d: dict[str, Any]) -> SessionSummary:
    return SessionSummary(**{f.name: d[f.name] for f in dataclasses.fields(SessionSummary)})


def session_list(repo: Repository) -> list[SessionSummary]:
    """Every session, newest first: name, status, steps, agent, where it was forked from.
    A malformed one is listed with status ``unreadable`` instead of hiding the others."""
    try:
        return [_summary_of(s.to_dict()) for s in list_sessions(repo)]
    except _BAD_DATA:
        pass
    out = []
    for ref in sorted(r for r in repo.refs() if r.startswith(SESSION_REF)):
        name = ref[len(SESSION_REF):]
        try:
            with open_session(repo, name) as log:
                out.append(_summary_of(log.info().to_dict()))
        except _BAD_DATA as e:
            out.append(SessionSummary(name, repo.ref_value(ref), 0, "unreadable", "", "", None,
                                      {"error": str(e)}, 0))
    return out


def _sessions_of(repo: Repository, digests: set[str], paths: set[str]) -> list[SessionSummary]:
    """Sessions whose agent is one of ``digests``, or was read from one of ``paths``."""
    if not digests:
        return []
    out = []
    for s in session_list(repo):
        via = s.meta.get("agent") if isinstance(s.meta, dict) else None
        if s.agent in digests or (isinstance(via, str) and via in paths):
            out.append(s)
    return out


def _int(v: Any, lo: int, hi: int) -> int:
    try:
        return min(max(int(v), lo), hi)
    except (TypeError, ValueError, OverflowError):
        return lo


def _agent_source(repo: Repository, start: dict[str, Any]) -> dict[str, str] | None:
    """Where the agent definition of a run was read from (path and commit, as its
    ``run_start`` event pins it), when that commit is in this repository."""
    agent = start.get("agent") if start.get("type") == "run_start" else None
    if not isinstance(agent, dict):
        return None
    path, commit = agent.get("path"), agent.get("commit")
    if isinstance(path, str) and isinstance(commit, str) and _SHA.fullmatch(commit) \
            and repo.has_object(commit):
        return {"path": path, "commit": commit}
    return None


def session_timeline(repo: Repository, name: str, limit: int = MAX_EVENTS) -> Timeline:
    """A session's steps (commit, events with one-line summaries; at most ``limit``
    events), the workspace after the last step, and the sessions forked from it."""
    _check_input(name, "session")
    try:
        with open_session(repo, name) as log:
            info = log.info()
            events = log.events()
            steps: list[TimelineStep] = []
            for e in events[:limit]:
                step = _int(e.body.get("step"), 0, log.steps)
                if not steps or steps[-1].step != step:
                    steps.append(TimelineStep(step, log.step_commit(step), []))
                t = e.body.get("t")
                steps[-1].events.append(TimelineEvent("blake3:" + e.id, str(e.type),
                                                      t if isinstance(t, (int, float)) else None,
                                                      event_summary(e)))
            workspace = read_workspace(repo, log.tip)
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        if isinstance(e, DemoAIError):
            raise
        raise InvalidArtifact(f"session {name!r} is malformed ({type(e).__name__}: {e})",
                              session=name) from None
    forks = [s.name for s in session_list(repo) if s.forked_from == name]
    return Timeline(_summary_of(info.to_dict()), len(events), len(events) > limit, steps,
                    [WorkspaceFile(p, len(b)) for p, b in sorted(workspace.items())], forks,
                    _agent_source(repo, events[0].body if events else {}))
