"""Scenario tables on virtual time: evidence over time -> expected transitions and alerts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hrmonitor.core.model import (
    IPState,
    OnListing,
    Severity,
    WarmupStage,
    ZoneHealth,
)
from hrmonitor.core.rotation.decide import OperatorAction, Tick, Verb, decide
from tests.core.test_rotation_world import T0, World, high_pool, kinds, moves, normal_pool

A, R, S, W, D = (
    IPState.ACTIVE,
    IPState.RETIRED,
    IPState.STANDBY,
    IPState.WARMING,
    IPState.DISABLED,
)
HOUR = timedelta(hours=1)


def test_listed_high_ip_is_retired_at_once_and_a_standby_promoted() -> None:
    """A critical listing retires the high-risk IP in the same decision and promotes the standby."""
    world = World([high_pool(min_active=2), normal_pool()])
    decisions = world.step([world.sweep(listed=["10.0.0.1"])])
    high = decisions["high-risk"]
    assert moves(high) == [("10.0.0.1", A, R), ("10.0.0.3", S, A)]
    # One event, one alert (issue 14 item 5): the listing carries the retirement and the
    # replacement; no separate retirement or promotion alert.
    assert [str(a.kind) for a in high.alerts if not a.resolved] == ["listing"]
    (listing,) = [a for a in high.alerts if not a.resolved]
    assert listing.key == "listing:high-risk:10.0.0.1:zen"
    assert listing.details["zone"] == "zen"
    assert listing.details["codes"] == ["127.0.0.2"]
    assert listing.details["txt"] == "see lookup"
    assert listing.details["action"] == "retired"
    assert listing.details["promoted"] == ["10.0.0.3"]
    assert listing.severity.at_least(Severity.HIGH)
    assert listing.handled  # the pool still sends
    assert "retired" in listing.summary
    assert "10.0.0.3" in listing.summary
    assert decisions["normal"].transitions == ()
    assert decisions["normal"].alerts == ()


def test_promoted_ip_that_never_sent_warms_up_with_the_schedule() -> None:
    """A never-used standby enters warming when the pool has a warm-up schedule."""
    schedule = (WarmupStage(50), WarmupStage(200))
    world = World([high_pool(min_active=2, warmup=schedule)])
    decision = world.step([world.sweep(listed=["10.0.0.2"])])["high-risk"]
    assert ("10.0.0.3", S, W) in moves(decision)
    assert world.views["10.0.0.3"].warmup is not None
    assert world.views["10.0.0.3"].warmup.stage == 0


@pytest.mark.parametrize(
    ("severity", "retire_at", "on_listing", "retired"),
    [
        (Severity.CRITICAL, Severity.HIGH, OnListing.RETIRE, True),
        (Severity.HIGH, Severity.HIGH, OnListing.RETIRE, True),
        (Severity.MEDIUM, Severity.HIGH, OnListing.RETIRE, False),
        (Severity.LOW, Severity.LOW, OnListing.RETIRE, True),
        (Severity.CRITICAL, Severity.HIGH, OnListing.ALERT, False),
    ],
)
def test_retire_at_and_on_listing_decide_between_retirement_and_alert(
    severity: Severity, retire_at: Severity, on_listing: OnListing, retired: bool
) -> None:
    """Below retire_at (or with on_listing=alert) a listing only alerts."""
    world = World([high_pool(retire_at=retire_at, on_listing=on_listing)])
    decision = world.step([world.sweep(listed={"10.0.0.1": severity})])["high-risk"]
    assert (("10.0.0.1", A, R) in moves(decision)) is retired
    assert "listing" in kinds(decision)


@pytest.mark.parametrize(
    "health",
    [ZoneHealth.DEAD, ZoneHealth.LISTS_EVERYTHING, ZoneHealth.REFUSING, ZoneHealth.UNREACHABLE],
)
def test_listing_from_unhealthy_zone_changes_nothing(health: ZoneHealth) -> None:
    """Answers of a zone that failed its self-test in that sweep neither retire nor alert."""
    world = World([high_pool()])
    decision = world.step([world.sweep(listed=["10.0.0.1"], health={"zen": health})])
    assert decision["high-risk"].transitions == ()
    assert "listing" not in kinds(decision["high-risk"])


def test_last_high_ip_is_retired_and_the_pool_exhausted_alert_fires() -> None:
    """A listed last IP still stops sending; defer holds the mail and alerts pool-exhausted."""
    world = World([high_pool(ips=("10.0.0.1",), standby=())])
    decision = world.step([world.sweep(listed=["10.0.0.1"])])["high-risk"]
    assert moves(decision) == [("10.0.0.1", A, R)]
    exhausted = [a for a in decision.alerts if str(a.kind) == "pool-exhausted"]
    assert len(exhausted) == 1
    assert not exhausted[0].resolved
    assert exhausted[0].severity is Severity.CRITICAL
    assert "holding its mail" in exhausted[0].summary


def test_below_min_active_alerts_when_no_standby_is_left() -> None:
    """Losing one of two IPs with min_active=2 and no standby raises pool-below-min."""
    world = World([high_pool(standby=(), min_active=2)])
    decision = world.step([world.sweep(listed=["10.0.0.1"])])["high-risk"]
    assert "pool-below-min" in kinds(decision)
    assert "pool-exhausted" in kinds(decision, resolved=True)


def test_normal_listing_is_critical_and_follows_its_own_policy_only() -> None:
    """A normal IP's listing alerts critical; with on_listing=alert nothing moves anywhere."""
    world = World([high_pool(), normal_pool(on_listing=OnListing.ALERT)])
    decisions = world.step([world.sweep(listed=["10.1.0.1"])])
    assert decisions["normal"].transitions == ()
    alert = next(a for a in decisions["normal"].alerts if str(a.kind) == "normal-ip-listed")
    assert alert.severity is Severity.CRITICAL
    assert alert.pool == "normal"
    assert decisions["high-risk"].transitions == ()
    assert decisions["high-risk"].alerts == ()


