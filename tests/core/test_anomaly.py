"""Wilson bounds, EWMA/CUSUM detectors and bucketed windows behave as the surge watcher needs."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.surge.anomaly import (
    AnomalyMethod,
    AnomalyParams,
    Detector,
    SlidingCounts,
    wilson_bounds,
)

_ratio = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
_method = st.sampled_from(list(AnomalyMethod))


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=10_000))
def test_wilson_interval_contains_the_raw_ratio_and_stays_in_unit_range(k: int, n: int) -> None:
    """0 <= lower <= k/n <= upper <= 1 for every count (k clamped to n)."""
    low, high = wilson_bounds(k, n)
    ratio = min(k, n) / n
    assert 0.0 <= low <= ratio + 1e-12
    assert ratio - 1e-12 <= high <= 1.0


@given(st.integers(min_value=1, max_value=2000))
def test_wilson_lower_bound_is_monotone_in_successes(n: int) -> None:
    """More DSNs in the same volume never lower the bound."""
    lows = [wilson_bounds(k, n)[0] for k in range(0, n + 1, max(1, n // 50))]
    assert lows == sorted(lows)


def test_wilson_bound_discounts_small_counts() -> None:
    """3 of 5 is weak evidence of a high ratio; 300 of 500 is strong."""
    assert wilson_bounds(3, 5)[0] < 0.25
    assert wilson_bounds(300, 500)[0] > 0.55
    assert wilson_bounds(0, 0) == (0.0, 1.0)


@given(_method, st.lists(_ratio, min_size=1, max_size=200))
def test_detector_state_stays_finite_and_cusum_non_negative(
    method: AnomalyMethod, values: list[float]
) -> None:
    """Whatever ratios arrive, the statistic is finite, CUSUM >= 0 and EWMA within [0, 1]."""
    detector = Detector(AnomalyParams(method=method))
    for value in values:
        detector.observe(value)
        assert detector.variance >= 0
        assert 0.0 <= detector.mean <= 1.0
        if method is AnomalyMethod.CUSUM:
            assert 0.0 <= detector.statistic <= 10.0
        else:
            assert 0.0 <= detector.statistic <= 1.0


@given(_method, st.floats(min_value=0.0, max_value=0.05), st.integers(min_value=1, max_value=500))
def test_constant_in_control_series_never_alarms(
    method: AnomalyMethod, level: float, steps: int
) -> None:
    """A steady ratio at or below the prior never raises the detector."""
    detector = Detector(AnomalyParams(method=method))
    assert not any(detector.observe(level) for _ in range(steps))


@pytest.mark.parametrize("method", list(AnomalyMethod))
def test_step_shift_is_detected_within_a_few_observations(method: AnomalyMethod) -> None:
    """After a day of 2 % noise, a jump to 40 % alarms within 5 buckets."""
    rng = random.Random(7)
    detector = Detector(AnomalyParams(method=method))
    for _ in range(1440):
        detector.observe(max(0.0, rng.gauss(0.02, 0.01)))
    assert not detector.out_of_control
    alarms = [detector.observe(0.4) for _ in range(5)]
    assert any(alarms)


@pytest.mark.parametrize("method", list(AnomalyMethod))
def test_detector_returns_to_control_after_the_shift_ends(method: AnomalyMethod) -> None:
    """Once ratios fall back, the alarm clears (CUSUM's cap bounds its memory)."""
    detector = Detector(AnomalyParams(method=method))
    for _ in range(60):
        detector.observe(0.9)
    assert detector.out_of_control
    for _ in range(40):
        detector.observe(0.0)
    assert not detector.out_of_control


def test_bad_parameters_are_refused() -> None:
    """Lambda outside (0, 1] or non-positive limits make no sense as config."""
    with pytest.raises(ValueError, match="lambda"):
        AnomalyParams(ewma_lambda=0)
    with pytest.raises(ValueError, match="cusum_h"):
        AnomalyParams(cusum_h=0)


_ops = st.lists(
    st.tuples(st.integers(min_value=0, max_value=3), st.integers(min_value=0, max_value=5)),
    max_size=200,
)


@given(st.integers(min_value=1, max_value=10), _ops)
def test_window_sums_equal_the_events_inside_the_window(
    size: int, ops: list[tuple[int, int]]
) -> None:
    """Running sums always equal a recount of events in the last `size` buckets; never negative."""
    window = SlidingCounts(size, 2)
    bucket = 0
    events: list[tuple[int, int, int]] = []
    for step, amount in ops:
        bucket += step
        window.add(bucket, amount % 2, amount)
        events.append((bucket, amount % 2, amount))
        expected = [0, 0]
        for at, index, value in events:
            if at > bucket - size:
                expected[index] += value
        assert window.sums == expected
        assert min(window.sums) >= 0


def test_window_forgets_everything_after_a_long_gap_and_drops_too_old_events() -> None:
    """A jump past the window clears it; an event older than the window is not counted."""
    window = SlidingCounts(5, 1)
    window.add(3, 0, 7)
    window.advance(100)
    assert window.sums == [0]
    window.add(95, 0, 4)
    assert window.sums == [0]
    window.add(97, 0, 2)
    assert window.sums == [2]
    assert window.bucket(97) == (2,)
    assert window.bucket(90) == (0,)


def test_window_refuses_negative_counts() -> None:
    """Counts only grow; forgetting happens by expiry, so they can never go negative."""
    with pytest.raises(ValueError, match="grow"):
        SlidingCounts(3, 1).add(0, 0, -1)
