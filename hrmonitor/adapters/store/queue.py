"""The durable mail queue: messages, their recipients, and every delivery attempt.

The listener acknowledges a message only after :meth:`QueueRepository.enqueue`
returned, i.e. after the transaction holding the message, its envelope and its
routing decision committed (SQLite WAL with ``synchronous=FULL``, or
PostgreSQL). ``enqueue`` takes a batch so the relay can group-commit
concurrent acceptances: one fsync for many messages.

A recipient moves ``queued``/``deferred`` -> ``delivering`` when the runner
claims it, then to ``delivered``, ``bounced`` or ``deferred``. A crash leaves
claimed recipients ``delivering``; :meth:`recover` makes them due again on
start-up (at least once: the remote side may see a message twice, never zero
times). Claims and attempt records are not fsynced on their own (see
``_relaxed``): only acceptances are, which is what the acknowledgement
promises. On PostgreSQL claims use ``FOR UPDATE SKIP LOCKED`` so several nodes
can share one queue; on SQLite the write lock taken by ``BEGIN IMMEDIATE``
serialises claims.

Statements are SQLAlchemy Core against the ORM tables: the queue is the hot
path and needs no identity map.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
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
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from hrmonitor.adapters.store.schema import IP, NAME, STATE, Base
from hrmonitor.errors import StoreError


class RecipientStatus(StrEnum):
    QUEUED = "queued"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    DEFERRED = "deferred"

    @property
    def final(self) -> bool:
        return self in (RecipientStatus.DELIVERED, RecipientStatus.BOUNCED)


class QueueMessageRow(Base):
    __tablename__ = "queue_messages"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant: Mapped[str] = mapped_column(NAME)
    client_ip: Mapped[str] = mapped_column(IP)
    mail_from: Mapped[str] = mapped_column(Text)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    arrived_at: Mapped[datetime]
    pool: Mapped[str] = mapped_column(NAME)
    risk: Mapped[str] = mapped_column(STATE)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    bounce_kind: Mapped[str | None] = mapped_column(STATE)
    hold_until: Mapped[datetime | None]
    message_id: Mapped[str] = mapped_column(Text)
    smtputf8: Mapped[int] = mapped_column(Integer)
    dsn_of: Mapped[str | None] = mapped_column(String(40))


class QueueRecipientRow(Base):
    __tablename__ = "queue_recipients"
    __table_args__ = (
        Index("ix_queue_recipients_due", "status", "next_attempt_at"),
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
RECIPIENTS = _table(QueueRecipientRow)
ATTEMPTS = _table(QueueAttemptRow)


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message as accepted, with its routing decision; ``reasons`` are JSON-able dicts."""

    id: str
    tenant: str
    client_ip: str
    mail_from: str
    recipients: tuple[str, ...]
    body: bytes
    arrived_at: datetime
    pool: str
    risk: str
    reasons: tuple[Mapping[str, Any], ...] = ()
    bounce_kind: str | None = None
    hold_until: datetime | None = None
    message_id: str = ""
    smtputf8: bool = False
    dsn_of: str | None = None
    due_at: datetime | None = None  # first attempt (default: hold_until, else arrival)


@dataclass(frozen=True, slots=True)
class DueRecipient:
    """A claimed recipient (now ``delivering``) with what the runner needs of its message."""

    recipient_id: int
    message_id: str
    address: str
    domain: str
    attempts: int
    mail_from: str
    pool: str
    risk: str
    arrived_at: datetime
    size: int
    smtputf8: bool
    tenant: str
    body: bytes | None = None  # inlined when small (see ``claim_due``), else read with body()
    hold_until: datetime | None = None  # routing is still waiting for the sender's DNS
    client_ip: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt for one recipient, and the recipient's new state."""

    recipient_id: int
    message_id: str
    status: RecipientStatus
    at: datetime
    pool: str
    next_attempt_at: datetime | None = None
    source_ip: str | None = None
    destination: str = ""
    code: int | None = None
    reply: str = ""
    duration_ms: float = 0.0
    own: bool = False  # an internal deferral (no eligible IP, DNS failure), not a remote reply
    counts_as_attempt: bool = True


