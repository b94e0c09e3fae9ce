"""Source-IP selection: eligibility, weighted round-robin, exhaustion, use-listed."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.model import IPState, Pool, PoolPolicy, RiskClass, WhenExhausted
from hrmonitor.core.rotation.selection import (
    IpCandidate,
    NoEligibleIp,
    Selection,
    choose_least_listed,
    choose_source_ip,
    ineligibility,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
EARLIER = NOW - timedelta(hours=1)


def pick_many(candidates: list[IpCandidate], n: int, provider: str = "google") -> list[str]:
    cursor, picks = 0, []
    for _ in range(n):
        result = choose_source_ip(candidates, provider, NOW, cursor)
        assert isinstance(result, Selection)
        picks.append(result.ip)
        cursor = result.cursor
    return picks


def test_round_robin_alternates_between_equal_weights() -> None:
    ips = [IpCandidate("127.0.0.2", IPState.ACTIVE), IpCandidate("127.0.0.3", IPState.ACTIVE)]
    assert pick_many(ips, 4) == ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"]


def test_smooth_weighting_spreads_the_heavy_ip_rather_than_bursting() -> None:
    """nginx's example: weights 5,1,1 give a a b a c a a, never five a's in a row."""
    ips = [
        IpCandidate("127.0.0.1", IPState.ACTIVE, weight=5),
        IpCandidate("127.0.0.2", IPState.ACTIVE, weight=1),
        IpCandidate("127.0.0.3", IPState.ACTIVE, weight=1),
    ]
    picks = pick_many(ips, 7)
    assert Counter(picks) == {"127.0.0.1": 5, "127.0.0.2": 1, "127.0.0.3": 1}
    assert picks[:3] != ["127.0.0.1"] * 3


def test_ip_suspended_for_the_destination_is_skipped_but_serves_others() -> None:
    ip = IpCandidate("127.0.0.2", IPState.ACTIVE, suspensions={"yahoo": LATER})
    other = IpCandidate("127.0.0.3", IPState.ACTIVE)
    assert set(pick_many([ip, other], 4, "yahoo")) == {"127.0.0.3"}
    assert ineligibility(ip, "google", NOW) is None


def test_whole_ip_suspension_blocks_every_destination() -> None:
    ip = IpCandidate("127.0.0.2", IPState.ACTIVE, suspensions={"*": LATER})
    result = choose_source_ip([ip], "google", NOW, 0)
    assert isinstance(result, NoEligibleIp)
    assert "whole IP" in result.detail


def test_expired_suspension_no_longer_blocks() -> None:
    ip = IpCandidate("127.0.0.2", IPState.ACTIVE, suspensions={"yahoo": EARLIER})
    assert choose_source_ip([ip], "yahoo", NOW, 0) == Selection("127.0.0.2", 1)


def test_warming_ip_sends_under_its_cap_and_stops_at_it() -> None:
    under = IpCandidate("127.0.0.2", IPState.WARMING, daily_cap=50, sent_today=49)
    at = IpCandidate("127.0.0.2", IPState.WARMING, daily_cap=50, sent_today=50)
    assert ineligibility(under, "google", NOW) is None
    assert "cap" in (ineligibility(at, "google", NOW) or "")


def test_exhausted_pool_is_a_value_naming_each_ip_and_why() -> None:
    ips = [
        IpCandidate("127.0.0.2", IPState.RETIRED),
        IpCandidate("127.0.0.3", IPState.STANDBY),
        IpCandidate("127.0.0.4", IPState.ACTIVE, suspensions={"google": LATER}),
    ]
    result = choose_source_ip(ips, "google", NOW, 7)
    assert isinstance(result, NoEligibleIp)
    assert [ip for ip, _ in result.reasons] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert "retired" in result.detail


def test_empty_pool_is_exhausted() -> None:
    assert isinstance(choose_source_ip([], "google", NOW, 0), NoEligibleIp)


def _pool(risk: RiskClass, when: WhenExhausted, ips: tuple[str, ...]) -> Pool:
    return Pool("p", risk, ips, (), PoolPolicy(when_exhausted=when), timedelta(minutes=30))


def test_use_listed_picks_the_least_listed_ip_of_a_normal_pool() -> None:
    pool = _pool(RiskClass.NORMAL, WhenExhausted.USE_LISTED, ("127.0.0.2", "127.0.0.3"))
    ips = [IpCandidate("127.0.0.2", IPState.RETIRED), IpCandidate("127.0.0.3", IPState.RETIRED)]
    counts = {"127.0.0.2": 3, "127.0.0.3": 1}
    assert choose_least_listed(pool, ips, counts, "google", NOW) == Selection("127.0.0.3", 0)


def test_use_listed_is_refused_for_a_high_risk_pool() -> None:
    pool = _pool(RiskClass.HIGH, WhenExhausted.USE_LISTED, ("127.0.0.2",))
    ips = [IpCandidate("127.0.0.2", IPState.RETIRED)]
    assert isinstance(choose_least_listed(pool, ips, {}, "google", NOW), NoEligibleIp)


def test_use_listed_never_uses_disabled_or_foreign_or_suspended_ips() -> None:
    pool = _pool(RiskClass.NORMAL, WhenExhausted.USE_LISTED, ("127.0.0.2", "127.0.0.3"))
    ips = [
        IpCandidate("127.0.0.2", IPState.DISABLED),
        IpCandidate("127.0.0.3", IPState.RETIRED, suspensions={"*": LATER}),
        IpCandidate("127.0.0.9", IPState.ACTIVE),
    ]
    result = choose_least_listed(pool, ips, {}, "google", NOW)
    assert isinstance(result, NoEligibleIp)
    assert len(result.reasons) == 3


# --- properties -------------------------------------------------------------------------

_providers = st.sampled_from(["google", "yahoo", "microsoft", "generic"])
_offsets = st.integers(min_value=-120, max_value=120).map(lambda m: NOW + timedelta(minutes=m))


@st.composite
def candidates(draw: st.DrawFn) -> list[IpCandidate]:
    hosts = draw(st.lists(st.integers(1, 254), min_size=0, max_size=6, unique=True))
    result = []
    for host in hosts:
        state = draw(st.sampled_from(list(IPState)))
        cap = draw(st.none() | st.integers(0, 20))
        suspensions = draw(st.dictionaries(st.sampled_from(["*", "google", "yahoo"]), _offsets))
        slowed = draw(st.dictionaries(st.sampled_from(["google", "microsoft"]), _offsets))
        result.append(
            IpCandidate(
                f"127.0.0.{host}",
                state,
                weight=draw(st.integers(0, 5)),
                daily_cap=cap,
                sent_today=draw(st.integers(0, 25)),
                suspensions=suspensions,
                slowed=slowed,
            )
        )
    return result


@given(candidates(), _providers, st.integers(0, 10_000))
def test_selection_never_returns_an_ineligible_ip_or_one_outside_the_pool(
    pool: list[IpCandidate], provider: str, cursor: int
) -> None:
    result = choose_source_ip(pool, provider, NOW, cursor)
    by_ip = {c.ip: c for c in pool}
    if isinstance(result, Selection):
        assert result.ip in by_ip
        assert ineligibility(by_ip[result.ip], provider, NOW) is None
    else:
        assert all(ineligibility(c, provider, NOW) is not None for c in pool)
        assert {ip for ip, _ in result.reasons} == set(by_ip)


@given(candidates(), _providers, st.integers(0, 10_000))
def test_a_slowed_ip_is_chosen_only_when_every_eligible_ip_is_slowed(
    pool: list[IpCandidate], provider: str, cursor: int
) -> None:
    """Slowing shifts traffic away; it never holds mail while an eligible IP exists."""
    result = choose_source_ip(pool, provider, NOW, cursor)
    eligible = [c for c in pool if ineligibility(c, provider, NOW) is None]
    if not eligible:
        assert isinstance(result, NoEligibleIp)
        return
    assert isinstance(result, Selection)
    chosen = next(c for c in pool if c.ip == result.ip)
    if chosen.is_slowed(provider, NOW):
        assert all(c.is_slowed(provider, NOW) for c in eligible)


def test_a_slow_down_for_one_provider_leaves_the_others_alone() -> None:
    slowed = IpCandidate("127.0.0.1", IPState.ACTIVE, slowed={"microsoft": LATER})
    other = IpCandidate("127.0.0.2", IPState.ACTIVE)
    assert set(pick_many([slowed, other], 4, "microsoft")) == {"127.0.0.2"}
    assert set(pick_many([slowed, other], 4, "google")) == {"127.0.0.1", "127.0.0.2"}
    assert set(pick_many([slowed], 2, "microsoft")) == {"127.0.0.1"}  # never held
    expired = IpCandidate("127.0.0.1", IPState.ACTIVE, slowed={"microsoft": EARLIER})
    assert set(pick_many([expired, other], 4, "microsoft")) == {"127.0.0.1", "127.0.0.2"}


@given(st.lists(st.integers(1, 6), min_size=1, max_size=5), st.integers(0, 50), st.integers(1, 4))
def test_round_robin_is_exactly_fair_within_weights_over_whole_periods(
    weights: list[int], start: int, periods: int
) -> None:
    pool = [
        IpCandidate(f"127.0.0.{i + 1}", IPState.ACTIVE, weight=w) for i, w in enumerate(weights)
    ]
    total = sum(weights)
    cursor, picks = start, []
    for _ in range(total * periods):
        result = choose_source_ip(pool, "google", NOW, cursor)
        assert isinstance(result, Selection)
        picks.append(result.ip)
        cursor = result.cursor
    counts = Counter(picks)
    assert all(counts[c.ip] == c.weight * periods for c in pool)


@given(st.permutations([("127.0.0.1", 3), ("127.0.0.2", 1), ("127.0.0.3", 2)]))
def test_selection_does_not_depend_on_the_callers_order(order: list[tuple[str, int]]) -> None:
    pool = [IpCandidate(ip, IPState.ACTIVE, weight=w) for ip, w in order]
    reference = [IpCandidate(ip, IPState.ACTIVE, weight=w) for ip, w in sorted(order)]
    assert pick_many(pool, 12) == pick_many(reference, 12)
