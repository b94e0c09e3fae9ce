"""Warm-up: daily caps by stage; a stage advances at a day boundary only after good delivery."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from hrmonitor.core.model import IPState, Pool, PoolPolicy, RiskClass, WarmupStage
from hrmonitor.core.rotation.decide import IpView, Tick, candidates
from hrmonitor.core.rotation.warmup import (
    StageStep,
    WarmupView,
    daily_cap,
    has_capacity,
    needs_warmup,
    next_step,
)
from tests.core.test_rotation_world import World, high_pool

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = PoolPolicy(warmup=(WarmupStage(50, 0.9), WarmupStage(200, 0.9), WarmupStage(1000, 0.95)))


def test_idle_or_new_ips_warm_up_and_recent_senders_do_not() -> None:
    """Never sent or idle >= 30 days -> warm-up; sent yesterday -> straight to active."""
    assert needs_warmup(POLICY, None, T0)
    assert needs_warmup(POLICY, T0 - 30 * DAY, T0)
    assert not needs_warmup(POLICY, T0 - 29 * DAY, T0)
    assert not needs_warmup(PoolPolicy(), None, T0)  # no schedule, no warm-up


def test_cap_is_the_stage_cap_and_surplus_waits() -> None:
    """The cap of the current stage limits today's sends; yesterday's count does not."""
    assert daily_cap(POLICY, 1) == 200
    assert daily_cap(POLICY, 9) == 1000
    full = WarmupView(0, T0, T0.date(), sent=50)
    assert not has_capacity(POLICY, full, T0)
    assert has_capacity(POLICY, full, T0 + DAY)


@pytest.mark.parametrize(
    ("sent", "delivered", "expected"),
    [
        (50, 50, StageStep.ADVANCE),
        (50, 45, StageStep.ADVANCE),
        (50, 44, StageStep.STAY),
        (0, 0, StageStep.STAY),
        (50, None, StageStep.STAY),
    ],
)
def test_stage_advances_only_on_good_delivery(
    sent: int, delivered: int | None, expected: StageStep
) -> None:
    """>= min_delivery_rate advances; worse, no sends or no delivered count stays."""
    view = WarmupView(0, T0, T0.date(), sent, delivered)
    assert next_step(POLICY, view, T0 + DAY) is expected


def test_stage_does_not_advance_before_the_day_is_over() -> None:
    """Good numbers during the day itself do not advance the stage yet."""
    view = WarmupView(0, T0, T0.date(), 50, 50)
    assert next_step(POLICY, view, T0 + timedelta(hours=6)) is StageStep.STAY


def test_a_day_of_an_earlier_stage_does_not_count_twice() -> None:
    """After advancing, the day that earned it does not advance the new stage."""
    view = WarmupView(1, T0 + DAY, T0.date(), 50, 50)
    assert next_step(POLICY, view, T0 + DAY) is StageStep.STAY


def test_last_stage_graduates() -> None:
    """Passing the last stage ends the warm-up."""
    view = WarmupView(2, T0, T0.date(), 1000, 990)
    assert next_step(POLICY, view, T0 + DAY) is StageStep.GRADUATE


def test_warming_ip_advances_then_becomes_active_through_decide() -> None:
    """decide() turns day boundaries into stage changes and, at the end, warming -> active."""
    world = World(
        [
            high_pool(
                ips=("10.0.0.1",),
                standby=("10.0.0.3",),
                warmup=(WarmupStage(10), WarmupStage(20)),
                min_active=2,
            )
        ]
    )
    world.step([Tick(world.now)])
    assert world.state("10.0.0.3") is IPState.WARMING
    for day_sent in (10, 20):
        view = world.views["10.0.0.3"]
        assert view.warmup is not None
        world.views["10.0.0.3"] = view.__class__(
            **{
                **{f: getattr(view, f) for f in view.__slots__},
                "warmup": WarmupView(
                    view.warmup.stage, view.warmup.stage_since, world.now.date(), day_sent, day_sent
                ),
            }
        )
        world.advance(DAY)
        world.step([Tick(world.now)])
    assert [s.stage for s in world.stages] == [1]
    assert world.state("10.0.0.3") is IPState.ACTIVE


def test_candidates_carry_the_warming_cap_and_live_suspensions() -> None:
    """The picker sees a warming IP's stage cap and today's count."""
    pool = Pool("high-risk", RiskClass.HIGH, ("10.0.0.1",), (), POLICY, timedelta(minutes=5))
    view = IpView(
        "10.0.0.1",
        "high-risk",
        IPState.WARMING,
        T0,
        sent_today=7,
        warmup=WarmupView(1, T0, date(2026, 11, 28), 7),
    )
    [candidate] = candidates(pool, [view], T0)
    assert candidate.daily_cap == 200
    assert candidate.sent_today == 7
