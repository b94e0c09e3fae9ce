"""Hypothesis properties of the rotation state machine over random evidence on virtual time."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hrmonitor.core.alert import AlertKind
from hrmonitor.core.model import Error, IPState, Severity, Unknown, WarmupStage, ZoneHealth
from hrmonitor.core.rotation.decide import (
    BlocklistNamed,
    Evidence,
    OperatorAction,
    Sweep,
    Tick,
    Verb,
    candidates,
    decide,
)
from hrmonitor.core.rotation.selection import NoEligibleIp, choose_source_ip
from hrmonitor.core.rotation.suspension import Pause
from tests.core.test_rotation_world import ZONES, World, high_pool, normal_pool

HIGH_IPS = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
NORMAL_IPS = ("10.1.0.1", "10.1.0.2", "10.1.0.3")
ALL_IPS = HIGH_IPS + NORMAL_IPS
COOLDOWN = timedelta(hours=3)

ip_sets = st.sets(st.sampled_from(ALL_IPS), max_size=3)
healths: st.SearchStrategy[dict[str, ZoneHealth]] = st.one_of(
    st.just({}),  # mostly healthy sweeps, so cool-downs can complete
    st.dictionaries(st.sampled_from(ZONES), st.sampled_from(list(ZoneHealth)), max_size=2),
)
severities = st.sampled_from(list(Severity))
listings = st.one_of(st.just({}), st.dictionaries(st.sampled_from(ALL_IPS), severities, max_size=3))

sweep_step = st.tuples(st.just("sweep"), listings, healths, st.one_of(st.just(set()), ip_sets))
op_step = st.tuples(
    st.just("op"),
    st.sampled_from(ALL_IPS),
    st.sampled_from(list(Verb)),
    st.booleans(),
    st.sampled_from(["ticket", ""]),
)
pause_step = st.tuples(
    st.just("pause"),
    st.sampled_from(ALL_IPS),
    st.sampled_from(["yahoo", None]),
    st.integers(-120, 180),
    st.booleans(),
)
time_step = st.tuples(st.just("time"), st.integers(1, 240))
# an hour passes, then a healthy sweep: lets retired IPs serve out their cool-downs
calm_step = st.tuples(st.just("calm"), st.integers(30, 90))
steps = st.lists(
    st.one_of(calm_step, sweep_step, op_step, pause_step, time_step),
    min_size=3,
    max_size=40,
)


def make_world() -> World:
    return World(
        [
            high_pool(
                ips=HIGH_IPS[:1],
                standby=HIGH_IPS[1:],
                cooldown=COOLDOWN,
                warmup=(WarmupStage(5), WarmupStage(10)),
            ),
            normal_pool(ips=NORMAL_IPS[:2], standby=NORMAL_IPS[2:], cooldown=COOLDOWN),
        ]
    )


def evidence_of(world: World, step: tuple[object, ...]) -> list[Evidence]:
    # The class patterns narrow what the strategies above generate; they match every step.
    match step:
        case ("sweep", dict() as listed, dict() as health, set() as unknown):
            return [world.sweep(listed=listed, health=health, unknown=unknown)]
        case ("op", str(ip), Verb() as verb, bool(force), str(reason)):
            return [
                OperatorAction(
                    ip,
                    verb,
                    reason,
                    "operator:prop",
                    world.now,
                    force=force,
                )
            ]
        case ("pause", str(ip), str() | None as provider, int(minutes), bool(remote)):
            at = world.now + timedelta(minutes=minutes)
            return [Pause(ip, provider, timedelta(hours=1), "TS04", at, "r", remote)]
        case ("calm", int(minutes)):
            world.advance(timedelta(minutes=minutes))
            return [world.sweep()]
        case ("time", int(minutes)):
            world.advance(timedelta(minutes=minutes))
            return [Tick(world.now)]
    raise AssertionError(step)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_invariants_hold_over_random_evidence(script: list[tuple[object, ...]]) -> None:
    """Pools never exchange IPs; exhaustion is never silent; every transition is audited;
    restorations go to standby only after a full trustworthy cool-down."""
    world = make_world()
    pool_of = {ip: view.pool for ip, view in world.views.items()}
    # trustworthy observations per (ip, zone): (time, clean?)
    observed: dict[tuple[str, str], list[tuple[datetime, bool]]] = {}
    for step in script:
        evidence = evidence_of(world, step)
        for item in evidence:
            if isinstance(item, Sweep):
                for a in item.answers:
                    if item.trusted(a.zone) and not isinstance(a, Unknown | Error):
                        observed.setdefault((a.ip, a.zone), []).append(
                            (item.at, a.status == "clean")
                        )
        before = {
            p.name: sum(world.views[ip].state.in_rotation for ip in p.all_ips) for p in world.pools
        }
        audit_before = len(world.audit)
        decisions = world.step(evidence)
        for pool in world.pools:
            decision = decisions[pool.name]
            # no transition names another pool's IP; no IP ever changes pool
            assert {t.ip for t in decision.transitions} <= set(pool.all_ips)
            assert all(t.pool == pool.name for t in decision.transitions)
            assert all(a.pool == pool.name for a in decision.alerts)
            views = world.pool_views(pool)
            assert {c.ip for c in candidates(pool, views, world.now)} == set(pool.all_ips)
            # the picker, fed this pool's candidates, only ever names this pool's IPs
            offered = candidates(pool, views, world.now)
            for n in range(3):
                chosen = choose_source_ip(offered, "yahoo", world.now, n)
                if not isinstance(chosen, NoEligibleIp):
                    assert chosen.ip in pool.all_ips
                    assert world.views[chosen.ip].state.in_rotation
            # the last eligible IP is never silently removed
            after = sum(v.state.in_rotation for v in views)
            if before[pool.name] > 0 and after == 0:
                assert any(
                    a.kind is AlertKind.POOL_EXHAUSTED and not a.resolved for a in decision.alerts
                )
            for t in decision.transitions:
                if t.rule == "rotation.restore" and "cooldown" in t.evidence:
                    assert t.to_state is IPState.STANDBY
                    retired_at = max(
                        x.at
                        for x in world.transitions
                        if x.ip == t.ip and x.to_state is IPState.RETIRED
                    )
                    assert t.at - retired_at >= COOLDOWN
                    for zone in ZONES:
                        seen = observed.get((t.ip, zone), [])
                        dirty = [at for at, clean in seen if not clean]
                        assert all(t.at - at >= COOLDOWN for at in dirty)
                        assert any(clean and at >= retired_at + COOLDOWN for at, clean in seen), (
                            f"restored without a trustworthy clean answer from {zone} "
                            "at the end of the cool-down"
                        )
                if t.from_state is IPState.RETIRED and not t.rule.startswith("operator:"):
                    assert t.to_state is IPState.STANDBY
        # every transition has exactly its audit event
        new_audit = world.audit[audit_before:]
        new_transitions = [t for d in decisions.values() for t in d.transitions]
        assert [(e.ip, e.from_state, e.to_state, e.actor) for e in new_audit] == [
            (t.ip, str(t.from_state), str(t.to_state), t.rule) for t in new_transitions
        ]
        assert all(e.reason for e in new_audit)
        assert {ip: view.pool for ip, view in world.views.items()} == pool_of


def untrusted_only(sweep: Sweep) -> Sweep:
    answers = tuple(
        a for a in sweep.answers if not sweep.trusted(a.zone) or isinstance(a, Unknown | Error)
    )
    return replace(sweep, answers=answers, cleared=())


@settings(max_examples=100, deadline=None)
@given(
    steps,
    st.dictionaries(st.sampled_from(ALL_IPS), severities, max_size=4),
    st.sampled_from([ZoneHealth.DEAD, ZoneHealth.LISTS_EVERYTHING, ZoneHealth.UNREACHABLE]),
    ip_sets,
)
def test_untrusted_evidence_never_causes_a_transition(
    script: list[tuple[object, ...]],
    listed: dict[str, Severity],
    bad: ZoneHealth,
    unknown: set[str],
) -> None:
    """A sweep's unknown/error answers and unhealthy zones decide exactly what no evidence does."""
    world = make_world()
    for step in script:
        world.step(evidence_of(world, step))
    sweep = untrusted_only(
        world.sweep(listed=listed, health=dict.fromkeys(ZONES, bad), unknown=unknown)
    )
    for pool in world.pools:
        views = world.pool_views(pool)
        assert (
            decide(pool, views, [sweep], world.now).transitions
            == decide(pool, views, [], world.now).transitions
        )


