"""The hub's metadata on PostgreSQL: users, tokens, repositories, search, and every
repository's refs (``DEMOAI_HUB_DATABASE_URL=postgresql://...``).

:class:`PostgresMetaStore` implements :class:`~demoai.hub.meta.MetaStore` as the embedded
:class:`~demoai.hub.meta.SqliteMetaStore` does (same answers, same typed errors), so several
hub processes can share one database. Search is PostgreSQL's own full-text search: each
document keeps a ``tsvector`` (title weighted above text) in a GIN index, with English
stemming and, as the embedded store's FTS5 ``porter`` tokenizer, no stop words (the
``demoai_english`` configuration); every query word must match, as a prefix, and ``rank``
is the negated ``ts_rank`` (lower is better, as the embedded store's BM25).

Refs live here too when the hub's objects are in a bucket (:mod:`demoai.hub.storage_s3`):
:meth:`PostgresMetaStore.repo_refs` reads them and :meth:`PostgresMetaStore.swap_refs` moves
a set of them in one transaction, each with ``UPDATE ... WHERE value = old`` (``INSERT ...
ON CONFLICT DO NOTHING`` for a new ref, ``DELETE ... WHERE value = old``): a ref whose
value is no longer the caller's ``old`` rolls back the whole set with ``RefConflict``. Two
hub processes racing for one branch therefore never both win, whatever their caches hold.

Connections: one per thread, in autocommit mode outside explicit transactions, opened
lazily with a short connect timeout. A database that cannot be reached, or that drops a
connection mid-call, is :class:`StorageUnavailable` (HTTP 503); a connection found broken
is replaced, and a call that failed on a connection left over from before a database
restart is tried once more on a fresh one.
"""
from __future__ import annotations

import re
import secrets
import threading
import time
from typing import Any, Callable, TypeVar

from demoai.errors import (InvalidRefName, RefConflict, RemoteNotFound, RepositoryExists,
                           StorageUnavailable)

from demoai.hub.meta import SCOPES, MetaStore, RepoInfo, Token, User, check_name, token_hash

__all__ = ["PostgresMetaStore", "SCHEMA"]

T = TypeVar("T")


SCHEMA = """
CREATE TABLE IF NOT EXISTS hub_users (name TEXT PRIMARY KEY, created DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS hub_tokens (id BIGSERIAL PRIMARY KEY,
    owner TEXT NOT NULL REFERENCES hub_users(name), hash TEXT NOT NULL UNIQUE,
    scope TEXT NOT NULL CHECK (scope IN ('read', 'write')), label TEXT NOT NULL DEFAULT '',
    created DOUBLE PRECISION NOT NULL, revoked BOOLEAN NOT NULL DEFAULT FALSE);
CREATE TABLE IF NOT EXISTS hub_repos (owner TEXT NOT NULL REFERENCES hub_users(name),
    name TEXT NOT NULL, private BOOLEAN NOT NULL, description TEXT NOT NULL DEFAULT '',
    created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (owner, name));
CREATE TABLE IF NOT EXISTS hub_refs (owner TEXT NOT NULL, repo TEXT NOT NULL, ref TEXT NOT NULL,
    value TEXT NOT NULL, PRIMARY KEY (owner, repo, ref),
    FOREIGN KEY (owner, repo) REFERENCES hub_repos(owner, name) ON DELETE CASCADE);
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_ts_dict WHERE dictname = 'demoai_english_stem') THEN
        CREATE TEXT SEARCH DICTIONARY demoai_english_stem (TEMPLATE = snowball, Language = english);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = 'demoai_english') THEN
        CREATE TEXT SEARCH CONFIGURATION demoai_english (COPY = english);
        ALTER TEXT SEARCH CONFIGURATION demoai_english ALTER MAPPING FOR asciiword, asciihword,
            hword_asciipart, word, hword, hword_part WITH demoai_english_stem;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS hub_docs (owner TEXT NOT NULL, repo TEXT NOT NULL, path TEXT NOT NULL,
    kind TEXT NOT NULL, title TEXT NOT NULL DEFAULT '', text TEXT NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (setweight(to_tsvector('demoai_english', title), 'A')
                                      || to_tsvector('demoai_english', text)) STORED);
CREATE INDEX IF NOT EXISTS hub_docs_tsv ON hub_docs USING GIN (tsv);
CREATE INDEX IF NOT EXISTS hub_docs_repo ON hub_docs (owner, repo);
"""
"""The tables (created at start if missing, under an advisory lock so that two hub
processes starting together do not race)."""

_SCHEMA_LOCK = 0x6465_6d6f_6169   # the advisory lock held while creating the tables
_HEADLINE = "StartSel=[, StopSel=], MaxWords=12, MinWords=4, MaxFragments=1, FragmentDelimiter=\" … \""


