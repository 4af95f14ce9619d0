"""One mapping between the typed error tree and HTTP, shared by both services and clients.

A service answers a ``DemoAIError`` with :func:`status_for` and the body :func:`error_body`
(``{"error": {"code", "message", "fields"}}``); a client hands any non-2xx answer to
:func:`raise_for_status`, which raises the same typed error again. No web framework is
imported here, so the library and the CLI can use it.
"""
from __future__ import annotations

import json
from typing import Any

from demoai import errors as E

__all__ = ["status_for", "error_body", "raise_for_status", "STATUS"]

# Most specific class first: the first isinstance match wins.
STATUS: list[tuple[type[E.DemoAIError], int]] = [
    (E.AuthenticationRequired, 401),
    (E.PermissionDenied, 403),
    (E.RequestTooLarge, 413),
    (E.NonFastForward, 409),
    (E.RefConflict, 409),
    (E.MergeError, 409),
    (E.RepositoryExists, 409),
    (E.LockTimeout, 423),
    (E.ContextOverflow, 400),
    (E.BackendUnavailable, 503),
    (E.StorageUnavailable, 503),
    (E.SandboxUnavailable, 503),
    (E.RemoteNotFound, 404),
    (E.RefNotFound, 404),
    (E.PathNotFound, 404),
    (E.SessionNotFound, 404),
    (E.NotARepository, 404),
    (E.MissingObject, 422),
    (E.IntegrityError, 422),
    (E.InvalidRefName, 400),
    (E.ArtifactError, 400),
    (E.QueryError, 400),
    (E.ProtocolError, 400),
    (E.ReplayError, 400),
    (E.NothingToCommit, 400),
    (E.DirtyWorkingTree, 409),
    (E.RuntimeFailure, 500),
    (E.DemoAIError, 500),
]

_FALLBACK = {400: E.ProtocolError, 401: E.AuthenticationRequired, 403: E.PermissionDenied,
             404: E.RemoteNotFound, 409: E.RefConflict, 413: E.RequestTooLarge,
             422: E.ProtocolError, 503: E.StorageUnavailable}


def status_for(exc: E.DemoAIError) -> int:
    """The HTTP status that answers ``exc``."""
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(exc: E.DemoAIError) -> dict[str, Any]:
    """The JSON body of an error answer."""
    return {"error": exc.to_dict()}


def raise_for_status(status: int, body: bytes | str | dict | None, what: str = "") -> None:
    """Raise the typed error a non-2xx answer stands for (nothing for 2xx)."""
    if 200 <= status < 300:
        return
    data: Any = body
    if isinstance(body, (bytes, str)):
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("code"), str):
        raise E.error_from_code(err["code"], str(err.get("message", "")), err.get("fields") or {})
    if isinstance(data, dict) and "detail" in data:   # a framework-level validation answer
        msg = f"{what}: HTTP {status}: {json.dumps(data['detail'])[:500]}"
    else:
        msg = f"{what}: HTTP {status}"
    raise _FALLBACK.get(status, E.RemoteError)(msg.strip(": "), status=status)
