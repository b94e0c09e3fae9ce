"""The tables: one declarative ``Base`` shared by every store module (the queue adds its own).

Changing a table here needs a migration in ``migrations/versions``; the schema
in the database is made only by migrations, never by ``metadata.create_all``.

Timestamps go through :class:`UtcDateTime`: timezone-aware UTC in and out, whatever
the backend keeps (SQLite has no time zones, so it stores naive UTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

IP = String(45)  # the longest IPv6 text form
NAME = String(100)  # pool names, list keys, scopes
STATE = String(32)


def utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC, as the store keeps it; a naive datetime is refused (ValueError)."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: the store takes timezone-aware UTC")
    return value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime; naive values are refused rather than guessed at."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        value = utc(value)
        if value is None:
            return None
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), date: Date()}  # noqa: RUF012


class PoolRow(Base):
    __tablename__ = "pools"

    name: Mapped[str] = mapped_column(NAME, primary_key=True)
    risk: Mapped[str] = mapped_column(STATE)


class IpRow(Base):
    __tablename__ = "ips"

    ip: Mapped[str] = mapped_column(IP, primary_key=True)
    pool: Mapped[str] = mapped_column(ForeignKey("pools.name"))
    state: Mapped[str] = mapped_column(STATE)
    state_since: Mapped[datetime]
    state_until: Mapped[datetime | None]  # an operator's "until" for the current state
    state_actor: Mapped[str] = mapped_column(NAME, server_default=text("''"))
    warmup_stage: Mapped[int | None] = mapped_column(Integer)
    warmup_since: Mapped[datetime | None]
    # Volume of the UTC day ``sent_day``; the next day's first count starts them over.
    sent_today: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    delivered_today: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    sent_day: Mapped[date | None]
    last_sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class IpVolumeRow(Base):
    """One node's messages from one IP on one UTC day, and its warm-up reservation.

    A row per node: nodes never update each other's rows, so no row is updated by
    every delivery of every node; totals are sums over nodes. ``reserved`` is the
    share of a warming IP's daily cap this node took (``adapters.store.volume``).
    """

    __tablename__ = "ip_volume"

    ip: Mapped[str] = mapped_column(ForeignKey("ips.ip"), primary_key=True)
    day: Mapped[date] = mapped_column(primary_key=True)
    node: Mapped[str] = mapped_column(NAME, primary_key=True)
    sent: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    delivered: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    reserved: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_sent_at: Mapped[datetime | None]


class IpPoolHistoryRow(Base):
    """Every pool an IP ever served, with that pool's risk at the time."""

    __tablename__ = "ip_pool_history"
    __table_args__ = (UniqueConstraint("ip", "pool", "risk"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ip: Mapped[str] = mapped_column(IP, index=True)
    pool: Mapped[str] = mapped_column(NAME)
    risk: Mapped[str] = mapped_column(STATE)
    first_seen: Mapped[datetime]


class ZoneHealthRow(Base):
    __tablename__ = "zone_health"

    list_key: Mapped[str] = mapped_column(NAME, primary_key=True)
    health: Mapped[str] = mapped_column(STATE)
    detail: Mapped[str] = mapped_column(Text, server_default=text("''"))
    checked_at: Mapped[datetime]
    changed_at: Mapped[datetime]


class AnswerRow(Base):
    """The latest trustworthy answer per (ip, list); ``clean_since`` starts a clean run."""

    __tablename__ = "answers"

    ip: Mapped[str] = mapped_column(IP, primary_key=True)
    list_key: Mapped[str] = mapped_column(NAME, primary_key=True)
    status: Mapped[str] = mapped_column(STATE)
    codes: Mapped[list[str]] = mapped_column(JSON)
    tags: Mapped[list[str]] = mapped_column(JSON)
    severity: Mapped[str | None] = mapped_column(STATE)
    txt: Mapped[str] = mapped_column(Text, server_default=text("''"))
    checked_at: Mapped[datetime]
    clean_since: Mapped[datetime | None]


class ListingRow(Base):
    """One listing interval: open while ``cleared_at`` is NULL (at most one per ip and list)."""

    __tablename__ = "listings"
    __table_args__ = (
        Index(
            "uq_listings_open",
            "ip",
            "list_key",
            unique=True,
            sqlite_where=text("cleared_at IS NULL"),
            postgresql_where=text("cleared_at IS NULL"),
        ),
        Index("ix_listings_ip_first_seen", "ip", "first_seen"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ip: Mapped[str] = mapped_column(IP)
    list_key: Mapped[str] = mapped_column(NAME)
    codes: Mapped[list[str]] = mapped_column(JSON)
    tags: Mapped[list[str]] = mapped_column(JSON)
    severity: Mapped[str] = mapped_column(STATE)
    txt: Mapped[str] = mapped_column(Text, server_default=text("''"))
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    cleared_at: Mapped[datetime | None]


class AuditEventRow(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_ip_at", "ip", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    ip: Mapped[str] = mapped_column(IP)
    pool: Mapped[str] = mapped_column(NAME)
    kind: Mapped[str] = mapped_column(STATE)
    from_state: Mapped[str | None] = mapped_column(Text)
    to_state: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(NAME)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    until: Mapped[datetime | None]
    node: Mapped[str | None] = mapped_column(NAME)  # the daemon that acted (None: a command)


class SuspensionRow(Base):
    """A timed ban of an IP for one destination provider, or ``*`` for the whole IP."""

    __tablename__ = "suspensions"
    __table_args__ = (
        Index(
            "uq_suspensions_open",
            "ip",
            "scope",
            unique=True,
            sqlite_where=text("lifted_at IS NULL"),
            postgresql_where=text("lifted_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ip: Mapped[str] = mapped_column(IP)
    scope: Mapped[str] = mapped_column(NAME)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(NAME)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    since: Mapped[datetime]
    until: Mapped[datetime]
    lifted_at: Mapped[datetime | None]


class AlertRow(Base):
    __tablename__ = "alerts"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    kind: Mapped[str] = mapped_column(NAME)
    severity: Mapped[str] = mapped_column(STATE)
    first_at: Mapped[datetime]
    last_sent_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


def dialect_insert(session: Session, table: Table) -> sqlite.Insert | postgresql.Insert:
    """INSERT in the backend's own dialect, for its ON CONFLICT clause."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_new(session: Session, model: type[Base], values: Mapping[str, object]) -> bool:
    """INSERT one row unless it collides with a unique key; True if it was inserted.

    The collision is settled by the database, so two nodes racing to insert the same
    listing, suspension or alert end up with one row and exactly one ``True``.
    """
    table = model.__table__
    assert isinstance(table, Table)
    statement = dialect_insert(session, table).values(dict(values)).on_conflict_do_nothing()
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT.
    first_key = next(iter(table.primary_key.columns))
    return session.execute(statement.returning(first_key)).first() is not None
