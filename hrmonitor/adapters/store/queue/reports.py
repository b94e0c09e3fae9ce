"""Reading the queue: one message and its attempts, and the counts the report and limits need."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, func, or_, select, true
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from hrmonitor.adapters.store.queue.model import (
    AttemptRecord,
    MessageRecord,
    RecipientRecord,
    RecipientStatus,
)
from hrmonitor.adapters.store.queue.schema import ATTEMPTS, MESSAGES, RECIPIENTS
from hrmonitor.errors import StoreError


class QueueReports:
    """Read-only queries on the queue (part of ``QueueRepository``)."""

    _engine: Engine  # set by QueueRepository
    node: str | None  # set by QueueRepository

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
                        self._accepted_here(),
                    )
                    .group_by(MESSAGES.c.id, MESSAGES.c.mail_from, MESSAGES.c.arrived_at)
                    .order_by(MESSAGES.c.arrived_at)
                ).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read the senders' recent mail: {exc}") from exc
        return [(sender, arrived, int(count)) for sender, arrived, count in rows]

    def _accepted_here(self) -> ColumnElement[bool]:
        """Messages this node accepted (or, made before messages had a node, anyone's):
        the other nodes' count through ``adapters.store.sender_counts``."""
        node = self.node
        if node is None:
            return true()
        return or_(MESSAGES.c.accepted_by == node, MESSAGES.c.accepted_by.is_(None))

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

    def waiting(self, now: datetime) -> list[tuple[str, str, int, datetime]]:
        """(pool, state, messages, oldest arrival) of the mail still to deliver.

        State: ``held`` (routing waits on the sender's DNS), ``active`` (an
        attempt in flight), ``deferred`` (tried, waiting to retry), ``queued``
        (not tried yet). A message with recipients in several states counts in each.
        """
        state = case(
            (MESSAGES.c.hold_until > now, "held"),
            (RECIPIENTS.c.status == RecipientStatus.DELIVERING.value, "active"),
            (RECIPIENTS.c.status == RecipientStatus.DEFERRED.value, "deferred"),
            else_="queued",
        ).label("state")
        waiting = (RecipientStatus.QUEUED.value, RecipientStatus.DEFERRED.value,
                   RecipientStatus.DELIVERING.value)  # fmt: skip
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(
                        MESSAGES.c.pool,
                        state,
                        func.count(func.distinct(MESSAGES.c.id)),
                        func.min(MESSAGES.c.arrived_at),
                    )
                    .join(MESSAGES, MESSAGES.c.id == RECIPIENTS.c.message_id)
                    .where(RECIPIENTS.c.status.in_(waiting))
                    .group_by(MESSAGES.c.pool, state)
                ).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read the queue's ages: {exc}") from exc
        return [(pool, name, int(count), oldest) for pool, name, count, oldest in rows]


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
