"""The one rule for the paths a DemoAI tree may hold.

An artifact path is relative, ``/``-separated, and every component is a plain name. It is
the same rule for a path a user gives ``demoai add``, a path in a tree received from a
remote, and a name inside a tree object, so that nothing a hostile tree or an odd file
name holds can point outside the working tree, collide with the control folder, or mean
something else on another operating system. Refused:

- empty paths, empty components (``a//b``, a leading or trailing ``/``), ``.`` and ``..``;
- absolute paths and drive letters (``C:``, ``c:x``) in any component;
- NUL, other control characters (they forge terminal output) and the backslash (a
  separator on Windows: ``a\\b`` would be read back as ``a/b``);
- ``.demoai`` and ``.git`` as a component, whatever the case and trailing dots or spaces
  (which Windows drops);
- a component over 255 bytes or a path over 4096 bytes in UTF-8, and text that is not
  UTF-8 (undecodable file names arrive as lone surrogates).

A valid path is its own normal form: :func:`check_path` returns it unchanged.
"""
from __future__ import annotations

import re

from demoai.errors import UnsafePath

__all__ = ["check_path", "check_name", "RESERVED_NAMES", "MAX_NAME_BYTES", "MAX_PATH_BYTES"]

RESERVED_NAMES = frozenset({".demoai", ".git"})
"""Components no artifact path may use (compared case-insensitively)."""
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096

# One scan of the whole path finds every forbidden character.
_BAD_CHAR = re.compile(r"[\x00-\x1f\x7f\\]")
_DRIVE = re.compile(r"[A-Za-z]:")


def _refuse(path: str, reason: str) -> UnsafePath:
    return UnsafePath(f"unsafe path {path!r}: {reason}", path=path, reason=reason)


def _char_reason(ch: str) -> str:
    if ch == "\\":
        return "a backslash is not allowed (DemoAI paths use '/' and never hold '\\')"
    if ch == "\0":
        return "a NUL byte is not allowed"
    return f"control character {ch!r} is not allowed"


def _check_component(name: str, path: str) -> None:
    """The per-component rules; characters were checked by the caller."""
    if not name:
        raise _refuse(path, "empty path component (leading, trailing or doubled '/')")
    if name == "." or name == "..":
        raise _refuse(path, f"{name!r} is not allowed as a path component")
    if name.rstrip(". ").lower() in RESERVED_NAMES:
        raise _refuse(path, f"{name!r} is reserved (the repository's control folder)")
    if _DRIVE.match(name):
        raise _refuse(path, f"{name!r} looks like a drive letter")
    if len(name) > MAX_NAME_BYTES // 4 and len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise _refuse(path, f"a component is longer than {MAX_NAME_BYTES} bytes")


def _check_text(text: str, what: str) -> None:
    if not isinstance(text, str):
        raise UnsafePath(f"a {what} must be text, got {type(text).__name__}", path=repr(text))
    if not text:
        raise _refuse(text, f"empty {what}")
    m = _BAD_CHAR.search(text)
    if m:
        raise _refuse(text, _char_reason(m.group()))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _refuse(text, "not valid UTF-8 (an undecodable file name)") from None


def check_name(name: str) -> str:
    """Check one component of a path (a tree entry's name): returns it unchanged, or raises
    :class:`~demoai.errors.UnsafePath`. A ``/`` is refused here."""
    _check_text(name, "name")
    if "/" in name:
        raise _refuse(name, "a name must not contain '/'")
    _check_component(name, name)
    return name


def check_path(path: str) -> str:
    """Check a repository-relative artifact path (``data/train.jsonl``): returns it
    unchanged (a valid path is already normal), or raises
    :class:`~demoai.errors.UnsafePath` saying which rule it breaks."""
    _check_text(path, "path")
    if path[0] == "/":
        raise _refuse(path, "absolute paths are not allowed")
    if len(path) > MAX_PATH_BYTES // 4 and len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise _refuse(path, f"longer than {MAX_PATH_BYTES} bytes")
    for name in path.split("/"):
        _check_component(name, path)
    return path
