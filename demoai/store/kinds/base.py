"""The kind-handler interface and the registry of handlers.

A :class:`KindHandler` holds everything the store and the read-side views do differently
for one artifact kind: import a working-tree path, materialize the artifact back out
(verified), name the chunks and table versions it keeps alive, preview it for browsing,
and the kind's section of ``show`` and of an artifact's detail page. The base class is the
behaviour of a plain *record* kind (a JSON manifest written by a workflow, such as an
evaluation result); a kind overrides only what it does differently.

Handlers register themselves with :func:`register_handler` in their own module under
``demoai/store/kinds/``; the registry imports every module of the package the first time
it is asked, so a new kind is one object module (``demoai/objects/``) plus one handler
module here, with no list to edit.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Generic, Iterable, TypeVar

from demoai.errors import DemoAIError, InvalidArtifact, UnknownKind
from demoai.objects import Artifact, decode_manifest
from demoai.store.fsutil import atomic_write

if TYPE_CHECKING:
    from demoai.store.git.repo import Repository
    from demoai.store.tables import TableRef

__all__ = ["KindHandler", "Live", "Progress", "register_handler", "handler_for", "handlers",
           "artifacts_using", "read_text", "read_json"]

Progress = Callable[[int, int], None] | None
Live = tuple[set[str], list["TableRef"]]
"""What an artifact keeps alive in the store: chunk ids and table versions (for gc, fsck)."""

A = TypeVar("A", bound=Artifact)
_REGISTRY: dict[str, "KindHandler[Any]"] = {}
_DISCOVERED = False
_DISCOVERY = threading.RLock()   # re-entrant: a handler module may ask for another


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path``; ``InvalidArtifact`` (with the byte offset) if it is not."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArtifact(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})", path=str(path)) from None


def read_json(path: Path) -> Any:
    """The parsed JSON of ``path``; ``InvalidArtifact`` if it is not UTF-8 JSON."""
    try:
        return json.loads(read_text(path))
    except ValueError as e:
        raise InvalidArtifact(f"{path}: malformed JSON ({e})", path=str(path)) from None


class KindHandler(Generic[A]):
    """Per-kind behaviour for artifacts of type ``A``. Subclasses set :attr:`kind` and
    :attr:`artifact` and override what differs from a JSON record kind; instances are
    stateless."""

    kind: ClassVar[str] = ""
    """The manifest ``kind`` this handler serves."""
    artifact: ClassVar[type[Any]] = Artifact
    """The object type of the kind (``demoai.objects``)."""
    keyed: ClassVar[bool] = False
    """Whether an import may name a key column (``demoai add --key``)."""
    tabular: ClassVar[bool] = False
    """Whether artifacts of the kind have rows (:meth:`columns`, :meth:`preview_rows`)."""
    searchable: ClassVar[bool] = False
    """Whether artifacts of the kind are full-text documents (:meth:`search_text`)."""
    runs_sessions: ClassVar[bool] = False
    """Whether agent sessions run artifacts of the kind (their ``agent`` digest names one)."""

    # -- store ----------------------------------------------------------------------
    def import_path(self, repo: "Repository", path: Path, *, key: str | None = None,
                    base: Artifact | None = None, progress: Progress = None) -> A:
        """Store the file or folder at ``path`` and return its artifact. ``base`` is the
        artifact staged at the same path before (a delta base, where the kind has one).
        Default: a JSON file holding the manifest's fields."""
        fields = read_json(path)
        if not isinstance(fields, dict):
            raise InvalidArtifact(f"{path}: a {self.kind} record is a JSON object", path=str(path))
        return self.artifact.from_manifest(fields)

    def materialize(self, repo: "Repository", art: A, out: Path,
                    progress: Progress = None) -> Path:
        """Write ``art`` at ``out`` (a file, or a folder for multi-file kinds), verified;
        returns what was written. Default: the manifest as indented JSON."""
        atomic_write(out, json.dumps(art.to_manifest(), indent=1, sort_keys=True).encode())
        return out

    def live_objects(self, art: A) -> Live:
        """The chunks and table versions ``art`` needs. Default: none."""
        return set(), []

    # -- browsing -------------------------------------------------------------------
    def columns(self, art: A) -> list[str]:
        """Column names of a tabular artifact ([] for other kinds)."""
        return []

    def row_count(self, art: A) -> int:
        """Rows of a tabular artifact (0 for other kinds)."""
        return 0

    def preview_rows(self, repo: "Repository", art: A, limit: int,
                     offset: int = 0) -> list[dict[str, Any]]:
        """Rows ``offset`` .. ``offset + limit`` of a tabular artifact, read with a limit
        (never the whole table), as Python values; [] for other kinds."""
        return []

    def show(self, repo: "Repository", art: A, rows: int) -> dict[str, Any]:
        """What ``demoai show REF:PATH`` adds to the common fields: at least ``manifest``
        (trimmed of bulk lists), and a preview (``preview`` rows, ``text``, ``files``)."""
        return {"manifest": art.to_manifest()}

    def detail(self, repo: "Repository", art: A, *, commit: str, path: str,
               rows: int) -> dict[str, Any]:
        """The kind's own keys of an artifact's detail view (hub pages, JSON API, TUI):
        ``commit`` is where ``art`` sits at ``path``; ``rows`` the dataset rows to show."""
        return {}

    def uses(self, art: A) -> set[str]:
        """Artifact paths (in the same commit) that ``art`` refers to (an agent: its prompt)."""
        return set()

    def session_agents(self, repo: "Repository", commit: str, path: str,
                       art: A) -> tuple[set[str], set[str]] | None:
        """(agent digests, agent paths) whose sessions relate to ``art``, or None when the
        kind has no related sessions (then its detail lists none)."""
        return None

    def search_text(self, path: str, art: A) -> tuple[str, str] | None:
        """(title, text) to index for full-text search, or None."""
        return None


