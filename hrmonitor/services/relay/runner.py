"""The relay: the acceptance pipeline behind the listener, and the queue runner.

Acceptance (``services.acceptance``): route the message once, at arrival,
with its reasons, then hand it to the queue, group-committed; the ``250``
comes only after the message is durable.

The runner claims due recipients, groups them by (message, recipient
domain) and hands each group to ``services.delivery`` (one attempt: the
picker's source IP of the message's own pool, fail closed), bounded overall
and per recipient domain. What an attempt concluded is in
``services.delivery_outcome``; what the runner tells others (replies,
exhausted pools) in ``services.relay_feedback``; the relay's settings and the
shapes of what it is given in ``services.relay_settings``.

All queue I/O runs on one store thread, so the event loop never blocks on
an fsync and SQLite never sees two writers from this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from hrmonitor.adapters.store.queue.repository import (
    Claim,
    DueRecipient,
    QueueRepository,
)
from hrmonitor.core.backoff import Backoff, FailureLog
from hrmonitor.core.delivery.envelope import Submission
from hrmonitor.core.model import Clock
from hrmonitor.services.relay.acceptance import Acceptance
from hrmonitor.services.relay.delivery import Delivery
from hrmonitor.services.relay.group_commit import queue_writes
from hrmonitor.services.relay.settings import (
    AcceptedFn,
    AddressFn,
    AlertFn,
    BindFailureFn,
    MxFn,
    OutcomeFn,
    RelaySettings,
    ReplyFn,
    RouteFn,
    Sender,
    SimpleRouteFn,
    StoredFormFn,
    TagSenderFn,
    keyword_route,
    route_with,
)
from hrmonitor.services.relay.source_ip import SourcePicker

__all__ = [
    "AcceptedFn",
    "AddressFn",
    "AlertFn",
    "BindFailureFn",
    "MxFn",
    "OutcomeFn",
    "Relay",
    "RelaySettings",
    "ReplyFn",
    "RouteFn",
    "Sender",
    "SimpleRouteFn",
    "StoredFormFn",
    "TagSenderFn",
    "route_with",
]

T = TypeVar("T")

log = logging.getLogger(__name__)


class Relay:
    """The acceptance pipeline and the queue runner over one queue; see the module docstring."""

    def __init__(
        self,
        *,
        queue: QueueRepository,
        route: RouteFn | SimpleRouteFn,
        picker: SourcePicker,
        mx: MxFn,
        sender: Sender,
        clock: Clock,
        settings: RelaySettings,
        addresses: AddressFn | None = None,
        on_reply: ReplyFn | None = None,
        on_alert: AlertFn | None = None,
        on_bind_failure: BindFailureFn | None = None,
        stored_form: StoredFormFn | None = None,
        on_accepted: AcceptedFn | None = None,
        on_outcome: OutcomeFn | None = None,
        tag_sender: TagSenderFn | None = None,
    ) -> None:
        self.queue = queue
        # What the relay was given stays readable: a second relay over the same
        # queue (a restart after a crash) can be built from it.
        self._route = keyword_route(route)
        self._picker = picker
        self._mx = mx
        self._addresses = addresses
        self._sender = sender
        self._clock = clock
        self.settings = settings
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hrmonitor-queue")
        # One group commit for every write of the relay's work (messages, bounce kinds,
        # outcomes): one transaction per batch of them all.
        self._writes = queue_writes(queue, self._db_call, settings.max_batch)
        self._acceptance = Acceptance(
            queue=queue,
            store=self._db_call,
            route=self._route,
            settings=settings,
            write=self._writes.submit,
            wake=self.wake,
            stored_form=stored_form,
            on_accepted=on_accepted,
        )
        self._delivery = Delivery(
            queue=queue,
            store=self._db_call,
            acceptance=self._acceptance,
            record=self._writes.submit,
            picker=picker,
            mx=mx,
            sender=sender,
            clock=clock,
            settings=settings,
            addresses=addresses,
            on_reply=on_reply,
            on_alert=on_alert,
            on_bind_failure=on_bind_failure,
            on_outcome=on_outcome,
            tag_sender=tag_sender,
        )
        self._wake = asyncio.Event()
        self._stopping = False
        self._active: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._per_destination: dict[str, asyncio.Semaphore] = {}
        self._destination_cap = settings.per_destination  # this node's share of it
        self._running = asyncio.Event()
        self._next_housekeeping = 0.0
        # The last pass's claim: whether it took its limit (more may be due) and, if
        # not, when the next waiting recipient falls due. None: no claim yet, or no
        # slot was free to claim with, so nothing is known.
        self._claim: Claim | None = None
        self._running.set()  # "not running" until run() starts
        self._stopped = asyncio.Event()
        self._backoff = Backoff(base=0.1, cap=settings.poll_seconds * 30)
        self._failures = FailureLog(settings.failure_log_seconds)
        self._rng = random.Random()

    # --- store thread ------------------------------------------------------------------

    async def _db_call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    # --- acceptance --------------------------------------------------------------------

    async def accept(self, submission: Submission) -> str:
        """The listener's callback: route, store durably, then (only then) answer 250."""
        message = await self._acceptance.queue_submission(submission)
        return f"250 2.0.0 Ok: queued as {message.id}"

    # --- the runner --------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def reconfigure_pools(self, pool_ips: Mapping[str, frozenset[str]]) -> None:
        """The IPs each pool may send from, for the next pick (a reload). An attempt
        already in flight from an IP no longer listed finishes as it started."""
        self.settings = replace(self.settings, pool_ips=dict(pool_ips))
        self._acceptance.reconfigure(self.settings)
        self._delivery.reconfigure(self.settings)

    def share_destinations(self, nodes: int) -> None:
        """Several nodes: each takes its share of ``per_destination`` (at least 1), so the
        cluster as a whole keeps to the cap. Groups already waiting keep their old gate:
        for one change of membership the total can be off by one node's share."""
        cap = max(1, self.settings.per_destination // max(1, nodes))
        if cap != self._destination_cap:
            log.info("%d node(s): at most %d delivery group(s) per destination here", nodes, cap)
            self._destination_cap = cap
            self._per_destination = {}

    async def recover(self, unowned_before: datetime | None = None) -> int:
        """Make recipients this node's last run left ``delivering`` due again; call once
        before :meth:`run`. Other nodes' claims are left alone (see ``QueueDelivery.recover``
        for ``unowned_before``)."""
        count = await self._db_call(self.queue.recover, self._clock.now(), None, unowned_before)
        if count:
            log.warning(
                "%d recipient(s) were mid-delivery at the last stop; delivering again", count
            )
        return count

    async def run(self) -> None:
        """Deliver until :meth:`stop`; survives any one bad message or store hiccup."""
        self._running.clear()
        try:
            await self._loop()
        finally:
            self._running.set()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                claimed = await self.dispatch()
            except Exception as exc:
                # The store is failing (disk full, connection lost): back off, log once
                # per interval with a count, never spin on it (issue 13, item 7).
                self._pass_failed(exc)
                await self._housekeeping()
                await self._pause(self._backoff.delay(self._failures.failing, self._rng))
                continue
            if outage := self._failures.recovered():
                log.warning("queue runner passes work again after %d failure(s)", outage)
            await self._housekeeping()
            # A claim that came back short took everything due: the next pass waits
            # for new mail (the acceptance wakes it), a freed slot (when work waits for
            # one) or the next due time, instead of claiming again to find nothing.
            if claimed and self._more_due() and len(self._active) < self.settings.concurrency:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), await self._idle_wait())

    def _pass_failed(self, exc: Exception) -> None:
        count = self._failures.failed(time.monotonic())
        if count is None:
            return
        if self._failures.failing == 1:
            log.error("queue runner pass failed; backing off", exc_info=exc)
        else:
            log.error(
                "queue runner pass failed %d more time(s) (%d in a row), backing off: %s",
                count, self._failures.failing, exc,
            )  # fmt: skip

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` or until :meth:`stop`; new mail does not cut a backoff short."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    async def _housekeeping(self) -> None:
        """Now and then: re-queue lost claims, drop finished messages past their keep time."""
        if time.monotonic() < self._next_housekeeping:
            return
        self._next_housekeeping = time.monotonic() + self.settings.housekeeping_seconds
        now = self._clock.now()
        stale = now - timedelta(seconds=2 * self.settings.send_timeout)
        try:
            lost = await self._db_call(self.queue.recover, now, stale)
            purged = await self._db_call(
                self.queue.purge_finished, now - self.settings.keep_finished
            )
        except Exception:
            log.exception("queue housekeeping failed")
            return
        if lost:
            log.warning("%d recipient(s) had a lost claim; they are due again", lost)
            self.wake()  # due now: the pass's claim said nothing of them
        if purged:
            log.info("purged %d finished message(s)", purged)

    async def _idle_wait(self) -> float:
        """How long this pass may sleep unless woken.

        After a short claim: until the next due time its transaction read. When due
        work waits for a slot (no slot was free, or the claim took its limit), the
        finished delivery that frees one wakes the runner (``_finished``); asking the
        store for the next due time then only said "now", and the pass that followed
        found no slot again: a query every 10 ms while the slots stayed full (60 for
        8 messages through 2 slots; 19 % of a PostgreSQL node's store thread).
        ``poll_seconds`` stays the bound on any wait.
        """
        if self._claim is None or self._claim.full:
            return self.settings.poll_seconds
        due = self._claim.next_due  # read by this pass's claim, in its transaction
        if due is None:
            return self.settings.poll_seconds
        seconds = (due - self._clock.now()).total_seconds()
        return min(max(seconds, 0.01), self.settings.poll_seconds)

    async def stop(self) -> None:
        """Stop claiming, let the deliveries in flight finish, then close the store thread."""
        self._stopping = True
        self._stopped.set()
        self.wake()
        await self._running.wait()
        if self._active:
            await asyncio.gather(*self._active, return_exceptions=True)
        await self._acceptance.settle()
        self._db.shutdown(wait=True)

    async def dispatch(self) -> int:
        """Claim what is due now and start delivering it; returns how many recipients."""
        free = self.settings.concurrency - len(self._active)
        if free <= 0:
            self._claim = None
            return 0
        limit = min(self.settings.claim_batch, free * 4)
        self._claim = await self._db_call(self.queue.claim, self._clock.now(), limit)
        due = self._claim.recipients
        groups: dict[tuple[str, str], list[DueRecipient]] = {}
        for recipient in due:
            groups.setdefault((recipient.message_id, recipient.domain), []).append(recipient)
        for group in groups.values():
            task = asyncio.create_task(self._deliver_guarded(group))
            self._active.add(task)
            task.add_done_callback(self._finished)
        return len(due)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._active.discard(task)
        # A freed slot matters only when due work waited for one; otherwise waking
        # here cost a claim that found nothing and a next-due query, per delivery
        # (a profile of one PostgreSQL node: a quarter of its store thread).
        if self._more_due():
            self.wake()

    def _more_due(self) -> bool:
        """Whether due work may wait for a slot: the last claim took its limit, or there
        was no free slot to claim with."""
        return self._claim is None or self._claim.full

    async def run_until_idle(self) -> None:
        """Deliver everything due now and wait for it (tests and one-shot use)."""
        while await self.dispatch() or self._active:
            if self._active:
                await asyncio.gather(*list(self._active), return_exceptions=True)

    async def _deliver_guarded(self, group: list[DueRecipient]) -> None:
        domain = group[0].domain
        gate = self._per_destination.get(domain)
        if gate is None:
            gate = self._per_destination[domain] = asyncio.Semaphore(self._destination_cap)
        try:
            async with self._slots, gate:
                await self._delivery.deliver(group)
        except Exception as exc:
            log.exception("delivery of %s to %s failed unexpectedly", group[0].message_id, domain)
            now = self._clock.now()
            try:
                await self._delivery.conclude(
                    group, now, None, "", None, f"internal error: {exc}", own=True
                )
            except Exception:  # the store is down: housekeeping re-queues the stale claim
                log.exception("could not record the failure of %s", group[0].message_id)
