"""core.backoff: exponential backoff with jitter, and failures logged once per interval."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.backoff import Backoff, FailureLog


@given(
    base=st.floats(0.001, 10),
    cap=st.floats(0.001, 100),
    failures=st.integers(1, 10_000),
    seed=st.integers(0, 2**32),
)
def test_a_delay_is_between_half_and_all_of_its_step_and_never_over_the_cap(
    base: float, cap: float, failures: int, seed: int
) -> None:
    step = min(cap, base * 2.0 ** (failures - 1)) if failures < 1000 else cap
    delay = Backoff(base, cap).delay(failures, random.Random(seed))
    assert step / 2 <= delay <= step
    assert delay <= cap


def test_the_step_doubles_with_each_failure_in_a_row_until_the_cap() -> None:
    rng = random.Random(7)
    backoff = Backoff(base=0.1, cap=30)
    ceilings = [max(backoff.delay(n, rng) for _ in range(200)) for n in range(1, 12)]
    assert ceilings[:5] == sorted(ceilings[:5])
    assert 0.09 < ceilings[0] <= 0.1
    assert 1.5 < ceilings[4] <= 1.6
    assert 29 < ceilings[-1] <= 30


def test_delays_after_the_same_failure_are_jittered_apart() -> None:
    rng = random.Random(1)
    assert len({Backoff(1, 60).delay(3, rng) for _ in range(10)}) == 10


def test_an_outage_logs_its_first_failure_then_one_line_per_interval_with_the_count() -> None:
    failures = FailureLog(interval=60)
    said = [failures.failed(float(t)) for t in range(0, 150)]  # one failure a second
    assert said[0] == 1
    assert [(t, n) for t, n in enumerate(said) if n is not None] == [(0, 1), (60, 60), (120, 60)]
    assert failures.failing == 150
    assert failures.recovered() == 150
    assert failures.recovered() == 0  # nothing failed since
    assert failures.failed(151.0) == 1  # a new outage is told at once
