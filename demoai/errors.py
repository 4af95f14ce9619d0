"""The typed error tree of DemoAI.

Every failure the library reports is a ``DemoAIError``. Faces (CLI, HTTP services) map
these types to one-line messages or status codes; nothing below them prints.

    DemoAIError
    ├── RepositoryError
    │   ├── NotARepository            (also FileNotFoundError)
    │   ├── RepositoryExists          (also FileExistsError)
    │   ├── LockTimeout               another process holds a lock
    │   └── RefConflict               compare-and-swap of a ref failed
    ├── RefNotFound                   (also KeyError)
    ├── InvalidRefName                (also ValueError)
    ├── PathNotFound                  (also KeyError) no artifact at PATH in a tree/index
    ├── ArtifactError
    │   ├── UnknownKind               (also ValueError)
    │   ├── InvalidArtifact           (also ValueError) malformed file, wrong schema
    │   │   └── UnsafePath            a path a DemoAI tree may not hold (\\, .., .demoai...)
    │   └── UnsupportedOperation      an operation the kind cannot do
    ├── IntegrityError                a hash did not match what was read
    │   └── MissingObject             (also KeyError) a referenced object is absent
    ├── MergeError
    │   ├── MergeConflict             carries the list of conflicts
    │   └── MergeInProgress
    ├── NothingToCommit
    ├── DirtyWorkingTree
    ├── QueryError                    (also ValueError) a DuckDB query failed
    ├── RuntimeFailure                agent runtime
    │   ├── SandboxError              a sandbox could not be set up or used
    │   │   └── SandboxUnavailable    the backend is missing (no bwrap, no engine)
    │   ├── ModelError                a model backend failed
    │   │   ├── BackendUnavailable    backend package or server not installed/reachable
    │   │   └── ContextOverflow       (also ValueError) prompt longer than the context
    │   ├── SessionNotFound           (also KeyError)
    │   └── ReplayError               a recorded session cannot be replayed as asked
    └── RemoteError                   talking to a hub or an HTTP service failed
        ├── AuthenticationRequired    no token, or one the server does not know (401)
        ├── PermissionDenied          (also PermissionError) the token may not do this (403)
        ├── RemoteNotFound            (also KeyError) no such remote, repo or route (404)
        ├── RequestTooLarge           a request over the server's size bound (413)
        ├── NonFastForward            push refused: the remote ref moved on; --force overrides
        ├── StorageUnavailable        the hub's database or object storage is down (503)
        └── ProtocolError             (also ValueError) a malformed request or answer
"""
from __future__ import annotations

from typing import Any

__all__ = [
    "DemoAIError", "TrainingDiverged", "RepositoryError", "NotARepository", "RepositoryExists", "LockTimeout",
    "RefConflict", "RefNotFound", "InvalidRefName", "PathNotFound", "ArtifactError",
    "UnknownKind", "InvalidArtifact", "UnsupportedOperation", "IntegrityError",
    "MissingObject", "MergeError", "MergeConflict", "MergeInProgress", "NothingToCommit",
    "DirtyWorkingTree", "QueryError", "RuntimeFailure", "SandboxError", "SandboxUnavailable",
    "ModelError", "BackendUnavailable", "ContextOverflow", "SessionNotFound", "ReplayError",
    "RemoteError", "AuthenticationRequired", "PermissionDenied", "RemoteNotFound",
    "RequestTooLarge", "NonFastForward", "StorageUnavailable", "ProtocolError", "UnsafePath",
    "ERROR_CODES", "error_from_code",
]