def test_high_pool_exhaustion_leaves_the_normal_pool_untouched() -> None:
    """Retiring every high-risk IP moves no normal IP and raises nothing about the normal pool."""
    world = World([high_pool(standby=()), normal_pool()])
    decisions = world.step([world.sweep(listed=["10.0.0.1", "10.0.0.2"])])
    assert {t.ip for t in decisions["high-risk"].transitions} == {"10.0.0.1", "10.0.0.2"}
    assert decisions["normal"].transitions == ()
    assert all(a.pool == "high-risk" for a in decisions["high-risk"].alerts)
    assert {world.state(ip) for ip in ("10.1.0.1", "10.1.0.2")} == {A}


def test_cooldown_table_restores_to_standby_after_a_full_clean_run() -> None:
    """Table: listed, delisted, hourly clean sweeps; standby exactly when clean run >= 3h."""
    world = World([high_pool(cooldown=timedelta(hours=3))])
    table = [
        # (hours since start, listed IPs, zen health, expected moves of 10.0.0.1)
        (0, ["10.0.0.1"], ZoneHealth.OK, [("10.0.0.1", A, R)]),
        (1, [], ZoneHealth.OK, []),  # delisted: the clean run starts
        (2, [], ZoneHealth.OK, []),
        (3, [], ZoneHealth.UNREACHABLE, []),  # does not count
        (4, [], ZoneHealth.OK, [("10.0.0.1", R, S)]),  # 1h..4h: three clean hours
    ]
    for hours, listed, health, expected in table:
        world.now = T0 + hours * HOUR
        decision = world.step([world.sweep(listed=listed, health={"zen": health})])["high-risk"]
        assert [m for m in moves(decision) if m[0] == "10.0.0.1"] == expected, hours
    assert world.state("10.0.0.1") is S
    # The listing's alert resolved at the delisting; the return is an event of its own.
    restoration = [a for a in world.alerts if str(a.kind) == "restoration"]
    assert len(restoration) == 1
    assert not restoration[0].resolved
    assert restoration[0].key.startswith("restoration:high-risk:10.0.0.1:")


