"""One definition of "eligible to send", shared by the picker, promotion, alerts and health.

Issue 12 item 2: a promoted standby warming under its daily cap used the cap
up, the pool's mail was held and clean standbys were never promoted, because
promotion counted IPs *in rotation*. Item 3: delivery and rotation counted
eligibility differently, so ``pool-exhausted`` flapped.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from hrmonitor.core.alert import AlertKind
from hrmonitor.core.health import IpCondition, PoolHealth, pool_health
from hrmonitor.core.model import IPState, Severity, WarmupStage
from hrmonitor.core.rotation.decide import OperatorAction, Tick, Verb, candidates
from hrmonitor.core.rotation.eligibility import blockers, eligible_ips
from hrmonitor.core.rotation.selection import NoEligibleIp, choose_source_ip
from hrmonitor.core.rotation.suspension import BIND_FAILURE, WHOLE_IP, Suspension
from hrmonitor.core.rotation.views import OpenListing
from hrmonitor.core.rotation.warmup import WarmupView
from tests.core.test_rotation_world import T0, World, high_pool, moves

A, W, S = IPState.ACTIVE, IPState.WARMING, IPState.STANDBY
CAP = 3


def bind_failure(ip: str, hours: int = 1) -> Suspension:
    return Suspension(ip, WHOLE_IP, T0, T0 + timedelta(hours=hours), "bind failed", BIND_FAILURE)


def warming_world() -> World:
    """One active IP and two standbys, under a warm-up schedule whose first cap is CAP."""
    pool = high_pool(
        ips=("10.0.0.1",),
        standby=("10.0.0.2", "10.0.0.3"),
        warmup=(WarmupStage(CAP), WarmupStage(10 * CAP)),
    )
    return World([pool])


def test_a_warming_ip_whose_cap_is_used_up_makes_rotation_promote_the_next_standby() -> None:
    world = warming_world()
    world.step([world.sweep(listed=["10.0.0.1"])])  # retired; 10.0.0.2 promoted to warming
    assert world.state("10.0.0.2") is W
    view = world.views["10.0.0.2"]
    world.views["10.0.0.2"] = replace(view, sent_today=CAP)  # the day's cap is used up
    world.advance(timedelta(minutes=1))
    decision = world.step([Tick(world.now)])["high-risk"]
    assert moves(decision) == [("10.0.0.3", S, W)]
    assert (
        "capacity" in decision.transitions[0].reason or "eligible" in decision.transitions[0].reason
    )
    exhausted = [a for a in decision.alerts if a.kind is AlertKind.POOL_EXHAUSTED]
    assert [a.resolved for a in exhausted] == [True]


def test_an_active_ip_that_cannot_be_bound_is_replaced_by_a_standby() -> None:
    world = World([high_pool(ips=("10.0.0.1",), standby=("10.0.0.3",))])
    view = world.views["10.0.0.1"]
    world.views["10.0.0.1"] = replace(view, suspensions=(bind_failure("10.0.0.1"),))
    decision = world.step([Tick(world.now)])["high-risk"]
    assert moves(decision) == [("10.0.0.3", S, A)]


def test_the_pool_that_cannot_send_says_why_for_each_ip() -> None:
    world = World([high_pool(ips=("10.0.0.1",), standby=())])
    view = world.views["10.0.0.1"]
    world.views["10.0.0.1"] = replace(view, suspensions=(bind_failure("10.0.0.1"),))
    decision = world.step([Tick(world.now)])["high-risk"]
    [alert] = [a for a in decision.alerts if a.kind is AlertKind.POOL_EXHAUSTED]
    assert not alert.resolved
    assert "no IP eligible" in alert.summary
    not_eligible = alert.details["not_eligible"]
    assert isinstance(not_eligible, dict)
    assert "suspended (whole IP)" in not_eligible["10.0.0.1"]


def test_ip_enable_lifts_a_bind_failure_of_an_active_ip() -> None:
    world = World([high_pool(ips=("10.0.0.1",), standby=())])
    view = world.views["10.0.0.1"]
    world.views["10.0.0.1"] = replace(view, suspensions=(bind_failure("10.0.0.1"),))
    action = OperatorAction("10.0.0.1", Verb.ENABLE, "address added", "operator:alice", T0)
    decision = world.step([action])["high-risk"]
    assert decision.refusals == ()
    assert decision.transitions == ()
    pool = world.pool("high-risk")
    assert eligible_ips(pool, world.pool_views(pool), T0) == ("10.0.0.1",)


# --- properties ---------------------------------------------------------------------------

POOL_IPS = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")
views_of = st.lists(
    st.tuples(
        st.sampled_from([A, W, S, IPState.RETIRED, IPState.DISABLED]),
        st.integers(0, 2 * CAP),  # sent today
        st.sampled_from([None, WHOLE_IP, "yahoo"]),  # a running suspension's scope
        st.booleans(),  # listed
    ),
    min_size=4,
    max_size=4,
)


def world_of(rows: list[tuple[IPState, int, str | None, bool]], min_active: int) -> World:
    pool = high_pool(
        ips=POOL_IPS[:2],
        standby=POOL_IPS[2:],
        min_active=min_active,
        warmup=(WarmupStage(CAP),),
    )
    world = World([pool])
    for ip, (state, sent, scope, listed) in zip(POOL_IPS, rows, strict=True):
        suspensions: tuple[Suspension, ...] = ()
        if scope is not None:
            suspensions = (Suspension(ip, scope, T0, T0 + timedelta(hours=1), "x", "feedback.x"),)
        listings: tuple[OpenListing, ...] = ()
        if listed:
            listings = (OpenListing("zen", ("127.0.0.2",), Severity.LOW, T0),)
        world.views[ip] = replace(
            world.views[ip],
            state=state,
            sent_today=sent,
            suspensions=suspensions,
            listings=listings,
            warmup=WarmupView(0, T0) if state is W else None,
        )
    return world


@settings(max_examples=300, deadline=None)
@given(views_of, st.integers(0, 4))
def test_picker_rotation_alert_and_health_agree_on_whether_a_pool_can_send(
    rows: list[tuple[IPState, int, str | None, bool]], min_active: int
) -> None:
    world = world_of(rows, min_active)
    pool = world.pool("high-risk")
    views = world.pool_views(pool)
    eligible = eligible_ips(pool, views, T0)
    # the picker, asked for a destination nobody suspended an IP for
    chosen = choose_source_ip(candidates(pool, views, T0), "example", T0, 0)
    assert isinstance(chosen, NoEligibleIp) == (not eligible)
    if not isinstance(chosen, NoEligibleIp):
        assert chosen.ip in eligible
    # the report's health, filled from the same definition
    blocked = blockers(pool, views, T0)
    conditions = [
        IpCondition(v.ip, v.state, len(v.listings), False, False, eligible=v.ip not in blocked)
        for v in views
    ]
    summary = pool_health(pool.risk, min_active, conditions)
    assert (summary.health is PoolHealth.EXHAUSTED) == (not eligible)
    # rotation: after one decision the pool has as many eligible IPs as it can get
    decision = world.step([Tick(T0)])["high-risk"]
    after = world.pool_views(pool)
    eligible_after = eligible_ips(pool, after, T0)
    promotable = [
        v.ip
        for v in after
        if v.state is S and not v.listings and not any(s.scope == WHOLE_IP for s in v.suspensions)
    ]
    assert len(eligible_after) >= max(min_active, 1) or not promotable
    assert len(eligible_after) >= len(eligible)
    [alert] = [a for a in decision.alerts if a.kind is AlertKind.POOL_EXHAUSTED]
    assert alert.resolved == bool(eligible_after)


@given(st.sampled_from([A, W]), st.integers(0, 2 * CAP))
def test_a_warming_ip_is_eligible_exactly_while_it_has_capacity_left(
    state: IPState, sent: int
) -> None:
    world = world_of([(state, sent, None, False), (IPState.DISABLED, 0, None, False)] * 2, 1)
    pool = world.pool("high-risk")
    eligible = "10.0.0.1" in eligible_ips(pool, world.pool_views(pool), T0)
    assert eligible == (state is A or sent < CAP)
