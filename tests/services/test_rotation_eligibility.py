"""Issue 12 items 2-5 through the controller and the real store.

Bind failures re-probed with the daemon's own probe (``smtp_out.check_bindable``)
in a network namespace the test makes, where an address outside 127/8 first
cannot be bound and then, once ``ip addr add`` put it on the loopback, can.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from hrmonitor.adapters.smtp_out import check_bindable
from hrmonitor.adapters.store import Store
from hrmonitor.core.alert import Alert, AlertKind
from hrmonitor.core.model import IPState, Pool, PoolPolicy, RiskClass, ZoneHealth
from hrmonitor.core.rotation.decide import OperatorAction, Verb
from hrmonitor.core.rotation.selection import NoEligibleIp, Selection, choose_source_ip
from hrmonitor.services.rotation.controller import BIND_PROBE_ACTOR, EXHAUSTED_SETTLE, Controller
from tests.fixtures.netns import NetNs
from tests.services.test_controller import HOUR, T0, ZONES, Alerts, make, pools, states, sweep

MISSING = "10.200.0.1"  # not on any interface of the namespace until the test adds it
SECOND = timedelta(seconds=1)


@pytest.fixture
def configured(store: Store) -> Store:
    assert store.sync_pools(pools(), T0 - timedelta(days=1)) == []
    return store


def high_only(ips: tuple[str, ...]) -> list[Pool]:
    return [
        Pool(
            "high-risk",
            RiskClass.HIGH,
            ips,
            (),
            PoolPolicy(cooldown=3 * HOUR),
            timedelta(minutes=15),
        )
    ]


def exhausted(alerts: Alerts, pool: str = "high-risk") -> list[bool]:
    """The resolved flags of every pool-exhausted alert sent about ``pool``, in order."""
    return [
        a.resolved for a in alerts.sent if a.kind is AlertKind.POOL_EXHAUSTED and a.pool == pool
    ]


async def test_a_bind_failure_is_lifted_at_the_first_tick_after_the_address_binds(
    store: Store, netns: NetNs
) -> None:
    """Item 4: not a fixed pause; re-probed every tick, back as soon as it binds."""
    assert store.sync_pools(high_only((MISSING,)), T0) == []

    def probe(ips: Sequence[str]) -> dict[str, str | None]:
        return netns.call(lambda: check_bindable(ips))

    alerts = Alerts()
    controller = Controller(store, high_only((MISSING,)), ZONES, alerts, probe=probe)
    await controller.load(T0)
    problem = probe([MISSING])[MISSING]
    assert problem is not None
    assert "errno" in problem
    controller.on_bind_failure(MISSING, "high-risk", problem, T0)  # the start-up check's call
    await controller.drain()
    await controller.tick(T0 + 5 * SECOND)
    await controller.drain()
    assert isinstance(
        choose_source_ip(controller.candidates_now("high-risk", T0 + 5 * SECOND), "x", T0, 0),
        NoEligibleIp,
    )

    netns.ip("addr", "add", f"{MISSING}/32", "dev", "lo")
    now = T0 + 10 * SECOND  # far inside the 10-minute bind pause
    await controller.tick(now)
    await controller.drain()
    chosen = choose_source_ip(controller.candidates_now("high-risk", now), "x", now, 0)
    assert not isinstance(chosen, NoEligibleIp)
    assert chosen.ip == MISSING
    assert store.active_suspensions(now) == []
    lifted = [e for e in store.audit_trail(MISSING) if e.actor == BIND_PROBE_ACTOR]
    assert lifted
    assert "binds again" in lifted[-1].reason


async def test_ip_enable_lifts_a_bind_failure(configured: Store) -> None:
    """Item 4: the operator's ``ip enable`` on an IP held by a bind failure lifts it, audited."""
    controller = make(configured, min_active=1)
    await controller.load(T0)
    controller.on_bind_failure("127.0.2.1", "high-risk", "EADDRNOTAVAIL", T0)
    await controller.drain()
    action = OperatorAction("127.0.2.1", Verb.ENABLE, "address is back", "operator:alice", T0)
    result = await controller.operator(action)
    assert result.applied, result.refused
    assert configured.active_suspensions(T0) == []
    offered = controller.candidates_now("high-risk", T0)
    chosen = set()
    for n in range(4):
        choice = choose_source_ip(offered, "x", T0, n)
        assert isinstance(choice, Selection)
        chosen.add(choice.ip)
    assert chosen == {"127.0.2.1", "127.0.2.2"}
    assert any(e.actor == "operator:alice" for e in configured.audit_trail("127.0.2.1"))


