"""The surge watcher service: feeds relay events to the surge core and sends its alerts.

The event methods are synchronous and cheap (a few dictionary updates):
they sit on the SMTP acceptance path and in the queue runner. Detection
runs in :meth:`SurgeWatcher.tick`, which the daemon calls once per bucket
(``next_tick`` says when); it rolls the windows over, opens and closes
surges, and awaits the alert sink for each change worth telling (surges
folded into a tenant surge of the same cause are reported, not alerted).

A bad event is logged and dropped; a failing sink is logged and the next
alert still goes out: the watcher must never stop the relay.

BATV: with keys configured, :meth:`tag_sender` tags outbound envelope
senders and :meth:`bounce_returned` verifies the bounced address, which
turns backscatter attribution from a likelihood into exact evidence.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from hrmonitor.core.alert import Alert
from hrmonitor.core.surge import (
    BounceReturned,
    DeliveryOutcome,
    FailedAddress,
    MessageAccepted,
    RateRow,
    RateThresholds,
    Surge,
    SurgeSettings,
    SurgeTracker,
    surge_alert,
)
from hrmonitor.core.surge.verp import BatvKeys, batv_tag, batv_verify

log = logging.getLogger(__name__)


class ReportedRecipient(Protocol):
    """A failed recipient as the bounce classifier reports it (``core.bounce.FailedRecipient``)."""

    @property
    def address(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def hard(self) -> bool: ...
    @property
    def diagnostic(self) -> str: ...


def failed_from(recipients: Iterable[ReportedRecipient]) -> tuple[FailedAddress, ...]:
    """The watcher's view of a bounce report's recipients (reason as its plain string)."""
    return tuple(FailedAddress(r.address, str(r.reason), r.hard, r.diagnostic) for r in recipients)


class Emit(Protocol):
    """Where alerts go: ``Alerting.emit`` or any ``async def emit(alert)``."""

    async def __call__(self, alert: Alert, /) -> object: ...


@dataclass(frozen=True, slots=True)
class WatcherSnapshot:
    """What the report shows: rates per tenant, open surges, and how much the watcher holds."""

    at: datetime
    rates: tuple[RateRow, ...]
    surges: tuple[Surge, ...]
    tracked_keys: int
    indexed_ids: int
    dropped_events: int

    def as_dict(self) -> dict[str, object]:
        return {
            "at": self.at.isoformat(),
            "rates": [row.as_dict() for row in self.rates],
            "surges": [surge.as_dict() for surge in self.surges],
            "tracked_keys": self.tracked_keys,
            "indexed_ids": self.indexed_ids,
            "dropped_events": self.dropped_events,
        }


class SurgeWatcher:
    """Receives relay events, detects DSN surges, emits ``dsn-surge`` alerts and resolutions."""

    def __init__(
        self,
        settings: SurgeSettings,
        emit: Emit,
        *,
        batv: BatvKeys | None = None,
        thresholds: RateThresholds | None = None,
    ) -> None:
        self._tracker = SurgeTracker(settings)
        self._emit = emit
        self._batv = batv
        self._thresholds = thresholds or RateThresholds()
        self._bucket = settings.bucket
        self.dropped_events = 0

    # -- the acceptance path and the queue runner --

    def message_accepted(self, event: MessageAccepted) -> None:
        try:
            self._tracker.accepted(event)
        except Exception:
            self._drop(event)

    def delivery_outcome(self, event: DeliveryOutcome) -> None:
        try:
            self._tracker.delivered(event)
        except Exception:
            self._drop(event)

    def bounce_returned(self, event: BounceReturned) -> None:
        """Count a returned bounce; with BATV keys, its address's tag is verified first."""
        try:
            if self._batv is not None and event.batv is None:
                check = batv_verify(event.bounced_address, self._batv, event.at)
                event = dataclasses.replace(event, batv=check.verdict)
            self._tracker.returned(event)
        except Exception:
            self._drop(event)

    def tag_sender(self, sender: str, now: datetime) -> str:
        """The envelope sender to use for outbound mail: BATV-tagged when keys are configured."""
        if self._batv is None or not sender:
            return sender
        return batv_tag(sender, self._batv, now)

    # -- the periodic job --

    def next_tick(self, now: datetime) -> datetime:
        """The start of the bucket after ``now``: when :meth:`tick` should run next."""
        step = self._bucket.total_seconds()
        return now + timedelta(seconds=step - now.timestamp() % step)

    async def tick(self, now: datetime) -> tuple[Alert, ...]:
        """Roll windows to ``now``, open/close surges, send their alerts; returns what was sent."""
        try:
            changes = self._tracker.evaluate(now)
        except Exception:  # a daemon job logs and survives; the next tick tries again
            log.exception("surge evaluation failed at %s", now.isoformat())
            return ()
        alerts = tuple(surge_alert(change) for change in changes if not change.folded)
        for alert in alerts:
            try:
                await self._emit(alert)
            except Exception:
                log.exception("alert sink failed for %s", alert.key)
        return alerts

    def snapshot(self, now: datetime) -> WatcherSnapshot:
        tracker = self._tracker
        return WatcherSnapshot(
            at=now,
            rates=tracker.rates(now, self._thresholds),
            surges=tracker.open_surges(),
            tracked_keys=tracker.tracked_keys,
            indexed_ids=tracker.indexed_ids,
            dropped_events=self.dropped_events,
        )

    def _drop(self, event: object) -> None:
        self.dropped_events += 1
        log.exception("surge watcher dropped %s", type(event).__name__)
