"""Pool health is judged per pool from its own IPs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.health import IpCondition, PoolHealth, pool_health
from hrmonitor.core.model import IPState, RiskClass


def ip(state: IPState, listings: int = 0, whole: bool = False, any_: bool = False) -> IpCondition:
    return IpCondition("192.0.2.1", state, listings, whole, any_ or whole)


def test_all_clean_in_rotation_is_healthy_with_full_score() -> None:
    summary = pool_health(RiskClass.HIGH, 1, [ip(IPState.ACTIVE), ip(IPState.WARMING)])
    assert summary.health is PoolHealth.HEALTHY
    assert summary.score == 100


def test_a_listed_normal_ip_in_rotation_is_critical() -> None:
    summary = pool_health(RiskClass.NORMAL, 1, [ip(IPState.ACTIVE, 1), ip(IPState.ACTIVE)])
    assert summary.health is PoolHealth.CRITICAL


def test_a_listed_high_risk_ip_in_rotation_only_degrades() -> None:
    summary = pool_health(RiskClass.HIGH, 1, [ip(IPState.ACTIVE, 1), ip(IPState.ACTIVE)])
    assert summary.health is PoolHealth.DEGRADED
    assert summary.score == 50


def test_below_min_active_is_critical() -> None:
    summary = pool_health(RiskClass.HIGH, 2, [ip(IPState.ACTIVE), ip(IPState.RETIRED, 1)])
    assert summary.health is PoolHealth.CRITICAL


def test_nothing_can_send_is_exhausted() -> None:
    ips = [ip(IPState.ACTIVE, whole=True), ip(IPState.RETIRED, 1), ip(IPState.STANDBY)]
    summary = pool_health(RiskClass.HIGH, 1, ips)
    assert summary.health is PoolHealth.EXHAUSTED
    assert summary.in_rotation == 0


conditions = st.lists(
    st.builds(
        IpCondition,
        st.just("192.0.2.1"),
        st.sampled_from(list(IPState)),
        st.integers(0, 3),
        st.booleans(),
        st.booleans(),
    ),
    max_size=10,
)


@given(st.sampled_from(list(RiskClass)), st.integers(0, 4), conditions)
def test_score_is_a_percentage_and_exhausted_means_nothing_sends(
    risk: RiskClass, min_active: int, ips: list[IpCondition]
) -> None:
    summary = pool_health(risk, min_active, ips)
    assert 0 <= summary.score <= 100
    sending = [c for c in ips if c.state.in_rotation and not c.suspended_whole]
    assert (summary.health is PoolHealth.EXHAUSTED) == (not sending)


def test_standbys_are_reserve_a_healthy_pool_with_standbys_scores_100() -> None:
    """One active IP and two clean standbys: full capacity in rotation, not one third."""
    ips = [ip(IPState.ACTIVE), ip(IPState.STANDBY), ip(IPState.STANDBY)]
    summary = pool_health(RiskClass.HIGH, 1, ips)
    assert (summary.health, summary.score, summary.standby) == (PoolHealth.HEALTHY, 100, 2)


def test_the_score_counts_min_active_as_the_capacity_a_pool_is_meant_to_have() -> None:
    """min_active 2 with one IP sending: half the capacity the pool is meant to send with."""
    ips = [ip(IPState.ACTIVE), ip(IPState.RETIRED, 1), ip(IPState.STANDBY)]
    summary = pool_health(RiskClass.HIGH, 2, ips)
    assert (summary.health, summary.score) == (PoolHealth.CRITICAL, 50)
