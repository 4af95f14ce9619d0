"""What a name must be before it reaches git or the disk: refs, hub user and repository
names, remote URLs, artifact paths and tree entries, and the author identity of commits."""
from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from demoai.errors import InvalidRefName, RemoteNotFound, UnsafePath
from demoai.objects.paths import check_name, check_path

__all__ = ["check_ref_name", "check_repo_name", "parse_remote_url", "normalize_path",
           "check_entry", "default_identity"]

_BAD_REF = re.compile(r"(^[-./])|(\.\.)|([\x00-\x20~^:?*\[\\\x7f])|(@\{)|(/\.)|(\.lock$)|(/$)|(\.$)|(//)")
_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_ref_name(name: str, what: str = "branch") -> str:
    """Refuse names git would refuse (and anything that could escape refs/)."""
    if not name or _BAD_REF.search(name) or name in ("HEAD", "@"):
        raise InvalidRefName(f"invalid {what} name {name!r}", name=name)
    return name


def check_repo_name(name: object, what: str = "name") -> str:
    """A hub user or repository name: letters, digits, ``_ . -``, no leading dot or dash, no
    ``..``, at most 64 characters, never ending in ``.git`` or ``.lock``."""
    if (not isinstance(name, str) or not _REPO_NAME.match(name) or ".." in name
            or name.endswith((".lock", ".git"))):
        raise InvalidRefName(f"invalid {what} {str(name)[:80]!r} (letters, digits, _ . - only)",
                             name=str(name)[:80])
    return name


def parse_remote_url(url: str) -> tuple[str, str, str]:
    """``(base URL, owner, name)`` of a repository URL."""
    parts = urlsplit(url.rstrip("/"))
    segs = [s for s in parts.path.split("/") if s]
    if parts.scheme not in ("http", "https") or not parts.netloc or len(segs) < 2:
        raise RemoteNotFound(f"not a hub repository URL: {url!r} (http://HOST:PORT/OWNER/NAME)",
                             url=url)
    check_repo_name(segs[-2], "owner")
    check_repo_name(segs[-1], "repository name")
    prefix = "/".join(segs[:-2])
    base = f"{parts.scheme}://{parts.netloc}" + (f"/{prefix}" if prefix else "")
    return base, segs[-2], segs[-1]


def normalize_path(path: str) -> str:
    """A repository-relative artifact path in canonical form (no ./, no trailing /); a path
    no tree may hold (``..``, a backslash, ``.demoai``...) raises :class:`UnsafePath`."""
    parts = [x for x in path.strip("/").split("/") if x not in ("", ".")]
    return check_path("/".join(parts) if parts else path)


def check_entry(name: bytes, mode: int, prefix: str = "") -> str:
    """A git tree entry's name, decoded, once it is one a working tree may hold: a safe
    path component (see :func:`check_name`), and a mode DemoAI writes (a file or a folder).
    Raises :class:`UnsafePath` for anything else, so a hostile tree never reaches the disk."""
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafePath(f"{prefix}{name!r}: a tree entry name that is not UTF-8", path=prefix) from None
    if mode not in (0o040000, 0o100644, 0o100755):
        raise UnsafePath(f"{prefix}{text}: unsupported tree entry mode {mode:o} "
                         "(only files and folders)", path=prefix + text)
    check_name(text)
    return text


def default_identity() -> str:
    """Author identity: $DEMOAI_AUTHOR, else git's user.name/email env, else a local default."""
    if os.environ.get("DEMOAI_AUTHOR"):
        return os.environ["DEMOAI_AUTHOR"]
    name = os.environ.get("GIT_AUTHOR_NAME") or os.environ.get("USER") or "demoai"
    email = os.environ.get("GIT_AUTHOR_EMAIL") or f"{name}@localhost"
    return f"{name} <{email}>"
