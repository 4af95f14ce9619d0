"""The hub's metadata: users, tokens, repositories and the search index.

:class:`MetaStore` is the interface; :class:`SqliteMetaStore` the embedded default (one
SQLite file in the hub's data directory, WAL mode, one connection per thread);
:class:`demoai.hub.meta_pg.PostgresMetaStore` keeps the same on PostgreSQL.

Tokens are random 32-byte secrets shown once; only their SHA-256 is stored. A token has a
scope, ``read`` or ``write``; ``write`` implies read.
"""
from __future__ import annotations

import abc
import hashlib
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demoai.errors import InvalidRefName, RemoteNotFound, RepositoryExists
from demoai.porcelain.hosting import check_repo_name as check_name

__all__ = ["MetaStore", "SqliteMetaStore", "User", "Token", "RepoInfo", "check_name", "SCOPES"]

SCOPES = ("read", "write")


@dataclass(frozen=True)
class User:
    name: str
    created: float


@dataclass(frozen=True)
class Token:
    id: int
    user: str
    scope: str
    label: str
    created: float


@dataclass(frozen=True)
class RepoInfo:
    owner: str
    name: str
    private: bool
    description: str
    created: float
    updated: float

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"owner": self.owner, "name": self.name, "full_name": self.full_name,
                "private": self.private, "description": self.description,
                "created": self.created, "updated": self.updated}


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class MetaStore(abc.ABC):
    """Users, tokens, repositories and a full-text index of shared prompts and agents."""

    @abc.abstractmethod
    def add_user(self, name: str) -> User: ...

    @abc.abstractmethod
    def get_user(self, name: str) -> User | None: ...

    @abc.abstractmethod
    def users(self) -> list[User]: ...

    @abc.abstractmethod
    def create_token(self, user: str, scope: str, label: str = "") -> tuple[str, Token]:
        """A new token for ``user``: the secret (shown once) and its record."""

    @abc.abstractmethod
    def token_for(self, secret: str) -> Token | None: ...

    @abc.abstractmethod
    def revoke_token(self, token_id: int) -> None: ...

    @abc.abstractmethod
    def tokens(self, user: str) -> list[Token]: ...

    @abc.abstractmethod
    def create_repo(self, owner: str, name: str, private: bool, description: str = "") -> RepoInfo: ...

    @abc.abstractmethod
    def get_repo(self, owner: str, name: str) -> RepoInfo | None: ...

    @abc.abstractmethod
    def repos(self) -> list[RepoInfo]: ...

    @abc.abstractmethod
    def touch_repo(self, owner: str, name: str) -> None: ...

    @abc.abstractmethod
    def index_docs(self, owner: str, name: str, docs: list[dict[str, str]]) -> None:
        """Replace the searchable documents of a repo: ``{"path", "kind", "title", "text"}``."""

    @abc.abstractmethod
    def search(self, query: str, limit: int = 50) -> list[dict[str, Any]]:
        """Full-text matches: ``{"owner", "name", "path", "kind", "title", "snippet", "rank"}``."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL REFERENCES users(name), hash TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL CHECK (scope IN ('read', 'write')), label TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS repos (owner TEXT NOT NULL REFERENCES users(name), name TEXT NOT NULL,
    private INTEGER NOT NULL, description TEXT NOT NULL DEFAULT '', created REAL NOT NULL,
    updated REAL NOT NULL, PRIMARY KEY (owner, name));
CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5(owner UNINDEXED, repo UNINDEXED,
    path UNINDEXED, kind UNINDEXED, title, text, tokenize='porter unicode61');
"""


