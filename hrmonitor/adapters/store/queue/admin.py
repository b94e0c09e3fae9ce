"""The operator's side of the queue (``hrmonitor queue``): list, show, hold, release, flush,
delete and bounce, against the store a running daemon uses.

Each action on a message is one transaction holding the change and its audit
event (kind ``queue-<action>``, the operator as actor, the queue ID and the
recipients in the evidence): applied and audited together or not at all. An
action changes only recipients in the states it names, in the statement that
changes them (compare and set), so it never races the runner into a double
delivery: a recipient the runner has claimed (``delivering``) is left to it
and reported as skipped. On SQLite every transaction takes the write lock up
front; on PostgreSQL the message's recipient rows are locked first, and the
runner's claim skips locked rows.

A held recipient (``held``) is in no state the runner claims; release makes it
``deferred`` and due now, flush makes waiting recipients due now; the runner
notices within its idle poll (a second).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Table, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from hrmonitor.adapters.store.queue.bodies import read_body
from hrmonitor.adapters.store.queue.model import UNFINISHED, WAITING, NewMessage, RecipientStatus
from hrmonitor.adapters.store.queue.repository import insert_messages
from hrmonitor.adapters.store.queue.schema import ATTEMPTS, MESSAGES, RECIPIENTS
from hrmonitor.adapters.store.schema import AuditEventRow
from hrmonitor.errors import StoreError


def _audit_table() -> Table:
    table = AuditEventRow.__table__
    assert isinstance(table, Table)
    return table


AUDIT = _audit_table()

HELD = RecipientStatus.HELD.value
DEFERRED = RecipientStatus.DEFERRED.value
DELIVERING = RecipientStatus.DELIVERING.value


class QueueState(StrEnum):
    """A message's state as ``mailq`` shows it, from its unfinished recipients."""

    HELD = "held"  # at least one recipient on hold
    DEFERRED = "deferred"  # at least one recipient waiting after a failed attempt
    ACTIVE = "active"  # waiting for its first attempt, or being delivered


class QueueAction(StrEnum):
    HOLD = "hold"
    RELEASE = "release"
    FLUSH = "flush"
    DELETE = "delete"
    BOUNCE = "bounce"


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """Which queued messages: every given criterion must hold (none: every message)."""

    ids: tuple[str, ...] = ()  # queue IDs or unique prefixes of them
    pool: str | None = None
    destination: str | None = None  # a recipient domain
    sender: str | None = None  # part of the envelope sender, any case
    state: QueueState | None = None
    arrived_before: datetime | None = None

    @property
    def empty(self) -> bool:
        return not (
            self.ids
            or self.pool
            or self.destination
            or self.sender
            or self.state
            or self.arrived_before
        )


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    address: str
    domain: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_reply: str
    remote_mta: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message with at least one unfinished recipient, and those recipients."""

    id: str
    arrived_at: datetime
    size: int
    mail_from: str
    pool: str
    risk: str
    tenant: str
    message_id: str
    dsn_of: str | None
    recipients: tuple[QueuedRecipient, ...]

    @property
    def state(self) -> QueueState:
        statuses = {r.status for r in self.recipients}
        if HELD in statuses:
            return QueueState.HELD
        if DEFERRED in statuses:
            return QueueState.DEFERRED
        return QueueState.ACTIVE

    @property
    def last_reply(self) -> str:
        replied = [r for r in self.recipients if r.last_reply]
        return max(replied, key=lambda r: r.updated_at).last_reply if replied else ""


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What one action did to one message: the recipients changed and those left alone."""

    message: QueuedMessage
    changed: tuple[str, ...]
    skipped: tuple[str, ...]  # claimed by the runner at that moment, or not in a state it moves
    dsn: str | None = None  # bounce: the queue ID of the DSN to the sender


# bounce: (the message, its body, the recipients returned) -> the DSN to enqueue, or None.
DsnMaker = Callable[[QueuedMessage, bytes, Sequence[str]], NewMessage | None]

# Which recipient states each action moves, and to what (None: the state stays).
_MOVES: dict[QueueAction, tuple[tuple[str, ...], str | None]] = {
    QueueAction.HOLD: (WAITING, HELD),
    QueueAction.RELEASE: ((HELD,), DEFERRED),
    QueueAction.FLUSH: (WAITING, None),
    QueueAction.BOUNCE: ((*WAITING, HELD), RecipientStatus.BOUNCED.value),
}


