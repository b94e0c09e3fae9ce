"""Alert delivery with deduplication: one condition, one alert, until it resolves.

The store holds the dedupe state so that a restart, or a second daemon on the
same store, does not repeat an alert: an open alert is re-sent only after
``repeat_after``; a resolution is sent once, and only for an alert that was open.
The log channel gets every alert that passes dedupe; other channels get what
their severity filter admits. A failing channel is logged and skipped.

A sweep's alerts go through ``emit_batch``: one store transaction dedupes them
all (a first check with thousands of new listings used to pay one commit per
alert). The dedupe state is recorded before any channel is tried, as for a
single alert: a failing channel does not make the alert due again.

In the daemon (``outbox`` given) delivery never blocks the caller's job: the
log channel is written at once, and every other channel gets a
:class:`QueuedChannel`, a bounded queue with its own worker. The worker sends
one alert at a time (a resolution never overtakes its alert), each send under
the channel's total deadline, retried with exponential backoff and jitter; a
full queue drops its oldest alert, counted and logged. :meth:`Alerting.close`
gives the queues ``shutdown_wait`` to empty, then stops the workers. A slow
webhook used to hold sweeps, rotation ticks and shutdown for minutes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Protocol

from hrmonitor.adapters.alerts import Channel, Delivery, LogChannel, wants
from hrmonitor.core.alert import Alert, Claim, Claimed, as_resolution_of
from hrmonitor.core.backoff import Backoff, FailureLog
from hrmonitor.core.model import Severity

log = logging.getLogger(__name__)


class AlertStore(Protocol):
    def claim_alerts_detailed(
        self, batch: Sequence[Alert], repeat_after: timedelta
    ) -> list[Claim]: ...


class AlertCounter(Protocol):
    def alert(self, kind: str, severity: str) -> None: ...

    def alert_resent(self, kind: str, severity: str, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Outbox:
    """How the daemon queues alerts for its channels (``[alerting]``)."""

    queue_size: int = 1000  # alerts waiting per channel; a full queue drops its oldest
    attempts: int = 3  # tries per alert and channel
    backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=60.0))  # between tries
    shutdown_wait: float = 5.0  # seconds close() gives the queues to empty
    failure_log_seconds: float = 60.0  # a failing channel: one log line per this, with a count


DroppedFn = Callable[[str], None]  # channel name: one alert dropped from its full queue


class QueuedChannel:
    """A channel behind a bounded queue and a worker of its own (see the module docstring)."""

    def __init__(
        self, channel: Channel, outbox: Outbox, on_dropped: DroppedFn | None = None
    ) -> None:
        self.name = channel.name
        self.min_severity: Severity = channel.min_severity
        self.dropped = 0
        self.given_up = 0
        self._channel = channel
        self._outbox = outbox
        self._on_dropped = on_dropped
        self._queue: deque[Alert] = deque()
        self._waiting = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None
        self._failures = FailureLog(outbox.failure_log_seconds)
        self._drops = FailureLog(outbox.failure_log_seconds)
        self._rng = random.Random()

    async def send(self, alert: Alert) -> Delivery:
        """Queue ``alert`` and return at once; the worker delivers it."""
        if len(self._queue) >= self._outbox.queue_size:
            oldest = self._queue.popleft()
            self.dropped += 1
            if self._on_dropped is not None:
                self._on_dropped(self.name)
            if (count := self._drops.failed(time.monotonic())) is not None:
                log.warning("alert queue of %s is full: dropped %d alert(s), the oldest %s",
                            self.name, count, oldest.key)  # fmt: skip
        self._queue.append(alert)
        self._idle.clear()
        self._waiting.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(
                self._work(), name=f"alerts: {self.name}"
            )
        return Delivery(self.name, True, "queued")

    async def close(self, wait: float) -> None:
        """Give the queue ``wait`` seconds to empty, then stop the worker."""
        if self._worker is None:
            return
        try:
            async with asyncio.timeout(wait):
                await self._idle.wait()
        except TimeoutError:
            log.warning("alerts to %s not sent at shutdown: %d queued", self.name,
                        len(self._queue) + (0 if self._idle.is_set() else 1))  # fmt: skip
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._waiting.clear()
                await self._waiting.wait()
                continue
            await self._deliver(self._queue.popleft())

    async def _deliver(self, alert: Alert) -> None:
        attempts = self._outbox.attempts
        for attempt in range(1, attempts + 1):
            delivery = await _send(self._channel, alert)
            if delivery.ok:
                if outage := self._failures.recovered():
                    log.warning("alerts to %s go through again after %d failed attempt(s)",
                                self.name, outage)  # fmt: skip
                return
            if (count := self._failures.failed(time.monotonic())) is not None:
                log.warning("alert %s to %s failed (%d failed attempt(s) since the last line): %s",
                            alert.key, self.name, count, delivery.detail)  # fmt: skip
            if attempt < attempts:
                await asyncio.sleep(self._outbox.backoff.delay(attempt, self._rng))
        self.given_up += 1
        log.debug("alert %s to %s given up after %d attempts", alert.key, self.name, attempts)


async def _send(channel: Channel, alert: Alert) -> Delivery:
    try:
        return await channel.send(alert)
    except Exception as error:  # a channel bug must not stop the others
        log.exception("alert channel %s raised", channel.name)
        return Delivery(channel.name, False, repr(error))


class Alerting:
    def __init__(
        self,
        store: AlertStore,
        channels: Sequence[Channel],
        repeat_after: timedelta,
        counter: AlertCounter | None = None,
        *,
        outbox: Outbox | None = None,
        on_dropped: DroppedFn | None = None,
        node: str | None = None,
    ) -> None:
        self._store = store
        self._node = node  # stamped on every alert: which node saw it
        self._outbox = outbox
        self._on_dropped = on_dropped
        self._queued: tuple[QueuedChannel, ...] = ()
        self._replaced: list[QueuedChannel] = []  # queues of a reload's old channels, draining
        self._channels: tuple[Channel, ...] = self._wrap(channels)
        self._repeat_after = repeat_after
        self._counter = counter
        self.sent: list[Alert] = []  # what passed dedupe, newest last (bounded)

    def _wrap(self, channels: Sequence[Channel]) -> tuple[Channel, ...]:
        """The log channel direct; in the daemon (an outbox) the others behind a queue."""
        outbox = self._outbox
        if outbox is None:
            return tuple(channels)
        self._replaced.extend(self._queued)
        self._queued = tuple(
            QueuedChannel(c, outbox, self._on_dropped)
            for c in channels
            if not isinstance(c, LogChannel)
        )
        direct = [c for c in channels if isinstance(c, LogChannel)]
        return (*direct, *self._queued)

    def reconfigure(self, channels: Sequence[Channel], repeat_after: timedelta) -> None:
        """New channels and repeat interval for the next alert (a reload); open alerts stay.

        In the daemon the new channels get queues of their own, as at start (a reload
        used to leave webhooks unqueued, holding the caller's job); the old queues
        finish what they hold and are stopped by :meth:`close`.
        """
        self._channels = self._wrap(channels)
        self._repeat_after = repeat_after

    async def emit(self, alert: Alert) -> list[Delivery]:
        """Send ``alert`` unless dedupe holds it back; returns each channel's outcome."""
        (deliveries,) = await self.emit_batch([alert])
        return deliveries

    async def emit_batch(self, alerts: Sequence[Alert]) -> list[list[Delivery]]:
        """``emit`` for each alert in order, with one store transaction for all of them.

        Returns each alert's channel outcomes ([] for one dedupe held back). Each
        channel gets its alerts one at a time in batch order (a resolution never
        overtakes its alert); the channels run side by side, as for one alert.
        """
        if not alerts:
            return []
        if self._node is not None:
            alerts = [a if a.node else replace(a, node=self._node) for a in alerts]
        claims = await asyncio.to_thread(
            self._store.claim_alerts_detailed, alerts, self._repeat_after
        )
        # A resolution goes out as the alert it resolves (kind, severity), whoever made it.
        passed = [
            (i, as_resolution_of(alert, claim))
            for i, (alert, claim) in enumerate(zip(alerts, claims, strict=True))
            if claim.outcome.sends
        ]
        if self._counter is not None:
            self._count(self._counter, [(a, c) for a, c in zip(alerts, claims, strict=True)])
        self.sent = [*self.sent, *(alert for _, alert in passed)][-100:]
        deliveries: list[list[Delivery]] = [[] for _ in alerts]
        sent = await asyncio.gather(*(self._send_all(c, passed) for c in self._channels))
        for channel_sent in sent:  # in channel order, as for a single alert
            for index, delivery in channel_sent:
                deliveries[index].append(delivery)
        return deliveries

    @staticmethod
    def _count(counter: AlertCounter, claimed: Sequence[tuple[Alert, Claim]]) -> None:
        """``hrmonitor_alerts_total`` counts conditions that opened; repeats and re-fires apart."""
        for alert, claim in claimed:
            if claim.outcome is Claimed.NEW:
                counter.alert(str(alert.kind), str(alert.severity))
            elif claim.outcome in (Claimed.REPEAT, Claimed.REFIRE):
                counter.alert_resent(str(alert.kind), str(alert.severity), str(claim.outcome))

    async def _send_all(
        self, channel: Channel, alerts: Sequence[tuple[int, Alert]]
    ) -> list[tuple[int, Delivery]]:
        return [
            (index, await self._send(channel, alert))
            for index, alert in alerts
            if alert.resolved or wants(channel, alert)
        ]

    @staticmethod
    async def _send(channel: Channel, alert: Alert) -> Delivery:
        delivery = await _send(channel, alert)
        if not delivery.ok:
            log.warning("alert %s to %s failed: %s", alert.key, channel.name, delivery.detail)
        return delivery

    async def close(self) -> None:
        """Give the queued channels ``shutdown_wait`` together to empty; stop their workers."""
        queues = [*self._queued, *self._replaced]
        if self._outbox is None or not queues:
            return
        wait = self._outbox.shutdown_wait
        await asyncio.gather(*(q.close(wait) for q in queues))