class SqliteMetaStore(MetaStore):
    """The embedded metadata store: one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._local = threading.local()
        self._write = threading.Lock()
        with self._conn() as c:
            c.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA foreign_keys=ON")
            c.row_factory = sqlite3.Row
            self._local.conn = c
        return c

    def _tx(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._write:
            c = self._conn()
            c.execute("BEGIN IMMEDIATE")
            try:
                cur = c.execute(sql, args)
                c.execute("COMMIT")
                return cur
            except BaseException:
                c.execute("ROLLBACK")
                raise

    # -- users
    def add_user(self, name: str) -> User:
        check_name(name, "user name")
        now = time.time()
        try:
            self._tx("INSERT INTO users (name, created) VALUES (?, ?)", (name, now))
        except sqlite3.IntegrityError:
            raise RepositoryExists(f"user {name!r} already exists", name=name) from None
        return User(name, now)

    def get_user(self, name: str) -> User | None:
        r = self._conn().execute("SELECT name, created FROM users WHERE name = ?", (name,)).fetchone()
        return User(r["name"], r["created"]) if r else None

    def users(self) -> list[User]:
        return [User(r["name"], r["created"]) for r in
                self._conn().execute("SELECT name, created FROM users ORDER BY name")]

    # -- tokens
    def create_token(self, user: str, scope: str, label: str = "") -> tuple[str, Token]:
        if scope not in SCOPES:
            raise InvalidRefName(f"token scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if self.get_user(user) is None:
            raise RemoteNotFound(f"no user {user!r}", user=user)
        secret = "dmai_" + secrets.token_urlsafe(32)
        now = time.time()
        cur = self._tx("INSERT INTO tokens (user, hash, scope, label, created) VALUES (?, ?, ?, ?, ?)",
                       (user, token_hash(secret), scope, label, now))
        return secret, Token(cur.lastrowid, user, scope, label, now)

    def token_for(self, secret: str) -> Token | None:
        r = self._conn().execute(
            "SELECT id, user, scope, label, created FROM tokens WHERE hash = ? AND revoked = 0",
            (token_hash(secret),)).fetchone()
        return Token(r["id"], r["user"], r["scope"], r["label"], r["created"]) if r else None

    def revoke_token(self, token_id: int) -> None:
        self._tx("UPDATE tokens SET revoked = 1 WHERE id = ?", (token_id,))

    def tokens(self, user: str) -> list[Token]:
        return [Token(r["id"], r["user"], r["scope"], r["label"], r["created"]) for r in
                self._conn().execute("SELECT id, user, scope, label, created FROM tokens "
                                     "WHERE user = ? AND revoked = 0 ORDER BY id", (user,))]

    # -- repos
    @staticmethod
    def _repo(r: sqlite3.Row) -> RepoInfo:
        return RepoInfo(r["owner"], r["name"], bool(r["private"]), r["description"],
                        r["created"], r["updated"])

    def create_repo(self, owner: str, name: str, private: bool, description: str = "") -> RepoInfo:
        check_name(owner, "owner")
        check_name(name, "repository name")
        if self.get_user(owner) is None:
            raise RemoteNotFound(f"no user {owner!r}", user=owner)
        now = time.time()
        try:
            self._tx("INSERT INTO repos (owner, name, private, description, created, updated) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (owner, name, int(private), description, now, now))
        except sqlite3.IntegrityError:
            raise RepositoryExists(f"repository {owner}/{name} already exists",
                                   repo=f"{owner}/{name}") from None
        return RepoInfo(owner, name, private, description, now, now)

    def get_repo(self, owner: str, name: str) -> RepoInfo | None:
        r = self._conn().execute("SELECT * FROM repos WHERE owner = ? AND name = ?",
                                 (owner, name)).fetchone()
        return self._repo(r) if r else None

    def repos(self) -> list[RepoInfo]:
        return [self._repo(r) for r in
                self._conn().execute("SELECT * FROM repos ORDER BY updated DESC, owner, name")]

    def touch_repo(self, owner: str, name: str) -> None:
        self._tx("UPDATE repos SET updated = ? WHERE owner = ? AND name = ?", (time.time(), owner, name))

    # -- search
    def index_docs(self, owner: str, name: str, docs: list[dict[str, str]]) -> None:
        with self._write:
            c = self._conn()
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute("DELETE FROM docs WHERE owner = ? AND repo = ?", (owner, name))
                c.executemany("INSERT INTO docs (owner, repo, path, kind, title, text) VALUES (?, ?, ?, ?, ?, ?)",
                              [(owner, name, d["path"], d["kind"], d.get("title", ""), d["text"]) for d in docs])
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    def search(self, query: str, limit: int = 50) -> list[dict[str, Any]]:
        # Each word is quoted, so FTS5 operators in user input are plain words.
        words = [w for w in re.findall(r"\w+", query or "")][:16]
        if not words:
            return []
        match = " ".join(f'"{w}"*' for w in words)
        rows = self._conn().execute(
            "SELECT owner, repo, path, kind, title, snippet(docs, 5, '[', ']', ' … ', 12) AS snip, "
            "bm25(docs) AS rank FROM docs WHERE docs MATCH ? ORDER BY rank LIMIT ?",
            (match, int(limit))).fetchall()
        return [{"owner": r["owner"], "name": r["repo"], "path": r["path"], "kind": r["kind"],
                 "title": r["title"], "snippet": r["snip"], "rank": r["rank"]} for r in rows]