async def test_pool_exhausted_fires_once_and_resolves_once_whatever_the_relay_says(
    configured: Store,
) -> None:
    """Item 3: a retry loop finding no IP, ticks seeing IPs "in rotation": one firing, and
    one resolution only after the pool stayed able to send for the settle time."""
    alerts = Alerts()
    controller = make(configured, alerts, min_active=1)
    await controller.load(T0)
    for ip in ("127.0.2.1", "127.0.2.2", "127.0.2.3"):
        controller.on_bind_failure(ip, "high-risk", "EADDRNOTAVAIL", T0)
    now = T0
    for _ in range(40):  # what the relay and the tick did, 40 times
        now += SECOND
        controller.on_relay_alert(_relay_alert(now, resolved=False))
        await controller.tick(now)
        controller.on_relay_alert(_relay_alert(now, resolved=True))
        await controller.drain()
    assert exhausted(alerts) == [False]
    assert all(ip_state.in_rotation for ip, ip_state in states(configured).items() if ip in (
        "127.0.2.1", "127.0.2.2"
    ))  # fmt: skip

    action = OperatorAction("127.0.2.1", Verb.ENABLE, "fixed", "operator:alice", now)
    assert (await controller.operator(action)).applied
    back = now
    while now - back < EXHAUSTED_SETTLE + 3 * SECOND:
        now += SECOND
        await controller.tick(now)
        await controller.drain()
        if now - back < EXHAUSTED_SETTLE:
            assert exhausted(alerts) == [False]
    assert exhausted(alerts) == [False, True]


async def test_a_pool_that_can_send_at_start_resolves_a_pool_exhausted_left_open_once(
    configured: Store,
) -> None:
    """A restart after an outage: the alert the last run left open is resolved, once."""
    alerts = Alerts()
    controller = make(configured, alerts, min_active=1)
    await controller.load(T0)
    for seconds in (1, 2, 3):
        await controller.tick(T0 + seconds * SECOND)
        await controller.drain()
    assert exhausted(alerts, "high-risk") == [True]  # the first tick only
    assert exhausted(alerts, "normal") == [True]


def _relay_alert(now: datetime, resolved: bool) -> Alert:
    from hrmonitor.core.alert import alert_key
    from hrmonitor.core.model import Severity

    key = alert_key(AlertKind.POOL_EXHAUSTED, "high-risk")
    return Alert(AlertKind.POOL_EXHAUSTED, Severity.CRITICAL, key, "relay", now, {}, "high-risk",
                 None, resolved)  # fmt: skip


async def test_a_dead_zone_does_not_stop_the_cooldown(configured: Store) -> None:
    """Item 5: clean time counts on the zones that are healthy and configured."""
    controller = make(configured, min_active=1)
    await controller.load(T0)
    await controller.on_sweep(sweep(configured, T0, ["127.0.2.1"]), T0)
    assert states(configured)["127.0.2.1"] is IPState.RETIRED
    dead = {"spamcop": ZoneHealth.DEAD}
    for hours in (1, 2, 3):
        now = T0 + hours * HOUR
        await controller.on_sweep(sweep(configured, now, health=dead), now)
        assert states(configured)["127.0.2.1"] is IPState.RETIRED, hours
    now = T0 + 4 * HOUR  # delisted at T0+1h on zen, the one healthy zone: 3h clean
    await controller.on_sweep(sweep(configured, now, health=dead), now)
    assert states(configured)["127.0.2.1"] is IPState.STANDBY


async def test_with_every_zone_down_the_cooldown_clock_stops(configured: Store) -> None:
    controller = make(configured, min_active=1)
    await controller.load(T0)
    await controller.on_sweep(sweep(configured, T0, ["127.0.2.1"]), T0)
    await controller.on_sweep(sweep(configured, T0 + HOUR), T0 + HOUR)  # delisted, clean
    down = dict.fromkeys(ZONES, ZoneHealth.DEAD)
    for hours in range(2, 12):
        now = T0 + hours * HOUR
        await controller.on_sweep(sweep(configured, now, health=down), now)
        await controller.tick(now)
    assert states(configured)["127.0.2.1"] is IPState.RETIRED