class QueueAdmin:
    """Queue administration on ``engine`` (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # --- reading ---------------------------------------------------------------------

    def messages(self, wanted: QueueFilter) -> list[QueuedMessage]:
        """The queued messages ``wanted`` names, oldest first."""
        try:
            with self._engine.connect() as conn:
                return self._select(conn, wanted)
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read the queue: {exc}") from exc

    def resolve(self, prefix: str) -> list[str]:
        """The queue IDs starting with ``prefix`` (finished messages too, until purged)."""
        try:
            with self._engine.connect() as conn:
                return list(
                    conn.execute(
                        select(MESSAGES.c.id)
                        .where(MESSAGES.c.id.startswith(prefix.lower(), autoescape=True))
                        .limit(2)
                    ).scalars()
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read the queue: {exc}") from exc

    def audit(self, queue_id: str) -> list[dict[str, Any]]:
        """The operator actions on ``queue_id``, oldest first."""
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(AUDIT)
                    .where(
                        AUDIT.c.ip == "",
                        AUDIT.c.kind.startswith("queue-"),
                        # In SQL (json_extract / ->>), not in Python: the audit trail
                        # holds every queue action ever taken.
                        AUDIT.c.evidence["queue_id"].as_string() == queue_id,
                    )
                    .order_by(AUDIT.c.at, AUDIT.c.id)
                ).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read the audit trail: {exc}") from exc
        return [
            {
                "at": r.at,
                "action": r.kind.removeprefix("queue-"),
                "from": r.from_state,
                "to": r.to_state,
                "by": r.actor,
                "reason": r.reason,
                "recipients": r.evidence.get("recipients", []),
            }
            for r in rows
        ]

    def _select(self, conn: Connection, wanted: QueueFilter) -> list[QueuedMessage]:
        query = (
            select(
                MESSAGES.c.id,
                MESSAGES.c.arrived_at,
                MESSAGES.c.size,
                MESSAGES.c.mail_from,
                MESSAGES.c.pool,
                MESSAGES.c.risk,
                MESSAGES.c.tenant,
                MESSAGES.c.message_id,
                MESSAGES.c.dsn_of,
                RECIPIENTS.c.address,
                RECIPIENTS.c.domain,
                RECIPIENTS.c.status,
                RECIPIENTS.c.attempts,
                RECIPIENTS.c.next_attempt_at,
                RECIPIENTS.c.last_reply,
                RECIPIENTS.c.remote_mta,
                RECIPIENTS.c.updated_at,
            )
            .join(RECIPIENTS, RECIPIENTS.c.message_id == MESSAGES.c.id)
            .where(RECIPIENTS.c.status.in_(UNFINISHED))
            .order_by(MESSAGES.c.arrived_at, MESSAGES.c.id, RECIPIENTS.c.id)
        )
        if wanted.ids:
            query = query.where(
                or_(*(MESSAGES.c.id.startswith(i.lower(), autoescape=True) for i in wanted.ids))
            )
        if wanted.pool:
            query = query.where(MESSAGES.c.pool == wanted.pool)
        if wanted.sender:
            query = query.where(
                func.lower(MESSAGES.c.mail_from).contains(wanted.sender.lower(), autoescape=True)
            )
        if wanted.arrived_before is not None:
            query = query.where(MESSAGES.c.arrived_at < wanted.arrived_before)
        grouped: dict[str, tuple[Any, list[QueuedRecipient]]] = {}
        for row in conn.execute(query):
            recipient = QueuedRecipient(
                row.address, row.domain, row.status, row.attempts, row.next_attempt_at,
                row.last_reply, row.remote_mta, row.updated_at,
            )  # fmt: skip
            grouped.setdefault(row.id, (row, []))[1].append(recipient)
        found = [
            QueuedMessage(
                row.id,
                row.arrived_at,
                row.size,
                row.mail_from,
                row.pool,
                row.risk,
                row.tenant,
                row.message_id,
                row.dsn_of,
                tuple(recipients),
            )
            for row, recipients in grouped.values()
        ]
        if wanted.destination:
            domain = wanted.destination.lower().strip(".")
            found = [m for m in found if any(r.domain == domain for r in m.recipients)]
        if wanted.state is not None:
            found = [m for m in found if m.state is wanted.state]
        return found

    # --- acting ----------------------------------------------------------------------

    def act(
        self,
        action: QueueAction,
        wanted: QueueFilter,
        *,
        now: datetime,
        actor: str,
        reason: str,
        make_dsn: DsnMaker | None = None,
    ) -> list[ActionResult]:
        """Apply ``action`` to every message ``wanted`` names, each in its own transaction."""
        results = []
        for message in self.messages(wanted):
            try:
                with self._engine.begin() as conn:
                    result = self._act_on(conn, action, message.id, now, actor, reason, make_dsn)
            except SQLAlchemyError as exc:
                raise StoreError(f"could not {action} {message.id}: {exc}") from exc
            if result is not None:
                results.append(result)
        return results

    def _act_on(
        self,
        conn: Connection,
        action: QueueAction,
        queue_id: str,
        now: datetime,
        actor: str,
        reason: str,
        make_dsn: DsnMaker | None,
    ) -> ActionResult | None:
        lock = select(RECIPIENTS.c.id).where(RECIPIENTS.c.message_id == queue_id)
        if conn.dialect.name == "postgresql":
            conn.execute(lock.with_for_update())
        # Read again inside the transaction: what the runner did since the listing counts.
        found = self._select(conn, QueueFilter(ids=(queue_id,)))
        if not found:
            return None  # finished (or deleted) in the meantime
        message = found[0]
        if action is QueueAction.DELETE:
            return self._delete(conn, message, now, actor, reason)
        sources, target = _MOVES[action]
        values: dict[str, Any] = {"updated_at": now}
        if target is not None:
            values["status"] = target
        if action in (QueueAction.RELEASE, QueueAction.FLUSH):
            values["next_attempt_at"] = now
        if action is QueueAction.BOUNCE:
            values["last_reply"] = f"returned to sender by {actor}: {reason}"
        changed = tuple(
            conn.execute(
                update(RECIPIENTS)
                .where(RECIPIENTS.c.message_id == queue_id, RECIPIENTS.c.status.in_(sources))
                .values(**values)
                .returning(RECIPIENTS.c.address)
            ).scalars()
        )
        skipped = tuple(r.address for r in message.recipients if r.address not in changed)
        dsn = None
        if action is QueueAction.BOUNCE and changed and make_dsn is not None:
            body = read_body(conn, queue_id)
            if body is None:
                raise StoreError(f"message {queue_id} has no body")
            notice = make_dsn(message, body, changed)
            if notice is not None:
                insert_messages(conn, [notice])
                dsn = notice.id
        if changed:
            before = sorted({r.status for r in message.recipients if r.address in changed})
            _audit(conn, action, message, now, actor, reason, changed, skipped, ",".join(before),
                   target or ",".join(before), dsn)  # fmt: skip
        return ActionResult(message, changed, skipped, dsn)

    def _delete(
        self, conn: Connection, message: QueuedMessage, now: datetime, actor: str, reason: str
    ) -> ActionResult:
        addresses = tuple(r.address for r in message.recipients)
        if any(r.status == DELIVERING for r in message.recipients):
            return ActionResult(message, (), addresses)  # the runner holds it: try again
        conn.execute(delete(ATTEMPTS).where(ATTEMPTS.c.message_id == message.id))
        conn.execute(delete(RECIPIENTS).where(RECIPIENTS.c.message_id == message.id))
        conn.execute(delete(MESSAGES).where(MESSAGES.c.id == message.id))
        before = ",".join(sorted({r.status for r in message.recipients}))
        _audit(conn, QueueAction.DELETE, message, now, actor, reason, addresses, (), before,
               "deleted", None)  # fmt: skip
        return ActionResult(message, addresses, ())


def _audit(
    conn: Connection,
    action: QueueAction,
    message: QueuedMessage,
    now: datetime,
    actor: str,
    reason: str,
    changed: Sequence[str],
    skipped: Sequence[str],
    before: str,
    after: str,
    dsn: str | None,
) -> None:
    evidence: dict[str, Any] = {
        "queue_id": message.id,
        "sender": message.mail_from,
        "recipients": list(changed),
        "size": message.size,
    }
    if skipped:
        evidence["skipped"] = list(skipped)
    if dsn is not None:
        evidence["dsn"] = dsn
    conn.execute(
        insert(AUDIT).values(
            at=now,
            ip="",
            pool=message.pool,
            kind=f"queue-{action}",
            from_state=before,
            to_state=after,
            reason=reason,
            actor=actor,
            evidence=evidence,
            until=None,
        )
    )