def _driver() -> Any:
    try:
        import psycopg
    except ImportError:    # pragma: no cover - the hub-scale extra is not installed
        raise StorageUnavailable("DEMOAI_HUB_DATABASE_URL needs psycopg (pip install "
                                 "'demoai[hub-scale]')", service="postgresql") from None
    return psycopg


class PostgresMetaStore(MetaStore):
    """Users, tokens, repositories, search and refs in one PostgreSQL database at ``url``
    (a libpq URL or key=value string)."""

    def __init__(self, url: str, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self._pg = _driver()
        self._local = threading.local()
        self._tx(self._create_schema)

    def __repr__(self) -> str:   # never show the URL: it may hold a password
        return "PostgresMetaStore(...)"

    # -- connections
    def _connect(self) -> Any:
        try:
            return self._pg.connect(self.url, autocommit=True,
                                    connect_timeout=max(1, int(self.connect_timeout)))
        except self._pg.Error as e:
            raise StorageUnavailable(f"the hub's database cannot be reached ({_brief(e)})",
                                     service="postgresql") from None

    def _run(self, fn: Callable[[Any], T], *, transaction: bool) -> T:
        """``fn(connection)`` (in one transaction if asked), as a typed error when the
        database is unreachable; tried once more on a fresh connection when an old one
        turns out to be dead (the server restarted since it was opened)."""
        pg = self._pg
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            fresh = conn is None or conn.closed or conn.broken
            if fresh:
                conn = self._local.conn = self._connect()
            try:
                if transaction:
                    with conn.transaction():
                        return fn(conn)
                return fn(conn)
            except (pg.OperationalError, pg.InterfaceError) as e:
                self._drop()
                if fresh or attempt:
                    raise StorageUnavailable(f"the hub's database went away ({_brief(e)})",
                                             service="postgresql") from None
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is gone either way
                pass

    def _tx(self, fn: Callable[[Any], T]) -> T:
        return self._run(fn, transaction=True)

    def _one(self, sql: str, args: tuple = ()) -> Any:
        return self._run(lambda c: c.execute(sql, args).fetchone(), transaction=False)

    def _all(self, sql: str, args: tuple = ()) -> list[Any]:
        return self._run(lambda c: c.execute(sql, args).fetchall(), transaction=False)

    def _create_schema(self, conn: Any) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        conn.execute(SCHEMA)

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        self._drop()

    # -- users
    def add_user(self, name: str) -> User:
        check_name(name, "user name")
        now = time.time()
        row = self._one("INSERT INTO hub_users (name, created) VALUES (%s, %s) "
                        "ON CONFLICT DO NOTHING RETURNING name", (name, now))
        if row is None:
            raise RepositoryExists(f"user {name!r} already exists", name=name)
        return User(name, now)

    def get_user(self, name: str) -> User | None:
        r = self._one("SELECT name, created FROM hub_users WHERE name = %s", (name,))
        return User(r[0], r[1]) if r else None

    def users(self) -> list[User]:
        return [User(r[0], r[1]) for r in self._all("SELECT name, created FROM hub_users ORDER BY name")]

    # -- tokens
    def create_token(self, user: str, scope: str, label: str = "") -> tuple[str, Token]:
        if scope not in SCOPES:
            raise InvalidRefName(f"token scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if self.get_user(user) is None:
            raise RemoteNotFound(f"no user {user!r}", user=user)
        secret = "dmai_" + secrets.token_urlsafe(32)
        now = time.time()
        row = self._one("INSERT INTO hub_tokens (owner, hash, scope, label, created) "
                        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                        (user, token_hash(secret), scope, label, now))
        return secret, Token(row[0], user, scope, label, now)

    def token_for(self, secret: str) -> Token | None:
        r = self._one("SELECT id, owner, scope, label, created FROM hub_tokens "
                      "WHERE hash = %s AND NOT revoked", (token_hash(secret),))
        return Token(*r) if r else None

    def revoke_token(self, token_id: int) -> None:
        self._one("UPDATE hub_tokens SET revoked = TRUE WHERE id = %s RETURNING id", (int(token_id),))

    def tokens(self, user: str) -> list[Token]:
        return [Token(*r) for r in self._all(
            "SELECT id, owner, scope, label, created FROM hub_tokens "
            "WHERE owner = %s AND NOT revoked ORDER BY id", (user,))]

    # -- repos
    _REPO = "SELECT owner, name, private, description, created, updated FROM hub_repos"

    def create_repo(self, owner: str, name: str, private: bool, description: str = "") -> RepoInfo:
        check_name(owner, "owner")
        check_name(name, "repository name")
        if self.get_user(owner) is None:
            raise RemoteNotFound(f"no user {owner!r}", user=owner)
        now = time.time()
        row = self._one("INSERT INTO hub_repos (owner, name, private, description, created, updated) "
                        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING name",
                        (owner, name, bool(private), description, now, now))
        if row is None:
            raise RepositoryExists(f"repository {owner}/{name} already exists", repo=f"{owner}/{name}")
        return RepoInfo(owner, name, bool(private), description, now, now)

    def get_repo(self, owner: str, name: str) -> RepoInfo | None:
        r = self._one(self._REPO + " WHERE owner = %s AND name = %s", (owner, name))
        return RepoInfo(*r) if r else None

    def repos(self) -> list[RepoInfo]:
        return [RepoInfo(*r) for r in self._all(self._REPO + " ORDER BY updated DESC, owner, name")]

    def touch_repo(self, owner: str, name: str) -> None:
        self._one("UPDATE hub_repos SET updated = %s WHERE owner = %s AND name = %s RETURNING name",
                  (time.time(), owner, name))

    # -- refs
    def repo_refs(self, owner: str, name: str) -> dict[str, str]:
        """The refs of ``owner/name`` (name -> object id), as the database holds them now."""
        return {r[0]: r[1] for r in self._all(
            "SELECT ref, value FROM hub_refs WHERE owner = %s AND repo = %s ORDER BY ref", (owner, name))}

    def swap_refs(self, owner: str, name: str, updates: list[tuple[str, str | None, str | None]]) -> None:
        """Move refs ``(ref, old, new)`` of ``owner/name`` all or none: each only if it is
        still at ``old`` (None: absent); ``new`` None deletes. ``RefConflict`` (nothing
        moved) when any ref is elsewhere."""
        def run(conn: Any) -> None:
            for ref, old, new in updates:
                key = (owner, name, ref)
                if old is None and new is None:
                    hit = conn.execute("SELECT 1 FROM hub_refs WHERE owner = %s AND repo = %s AND ref = %s",
                                       key).fetchone() is None
                elif old is None:
                    hit = conn.execute("INSERT INTO hub_refs (owner, repo, ref, value) VALUES "
                                       "(%s, %s, %s, %s) ON CONFLICT DO NOTHING", (*key, new)).rowcount == 1
                elif new is None:
                    hit = conn.execute("DELETE FROM hub_refs WHERE owner = %s AND repo = %s AND ref = %s "
                                       "AND value = %s", (*key, old)).rowcount == 1
                else:
                    hit = conn.execute("UPDATE hub_refs SET value = %s WHERE owner = %s AND repo = %s "
                                       "AND ref = %s AND value = %s", (new, *key, old)).rowcount == 1
                if not hit:
                    now = conn.execute("SELECT value FROM hub_refs WHERE owner = %s AND repo = %s "
                                       "AND ref = %s", key).fetchone()
                    have = now[0] if now else None
                    raise RefConflict(f"{ref} is at {have or 'nothing'}, not {old or 'nothing'} "
                                      f"(it moved meanwhile; fetch first)", ref=ref, current=have)
        self._tx(run)

    def drop_refs(self, owner: str, name: str) -> None:
        """Forget every ref of ``owner/name``."""
        self._one("DELETE FROM hub_refs WHERE owner = %s AND repo = %s RETURNING ref", (owner, name))

    # -- search
    def index_docs(self, owner: str, name: str, docs: list[dict[str, str]]) -> None:
        def run(conn: Any) -> None:
            conn.execute("DELETE FROM hub_docs WHERE owner = %s AND repo = %s", (owner, name))
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO hub_docs (owner, repo, path, kind, title, text) "
                                "VALUES (%s, %s, %s, %s, %s, %s)",
                                [(owner, name, d["path"], d["kind"], d.get("title", ""), d["text"])
                                 for d in docs])
        self._tx(run)

    def search(self, query: str, limit: int = 50) -> list[dict[str, Any]]:
        # Only letters and digits reach to_tsquery, so no operator in user input is one.
        words = re.findall(r"[^\W_]+", query or "")[:16]
        if not words:
            return []
        tsq = " & ".join(f"{w}:*" for w in words)
        rows = self._all(
            "SELECT owner, repo, path, kind, title, ts_headline('demoai_english', text, q, %s) AS snip, "
            "-ts_rank(tsv, q) AS rank FROM hub_docs, to_tsquery('demoai_english', %s) AS q "
            "WHERE tsv @@ q ORDER BY rank, owner, repo, path LIMIT %s",
            (_HEADLINE, tsq, int(limit)))
        return [{"owner": r[0], "name": r[1], "path": r[2], "kind": r[3], "title": r[4],
                 "snippet": r[5], "rank": r[6]} for r in rows]


def _brief(e: BaseException) -> str:
    """The first line of a driver error, without connection details."""
    text = str(e).strip().splitlines()
    return f"{e.__class__.__name__}: {text[0] if text else ''}"[:300]
