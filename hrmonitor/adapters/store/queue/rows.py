"""The queue's rows, as every database stores them: a message, its recipients, an
attempt, and an outcome's change to its recipient; and a claimed recipient as read.

One place says what each column holds: ``repository`` and ``delivery`` bind these
rows through SQLAlchemy (an ``executemany`` per table), ``postgresql`` sends their
columns as arrays. Timestamps are as given (timezone-aware; each path checks them).
Both claims (SQLite's in ``delivery``, PostgreSQL's in ``postgresql``) name their
columns alike and read them with :func:`due_recipients`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from hrmonitor.adapters.store.queue.model import DueRecipient, NewMessage, Outcome, RecipientStatus

Row = dict[str, Any]


def message_rows(messages: Sequence[NewMessage], node: str | None) -> list[Row]:
    """``queue_messages`` rows; ``node``: the node accepting them (its sending-limit
    counts are restored from them)."""
    return [
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


def recipient_rows(messages: Sequence[NewMessage]) -> list[Row]:
    """``queue_recipients`` rows of new messages: queued, due at the first attempt."""
    return [
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


def attempt_rows(outcomes: Sequence[Outcome]) -> list[Row]:
    """``queue_attempts`` rows: every attempt is kept."""
    return [
        {
            "message_id": o.message_id,
            "recipient_id": o.recipient_id,
            "pool": o.pool,
            "source_ip": o.source_ip,
            "destination": o.destination,
            "code": o.code,
            "reply": o.reply,
            "duration_ms": float(o.duration_ms),
            "at": o.at,
            "own": int(o.own),
        }
        for o in outcomes
    ]


def outcome_changes(outcomes: Sequence[Outcome]) -> list[Row]:
    """Each outcome's change to its recipient (``rid``): the new status, the reply, one
    more attempt if it counts as one; a code, remote host and next attempt only where
    the outcome has one (None keeps the recipient's)."""
    return [
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
    ]


def due_recipients(rows: Sequence[Any]) -> list[DueRecipient]:
    """Claimed recipients from a claim's rows (``id``, ``message_id``, ... ``small_body``:
    the columns both claims select), timestamps in UTC: SQLAlchemy's types give UTC, a
    statement run as written gives the session's time zone."""
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
            arrived_at=r.arrived_at.astimezone(UTC),
            size=r.size,
            smtputf8=bool(r.smtputf8),
            eight_bit=None if r.eight_bit is None else bool(r.eight_bit),
            tenant=r.tenant,
            body=None if r.small_body is None else bytes(r.small_body),
            hold_until=None if r.hold_until is None else r.hold_until.astimezone(UTC),
            client_ip=r.client_ip,
        )
        for r in rows
    ]