H = TypeVar("H", bound=type[KindHandler[Any]])


def register_handler(cls: H) -> H:
    """Class decorator: make ``cls`` the handler of ``cls.kind``."""
    if not cls.kind or cls.artifact.kind != cls.kind:
        raise TypeError(f"{cls.__name__}: kind {cls.kind!r} does not match {cls.artifact.__name__}")
    _REGISTRY[cls.kind] = cls()
    return cls


def _discover() -> None:
    # Import every handler module of this package once; each registers itself.
    global _DISCOVERED
    if _DISCOVERED:
        return
    with _DISCOVERY:
        if not _DISCOVERED:
            pkg = importlib.import_module(__name__.rsplit(".", 1)[0])
            for mod in pkgutil.iter_modules(pkg.__path__):
                if not mod.name.startswith("_"):
                    importlib.import_module(f"{pkg.__name__}.{mod.name}")
            _DISCOVERED = True


def handlers() -> dict[str, KindHandler[Any]]:
    """Every registered handler, by kind."""
    _discover()
    return dict(_REGISTRY)


def handler_for(kind: str | Artifact) -> KindHandler[Any]:
    """The handler of a kind name or of an artifact's kind; ``UnknownKind`` if none."""
    name = kind if isinstance(kind, str) else kind.kind
    _discover()
    h = _REGISTRY.get(name)
    if h is None:
        raise UnknownKind(f"unknown kind {name!r}", kind=name)
    return h


def artifacts_using(repo: "Repository", commit: str, path: str) -> Iterable[tuple[str, Artifact]]:
    """(path, artifact) of every artifact at ``commit`` that refers to ``path``
    (:meth:`KindHandler.uses`). Only manifests holding ``path`` as a JSON string are
    decoded, so large manifests (models: chunk lists) are skipped unread."""
    needle = json.dumps(path, ensure_ascii=False).encode()
    for p, raw in sorted(repo.tree_entries(commit).items()):
        if p == path or needle not in raw:
            continue
        a = decode_manifest(raw, p)
        try:
            h = handler_for(a)
        except DemoAIError:
            continue
        if path in h.uses(a):
            yield p, a

