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


def default_identity(role: str = "author", repo_config: str | os.PathLike | None = None) -> str:
    """``Name <email>`` of whoever makes a commit, found as git finds it:

    1. ``$DEMOAI_AUTHOR`` (``Name <email>``, for author and committer alike);
    2. ``$GIT_AUTHOR_NAME`` / ``$GIT_AUTHOR_EMAIL`` (``$GIT_COMMITTER_*`` for the committer);
    3. ``user.name`` / ``user.email`` of the git config: the repository's own
       (``repo_config``: ``.demoai/git/config``), then the global one (``$GIT_CONFIG_GLOBAL``,
       else ``~/.gitconfig`` over ``$XDG_CONFIG_HOME/git/config``), then the system one
       (``/etc/gitconfig``, unless ``$GIT_CONFIG_NOSYSTEM``);
    4. ``$EMAIL`` for the address; else ``$USER`` (or ``demoai``) ``<$USER@localhost>``.
    """
    if os.environ.get("DEMOAI_AUTHOR"):
        return os.environ["DEMOAI_AUTHOR"]
    prefix = "GIT_COMMITTER_" if role == "committer" else "GIT_AUTHOR_"
    name = os.environ.get(prefix + "NAME") or ""
    email = os.environ.get(prefix + "EMAIL") or ""
    if not (name and email):
        cfg_name, cfg_email = _config_identity(repo_config)
        name, email = name or cfg_name, email or cfg_email
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "demoai"
    name = _ident_part(name) or user
    email = _ident_part(email or os.environ.get("EMAIL") or "") or f"{user}@localhost"
    return f"{name} <{email}>"


def _ident_part(text: str) -> str:
    # what git strips from an identity: the brackets that delimit it, and line breaks
    return " ".join(text.replace("<", "").replace(">", "").split())


def _config_files(repo_config: str | os.PathLike | None) -> list[str]:
    """Git config files, lowest precedence first."""
    files: list[str] = []
    if not os.environ.get("GIT_CONFIG_NOSYSTEM"):
        files.append(os.environ.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig")
    if os.environ.get("GIT_CONFIG_GLOBAL"):
        files.append(os.environ["GIT_CONFIG_GLOBAL"])
    else:
        home = os.path.expanduser("~")
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        files += [os.path.join(xdg, "git", "config"), os.path.join(home, ".gitconfig")]
    if repo_config is not None:
        files.append(os.fspath(repo_config))
    return files


def _config_identity(repo_config: str | os.PathLike | None) -> tuple[str, str]:
    """``user.name`` and ``user.email`` of the git config files (either may be "")."""
    from dulwich.config import ConfigFile

    found = {b"name": "", b"email": ""}
    for path in _config_files(repo_config):
        if not os.path.isfile(path):
            continue
        try:
            cfg = ConfigFile.from_path(path)
        except (OSError, ValueError):
            continue       # an unreadable or malformed config is skipped, as git warns and goes on
        for field in found:
            try:
                value = cfg.get((b"user",), field)
            except KeyError:
                continue
            if value:
                found[field] = value.decode("utf-8", errors="replace")
    return found[b"name"], found[b"email"]
