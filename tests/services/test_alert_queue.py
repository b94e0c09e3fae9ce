"""QueuedChannel: the daemon's alerts go through a bounded queue to a worker per channel."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from hrmonitor.adapters.alerts import Delivery
from hrmonitor.core.alert import Alert, AlertKind
from hrmonitor.core.backoff import Backoff
from hrmonitor.core.model import Severity
from hrmonitor.services.alerting import Outbox, QueuedChannel

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
QUICK = Backoff(base=0.001, cap=0.002)


def alert(key: str) -> Alert:
    return Alert(AlertKind.LISTING, Severity.HIGH, key, f"{key} listed", T0, {})


@dataclass
class Receiver:
    """A channel whose sends wait for ``open`` and fail ``failures`` times first."""

    name: str = "webhook test"
    min_severity: Severity = Severity.LOW
    failures: int = 0
    open: asyncio.Event = field(default_factory=asyncio.Event)
    tried: list[str] = field(default_factory=list)
    got: list[str] = field(default_factory=list)

    async def send(self, alert: Alert) -> Delivery:
        await self.open.wait()
        self.tried.append(alert.key)
        if self.failures > 0:
            self.failures -= 1
            return Delivery(self.name, False, "HTTP 503")
        self.got.append(alert.key)
        return Delivery(self.name, True)


async def test_send_returns_at_once_and_a_full_queue_drops_its_oldest_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver()
    dropped: list[str] = []
    queued = QueuedChannel(receiver, Outbox(queue_size=2, backoff=QUICK), dropped.append)
    for key in ("a1", "a2", "a3", "a4"):  # the receiver is stuck: nothing blocks here
        assert await queued.send(alert(key)) == Delivery(receiver.name, True, "queued")
    assert queued.dropped == 2
    assert dropped == [receiver.name, receiver.name]
    full = [r.getMessage() for r in caplog.records if "is full" in r.getMessage()]
    assert full == [f"alert queue of {receiver.name} is full: dropped 1 alert(s), the oldest a1"]

    receiver.open.set()
    await queued.close(5)
    assert receiver.got == ["a3", "a4"]  # in order, the newest kept


async def test_a_failing_send_is_retried_with_backoff_then_given_up() -> None:
    receiver = Receiver(failures=2)
    receiver.open.set()
    queued = QueuedChannel(receiver, Outbox(attempts=3, backoff=QUICK))
    await queued.send(alert("a"))
    await queued.close(5)
    assert receiver.tried == ["a", "a", "a"]
    assert receiver.got == ["a"]

    receiver = Receiver(failures=5)
    receiver.open.set()
    queued = QueuedChannel(receiver, Outbox(attempts=2, backoff=QUICK))
    await queued.send(alert("b"))
    await queued.send(alert("c"))
    await queued.close(5)
    assert receiver.tried == ["b", "b", "c", "c"]  # each gets its tries; none blocks the next
    assert queued.given_up == 2


async def test_close_waits_at_most_its_wait_for_a_stuck_receiver(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    queued = QueuedChannel(Receiver(), Outbox())  # never opened: the send never ends
    await queued.send(alert("a"))
    await queued.send(alert("b"))
    await asyncio.wait_for(queued.close(0.2), 5)
    assert any("not sent at shutdown: 2 queued" in r.getMessage() for r in caplog.records)
