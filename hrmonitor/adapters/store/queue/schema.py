"""The queue's tables: messages, their recipients, and every delivery attempt.

Declared on the store's shared ``Base``; the migration ``0002_queue`` creates them,
``0006_bodies`` moves the bodies to a table of their own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import TextClause

from hrmonitor.adapters.store.queue.model import WAITING
from hrmonitor.adapters.store.schema import IP, NAME, STATE, Base

# The waiting recipients (``model.WAITING``) as literal values: a database uses the
# partial index ``ix_queue_recipients_waiting`` (only they, in claim order) only for a
# query whose WHERE names the same constants; a bound parameter never matches. On
# SQLite the column is written ``+status``, in the index and in the queries: unary plus
# changes nothing but makes the term unusable for ``ix_queue_recipients_due`` (status
# first), which SQLite's planner otherwise prefers for the equality and then sorts
# every due recipient. PostgreSQL has no unary plus for text and needs none: its
# planner picks the partial index for ORDER BY ... LIMIT.
WAITING_INDEX = "ix_queue_recipients_waiting"
_WAITING_VALUES = ", ".join(f"'{status}'" for status in WAITING)


def waiting_predicate(dialect: str, table: str = "") -> str:
    """The partial index's WHERE for ``dialect`` (``table``: a qualifier for queries)."""
    plus = "+" if dialect == "sqlite" else ""
    qualifier = f"{table}." if table else ""
    return f"{plus}{qualifier}status IN ({_WAITING_VALUES})"


class QueueMessageRow(Base):
    __tablename__ = "queue_messages"
    # The housekeeping purge deletes by age: without it each purge read every row of
    # the week of history the queue keeps (``keep_finished``), on the store thread.
    __table_args__ = (Index("ix_queue_messages_arrived_at", "arrived_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(NAME)
    client_ip: Mapped[str] = mapped_column(IP)
    mail_from: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)  # of the body, in queue_bodies
    arrived_at: Mapped[datetime]
    pool: Mapped[str] = mapped_column(NAME)
    risk: Mapped[str] = mapped_column(STATE)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    bounce_kind: Mapped[str | None] = mapped_column(STATE)
    hold_until: Mapped[datetime | None]
    message_id: Mapped[str] = mapped_column(Text)
    smtputf8: Mapped[int] = mapped_column(Integer)
    # The body has bytes above 127 (migration 0008; NULL for a message queued before it).
    eight_bit: Mapped[int | None] = mapped_column(Integer)
    dsn_of: Mapped[str | None] = mapped_column(String(40))
    # The node that accepted it: its sending-limit counts are that node's to restore.
    accepted_by: Mapped[str | None] = mapped_column(NAME)


class QueueBodyRow(Base):
    """A message's bytes, apart (migration 0006): SQLite rewrites a whole row for an
    UPDATE of any column, and the body must stay the last column for blob I/O."""

    __tablename__ = "queue_bodies"

    message_id: Mapped[str] = mapped_column(
        ForeignKey("queue_messages.id", ondelete="CASCADE"), primary_key=True
    )
    body: Mapped[bytes] = mapped_column(LargeBinary)


class QueueRecipientRow(Base):
    __tablename__ = "queue_recipients"
    __table_args__ = (
        Index("ix_queue_recipients_due", "status", "next_attempt_at"),
        # Only the recipients that wait, in the order the runner claims them: a claim
        # reads its LIMIT rows off this index whatever the queue's backlog or history.
        Index(
            WAITING_INDEX,
            "next_attempt_at",
            "id",
            sqlite_where=text(waiting_predicate("sqlite")),
            postgresql_where=text(waiting_predicate("postgresql")),
        ),
        Index("ix_queue_recipients_message_id", "message_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("queue_messages.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(Text)
    domain: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(STATE)
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    last_code: Mapped[int | None] = mapped_column(Integer)
    last_reply: Mapped[str] = mapped_column(Text)
    remote_mta: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]
    # The node whose claim this is while ``delivering`` (adapters.store.nodes).
    claimed_by: Mapped[str | None] = mapped_column(NAME)


class QueueAttemptRow(Base):
    __tablename__ = "queue_attempts"
    __table_args__ = (Index("ix_queue_attempts_message_id", "message_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(40))
    recipient_id: Mapped[int] = mapped_column(Integer)
    pool: Mapped[str] = mapped_column(NAME)
    source_ip: Mapped[str | None] = mapped_column(IP)
    destination: Mapped[str] = mapped_column(Text)
    code: Mapped[int | None] = mapped_column(Integer)
    reply: Mapped[str] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime]
    own: Mapped[int] = mapped_column(Integer)


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


MESSAGES = _table(QueueMessageRow)
BODIES = _table(QueueBodyRow)
RECIPIENTS = _table(QueueRecipientRow)
ATTEMPTS = _table(QueueAttemptRow)


def is_waiting(dialect: str) -> TextClause:
    """RECIPIENTS' waiting recipients, as the partial index on ``dialect`` has them."""
    return text(waiting_predicate(dialect, RECIPIENTS.name))