def test_cooldown_does_not_pass_during_a_zone_outage() -> None:
    """When every sweep after the delisting is untrustworthy, time alone never restores."""
    world = World([high_pool(cooldown=timedelta(hours=2))])
    world.step([world.sweep(listed=["10.0.0.1"])])
    world.advance(HOUR)
    world.step([world.sweep()])  # clean run starts here
    for _ in range(5):
        world.advance(HOUR)
        outage = {"zen": ZoneHealth.UNREACHABLE, "spamcop": ZoneHealth.UNREACHABLE}
        world.step([world.sweep(health=outage)])
        world.step([Tick(world.now)])
    assert world.state("10.0.0.1") is R
    world.advance(HOUR)
    world.step([world.sweep()])
    assert world.state("10.0.0.1") is S


def test_relisting_during_cooldown_restarts_it() -> None:
    """A new trustworthy listing in the cool-down restarts the clean run."""
    world = World([high_pool(cooldown=timedelta(hours=2))])
    world.step([world.sweep(listed=["10.0.0.1"])])
    for listed in ([], ["10.0.0.1"], [], []):
        world.advance(HOUR)
        world.step([world.sweep(listed=listed)])
    assert world.state("10.0.0.1") is R
    world.advance(HOUR)
    world.step([world.sweep()])
    assert world.state("10.0.0.1") is S


def test_unknown_answers_change_nothing() -> None:
    """Timeouts for every zone neither retire nor restore."""
    world = World([high_pool()])
    decision = world.step([world.sweep(unknown=["10.0.0.1", "10.0.0.2", "10.0.0.3"])])
    assert decision["high-risk"].transitions == ()


# --- operators -----------------------------------------------------------------------------


def op(
    world: World, ip: str, verb: Verb, reason: str = "ticket 42", **kw: object
) -> OperatorAction:
    return OperatorAction(ip, verb, reason, "operator:alice", world.now, **kw)  # type: ignore[arg-type]


def test_operator_cannot_take_out_the_last_eligible_ip_without_force() -> None:
    """Retiring or disabling the only IP in rotation is refused unless forced."""
    world = World([high_pool(ips=("10.0.0.1",), standby=())])
    for verb in (Verb.RETIRE, Verb.DISABLE):
        decision = world.step([op(world, "10.0.0.1", verb)])["high-risk"]
        assert decision.transitions == ()
        assert "last eligible" in decision.refusals[0].reason
    forced = world.step([op(world, "10.0.0.1", Verb.DISABLE, force=True)])["high-risk"]
    assert moves(forced) == [("10.0.0.1", A, D)]
    assert "pool-exhausted" in kinds(forced)


def test_operator_can_take_out_an_ip_a_standby_replaces() -> None:
    """With a standby ready, retiring the last active IP is allowed and the standby promoted."""
    world = World([high_pool(ips=("10.0.0.1",))])
    decision = world.step([op(world, "10.0.0.1", Verb.RETIRE)])["high-risk"]
    assert moves(decision) == [("10.0.0.1", A, R), ("10.0.0.3", S, A)]
    assert decision.transitions[0].rule == "operator:alice"
    assert decision.transitions[0].reason == "ticket 42"


@pytest.mark.parametrize(
    ("verb", "reason", "problem"),
    [
        (Verb.RESTORE, "x", "it is active"),
        (Verb.ENABLE, "x", "it is active"),
        (Verb.RETIRE, "  ", "reason is required"),
    ],
)
def test_impossible_operator_actions_are_refused(verb: Verb, reason: str, problem: str) -> None:
    """Restore of an active IP, enable of a non-disabled IP and an empty reason are refused."""
    world = World([high_pool()])
    decision = world.step([op(world, "10.0.0.1", verb, reason)])["high-risk"]
    assert decision.transitions == ()
    assert problem in decision.refusals[0].reason


def test_operator_retirement_stays_until_restored_and_restore_goes_to_standby() -> None:
    """An operator retirement without --until survives clean sweeps; restore -> standby."""
    world = World([high_pool(cooldown=timedelta(hours=1))])
    world.step([op(world, "10.0.0.2", Verb.RETIRE)])
    for _ in range(3):
        world.advance(HOUR)
        world.step([world.sweep()])
    assert world.state("10.0.0.2") is R
    decision = world.step([op(world, "10.0.0.2", Verb.RESTORE)])["high-risk"]
    assert moves(decision) == [("10.0.0.2", R, S)]