class DemoAIError(Exception):
    """Root of every error DemoAI raises on purpose."""

    code = "demoai_error"

    def __init__(self, message: str = "", **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        for k, v in fields.items():
            setattr(self, k, v)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: the error code, the message and the fields."""
        return {"code": self.code, "message": self.message,
                "fields": {k: v for k, v in self.fields.items() if _jsonable(v)}}


def _jsonable(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, type(None), list, dict))


class RepositoryError(DemoAIError):
    """Something is wrong with a repository or its on-disk state."""

    code = "repository_error"


class NotARepository(RepositoryError, FileNotFoundError):
    """No DemoAI repository at (or above) the given folder."""

    code = "not_a_repository"


class RepositoryExists(RepositoryError, FileExistsError):
    """A repository (or a non-empty target, or a remote name) already exists there."""

    code = "repository_exists"


class LockTimeout(RepositoryError):
    """Another process held a lock for longer than the timeout."""

    code = "lock_timeout"


class RefConflict(RepositoryError):
    """A ref moved while an operation meant to compare-and-swap it."""

    code = "ref_conflict"


class RefNotFound(DemoAIError, KeyError):
    """A revision, branch, tag or commit that does not exist."""

    code = "ref_not_found"


class InvalidRefName(DemoAIError, ValueError):
    """A branch, tag, remote, user or repository name git or the hub would refuse."""

    code = "invalid_ref_name"


class PathNotFound(DemoAIError, KeyError):
    """No artifact at that path in a tree, the index or the working tree."""

    code = "path_not_found"


class ArtifactError(DemoAIError):
    """An artifact cannot be read, made or handled as asked."""

    code = "artifact_error"


class UnknownKind(ArtifactError, ValueError):
    """A file or folder whose artifact kind cannot be told."""

    code = "unknown_kind"


class InvalidArtifact(ArtifactError, ValueError):
    """A malformed file or manifest, or content of the wrong shape."""

    code = "invalid_artifact"


class UnsafePath(InvalidArtifact):
    """A path no DemoAI tree may hold: backslash, NUL, ``..``, ``.demoai``, absolute..."""

    code = "unsafe_path"


class UnsupportedOperation(ArtifactError):
    """An operation the artifact's kind cannot do."""

    code = "unsupported_operation"


class IntegrityError(DemoAIError):
    """Stored or received bytes do not hash to what was recorded."""

    code = "integrity_error"


class MissingObject(IntegrityError, KeyError):
    """A referenced object, chunk or table file is absent."""

    code = "missing_object"


class MergeError(DemoAIError):
    """A merge cannot go on."""

    code = "merge_error"


class MergeConflict(MergeError):
    """A merge stopped on conflicting changes (``conflicts`` lists them)."""

    code = "merge_conflict"


class MergeInProgress(MergeError):
    """A merge is in progress (or none is, when one was expected)."""

    code = "merge_in_progress"


class NothingToCommit(DemoAIError):
    """A commit would record nothing new (or has no message)."""

    code = "nothing_to_commit"


class DirtyWorkingTree(DemoAIError):
    """Uncommitted changes would be overwritten."""

    code = "dirty_working_tree"


class QueryError(DemoAIError, ValueError):
    """A DuckDB query failed."""

    code = "query_error"


class RuntimeFailure(DemoAIError):
    """The agent runtime failed."""

    code = "runtime_failure"


class TrainingDiverged(RuntimeFailure):
    """A training run's loss or gradient became NaN or infinite."""

    code = "training_diverged"


class SandboxError(RuntimeFailure):
    """A sandbox could not be set up or used."""

    code = "sandbox_error"


class SandboxUnavailable(SandboxError):
    """The sandbox backend is missing (no bwrap, no container engine)."""

    code = "sandbox_unavailable"


class ModelError(RuntimeFailure):
    """A model backend failed."""

    code = "model_error"


class BackendUnavailable(ModelError):
    """A backend package or server is not installed or not reachable."""

    code = "backend_unavailable"


class ContextOverflow(ModelError, ValueError):
    """A prompt longer than the model's context."""

    code = "context_overflow"


class SessionNotFound(RuntimeFailure, KeyError):
    """No agent session of that name."""

    code = "session_not_found"


class ReplayError(RuntimeFailure):
    """A recorded session cannot be replayed as asked."""

    code = "replay_error"


class RemoteError(DemoAIError):
    """Talking to a hub or an HTTP service failed."""

    code = "remote_error"


class AuthenticationRequired(RemoteError):
    """No token, or one the server does not know (HTTP 401)."""

    code = "authentication_required"


class PermissionDenied(RemoteError, PermissionError):
    """The token may not do this (HTTP 403)."""

    code = "permission_denied"


class RemoteNotFound(RemoteError, KeyError):
    """No such remote, hub repository or route (HTTP 404)."""

    code = "not_found"


class RequestTooLarge(RemoteError):
    """A request over the server's size bound (HTTP 413)."""

    code = "request_too_large"


class NonFastForward(RemoteError):
    """A push refused because the remote ref moved on; ``--force`` overrides."""

    code = "non_fast_forward"


class StorageUnavailable(RemoteError):
    """The hub's database or object storage cannot be reached right now (HTTP 503); retry."""

    code = "storage_unavailable"


class ProtocolError(RemoteError, ValueError):
    """A malformed request or answer."""

    code = "protocol_error"


def _all_subclasses(cls: type) -> list[type]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


ERROR_CODES: dict[str, type[DemoAIError]] = {c.code: c for c in _all_subclasses(DemoAIError)}


def error_from_code(code: str, message: str, fields: dict[str, Any] | None = None) -> DemoAIError:
    """Rebuild the typed error a service reported as ``code`` (clients use this)."""
    cls = ERROR_CODES.get(code, DemoAIError)
    return cls(message, **(fields or {}))
