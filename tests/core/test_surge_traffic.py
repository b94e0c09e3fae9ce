"""Synthetic relay traffic on virtual time for the surge tests and the benchmark.

Seeded, so every run sees the same mail: tenants with their senders,
established client addresses, a diurnal volume curve, a background bounce
rate, and the attacks of docs/mail-facts.md "Surges" layered on top.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hrmonitor.core.surge import (
    BounceReturned,
    DeliveryOutcome,
    FailedAddress,
    MessageAccepted,
    SurgeChange,
    SurgeTracker,
)

START = datetime(2026, 11, 23, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
DOMAINS = (*(f"dest{i}.example" for i in range(40)), "gmail.example", "outlook.example")
SOURCE_IPS = ("203.0.113.20", "203.0.113.21", "198.51.100.10")
Event = MessageAccepted | DeliveryOutcome | BounceReturned


@dataclass
class Tenant:
    name: str
    per_minute: float  # mean accepted messages per minute at the daily peak
    bounce_rate: float = 0.02
    client_ip: str = "192.0.2.10"
    senders: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.senders:
            self.senders = tuple(f"user{i}@{self.domain}" for i in range(25))

    @property
    def domain(self) -> str:
        return f"{self.name}.example"


@dataclass
class Traffic:
    """Produces one minute of events at a time; attacks are extra generators per minute."""

    tenants: list[Tenant]
    seed: int = 1
    diurnal: bool = True
    rng: random.Random = field(init=False)
    serial: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def message_id(self) -> str:
        self.serial += 1
        return f"<{self.serial}.{self.seed}@relay.example>"

    def volume(self, at: datetime, tenant: Tenant) -> int:
        hour = at.hour + at.minute / 60
        factor = 1.0
        if self.diurnal:  # quiet at 03:00, busy at 15:00
            factor = 0.55 - 0.45 * math.cos((hour - 3) / 24 * 2 * math.pi)
        return _poisson(self.rng, tenant.per_minute * factor)

    def normal(self, at: datetime) -> Iterator[Event]:
        rng = self.rng
        for tenant in self.tenants:
            for _ in range(self.volume(at, tenant)):
                when = at + timedelta(seconds=rng.uniform(0, 59))
                yield from self.send(tenant, when, rng.choice(tenant.senders))

    def send(
        self,
        tenant: Tenant,
        at: datetime,
        sender: str,
        *,
        recipients: int = 1,
        score: float | None = None,
        client_ip: str | None = None,
        bounce_rate: float | None = None,
        reasons: tuple[str, ...] = ("userunknown",),
        diagnostic: str = "",
        domains: tuple[str, ...] = DOMAINS,
    ) -> Iterator[Event]:
        rng = self.rng
        rcpts = tuple(f"r{rng.randrange(100_000)}@{rng.choice(domains)}" for _ in range(recipients))
        mid = self.message_id()
        yield MessageAccepted(
            at,
            tenant.name,
            sender,
            rcpts,
            message_id=mid,
            client_ip=client_ip or tenant.client_ip,
            spam_score=rng.gauss(1.0, 1.0) if score is None else score,
        )
        rate = tenant.bounce_rate if bounce_rate is None else bounce_rate
        for rcpt in rcpts:
            failed = rng.random() < rate
            reason = rng.choice(reasons) if failed else "delivered"
            yield DeliveryOutcome(
                at + timedelta(seconds=1),
                tenant.name,
                sender,
                rcpt,
                rng.choice(SOURCE_IPS),
                reason,
                hard=failed,
                message_id=mid,
                diagnostic=diagnostic or (f"550 5.1.1 {rcpt}: no such user" if failed else ""),
            )


def feed(tracker: SurgeTracker, events: Iterator[Event]) -> None:
    for event in events:
        if isinstance(event, MessageAccepted):
            tracker.accepted(event)
        elif isinstance(event, DeliveryOutcome):
            tracker.delivered(event)
        else:
            tracker.returned(event)


def run(
    tracker: SurgeTracker,
    traffic: Traffic,
    start: datetime,
    minutes: int,
    extra: Callable[[datetime], Iterator[Event]] | None = None,
) -> list[SurgeChange]:
    """Simulate ``minutes`` of traffic, evaluating at each minute boundary."""
    changes: list[SurgeChange] = []
    for minute in range(minutes):
        at = start + minute * MINUTE
        feed(tracker, traffic.normal(at))
        if extra is not None:
            feed(tracker, extra(at))
        changes.extend(tracker.evaluate(at + MINUTE))
    return changes


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def failed(address: str, reason: str, diagnostic: str = "") -> FailedAddress:
    return FailedAddress(address, reason, True, diagnostic)


def test_synthetic_traffic_is_diurnal_and_bounces_at_the_tenant_rate() -> None:
    """The generator the scenarios trust: busy afternoons, quiet nights, the given bounce rate."""
    tenant = Tenant("contoso", 20, 0.02)
    traffic = Traffic([tenant], seed=5)
    night = sum(traffic.volume(START.replace(hour=3), tenant) for _ in range(200))
    day = sum(traffic.volume(START.replace(hour=15), tenant) for _ in range(200))
    assert day > 5 * night
    outcomes = [
        e
        for _ in range(5000)
        for e in traffic.send(tenant, START, "a@contoso.example")
        if isinstance(e, DeliveryOutcome)
    ]
    assert 0.015 < sum(e.hard for e in outcomes) / len(outcomes) < 0.025
