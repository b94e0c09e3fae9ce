"""The monitor tells a sweep's listings, delistings and zone changes as one batch of alerts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from hrmonitor.adapters.alerts import Delivery
from hrmonitor.adapters.store import Store
from hrmonitor.core.alert import Alert, AlertKind
from hrmonitor.core.dnsbl.answers import SweepResult
from hrmonitor.core.dnsbl.catalogue import ZoneList
from hrmonitor.core.model import (
    Answer,
    Clean,
    Listed,
    Pool,
    PoolPolicy,
    RiskClass,
    Severity,
    Status,
    ZoneHealth,
)
from hrmonitor.services.alerting import Alerting
from hrmonitor.services.monitor import Monitor
from tests.fixtures.peers import FakeClock
from tests.fixtures.store import CountingStore

IPS = tuple(f"192.0.2.{n}" for n in range(1, 41))
POOL = Pool("normal", RiskClass.NORMAL, IPS, (), PoolPolicy(), timedelta(minutes=30))
REPEAT = timedelta(hours=4)


@dataclass
class ScriptedEngine:
    """Answers what the test says; no DNS (the engine has tests of its own)."""

    answers: list[Answer] = field(default_factory=list)
    health: dict[str, ZoneHealth] = field(default_factory=lambda: {"bl": ZoneHealth.OK})

    async def sweep(
        self,
        ips: Sequence[str],
        lists: Sequence[ZoneList],
        previous: Mapping[tuple[str, str], Status] | None = None,
    ) -> SweepResult:
        return SweepResult(tuple(self.answers), dict(self.health))


@dataclass
class Recording:
    name: str = "recording"
    min_severity: Severity = Severity.LOW
    got: list[Alert] = field(default_factory=list)

    async def send(self, alert: Alert) -> Delivery:
        self.got.append(alert)
        return Delivery(self.name, True)


def listed(ip: str) -> Listed:
    return Listed(ip, "bl", ("127.0.0.2",), ("spam",), Severity.HIGH, "listed for spam")


async def test_a_sweep_tells_its_changes_in_one_dedupe_transaction(
    store: Store, fake_clock: FakeClock
) -> None:
    assert store.sync_pools([POOL], fake_clock.now()) == []
    counting = CountingStore(store)
    channel = Recording()
    alerting = Alerting(counting, [channel], REPEAT)
    engine = ScriptedEngine([listed(ip) for ip in IPS])
    monitor = Monitor(engine, [], store, fake_clock, alerting.emit_batch, [POOL])

    await monitor.sweep_pool("normal")
    assert counting.batches == [len(IPS)]
    assert len(channel.got) == len(IPS)
    assert {(a.kind, a.ip, a.resolved) for a in channel.got} == {
        (AlertKind.LISTING, ip, False) for ip in IPS
    }

    fake_clock.advance(timedelta(minutes=30))
    await monitor.sweep_pool("normal")  # nothing changed: nothing to tell, no transaction
    assert counting.batches == [len(IPS)]
    assert len(channel.got) == len(IPS)

    fake_clock.advance(timedelta(minutes=30))
    cleared = IPS[:10]
    engine.answers = [Clean(ip, "bl") if ip in cleared else listed(ip) for ip in IPS]
    engine.health = {"bl": ZoneHealth.OK, "other": ZoneHealth.DEAD}
    await monitor.sweep_pool("normal")
    assert counting.batches == [len(IPS), len(cleared) + 1]
    told = channel.got[len(IPS) :]
    assert {(a.kind, a.key, a.resolved) for a in told} == {
        *((AlertKind.LISTING, f"listing:normal:{ip}:bl", True) for ip in cleared),
        (AlertKind.ZONE_HEALTH, "zone-health:other", False),
    }
    assert {a.event for a in told if a.resolved} == {"delisting"}


async def test_a_listing_check_recorded_first_is_told_by_the_next_sweep_once(
    store: Store, fake_clock: FakeClock
) -> None:
    """``hrmonitor check`` records listings but never alerts: the daemon's sweep tells them."""
    assert store.sync_pools([POOL], fake_clock.now()) == []
    first = IPS[:3]
    # what check writes: the answers and listings, no zone health, no alert
    store.record_sweep([listed(ip) for ip in first], {"bl": ZoneHealth.OK}, fake_clock.now(),
                       zone_health=False)  # fmt: skip
    channel = Recording()
    alerting = Alerting(store, [channel], REPEAT)
    engine = ScriptedEngine([listed(ip) for ip in first])
    monitor = Monitor(engine, [], store, fake_clock, alerting.emit_batch, [POOL])

    fake_clock.advance(timedelta(minutes=5))
    await monitor.sweep_pool("normal")
    assert sorted((a.kind, a.ip, a.resolved) for a in channel.got) == [
        (AlertKind.LISTING, ip, False) for ip in sorted(first)
    ]
    fake_clock.advance(timedelta(minutes=30))
    await monitor.sweep_pool("normal")  # told once: the open alerts say so
    assert len(channel.got) == len(first)


