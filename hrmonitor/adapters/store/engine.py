"""Engines for SQLite and PostgreSQL, configured for a relay that acknowledges mail on commit.

SQLite gets WAL (readers never block the writer), ``synchronous=FULL`` (a commit
survives power loss, not only a crash), foreign keys and a busy timeout, and every
transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock up front, so a
read-then-write transaction can never fail half-way with SQLITE_BUSY when another
process (a second daemon, ``hrmonitor ip retire``) wrote in between.

A PostgreSQL engine comes with a sibling (:func:`relaxed_engine`) whose sessions
run with ``synchronous_commit = off``: the queue's relaxed transactions (claims,
attempt records) use it instead of sending ``SET LOCAL synchronous_commit = off``
as an extra round trip in every transaction. Disposing the engine disposes it.

Neither PostgreSQL pool pre-pings (one more round trip per transaction): a
connection the server dropped fails its next use, SQLAlchemy then discards every
pooled connection older than it, and the caller's usual failure path (a 4xx to
the client, the queue runner's retry) costs one retry (``tests/app/test_cluster.py``).
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from hrmonitor.errors import StoreError

BUSY_TIMEOUT_MS = 10_000
RELAXED_OPTIONS = "-c synchronous_commit=off"

# engine -> its relaxed sibling (PostgreSQL engines made by create_store_engine only)
_RELAXED: WeakKeyDictionary[Engine, Engine] = WeakKeyDictionary()


def create_store_engine(url: str) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql+psycopg://...``.

    ``postgresql://`` means psycopg 3 (the only PostgreSQL driver hrmonitor ships with).
    A relative SQLite path is relative to the current directory.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"database url {url!r} is not a valid URL: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = create_engine(parsed)
        _add_relaxed_sibling(engine, parsed)
        return engine
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            # One connection shared by every thread, or each thread gets its own empty database.
            engine = create_engine(
                parsed, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            engine = create_engine(parsed)
        _configure_sqlite(engine)
        return engine
    raise StoreError(f"database url {url!r}: only sqlite and postgresql are supported")


def relaxed_engine(engine: Engine) -> Engine | None:
    """``engine``'s sibling whose sessions have ``synchronous_commit = off``, if it has one.

    Only PostgreSQL engines made by :func:`create_store_engine` have one; for any
    other engine the caller makes the transaction relaxed itself.
    """
    return _RELAXED.get(engine)


def _add_relaxed_sibling(engine: Engine, parsed: URL) -> None:
    options = parsed.query.get("options", "")
    if not isinstance(options, str):  # the option given more than once in the URL
        options = " ".join(options)
    # connect_args win over the URL's query, so the URL's own options (search_path) are kept here.
    sibling = create_engine(
        parsed,
        connect_args={"options": f"{options} {RELAXED_OPTIONS}".strip()},
    )
    _RELAXED[engine] = sibling

    @event.listens_for(engine, "engine_disposed")
    def _on_dispose(_engine: Engine) -> None:
        sibling.dispose()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so that the
        # "begin" hook below decides how a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
