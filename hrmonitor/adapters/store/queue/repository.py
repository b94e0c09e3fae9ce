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

import psycopg
from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from hrmonitor.adapters.store.queue import postgresql
from hrmonitor.adapters.store.queue.bodies import insert_bodies
from hrmonitor.adapters.store.queue.delivery import QueueDelivery, record_outcomes
from hrmonitor.adapters.store.queue.model import (
    UNFINISHED,
    AttemptRecord,
    BounceKind,
    Claim,
    DueRecipient,
    MessageRecord,
    NewMessage,
    Outcome,
    QueueWrite,
    RecipientRecord,
    RecipientStatus,
)
from hrmonitor.adapters.store.queue.reports import QueueReports
from hrmonitor.adapters.store.queue.rows import message_rows, recipient_rows
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
    "BounceKind",
    "Claim",
    "DueRecipient",
    "MessageRecord",
    "NewMessage",
    "Outcome",
    "QueueAttemptRow",
    "QueueMessageRow",
    "QueueRecipientRow",
    "QueueRepository",
    "QueueWrite",
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
        self.write(messages)

    def record(self, outcomes: Sequence[Outcome]) -> None:
        """Store the attempts and the recipients' new states in one relaxed transaction."""
        self.write(outcomes)

    def write(self, writes: Sequence[QueueWrite]) -> None:
        """New messages, bounce kinds and attempt outcomes, all in one transaction.

        The relay group-commits what it writes as it works (``services.relay.group_commit``):
        messages accepted meanwhile, the kinds classification found after their 250s,
        and the outcomes of finished attempts go into the next transaction together, so
        the store thread pays one transaction per batch instead of one per kind of write
        (on PostgreSQL with two nodes, each node's batches are half as large and the
        transactions per message had doubled: issue 11).

        The transaction is durable when it holds a message (its 250 waits for this
        commit); otherwise it is relaxed, like claims: a crash can lose a kind, which
        leaves its message unclassified, or an outcome, which repeats a delivery
        (:meth:`recover`): at least once holds.

        On PostgreSQL the whole batch is one statement (one round trip, its own
        transaction: ``queue.postgresql``); elsewhere an ``executemany`` per table.
        """
        messages = [w for w in writes if isinstance(w, NewMessage)]
        kinds = [w for w in writes if isinstance(w, BounceKind)]
        outcomes = [w for w in writes if isinstance(w, Outcome)]
        if not (messages or kinds or outcomes):
            return
        try:
            if self._engine.dialect.name == "postgresql":
                engine = self._hot_engine(durable=bool(messages))
                postgresql.write(engine, messages, kinds, outcomes, self.node)
                return
            with self._engine.begin() if messages else self._relaxed() as conn:
                if messages:
                    insert_messages(conn, messages, self.node)
                if kinds:
                    conn.execute(
                        _SET_KIND, [{"message": k.message_id, "kind": k.kind} for k in kinds]
                    )
                if outcomes:
                    record_outcomes(conn, outcomes)
        # ValueError: a naive timestamp (``schema.utc``), which SQLAlchemy would have
        # wrapped in a StatementError had the statement gone through it.
        except (SQLAlchemyError, psycopg.Error, ValueError) as exc:
            raise StoreError(
                f"could not write {_summary(messages, kinds, outcomes)}: {exc}"
            ) from exc

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


_SET_KIND = (
    update(MESSAGES)
    .where(MESSAGES.c.id == bindparam("message"))
    .values(bounce_kind=bindparam("kind"))
)


def _summary(
    messages: Sequence[NewMessage], kinds: Sequence[object], outcomes: Sequence[Outcome]
) -> str:
    """What a failed write held, for its error: "2 message(s) (a1, b2), 1 attempt(s)"."""
    parts = []
    if messages:
        keys = ", ".join(m.id for m in messages[:3]) + (", ..." if len(messages) > 3 else "")
        parts.append(f"{len(messages)} message(s) ({keys})")
    if kinds:
        parts.append(f"{len(kinds)} bounce kind(s)")
    if outcomes:
        parts.append(f"{len(outcomes)} attempt(s)")
    return ", ".join(parts)


def insert_messages(
    conn: Connection, messages: Sequence[NewMessage], node: str | None = None
) -> None:
    """Insert ``messages`` and their recipients in ``conn``'s transaction (acceptance, bounces).

    ``node``: the node accepting them (its sending-limit counts are restored from them).
    """
    conn.execute(insert(MESSAGES), message_rows(messages, node))
    # Large bodies go in place (SQLite blob I/O) or in slices (PostgreSQL COPY): bound as
    # one parameter, storing 10 MB took 2x its size on SQLite and left libpq's output
    # buffer at 10 MB on PostgreSQL.
    insert_bodies(conn, [(m.id, m.body) for m in messages])
    recipients = recipient_rows(messages)
    if recipients:
        conn.execute(insert(RECIPIENTS), recipients)