async def test_a_normal_pool_listing_on_a_zone_no_longer_configured_resolves_as_itself(
    store: Store, fake_clock: FakeClock
) -> None:
    """A normal-pool IP's listing alert is ``normal-ip-listed`` (one alert per event):
    a reload or restart that drops its zone resolves it too, critical as it was raised."""
    assert store.sync_pools([POOL], fake_clock.now()) == []
    channel = Recording()
    alerting = Alerting(store, [channel], REPEAT)
    key = f"listing:normal:{IPS[0]}:gone"
    raised = Alert(AlertKind.NORMAL_IP_LISTED, Severity.CRITICAL, key, "listed", fake_clock.now(),
                   {"zone": "gone"}, "normal", IPS[0])  # fmt: skip
    await alerting.emit(raised)
    monitor = Monitor(ScriptedEngine([]), [], store, fake_clock, alerting.emit_batch, [POOL])

    assert await monitor.resolve_unconfigured_zones(store.open_alerts()) == ["gone"]
    resolution = channel.got[-1]
    assert (resolution.key, resolution.resolved, resolution.event) == (key, True, "delisting")
    assert (resolution.kind, resolution.severity) == (AlertKind.NORMAL_IP_LISTED, Severity.CRITICAL)
    assert store.open_alerts() == []


async def test_the_alerts_of_a_pool_no_longer_configured_resolve_as_they_were_raised(
    store: Store, fake_clock: FakeClock
) -> None:
    """A pool removed from the config (reload or restart) is no longer ticked: its
    pool-exhausted alert would stay open for ever. A configured pool's stays open."""
    assert store.sync_pools([POOL], fake_clock.now()) == []
    channel = Recording()
    alerting = Alerting(store, [channel], REPEAT)
    gone = Alert(AlertKind.POOL_EXHAUSTED, Severity.CRITICAL, "pool-exhausted:gone", "empty",
                 fake_clock.now(), {}, "gone")  # fmt: skip
    kept = Alert(AlertKind.POOL_BELOW_MIN, Severity.HIGH, "pool-below-min:normal", "short",
                 fake_clock.now(), {}, "normal")  # fmt: skip
    await alerting.emit_batch([gone, kept])
    monitor = Monitor(ScriptedEngine([]), [], store, fake_clock, alerting.emit_batch, [POOL])

    assert await monitor.resolve_unconfigured_pools(store.open_alerts()) == ["gone"]
    resolution = channel.got[-1]
    assert (resolution.key, resolution.resolved, resolution.pool) == (gone.key, True, "gone")
    assert (resolution.kind, resolution.severity) == (AlertKind.POOL_EXHAUSTED, Severity.CRITICAL)
    assert [record.key for record in store.open_alerts()] == [kept.key]
    assert await monitor.resolve_unconfigured_pools(store.open_alerts()) == []  # once


async def test_a_failing_listener_does_not_hold_back_the_sweeps_alerts(
    store: Store, fake_clock: FakeClock
) -> None:
    """The monitor tells after rotation decided; rotation failing still lets it tell."""
    assert store.sync_pools([POOL], fake_clock.now()) == []
    channel = Recording()
    alerting = Alerting(store, [channel], REPEAT)
    monitor = Monitor(ScriptedEngine([listed(IPS[0])]), [], store, fake_clock,
                      alerting.emit_batch, [POOL])  # fmt: skip

    async def broken(_: object) -> None:
        raise RuntimeError("rotation bug")

    monitor.on_sweep(broken)
    with pytest.raises(RuntimeError, match="rotation bug"):
        await monitor.sweep_pool("normal")
    assert [(a.kind, a.ip) for a in channel.got] == [(AlertKind.LISTING, IPS[0])]
