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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Protocol

from hrmonitor.adapters.alerts import Channel, Delivery, wants
from hrmonitor.core.alert import Alert

log = logging.getLogger(__name__)


class AlertStore(Protocol):
    def claim_alerts(self, batch: Sequence[Alert], repeat_after: timedelta) -> list[bool]: ...


class AlertCounter(Protocol):
    def alert(self, kind: str, severity: str) -> None: ...


class Alerting:
    def __init__(
        self,
        store: AlertStore,
        channels: Sequence[Channel],
        repeat_after: timedelta,
        counter: AlertCounter | None = None,
    ) -> None:
        self._store = store
        self._channels = tuple(channels)
        self._repeat_after = repeat_after
        self._counter = counter
        self.sent: list[Alert] = []  # what passed dedupe, newest last (bounded)

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
        claimed = await asyncio.to_thread(self._store.claim_alerts, alerts, self._repeat_after)
        passed = [
            (i, alert) for i, (alert, ok) in enumerate(zip(alerts, claimed, strict=True)) if ok
        ]
        for _, alert in passed:
            if self._counter is not None and not alert.resolved:
                self._counter.alert(str(alert.kind), str(alert.severity))
        self.sent = [*self.sent, *(alert for _, alert in passed)][-100:]
        deliveries: list[list[Delivery]] = [[] for _ in alerts]
        sent = await asyncio.gather(*(self._send_all(c, passed) for c in self._channels))
        for channel_sent in sent:  # in channel order, as for a single alert
            for index, delivery in channel_sent:
                deliveries[index].append(delivery)
        return deliveries

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
        try:
            return await channel.send(alert)
        except Exception as error:  # a channel bug must not stop the others
            log.exception("alert channel %s raised", channel.name)
            return Delivery(channel.name, False, repr(error))
