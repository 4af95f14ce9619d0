"""Build the docker backend's image locally from the host's own files (no registry needed).

The root filesystem holds the host's system ``python3`` with its standard library, ``sh``,
coreutils and a few text tools, the shared libraries they load (found with ``ldd``), and a
minimal ``/etc`` (passwd/group naming the sandbox user). It is ``docker import``-ed as
``demoai-sandbox:<hash>``, the hash covering the file list (paths, sizes, mtimes, modes)
and :data:`RECIPE`; an image already present under that tag is reused.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from demoai.errors import SandboxError

from .base import SANDBOX_UID, WORKDIR

__all__ = ["REPOSITORY", "RECIPE", "ensure_image", "image_manifest", "image_tag"]

REPOSITORY = "demoai-sandbox"
RECIPE = "1"  # bump when the layout below changes
PYTHON = "/usr/bin/python3"
TOOLS = ("sh dash bash cat ls echo true false env mkdir rmdir rm cp mv ln touch chmod head tail "
         "wc sort uniq cut tr tee sed grep find xargs sleep timeout id whoami pwd basename "
         "dirname printf test expr date seq du stat uname diff cmp awk tar gzip kill nproc "
         "realpath readlink mktemp md5sum sha256sum base64 od yes ps").split()
_STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
                "site-packages", "dist-packages"}
_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


def _stdlib_dir() -> Path:
    out = subprocess.run([PYTHON, "-c", "import sysconfig;print(sysconfig.get_path('stdlib'))"],
                         capture_output=True, text=True, check=True, env={"PATH": "/usr/bin"})
    return Path(out.stdout.strip())


def _tool_paths() -> list[str]:
    found = []
    for name in TOOLS:
        for d in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
            p = f"{d}/{name}"
            if os.path.lexists(p):
                found.append(p)
                break
    return found


def _with_links(path: str, into: dict[str, None]) -> None:
    """Add ``path`` and, when it is a symlink (or under one), every hop to the real file."""
    for _ in range(40):
        if path in into:
            return
        parent = os.path.dirname(path)
        if parent != "/" and os.path.islink(parent):
            _with_links(parent, into)
            path = os.path.join(os.path.realpath(parent), os.path.basename(path))
            continue
        into[path] = None
        if not os.path.islink(path):
            return
        target = os.readlink(path)
        path = os.path.normpath(os.path.join(os.path.dirname(path), target))


def _shared_libs(elfs: list[str]) -> list[str]:
    libs: set[str] = set()
    for i in range(0, len(elfs), 200):
        p = subprocess.run(["ldd", *elfs[i:i + 200]], capture_output=True, text=True)
        libs.update(m.group(1) for m in _LDD_LINE.finditer(p.stdout))
    return sorted(libs)


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def image_manifest() -> list[str]:
    """The host paths (files and symlinks) the image copies, in order."""
    paths: dict[str, None] = {}
    for name in ("bin", "sbin", "lib", "lib64"):
        if os.path.islink(f"/{name}"):
            paths[f"/{name}"] = None
    for p in [PYTHON, *_tool_paths()]:
        _with_links(p, paths)
    stdlib = _stdlib_dir()
    for root, dirs, names in os.walk(stdlib):
        rel = os.path.relpath(root, stdlib)
        dirs[:] = sorted(d for d in dirs if not (rel == "." and (d in _STDLIB_SKIP
                                                                 or d.startswith("config-"))))
        for n in sorted(names):
            paths[os.path.join(root, n)] = None
    elfs = [p for p in paths if os.path.isfile(p) and not os.path.islink(p) and _is_elf(p)]
    for lib in _shared_libs(elfs):
        _with_links(lib, paths)
    for extra in ("/etc/ld.so.cache",):
        if os.path.exists(extra):
            paths[extra] = None
    return list(paths)


def image_tag(manifest: list[str] | None = None) -> str:
    """``demoai-sandbox:<hash>`` for the current host files."""
    h = hashlib.sha256(f"recipe {RECIPE} uid {SANDBOX_UID}\n".encode())
    for p in manifest if manifest is not None else image_manifest():
        st = os.lstat(p)
        link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else ""
        h.update(f"{p}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0{link}\n".encode())
    return f"{REPOSITORY}:{h.hexdigest()[:16]}"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int, owner: int = 0) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, owner, owner
    tar.addfile(info)


def write_rootfs(manifest: list[str], fileobj: Any) -> None:
    """Write the image's root filesystem as a tar stream."""
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        done: set[str] = set()
        for d, mode in (("tmp", 0o1777), ("etc", 0o755), ("proc", 0o555), ("sys", 0o555),
                        ("dev", 0o755), ("run", 0o755), ("var", 0o755), ("usr", 0o755)):
            _add_dir(tar, d, mode)
            done.add(d)
        _add_dir(tar, WORKDIR.strip("/"), 0o755, SANDBOX_UID)
        _add_bytes(tar, "etc/passwd", (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                                       f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:"
                                       f"{WORKDIR}:/bin/sh\n").encode())
        _add_bytes(tar, "etc/group", f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\n".encode())
        _add_bytes(tar, "etc/hosts", b"127.0.0.1 localhost\n")
        for p in manifest:
            name = p.lstrip("/")
            parts = name.split("/")
            for i in range(1, len(parts)):  # parent dirs with the host's modes
                d = "/".join(parts[:i])
                if d not in done:
                    done.add(d)
                    _add_dir(tar, d, stat.S_IMODE(os.stat("/" + d).st_mode) or 0o755)
            info = tar.gettarinfo(p, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode &= ~0o6000  # no setuid/setgid binaries inside
            if info.isreg():
                with open(p, "rb") as f:
                    tar.addfile(info, f)
            elif info.issym() or info.isdir():
                tar.addfile(info)
            done.add(name)


def ensure_image(client: Any) -> str:
    """The tag of the sandbox image in ``client``'s engine, building it if missing."""
    import docker.errors

    if not os.access(PYTHON, os.X_OK):
        raise SandboxError(f"cannot build the sandbox image: {PYTHON} is missing")
    manifest = image_manifest()
    tag = image_tag(manifest)
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    repo, _, version = tag.partition(":")
    with tempfile.TemporaryFile(prefix="demoai-rootfs-") as f:
        write_rootfs(manifest, f)
        f.seek(0)
        try:
            client.api.import_image_from_data(f, repository=repo, tag=version)
        except docker.errors.APIError as e:
            raise SandboxError(f"cannot import the sandbox image: {e}") from e
    client.images.get(tag)
    return tag


if __name__ == "__main__":  # python -m demoai.engines.sandbox.image: show the tag and size
    m = image_manifest()
    sys.stdout.write(f"{image_tag(m)} {len(m)} paths "
                     f"{sum(os.lstat(p).st_size for p in m) / 1e6:.1f} MB\n")
