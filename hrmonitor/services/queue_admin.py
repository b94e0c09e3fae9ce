"""The postmaster's queue tools behind ``hrmonitor queue``: mailq, qshape, postsuper, postqueue -f.

- :meth:`QueueTools.listing`: the queued messages a filter names, one row each
  (queue ID, age, size, sender, recipients, pool, state, last reply), and a
  qshape-like summary: recipients per pool and destination domain, by age.
- :meth:`QueueTools.show`: one message with its routing reasons, every
  recipient and every attempt, and the operator actions on it.
- :meth:`QueueTools.act`: hold, release, flush, delete or bounce, audited. A
  bounce returns the message to its sender with an RFC 3464 DSN, routed like
  any DSN (null sender: the high-risk pool) and queued in the bounce's own
  transaction; a null-sender message or a DSN of ours gets no DSN back.

The store does the compare-and-set (``adapters.store.queue.admin``); this
module resolves queue IDs, builds the DSNs and shapes what is printed.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from hrmonitor.adapters.store.queue.admin import (
    ActionResult,
    QueueAction,
    QueueAdmin,
    QueuedMessage,
    QueueFilter,
)
from hrmonitor.adapters.store.queue.model import NewMessage
from hrmonitor.adapters.store.queue.repository import QueueRepository
from hrmonitor.core.delivery.dsn import FailedRecipient, build_dsn
from hrmonitor.errors import OperatorError

# qshape's age columns, in minutes: each bucket holds ages up to its bound.
AGE_BUCKETS = (5, 10, 20, 40, 80, 160, 320, 640, 1280)


@dataclass(frozen=True, slots=True)
class DsnRoute:
    """Where a DSN leaves from, as the router decided it."""

    pool: str
    risk: str
    reasons: tuple[Mapping[str, Any], ...]


# (tenant, the DSN's bytes, its recipient, now) -> the routing decision for it.
RouteDsn = Callable[[str, bytes, str, datetime], Awaitable[DsnRoute]]


class QueueTools:
    def __init__(
        self, admin: QueueAdmin, queue: QueueRepository, hostname: str, route_dsn: RouteDsn
    ) -> None:
        self._admin = admin
        self._queue = queue
        self._hostname = hostname
        self._route_dsn = route_dsn

    # --- reading ---------------------------------------------------------------------

    def resolve(self, wanted: QueueFilter) -> QueueFilter:
        """``wanted`` with each queue ID prefix made a full ID; OperatorError if not unique."""
        full = []
        for prefix in wanted.ids:
            found = self._admin.resolve(prefix)
            if not found:
                raise OperatorError(f"no message {prefix} in the queue")
            if len(found) > 1:
                raise OperatorError(f"queue ID {prefix} is ambiguous: give more of it")
            full.append(found[0])
        return replace(wanted, ids=tuple(full))

    def listing(self, wanted: QueueFilter, now: datetime) -> dict[str, Any]:
        messages = self._admin.messages(self.resolve(wanted))
        return {
            "messages": [message_row(m, now) for m in messages],
            "summary": shape(messages, now),
        }

    def show(self, queue_id: str, now: datetime) -> dict[str, Any]:
        [full] = self.resolve(QueueFilter(ids=(queue_id,))).ids
        record = self._queue.message(full)
        if record is None:
            raise OperatorError(f"no message {queue_id} in the queue")
        attempts = self._queue.attempts(full)
        address_of = {r.id: r.address for r in record.recipients}
        return {
            "id": record.id,
            "message_id": record.message_id,
            "arrived_at": record.arrived_at,
            "age_seconds": int((now - record.arrived_at).total_seconds()),
            "size": record.size,
            "tenant": record.tenant,
            "client_ip": record.client_ip,
            "sender": record.mail_from,
            "pool": record.pool,
            "risk": record.risk,
            "reasons": [dict(r) for r in record.reasons],
            "hold_until": record.hold_until,
            "bounce_kind": record.bounce_kind,
            "dsn_of": record.dsn_of,
            "recipients": [
                {
                    "address": r.address,
                    "status": str(r.status),
                    "attempts": r.attempts,
                    "next_attempt_at": r.next_attempt_at,
                    "last_reply": r.last_reply,
                    "remote_mta": r.remote_mta,
                }
                for r in record.recipients
            ],
            "attempts": [
                {
                    "at": a.at,
                    "recipient": address_of.get(a.recipient_id, ""),
                    "pool": a.pool,
                    "source_ip": a.source_ip,
                    "destination": a.destination,
                    "code": a.code,
                    "reply": a.reply,
                    "internal": a.own,
                }
                for a in attempts
            ],
            "actions": self._admin.audit(full),
        }

    # --- acting ----------------------------------------------------------------------

    async def act(
        self, action: QueueAction, wanted: QueueFilter, *, now: datetime, actor: str, reason: str
    ) -> list[ActionResult]:
        resolved = self.resolve(wanted)
        routes: dict[str, DsnRoute] = {}
        if action is QueueAction.BOUNCE:
            # Routing may ask DNS or rspamd: done before the store's transactions, once
            # per message, on a DSN for every recipient the message has left.
            for message in self._admin.messages(resolved):
                if _wants_dsn(message):
                    draft = self._dsn_bytes(message, b"", [r.address for r in message.recipients],
                                            now, "draft")  # fmt: skip
                    routes[message.id] = await self._route_dsn(
                        message.tenant, draft, message.mail_from, now
                    )

        def make_dsn(
            message: QueuedMessage, body: bytes, returned: Sequence[str]
        ) -> NewMessage | None:
            route = routes.get(message.id)
            if route is None or not _wants_dsn(message):
                return None
            dsn_id = f"{uuid.uuid4().hex}@{self._hostname}"
            return NewMessage(
                id=uuid.uuid4().hex,
                tenant=message.tenant,
                client_ip="127.0.0.1",
                mail_from="",
                recipients=(message.mail_from,),
                body=self._dsn_bytes(message, body, returned, now, dsn_id, reason),
                arrived_at=now,
                pool=route.pool,
                risk=route.risk,
                reasons=route.reasons,
                bounce_kind="dsn",
                message_id=f"<{dsn_id}>",
                smtputf8=not message.mail_from.isascii(),
                dsn_of=message.id,
            )

        return self._admin.act(
            action, resolved, now=now, actor=actor, reason=reason, make_dsn=make_dsn
        )

    def _dsn_bytes(
        self,
        message: QueuedMessage,
        original: bytes,
        returned: Sequence[str],
        now: datetime,
        dsn_id: str,
        reason: str = "",
    ) -> bytes:
        return build_dsn(
            original=original,
            sender=message.mail_from,
            recipients=[
                FailedRecipient(
                    address=address,
                    status="5.0.0",
                    diagnostic=f"returned to sender by the mail administrator: {reason}".strip(),
                    last_attempt=now,
                )
                for address in returned
            ],
            reporting_mta=self._hostname,
            arrived_at=message.arrived_at,
            now=now,
            message_id=dsn_id,
        )


def _wants_dsn(message: QueuedMessage) -> bool:
    """RFC 3461/5321: never a DSN to the null sender, so never one about a DSN."""
    return bool(message.mail_from) and message.dsn_of is None


# --- shaping what is printed ---------------------------------------------------------------


def message_row(message: QueuedMessage, now: datetime) -> dict[str, Any]:
    return {
        "id": message.id,
        "age_seconds": int((now - message.arrived_at).total_seconds()),
        "arrived_at": message.arrived_at,
        "size": message.size,
        "sender": message.mail_from,
        "recipients": [
            {"address": r.address, "status": r.status, "attempts": r.attempts}
            for r in message.recipients
        ],
        "pool": message.pool,
        "state": str(message.state),
        "last_reply": message.last_reply,
        "next_attempt_at": min(r.next_attempt_at for r in message.recipients),
    }


def shape(messages: Sequence[QueuedMessage], now: datetime) -> list[dict[str, Any]]:
    """qshape: unfinished recipients per (pool, destination domain), by age in minutes."""
    rows: dict[tuple[str, str], list[int]] = {}
    for message in messages:
        age = now - message.arrived_at
        column = next(
            (i for i, bound in enumerate(AGE_BUCKETS) if age <= timedelta(minutes=bound)),
            len(AGE_BUCKETS),
        )
        for recipient in message.recipients:
            counts = rows.setdefault((message.pool, recipient.domain), [0] * (len(AGE_BUCKETS) + 1))
            counts[column] += 1
    return [
        {"pool": pool, "destination": domain, "total": sum(counts), "by_age": counts}
        for (pool, domain), counts in sorted(rows.items(), key=lambda kv: (kv[0][0], -sum(kv[1])))
    ]