@settings(max_examples=100, deadline=None)
@given(steps, st.lists(st.one_of(sweep_step, op_step, pause_step), max_size=6))
def test_evidence_about_high_risk_ips_never_changes_the_normal_pool(
    script: list[tuple[object, ...]],
    high_steps: list[tuple[object, ...]],
) -> None:
    """Whatever happens to high-risk IPs, the normal pool's decision is the same without it."""
    world = make_world()
    for step in script:
        world.step(evidence_of(world, step))
    evidence: list[Evidence] = []
    for step in high_steps:
        for found in evidence_of(world, step):
            item = found
            if isinstance(item, Sweep):
                item = replace(
                    item,
                    answers=tuple(a for a in item.answers if a.ip in HIGH_IPS),
                    cleared=tuple(c for c in item.cleared if c[0] in HIGH_IPS),
                )
            elif getattr(item, "ip", None) not in HIGH_IPS:
                continue
            evidence.append(item)
    evidence.append(BlocklistNamed("10.0.0.1", "blocked using zen", world.now, "r", "gmail"))
    normal = world.pool("normal")
    views = world.pool_views(normal)
    assert decide(normal, views, evidence, world.now) == decide(normal, views, [], world.now)


cooldown_steps = st.lists(
    st.tuples(
        st.integers(10, 90),  # minutes until the next sweep
        st.booleans() | st.just(False),  # listed again?
        st.sampled_from([ZoneHealth.OK, ZoneHealth.OK, ZoneHealth.OK, ZoneHealth.UNREACHABLE]),
        st.booleans() | st.just(False),  # this IP's answers time out?
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(cooldown_steps)
def test_restoration_needs_a_full_trustworthy_cooldown(
    script: list[tuple[int, bool, ZoneHealth, bool]],
) -> None:
    """A retired IP returns (to standby) only once trustworthy clean answers from every zone
    span the cool-down since the retirement and since its last listing; and it does return
    once a trustworthy clean sweep comes after a listing-free cool-down."""
    world = make_world()
    world.step([world.sweep(listed=["10.0.0.1"])])
    retired_at = world.now
    last_dirty = world.now
    assert world.state("10.0.0.1") is IPState.RETIRED
    zone_checked: dict[str, datetime] = {}
    zone_since: dict[str, datetime] = {}
    for minutes, listed, zen_health, timeout in script:
        world.advance(timedelta(minutes=minutes))
        was_retired = world.state("10.0.0.1") is IPState.RETIRED
        sweep = world.sweep(
            listed=["10.0.0.1"] if listed else [],
            health={"zen": zen_health},
            unknown=["10.0.0.1"] if timeout else [],
        )
        if not timeout:
            for zone in ZONES:
                if sweep.trusted(zone):
                    if listed and zone == "zen":
                        last_dirty = world.now
                        zone_since.pop(zone, None)
                    else:
                        zone_since.setdefault(zone, world.now)
                        zone_checked[zone] = world.now
        decision = world.step([sweep])["high-risk"]
        restored = [
            t
            for t in decision.transitions
            if t.ip == "10.0.0.1" and t.from_state is IPState.RETIRED
        ]
        start = max([retired_at, *zone_since.values()])
        covered = len(zone_since) == len(ZONES) and all(
            zone_checked[z] - start >= COOLDOWN for z in ZONES
        )
        if restored:
            assert was_retired
            assert restored[0].to_state is IPState.STANDBY
            assert world.now - last_dirty >= COOLDOWN
            assert covered
        elif was_retired:
            assert not covered, "a full trustworthy cool-down passed but the IP stayed retired"
