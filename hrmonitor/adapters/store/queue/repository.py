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

Where each part lives: the values (recipient states, messages, claims,
outcomes, records) in ``queue_model``, the tables in ``queue_schema``, the
runner's claims, attempt records and recovery in ``queue_delivery``, the
read-only queries (one message, counts for the report and the sending limits)
in ``queue_reports``. This module keeps the ends of a message's life,
acceptance (``enqueue``, ``reroute``) and ``purge_finished``, and every name
the rest of hrmonitor imports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from hrmonitor.adapters.store.queue.bodies import insert_bodies
from hrmonitor.adapters.store.queue.delivery import QueueDelivery
from hrmonitor.adapters.store.queue.model import (
    UNFINISHED,
    AttemptRecord,
    Claim,
    DueRecipient,
    MessageRecord,
    NewMessage,
    Outcome,
    RecipientRecord,
    RecipientStatus,
)
from hrmonitor.adapters.store.queue.reports import QueueReports
from hrmonitor.adapters.store.queue.schema import (
    ATTEMPTS,
    MESSAGES,
    RECIPIENTS,
    QueueAttemptRow,
    QueueMessageRow,
    QueueRecipientRow,
)
from hrmonitor.errors import StoreError

__all__ = [
    "ATTEMPTS",
    "MESSAGES",
    "RECIPIENTS",
    "AttemptRecord",
    "Claim",
    "DueRecipient",
    "MessageRecord",
    "NewMessage",
    "Outcome",
    "QueueAttemptRow",
    "QueueMessageRow",
    "QueueRecipientRow",
    "QueueRepository",
    "RecipientRecord",
    "RecipientStatus",
]


class QueueRepository(QueueDelivery, QueueReports):
    """Synchronous queue operations; the relay runs them on its own store thread."""

    def __init__(self, engine: Engine, node: str | None = None) -> None:
        self._engine = engine
        self.node = node

    def enqueue(self, messages: Sequence[NewMessage]) -> None:
        """Store ``messages`` and their recipients in one transaction; returns after commit."""
        if not messages:
            return
        try:
            with self._engine.begin() as conn:
                insert_messages(conn, messages, self.node)
        except SQLAlchemyError as exc:
            raise StoreError(f"could not enqueue {len(messages)} message(s): {exc}") from exc

    def set_bounce_kinds(self, kinds: Sequence[tuple[str, str]]) -> None:
        """Record (message id, bounce kind) pairs in one transaction.

        Classification ends after the 250, one message at a time; the relay groups
        the kinds found meanwhile (as it groups acceptances) so that they cost one
        transaction per batch, not one per message. The transaction is relaxed (no
        fsync of its own, like attempt records): a crash can lose a kind, which
        leaves the message as it is when classification runs out of time,
        unclassified; the message itself was durable before its 250.
        """
        if not kinds:
            return
        statement = (
            update(MESSAGES)
            .where(MESSAGES.c.id == bindparam("message"))
            .values(bounce_kind=bindparam("kind"))
        )
        try:
            with self._relaxed() as conn:
                conn.execute(statement, [{"message": key, "kind": kind} for key, kind in kinds])
        except SQLAlchemyError as exc:
            keys = ", ".join(key for key, _ in kinds[:3]) + (", ..." if len(kinds) > 3 else "")
            raise StoreError(f"could not record the bounce kind of {keys}: {exc}") from exc

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

    def purge_finished(self, before: datetime) -> int:
        """Delete messages whose recipients are all final and that arrived before ``before``."""
        unfinished = select(RECIPIENTS.c.message_id).where(RECIPIENTS.c.status.in_(UNFINISHED))
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


def insert_messages(
    conn: Connection, messages: Sequence[NewMessage], node: str | None = None
) -> None:
    """Insert ``messages`` and their recipients in ``conn``'s transaction (acceptance, bounces).

    ``node``: the node accepting them (its sending-limit counts are restored from them).
    """
    message_rows = [
        {
            "id": m.id,
            "tenant": m.tenant,
            "client_ip": m.client_ip,
            "mail_from": m.mail_from,
            "size": len(m.body),
            "arrived_at": m.arrived_at,
            "pool": m.pool,
            "risk": m.risk,
            "reasons": [dict(r) for r in m.reasons],
            "bounce_kind": m.bounce_kind,
            "hold_until": m.hold_until,
            "message_id": m.message_id,
            "smtputf8": int(m.smtputf8),
            "eight_bit": int(not m.body.isascii()),
            "dsn_of": m.dsn_of,
            "accepted_by": node,
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
    conn.execute(insert(MESSAGES), message_rows)
    # Large bodies go in place (SQLite blob I/O) or in slices (PostgreSQL COPY): bound as
    # one parameter, storing 10 MB took 2x its size on SQLite and left libpq's output
    # buffer at 10 MB on PostgreSQL.
    insert_bodies(conn, [(m.id, m.body) for m in messages])
    if recipient_rows:
        conn.execute(insert(RECIPIENTS), recipient_rows)
