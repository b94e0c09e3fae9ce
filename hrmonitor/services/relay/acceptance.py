"""Acceptance: route a message once, at arrival, with its reasons, then queue it durably.

Concurrent acceptances are group-committed: while one batch is being written,
the next one gathers, and every waiter gets its ``250`` only after the batch
holding its message committed. A message held at arrival (its sender domain's
DNS is unknown) is routed again when the queue runner reaches it
(:meth:`Acceptance.reroute`): after the first retry step, or when its hold ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from hrmonitor.adapters.store.queue.repository import (
    BounceKind,
    DueRecipient,
    NewMessage,
    Outcome,
    QueueRepository,
    RecipientStatus,
)
from hrmonitor.core.bounce.classify import MAX_BYTES as CLASSIFIED_BYTES
from hrmonitor.core.delivery import maillog
from hrmonitor.core.delivery.dsn import header_value
from hrmonitor.core.delivery.envelope import Submission
from hrmonitor.core.routing.decide import DNS_UNKNOWN_RULE, RouteDecision
from hrmonitor.services.relay.settings import (
    AcceptedFn,
    RelaySettings,
    RouteFn,
    StoreCall,
    StoredFormFn,
    WriteFn,
)

log = logging.getLogger(__name__)

MAX_CLASSIFYING = 1000  # classifications waiting for the worker; beyond, a message goes without
SETTLE_SECONDS = 2.0  # how long a stop waits for classifications in flight


class Acceptance:
    """Routes and queues new messages (tenants' and the relay's own DSNs); re-routes holds."""

    def __init__(
        self,
        *,
        queue: QueueRepository,
        store: StoreCall,
        route: RouteFn,
        settings: RelaySettings,
        write: WriteFn,
        wake: Callable[[], None],
        stored_form: StoredFormFn | None = None,
        on_accepted: AcceptedFn | None = None,
    ) -> None:
        self._queue = queue
        self._store = store
        self._route = route
        self._settings = settings
        # The relay's one group commit: messages (durable before their 250), the bounce
        # kinds found after it and outcomes share its transactions (issue 11).
        self._write = write
        self._wake = wake
        self._stored_form = stored_form
        self._on_accepted = on_accepted
        self._classifying: set[asyncio.Task[None]] = set()

    def reconfigure(self, settings: RelaySettings) -> None:
        """New relay settings (a reload changed the pools' IPs)."""
        self._settings = settings

    async def queue_submission(
        self, submission: Submission, dsn_of: str | None = None
    ) -> NewMessage:
        """Route, store durably, wake the runner; ``dsn_of``: the message a DSN reports on."""
        if self._stored_form is not None:
            data = self._stored_form(submission.data, submission.client_ip)
            submission = dataclasses.replace(submission, data=data)
        decision = await self._route(submission, now=submission.received_at, again=False)
        hold_until = decision.hold_until if decision.hold else None
        # A tenant's message is classified after it is stored and answered (issue 13):
        # the 250 never waits for CPU work whose size the sender chooses.
        bounce_kind = "dsn" if dsn_of is not None else None
        message = NewMessage(
            id=uuid.uuid4().hex,
            tenant=submission.tenant,
            client_ip=submission.client_ip,
            mail_from=submission.mail_from,
            recipients=submission.recipients,
            body=submission.data,
            arrived_at=submission.received_at,
            pool=decision.pool,
            risk=str(decision.risk),
            reasons=tuple({"rule": r.rule, "detail": r.detail} for r in decision.reasons),
            hold_until=hold_until,
            bounce_kind=bounce_kind,
            due_at=self._recheck_at(submission.received_at, hold_until),
            message_id=header_value(submission.data, "Message-ID"),
            smtputf8=submission.smtputf8,
            dsn_of=dsn_of,
        )
        await self._write([message])
        if log.isEnabledFor(logging.INFO):
            line = maillog.accepted(
                message.id, mail_from=submission.mail_from, size=len(message.body),
                nrcpt=len(message.recipients), message_id=message.message_id,
                client_ip=submission.client_ip, pool=message.pool,
                rules=[r.rule for r in decision.reasons], held_until=hold_until, dsn_of=dsn_of,
            )  # fmt: skip
            log.info("%s", line.text, extra={"fields": line.as_json()})
        self._wake()
        if dsn_of is None:
            self._classify_later(submission, decision, message.id)
        return message

    def _classify_later(self, submission: Submission, decision: RouteDecision, key: str) -> None:
        if self._on_accepted is None:
            return
        if len(self._classifying) >= MAX_CLASSIFYING:
            log.warning(
                "%s left unclassified: %d classifications already waiting", key, MAX_CLASSIFYING
            )
            return
        # Classification reads the first MAX_BYTES: keep only those for it, so the
        # message itself is freed with the 250 and not held through the delivery's
        # read of its stored copy (issue 13: a message in memory under twice its size).
        if len(submission.data) > CLASSIFIED_BYTES:
            submission = dataclasses.replace(submission, data=submission.data[:CLASSIFIED_BYTES])
        task = asyncio.create_task(self._classify(submission, decision, key))
        self._classifying.add(task)
        task.add_done_callback(self._classifying.discard)

    async def _classify(self, submission: Submission, decision: RouteDecision, key: str) -> None:
        assert self._on_accepted is not None
        try:
            kind = await self._on_accepted(submission, decision)
            if kind is not None:
                await self._write([BounceKind(key, kind)])
        except Exception:  # watching traffic must never cost a message
            log.exception("acceptance hook failed for a message from %s", submission.client_ip)

    async def settle(self) -> None:
        """Wait a little (SETTLE_SECONDS) for classifications in flight at stop; drop the rest."""
        pending = set(self._classifying)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=SETTLE_SECONDS)
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)

    def _recheck_at(self, now: datetime, hold_until: datetime | None) -> datetime | None:
        """A held message is routed again after the first retry step, or when its hold ends."""
        if hold_until is None:
            return None
        return min(now + self._settings.retry.delay(1), hold_until)

    async def reroute(self, group: list[DueRecipient], now: datetime) -> list[DueRecipient] | None:
        """Route a held message again; the group with its new pool, or None if still held."""
        first = group[0]
        body = first.body
        if body is None:
            body = await self._store(self._queue.body, first.message_id)
        submission = Submission(
            tenant=first.tenant,
            client_ip=first.client_ip,
            helo="",
            mail_from=first.mail_from,
            recipients=tuple(r.address for r in group),
            data=body,
            received_at=first.arrived_at,
            smtputf8=first.smtputf8,
        )
        decision = await self._route(submission, now=now, again=True)
        hold_until = decision.hold_until if decision.hold else None
        line = maillog.rerouted(
            first.message_id,
            pool=decision.pool,
            rules=[r.rule for r in decision.reasons],
            was=DNS_UNKNOWN_RULE,  # the only reason routing holds a message
            held_until=hold_until,
        )
        await self._store(
            functools.partial(
                self._queue.reroute,
                first.message_id,
                pool=decision.pool,
                risk=str(decision.risk),
                reasons=[{"rule": r.rule, "detail": r.detail} for r in decision.reasons],
                hold_until=hold_until,
            )
        )
        if hold_until is not None:
            recheck = self._recheck_at(now, hold_until)
            outcomes = [
                Outcome(
                    recipient_id=r.recipient_id,
                    message_id=r.message_id,
                    status=RecipientStatus.DEFERRED,
                    at=now,
                    pool=decision.pool,
                    next_attempt_at=recheck,
                    reply="held: the sender domain's DNS is unknown",
                    own=True,
                    counts_as_attempt=False,
                )
                for r in group
            ]
            await self._write(outcomes)
            log.info("%s", line.text, extra={"fields": line.as_json()})
            return None
        log.info("%s", line.text, extra={"fields": line.as_json()})
        return [dataclasses.replace(r, pool=decision.pool, hold_until=None) for r in group]
