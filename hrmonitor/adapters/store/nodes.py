"""Nodes on one store: who is alive (heartbeats), who holds a role (leases), whose claims.

Every daemon has a row in ``nodes`` and renews its ``heartbeat_at`` every few
seconds; a node whose heartbeat is older than the lease is dead to the others.
Once-per-cluster work (the DNSBL sweeps, the rotation tick) is a *role*: a row
in ``node_roles`` whose holder renews its ``expires_at``; anyone may take a role
whose lease ran out. Both are settled by single UPDATE statements that compare
against the database server's own clock (``now()`` on PostgreSQL), so nodes
with skewed clocks agree, and two nodes racing for a role cannot both win: the
row lock makes the second UPDATE re-read the row and find it taken.

A name is held for the daemon's life: on PostgreSQL by a session advisory lock
(released by the server when the process dies, ``kill -9`` included), on
SQLite by an exclusive ``flock`` on ``<database>.node-lock``. SQLite is a
single-node store: the lock is per file, whatever the name, so a second daemon
on the same file refuses to start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import String, Table, and_, case, func, literal, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from hrmonitor.adapters.store.queue.model import RecipientStatus
from hrmonitor.adapters.store.queue.schema import RECIPIENTS
from hrmonitor.adapters.store.schema import NAME, Base, UtcDateTime
from hrmonitor.errors import HrmonitorError, StoreError

# Roles: the once-per-cluster jobs.
SWEEPER = "sweeper"  # DNSBL sweeps of every pool
ROTATION = "rotation"  # the rotation controller's tick
ROLES = (SWEEPER, ROTATION)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAME_LOCK = 0x68726E64  # "hrnd": the advisory lock class of node names


class NodeNameInUse(HrmonitorError):
    """Another running daemon holds this node name (or, on SQLite, this database file)."""


class NodeRow(Base):
    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]


class RoleRow(Base):
    __tablename__ = "node_roles"

    role: Mapped[str] = mapped_column(NAME, primary_key=True)
    holder: Mapped[str | None] = mapped_column(NAME)
    since: Mapped[datetime | None]
    expires_at: Mapped[datetime]


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


NODES = _table(NodeRow)
ROLE_ROWS = _table(RoleRow)


@dataclass(frozen=True, slots=True)
class NodeRecord:
    name: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    alive: bool  # heartbeat within the lease, as the server sees it


@dataclass(frozen=True, slots=True)
class RoleRecord:
    role: str
    holder: str | None  # None: nobody holds it now (expired or released)
    since: datetime | None
    expires_at: datetime


def _server_now(conn: Connection, offset: timedelta = timedelta(0)) -> ColumnElement[datetime]:
    """The database server's clock, plus ``offset``.

    SQLite is one machine, so its clock is this process's; it also has no interval
    arithmetic, hence the sum is made here.
    """
    if conn.dialect.name == "postgresql":
        return func.now() + offset if offset else func.now()
    return literal(datetime.now(UTC) + offset, UtcDateTime())


def _insert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """INSERT in the backend's own dialect, for its ON CONFLICT clause."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class NodeRegistry:
    """One node's view of the cluster: its row, its heartbeat, its roles. Synchronous."""

    def __init__(self, engine: Engine, name: str, lease: timedelta) -> None:
        self._engine = engine
        self.name = name
        self.lease = lease
        self._hold: Connection | None = None  # PostgreSQL: the session holding the name
        self._file: IO[str] | None = None  # SQLite: the locked file

    # --- membership ---------------------------------------------------------------------

    def join(self, host: str, pid: int) -> None:
        """Hold the name (refuse a second daemon), then write this node's row, alive now."""
        self._hold_name()
        try:
            with self._engine.begin() as conn:
                now = _server_now(conn)
                row = {"name": self.name, "host": host, "pid": pid}
                conn.execute(
                    _insert(conn, NODES)
                    .values(**row, started_at=now, heartbeat_at=now, stopped_at=None)
                    .on_conflict_do_update(
                        index_elements=["name"],
                        set_={
                            "host": host,
                            "pid": pid,
                            "started_at": now,
                            "heartbeat_at": now,
                            "stopped_at": None,
                        },
                    )
                )
        except SQLAlchemyError as exc:
            self._release_name()
            raise StoreError(f"could not register node {self.name!r}: {exc}") from exc

    def beat(self) -> None:
        """Renew this node's heartbeat."""
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    update(NODES)
                    .where(NODES.c.name == self.name)
                    .values(heartbeat_at=_server_now(conn))
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"could not renew node {self.name!r}'s heartbeat: {exc}") from exc

    def leave(self) -> None:
        """A clean stop: give up every role at once and say so, then free the name."""
        try:
            with self._engine.begin() as conn:
                now = _server_now(conn)
                conn.execute(
                    update(ROLE_ROWS)
                    .where(ROLE_ROWS.c.holder == self.name)
                    .values(holder=None, since=None, expires_at=_EPOCH)
                )
                conn.execute(update(NODES).where(NODES.c.name == self.name).values(stopped_at=now))
        except SQLAlchemyError as exc:
            raise StoreError(f"could not sign node {self.name!r} off: {exc}") from exc
        finally:
            self._release_name()

    def members(self) -> list[NodeRecord]:
        return members(self._engine, self.lease)

    def live_count(self) -> int:
        """How many nodes are alive now, this one included."""
        try:
            with self._engine.connect() as conn:
                count = conn.execute(
                    select(func.count()).where(
                        NODES.c.heartbeat_at >= _server_now(conn, -self.lease),
                        NODES.c.stopped_at.is_(None),
                    )
                ).scalar_one()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not count the live nodes: {exc}") from exc
        return max(1, int(count))

    # --- roles --------------------------------------------------------------------------

    def hold(self, role: str) -> bool:
        """Take ``role`` if it is free or expired, renew it if it is ours; True if ours now."""
        try:
            with self._engine.begin() as conn:
                now = _server_now(conn)
                conn.execute(
                    _insert(conn, ROLE_ROWS)
                    .values(role=role, holder=None, since=None, expires_at=_EPOCH)
                    .on_conflict_do_nothing()
                )
                taken = conn.execute(
                    update(ROLE_ROWS)
                    .where(
                        ROLE_ROWS.c.role == role,
                        or_(
                            ROLE_ROWS.c.holder == self.name,
                            ROLE_ROWS.c.holder.is_(None),
                            ROLE_ROWS.c.expires_at < now,
                        ),
                    )
                    .values(
                        holder=self.name,
                        since=func.coalesce(_since_if_ours(self.name), now),
                        expires_at=_server_now(conn, self.lease),
                    )
                    .returning(ROLE_ROWS.c.holder)
                ).first()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not renew role {role!r}: {exc}") from exc
        return taken is not None

    # --- claims -------------------------------------------------------------------------

    def take_over_claims(self, due: datetime) -> int:
        """Make due at ``due`` the recipients claimed by nodes silent for longer than the lease.

        A node that died mid-delivery left them ``delivering``; this node (any
        live node) hands them back to the queue. Two live nodes doing it at once
        update each row once: the second UPDATE finds it no longer ``delivering``.
        """
        try:
            with self._engine.begin() as conn:
                alive = select(NODES.c.name).where(
                    NODES.c.heartbeat_at >= _server_now(conn, -self.lease),
                    NODES.c.stopped_at.is_(None),
                )
                result = conn.execute(
                    update(RECIPIENTS)
                    .where(
                        RECIPIENTS.c.status == RecipientStatus.DELIVERING.value,
                        RECIPIENTS.c.claimed_by.is_not(None),
                        RECIPIENTS.c.claimed_by != self.name,
                        RECIPIENTS.c.claimed_by.not_in(alive),
                    )
                    .values(
                        status=RecipientStatus.DEFERRED.value,
                        next_attempt_at=due,
                        updated_at=due,
                        claimed_by=None,
                    )
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"could not take over a dead node's claims: {exc}") from exc
        return int(result.rowcount)

    # --- the name lock ------------------------------------------------------------------

    def _hold_name(self) -> None:
        if self._engine.dialect.name == "postgresql":
            self._hold_postgres_name()
        else:
            self._hold_sqlite_file()

    def _hold_postgres_name(self) -> None:
        conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            # The schema is part of the key: one server may hold several hrmonitor stores.
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:cls, hashtext(current_schema() || ':' || :n))"),
                {"cls": _NAME_LOCK, "n": self.name},
            ).scalar_one()
        except SQLAlchemyError as exc:
            conn.close()
            raise StoreError(f"could not lock node name {self.name!r}: {exc}") from exc
        if not got:
            conn.close()
            raise NodeNameInUse(
                f"node name {self.name!r} is in use by another running hrmonitor on this "
                "database: give each node its own [node] name"
            )
        self._hold = conn

    def _hold_sqlite_file(self) -> None:
        database = self._engine.url.database
        if not database or database == ":memory:":
            return
        path = Path(database).with_name(Path(database).name + ".node-lock")
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise NodeNameInUse(
                f"{database} is in use by another hrmonitor daemon ({holder}): SQLite is "
                "single-node; several nodes share a PostgreSQL database"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"node {self.name}, pid {os.getpid()}\n")
        handle.flush()
        self._file = handle

    def _release_name(self) -> None:
        if self._hold is not None:
            with contextlib.suppress(SQLAlchemyError):
                # Unlocked here and now: a closed session's backend may drop its locks
                # only a moment later, and a restart under the same name must find it free.
                self._hold.execute(
                    text(
                        "SELECT pg_advisory_unlock(:cls, hashtext(current_schema() || ':' || :n))"
                    ),
                    {"cls": _NAME_LOCK, "n": self.name},
                )
            with contextlib.suppress(SQLAlchemyError):
                # Not back to the pool, where the session would live on.
                self._hold.invalidate()
                self._hold.close()
            self._hold = None
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _since_if_ours(name: str) -> ColumnElement[Any]:
    """A role's ``since`` stays while its holder renews it; a new holder starts it anew."""
    return case((ROLE_ROWS.c.holder == name, ROLE_ROWS.c.since), else_=None)


