"""``pool-exhausted`` hysteresis: one firing per outage, one resolution after a settled recovery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.rotation.exhaustion import Change, ExhaustionLatch

T0 = datetime(2026, 12, 1, tzinfo=UTC)
SETTLE = timedelta(seconds=30)

observations = st.lists(st.tuples(st.booleans(), st.integers(0, 20)), max_size=60)


def run(steps: list[tuple[bool, int]]) -> list[tuple[datetime, bool, Change | None]]:
    latch, now, seen = ExhaustionLatch(), T0, []
    for sendable, seconds in steps:
        now += timedelta(seconds=seconds)
        latch, change = latch.observe(sendable, now, SETTLE)
        seen.append((now, sendable, change))
    return seen


@given(observations)
def test_fires_and_resolves_alternate_starting_with_a_firing(steps: list[tuple[bool, int]]) -> None:
    changes = [c for _, _, c in run(steps) if c is not None]
    assert changes == [Change.FIRE, Change.RESOLVE] * (len(changes) // 2) + (
        [Change.FIRE] if len(changes) % 2 else []
    )


@given(observations)
def test_fires_at_the_first_observation_that_the_pool_cannot_send(
    steps: list[tuple[bool, int]],
) -> None:
    firing = False
    for _, sendable, change in run(steps):
        if not sendable:
            assert (change is Change.FIRE) == (not firing)
            firing = True
        elif change is Change.RESOLVE:
            firing = False


@given(observations)
def test_resolves_only_after_the_pool_could_send_for_the_settle_time_without_a_break(
    steps: list[tuple[bool, int]],
) -> None:
    since: datetime | None = None
    for now, sendable, change in run(steps):
        since = (since or now) if sendable else None
        if change is Change.RESOLVE:
            assert since is not None
            assert now - since >= SETTLE


def test_a_retry_loop_that_loses_its_ip_every_few_seconds_fires_once_and_never_resolves() -> None:
    # delivery finds no IP, a moment later the pool looks able to send, and so on (item 3)
    steps = [(False, 1), (True, 1)] * 200
    changes = [c for _, _, c in run(steps) if c is not None]
    assert changes == [Change.FIRE]


def test_a_recovered_pool_resolves_once_when_it_stayed_up_for_the_settle_time() -> None:
    steps = [(False, 0), (True, 5), (True, 10), (True, 20), (True, 5), (True, 60)]
    assert [c for _, _, c in run(steps) if c is not None] == [Change.FIRE, Change.RESOLVE]