def test_restore_of_a_listed_ip_needs_force() -> None:
    """Restoring an IP that still has an open listing at retire_at is refused without force."""
    world = World([high_pool()])
    world.step([world.sweep(listed=["10.0.0.1"])])
    refused = world.step([op(world, "10.0.0.1", Verb.RESTORE)])["high-risk"]
    assert "still listed" in refused.refusals[0].reason
    forced = world.step([op(world, "10.0.0.1", Verb.RESTORE, force=True)])["high-risk"]
    assert ("10.0.0.1", R, S) in moves(forced)


def test_disable_until_expires_back_to_standby_and_enable_returns_configured_role() -> None:
    """A disable with --until ends as standby; enable puts a configured-active IP back."""
    world = World([high_pool()])
    world.step([op(world, "10.0.0.1", Verb.DISABLE, until=world.now + HOUR)])
    world.step([op(world, "10.0.0.2", Verb.DISABLE)])
    assert world.state("10.0.0.1") is D
    world.advance(2 * HOUR)
    world.step([Tick(world.now)])
    assert world.state("10.0.0.1") in (S, A)  # standby, then promoted if the pool needs it
    assert any(
        t.ip == "10.0.0.1" and t.from_state is D and t.to_state is S for t in world.transitions
    )
    decision = world.step([op(world, "10.0.0.2", Verb.ENABLE)])["high-risk"]
    assert moves(decision)[0] == ("10.0.0.2", D, A)


def test_decide_refuses_views_of_another_pool() -> None:
    """Handing decide() an IP of another pool is an error, never a silent move."""
    world = World([high_pool(), normal_pool()])
    with pytest.raises(ValueError, match="not an IP of pool high-risk"):
        decide(world.pool("high-risk"), [world.views["10.1.0.1"]], [], world.now)


def test_normal_delisting_resolves_the_critical_alert_keeping_kind_and_severity() -> None:
    """normal-ip-listed is the listing's one alert (the listing's key) and resolves as itself."""
    world = World([normal_pool(on_listing=OnListing.ALERT)])
    listed = world.step([world.sweep(listed=["10.1.0.1"])])["normal"]
    assert [str(a.kind) for a in listed.alerts] == ["normal-ip-listed"]
    raised = listed.alerts[0]
    assert raised.key == "listing:normal:10.1.0.1:zen"
    world.advance(HOUR)
    cleared = world.step([world.sweep()])["normal"]
    (resolution,) = [a for a in cleared.alerts if a.key == raised.key]
    assert resolution.resolved
    # An alert an older version left open under the old key resolves too.
    legacy = [a.key for a in cleared.alerts if a.key != raised.key and a.resolved]
    assert legacy == ["normal-ip-listed:normal:10.1.0.1:zen"]
    assert resolution.kind is raised.kind
    assert resolution.severity is Severity.CRITICAL
    assert resolution.event == "delisting"


def test_operator_retirement_until_ends_only_if_never_listed_meanwhile() -> None:
    """retire --until: clean all along -> standby at until; listed meanwhile -> cool-down."""
    world = World([high_pool(cooldown=3 * HOUR)])
    world.step([world.sweep()])
    world.advance(HOUR)
    world.step([op(world, "10.0.0.1", Verb.RETIRE, until=world.now + HOUR)])
    world.step([op(world, "10.0.0.2", Verb.RETIRE, until=world.now + HOUR)])
    world.advance(timedelta(minutes=30))
    world.step([world.sweep(listed=["10.0.0.2"])])
    world.advance(timedelta(minutes=30))
    world.step([world.sweep()])  # 10.0.0.2 delisted; both untils are over
    assert world.state("10.0.0.1") in (S, A)
    assert world.state("10.0.0.2") is R
    for _ in range(3):
        world.advance(HOUR)
        world.step([world.sweep()])
    assert world.state("10.0.0.2") in (S, A)
    restore = next(t for t in world.transitions if t.ip == "10.0.0.2" and t.from_state is R)
    assert "cooldown" in restore.evidence