def members(engine: Engine, lease: timedelta) -> list[NodeRecord]:
    """Every node the store has seen, with whether it is alive now."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(
                    NODES,
                    and_(
                        NODES.c.heartbeat_at >= _server_now(conn, -lease),
                        NODES.c.stopped_at.is_(None),
                    ).label("alive"),
                ).order_by(NODES.c.name)
            ).all()
    except SQLAlchemyError as exc:
        raise StoreError(f"could not read the nodes: {exc}") from exc
    return [
        NodeRecord(r.name, r.host, r.pid, r.started_at, r.heartbeat_at, r.stopped_at, bool(r.alive))
        for r in rows
    ]


def roles(engine: Engine) -> list[RoleRecord]:
    """Each role with its holder now (None where the lease ran out or was given up)."""
    try:
        with engine.connect() as conn:
            now = _server_now(conn)
            rows = conn.execute(
                select(ROLE_ROWS, (ROLE_ROWS.c.expires_at >= now).label("live")).order_by(
                    ROLE_ROWS.c.role
                )
            ).all()
    except SQLAlchemyError as exc:
        raise StoreError(f"could not read the roles: {exc}") from exc
    return [
        RoleRecord(r.role, r.holder if r.live else None, r.since if r.live else None, r.expires_at)
        for r in rows
    ]