@dataclass(frozen=True, slots=True)
class RecipientRecord:
    id: int
    message_id: str
    address: str
    domain: str
    status: RecipientStatus
    attempts: int
    next_attempt_at: datetime
    last_code: int | None
    last_reply: str
    remote_mta: str


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: str
    tenant: str
    client_ip: str
    mail_from: str
    size: int
    arrived_at: datetime
    pool: str
    risk: str
    reasons: tuple[Mapping[str, Any], ...]
    bounce_kind: str | None
    hold_until: datetime | None
    message_id: str
    dsn_of: str | None
    recipients: tuple[RecipientRecord, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    message_id: str
    recipient_id: int
    pool: str
    source_ip: str | None
    destination: str
    code: int | None
    reply: str
    duration_ms: float
    at: datetime
    own: bool


_WAITING = (RecipientStatus.QUEUED.value, RecipientStatus.DEFERRED.value)

# One statement for every outcome shape, so a batch of outcomes is one executemany.
_RECORD = (
    update(RECIPIENTS)
    .where(RECIPIENTS.c.id == bindparam("rid"))
    .values(
        status=bindparam("new_status"),
        updated_at=bindparam("at", type_=RECIPIENTS.c.updated_at.type),
        last_reply=bindparam("reply"),
        attempts=RECIPIENTS.c.attempts + bindparam("increment"),
        last_code=func.coalesce(bindparam("code", type_=Integer), RECIPIENTS.c.last_code),
        remote_mta=func.coalesce(bindparam("destination", type_=Text), RECIPIENTS.c.remote_mta),
        next_attempt_at=func.coalesce(
            bindparam("next_at", type_=RECIPIENTS.c.next_attempt_at.type),
            RECIPIENTS.c.next_attempt_at,
        ),
    )
)


class QueueRepository:
    """Synchronous queue operations; the relay runs them on its own store thread."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @contextmanager
    def _relaxed(self) -> Iterator[Connection]:
        """A transaction whose commit need not reach the disk by itself (claims, attempts).

        Losing one in a crash only repeats a delivery (the recipient is still
        ``delivering`` or due, and :meth:`recover` retries it): at least once holds.
        The next durable commit (an acceptance) flushes it anyway. SQLite: WAL with
        ``synchronous=NORMAL`` for this transaction only; PostgreSQL:
        ``synchronous_commit = off`` for this transaction only.
        """
        with self._engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA synchronous = NORMAL")  # type: ignore[union-attr]
            try:
                with conn.begin():
                    if not sqlite:
                        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                    yield conn
            finally:
                if sqlite:
                    conn.connection.driver_connection.execute("PRAGMA synchronous = FULL")  # type: ignore[union-attr]

    def enqueue(self, messages: Sequence[NewMessage]) -> None:
        """Store ``messages`` and their recipients in one transaction; returns after commit."""
        if not messages:
            return
        message_rows = [
            {
                "id": m.id,
                "tenant": m.tenant,
                "client_ip": m.client_ip,
                "mail_from": m.mail_from,
                "body": m.body,
                "size": len(m.body),
                "arrived_at": m.arrived_at,
                "pool": m.pool,
                "risk": m.risk,
                "reasons": [dict(r) for r in m.reasons],
                "bounce_kind": m.bounce_kind,
                "hold_until": m.hold_until,
                "message_id": m.message_id,
                "smtputf8": int(m.smtputf8),
                "dsn_of": m.dsn_of,
            }
            for m in messages
        ]
        recipient_rows = [
            {
                "message_id": m.id,
                "address": address,
                "domain": address.rpartition("@")[2].lower(),
                "status": RecipientStatus.QUEUED.value,
                "attempts": 0,
                "next_attempt_at": m.due_at or m.hold_until or m.arrived_at,
                "last_code": None,
                "last_reply": "",
                "remote_mta": "",
                "updated_at": m.arrived_at,
            }
            for m in messages
            for address in m.recipients
        ]
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(MESSAGES), message_rows)
                if recipient_rows:
                    conn.execute(insert(RECIPIENTS), recipient_rows)
        except SQLAlchemyError as exc:
            raise StoreError(f"could not enqueue {len(messages)} message(s): {exc}") from exc

    def claim_due(
        self, now: datetime, limit: int, inline_body: int = 64 * 1024
    ) -> list[DueRecipient]:
        """Mark up to ``limit`` due recipients ``delivering`` and return them, oldest due first.

        Bodies up to ``inline_body`` bytes come along (one query instead of one per
        message); bigger ones are read with :meth:`body` when they are sent.
        """
        small_body = case((MESSAGES.c.size <= inline_body, MESSAGES.c.body), else_=null())
        query = (
            select(
                RECIPIENTS.c.id,
                RECIPIENTS.c.message_id,
                RECIPIENTS.c.address,
                RECIPIENTS.c.domain,
                RECIPIENTS.c.attempts,
                MESSAGES.c.mail_from,
                MESSAGES.c.pool,
                MESSAGES.c.risk,
                MESSAGES.c.arrived_at,
                MESSAGES.c.size,
                MESSAGES.c.smtputf8,
                MESSAGES.c.tenant,
                MESSAGES.c.hold_until,
                MESSAGES.c.client_ip,
                small_body.label("small_body"),
            )
            .join(MESSAGES, MESSAGES.c.id == RECIPIENTS.c.message_id)
            .where(RECIPIENTS.c.status.in_(_WAITING), RECIPIENTS.c.next_attempt_at <= now)
            .order_by(RECIPIENTS.c.next_attempt_at, RECIPIENTS.c.id)
            .limit(limit)
        )
        try:
            with self._relaxed() as conn:
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update(of=RECIPIENTS, skip_locked=True)
                rows = conn.execute(query).all()
                if not rows:
                    return []
                conn.execute(
                    update(RECIPIENTS)
                    .where(RECIPIENTS.c.id.in_([r.id for r in rows]))
                    .values(status=RecipientStatus.DELIVERING.value, updated_at=now)
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"could not claim due recipients: {exc}") from exc
        return [
            DueRecipient(
                recipient_id=r.id,
                message_id=r.message_id,
                address=r.address,
                domain=r.domain,
                attempts=r.attempts,
                mail_from=r.mail_from,
                pool=r.pool,
                risk=r.risk,
                arrived_at=r.arrived_at,
                size=r.size,
                smtputf8=bool(r.smtputf8),
                tenant=r.tenant,
                body=None if r.small_body is None else bytes(r.small_body),
                hold_until=r.hold_until,
                client_ip=r.client_ip,
            )
            for r in rows
        ]

    def body(self, message_id: str) -> bytes:
        try:
            with self._engine.connect() as conn:
                value = conn.execute(
                    select(MESSAGES.c.body).where(MESSAGES.c.id == message_id)
                ).scalar_one_or_none()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read message {message_id}: {exc}") from exc
        if value is None:
            raise StoreError(f"message {message_id} is not in the queue")
        return bytes(value)

    def reroute(
        self,
        message_id: str,
        *,
        pool: str,
        risk: str,
        reasons: Sequence[Mapping[str, Any]],
        hold_until: datetime | None,
    ) -> None:
        """A held message was routed again: its new pool, reasons and (maybe) hold."""
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    update(MESSAGES)
                    .where(MESSAGES.c.id == message_id)
                    .values(
                        pool=pool,
                        risk=risk,
                        reasons=[dict(r) for r in reasons],
                        hold_until=hold_until,
                    )
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"could not re-route message {message_id}: {exc}") from exc

    def record(self, outcomes: Sequence[Outcome]) -> None:
        """Store the attempts and the recipients' new states in one transaction."""
        if not outcomes:
            return
        attempts = [
            {
                "message_id": o.message_id,
                "recipient_id": o.recipient_id,
                "pool": o.pool,
                "source_ip": o.source_ip,
                "destination": o.destination,
                "code": o.code,
                "reply": o.reply,
                "duration_ms": o.duration_ms,
                "at": o.at,
                "own": int(o.own),
            }
            for o in outcomes
        ]
        try:
            with self._relaxed() as conn:
                conn.execute(insert(ATTEMPTS), attempts)
                conn.execute(
                    _RECORD,
                    [
                        {
                            "rid": o.recipient_id,
                            "new_status": o.status.value,
                            "at": o.at,
                            "reply": o.reply,
                            "increment": 1 if o.counts_as_attempt else 0,
                            "code": o.code,
                            "destination": o.destination or None,
                            "next_at": o.next_attempt_at,
                        }
                        for o in outcomes
                    ],
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"could not record {len(outcomes)} attempt(s): {exc}") from exc

    def recover(self, now: datetime, claimed_before: datetime | None = None) -> int:
        """Make ``delivering`` recipients due now; returns how many.

        At start-up (``claimed_before`` None) every one of them: they were mid-delivery
        when the process died. While running, only those claimed before
        ``claimed_before``: a claim that old was lost (a store error in its delivery
        task, or a node that died while other nodes share the queue).
        """
        stale = RECIPIENTS.c.status == RecipientStatus.DELIVERING.value
        if claimed_before is not None:
            stale = and_(stale, RECIPIENTS.c.updated_at < claimed_before)
        try:
            with self._engine.begin() as conn:
                result = conn.execute(
                    update(RECIPIENTS)
                    .where(stale)
                    .values(
                        status=RecipientStatus.DEFERRED.value, next_attempt_at=now, updated_at=now
                    )
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"could not recover the queue: {exc}") from exc
        return int(result.rowcount)

    def next_due_at(self) -> datetime | None:
        """When the earliest waiting recipient falls due (None if nothing waits)."""
        try:
            with self._engine.connect() as conn:
                value = conn.execute(
                    select(func.min(RECIPIENTS.c.next_attempt_at)).where(
                        RECIPIENTS.c.status.in_(_WAITING)
                    )
                ).scalar_one_or_none()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read the queue: {exc}") from exc
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value

    def message(self, message_id: str) -> MessageRecord | None:
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    select(MESSAGES).where(MESSAGES.c.id == message_id)
                ).one_or_none()
                if row is None:
                    return None
                recipients = conn.execute(
                    select(RECIPIENTS)
                    .where(RECIPIENTS.c.message_id == message_id)
                    .order_by(RECIPIENTS.c.id)
                ).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read message {message_id}: {exc}") from exc
        return MessageRecord(
            id=row.id,
            tenant=row.tenant,
            client_ip=row.client_ip,
            mail_from=row.mail_from,
            size=row.size,
            arrived_at=row.arrived_at,
            pool=row.pool,
            risk=row.risk,
            reasons=tuple(row.reasons),
            bounce_kind=row.bounce_kind,
            hold_until=row.hold_until,
            message_id=row.message_id,
            dsn_of=row.dsn_of,
            recipients=tuple(_recipient(r) for r in recipients),
        )

    def message_ids(self) -> list[str]:
        try:
            with self._engine.connect() as conn:
                return list(
                    conn.execute(select(MESSAGES.c.id).order_by(MESSAGES.c.arrived_at)).scalars()
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read the queue: {exc}") from exc

    def attempts(self, message_id: str) -> list[AttemptRecord]:
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(ATTEMPTS)
                    .where(ATTEMPTS.c.message_id == message_id)
                    .order_by(ATTEMPTS.c.id)
                ).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read attempts of {message_id}: {exc}") from exc
        return [
            AttemptRecord(
                message_id=r.message_id,
                recipient_id=r.recipient_id,
                pool=r.pool,
                source_ip=r.source_ip,
                destination=r.destination,
                code=r.code,
                reply=r.reply,
                duration_ms=r.duration_ms,
                at=r.at,
                own=bool(r.own),
            )
            for r in rows
        ]

    def recipients_sent_since(self, since: datetime) -> list[tuple[str, datetime, int]]:
        """(envelope sender, arrival, recipients) of each tenant message arrived since ``since``.

        What the router's sending-limit windows counted at acceptance, so that a
        restarted daemon can count them again: the null sender and the relay's own
        DSNs (``dsn_of``) are not a tenant account's sending. Finished messages are
        kept for ``RelaySettings.keep_finished`` (a week), longer than the day-long
        limit window.
        """
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(MESSAGES.c.mail_from, MESSAGES.c.arrived_at, func.count())
                    .join(RECIPIENTS, RECIPIENTS.c.message_id == MESSAGES.c.id)
                    .where(
                        MESSAGES.c.arrived_at >= since,
                        MESSAGES.c.mail_from != "",
                        MESSAGES.c.dsn_of.is_(None),
                    )
                    .group_by(MESSAGES.c.id, MESSAGES.c.mail_from, MESSAGES.c.arrived_at)
                    .order_by(MESSAGES.c.arrived_at)
                ).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read the senders' recent mail: {exc}") from exc
        return [(sender, arrived, int(count)) for sender, arrived, count in rows]

    def tenant_counts(self, since: datetime) -> list[tuple[str, int, int, int]]:
        """Per tenant since ``since``: (tenant, recipients concluded, bounced, ARF reports).

        The tenants' own outbound mail only: the relay's DSNs (``dsn_of``) and
        null-sender mail are not "sent" by a tenant, and ARF complaint reports are
        counted by the bounce kind they were classified as at acceptance.
        """
        concluded = (RecipientStatus.DELIVERED.value, RecipientStatus.BOUNCED.value)
        bounced = func.sum(case((RECIPIENTS.c.status == RecipientStatus.BOUNCED.value, 1), else_=0))
        try:
            with self._engine.connect() as conn:
                sent = conn.execute(
                    select(MESSAGES.c.tenant, func.count(), bounced)
                    .join(MESSAGES, MESSAGES.c.id == RECIPIENTS.c.message_id)
                    .where(
                        MESSAGES.c.arrived_at >= since,
                        MESSAGES.c.dsn_of.is_(None),
                        MESSAGES.c.mail_from != "",
                        RECIPIENTS.c.status.in_(concluded),
                    )
                    .group_by(MESSAGES.c.tenant)
                ).all()
                complaints = conn.execute(
                    select(MESSAGES.c.tenant, func.count())
                    .where(MESSAGES.c.arrived_at >= since, MESSAGES.c.bounce_kind == "arf")
                    .group_by(MESSAGES.c.tenant)
                ).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not count tenants' outcomes: {exc}") from exc
        arf = {tenant: int(n) for tenant, n in complaints}
        rows = {tenant: (int(n), int(b or 0)) for tenant, n, b in sent}
        return [
            (tenant, *rows.get(tenant, (0, 0)), arf.get(tenant, 0))
            for tenant in sorted(set(rows) | set(arf))
        ]

    def counts(self) -> dict[str, dict[str, int]]:
        """Recipients per pool and status (the report's queue section)."""
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(MESSAGES.c.pool, RECIPIENTS.c.status, func.count())
                    .join(MESSAGES, MESSAGES.c.id == RECIPIENTS.c.message_id)
                    .group_by(MESSAGES.c.pool, RECIPIENTS.c.status)
                ).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not count the queue: {exc}") from exc
        result: dict[str, dict[str, int]] = {}
        for pool, status, count in rows:
            result.setdefault(pool, {})[status] = int(count)
        return result

    def purge_finished(self, before: datetime) -> int:
        """Delete messages whose recipients are all final and that arrived before ``before``."""
        unfinished = select(RECIPIENTS.c.message_id).where(
            or_(
                RECIPIENTS.c.status.in_(_WAITING),
                RECIPIENTS.c.status == RecipientStatus.DELIVERING.value,
            )
        )
        try:
            with self._engine.begin() as conn:
                result = conn.execute(
                    delete(MESSAGES).where(
                        and_(MESSAGES.c.arrived_at < before, MESSAGES.c.id.not_in(unfinished))
                    )
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"could not purge the queue: {exc}") from exc
        return int(result.rowcount)


def _recipient(r: Any) -> RecipientRecord:
    return RecipientRecord(
        id=r.id,
        message_id=r.message_id,
        address=r.address,
        domain=r.domain,
        status=RecipientStatus(r.status),
        attempts=r.attempts,
        next_attempt_at=r.next_attempt_at,
        last_code=r.last_code,
        last_reply=r.last_reply,
        remote_mta=r.remote_mta,
    )
