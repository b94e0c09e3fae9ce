"""Alert delivery with deduplication: one condition, one alert, until it resolves.

The store holds the dedupe state so that a restart, or a second daemon on the
same store, does not repeat an alert: an open alert is re-sent only after
``repeat_after``; a resolution is sent once, and only for an alert that was open.
The log channel gets every alert that passes dedupe; other channels get what
their severity filter admits. A failing channel is logged and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from hrmonitor.adapters.alerts import Channel, Delivery, wants
from hrmonitor.core.alert import Alert
from hrmonitor.core.model import Severity

log = logging.getLogger(__name__)


class AlertStore(Protocol):
    def claim_alert(
        self,
        key: str,
        kind: str,
        severity: Severity,
        payload: Mapping[str, object],
        now: datetime,
        repeat_after: timedelta,
    ) -> bool: ...

    def resolve_alert(self, key: str, now: datetime) -> bool: ...


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
        if not await asyncio.to_thread(self._claim, alert):
            return []
        if self._counter is not None and not alert.resolved:
            self._counter.alert(str(alert.kind), str(alert.severity))
        self.sent = [*self.sent[-99:], alert]
        targets = [c for c in self._channels if alert.resolved or wants(c, alert)]
        results = await asyncio.gather(*(self._send(c, alert) for c in targets))
        return list(results)

    def _claim(self, alert: Alert) -> bool:
        if alert.resolved:
            return self._store.resolve_alert(alert.key, alert.at)
        return self._store.claim_alert(
            alert.key,
            str(alert.kind),
            alert.severity,
            alert.as_dict(),
            alert.at,
            self._repeat_after,
        )

    @staticmethod
    async def _send(channel: Channel, alert: Alert) -> Delivery:
        try:
            return await channel.send(alert)
        except Exception as error:  # a channel bug must not stop the others
            log.exception("alert channel %s raised", channel.name)
            return Delivery(channel.name, False, repr(error))
