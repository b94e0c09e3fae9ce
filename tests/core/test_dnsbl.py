"""The pure DNSBL core: query names, classification, zone self-test, confirmation, budget."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import replace
from datetime import timedelta

import dns.name
import dns.reversename
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.dnsbl.answers import (
    Rcode,
    Reply,
    SweepResult,
    budget_problems,
    classify,
    confirm,
    covers,
    min_interval,
    needs_confirmation,
    queries_per_day,
    query_name,
    self_test_names,
    send_offsets,
    zone_health,
    zone_slots,
)
from hrmonitor.core.dnsbl.catalogue import ZoneList, load_catalogue
from hrmonitor.core.model import Clean, Listed, Severity, Status, Unknown, ZoneHealth

CATALOGUE = """
[defaults]
unknown_code = { class = "listed", severity = "medium" }

[lists.zen]
zone = "zen.example"
families = ["ipv4", "ipv6"]
daily_budget = 300000
[lists.zen.codes]
"127.0.0.2" = { tag = "SBL", class = "listed", severity = "critical" }
"127.0.0.10" = { tag = "PBL", class = "listed", severity = "high" }
"127.0.0.13-127.0.0.20" = { tag = "rep", class = "info" }
"127.0.0.30" = { tag = "low", class = "listed", severity = "low" }
"127.255.255.250-127.255.255.255" = { tag = "refused", class = "error" }

[lists.v4]
zone = "v4.example"
[lists.v4.codes]
"127.0.0.2" = { tag = "X", class = "listed", severity = "medium" }
"""

LISTS = {z.key: z for z in load_catalogue([("t.toml", CATALOGUE)]).select(["zen", "v4"])}
ZEN = LISTS["zen"]
V4 = LISTS["v4"]

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
loopback_codes = st.integers(0x7F000000, 0x7FFFFFFF).map(lambda n: str(ipaddress.IPv4Address(n)))
outside_codes = st.ip_addresses(v=4).filter(lambda a: not a.is_loopback).map(str)
error_codes = st.integers(250, 255).map(lambda n: f"127.255.255.{n}")


def noerror(*addresses: str, txt: tuple[str, ...] = ()) -> Reply:
    return Reply(Rcode.NOERROR, addresses, txt)


# --- query names --------------------------------------------------------------------------


@given(ipv4)
def test_ipv4_query_name_is_the_reverse_name_under_the_zone(ip: str) -> None:
    expected = dns.reversename.from_address(ip).relativize(dns.name.from_text("in-addr.arpa"))
    assert query_name(ip, "zen.example") == f"{expected}.zen.example"


@given(ipv6.filter(lambda a: ipaddress.IPv6Address(a).ipv4_mapped is None))
def test_ipv6_query_name_is_32_reversed_nibbles_under_the_zone(ip: str) -> None:
    expected = dns.reversename.from_address(ip).relativize(dns.name.from_text("ip6.arpa"))
    name = query_name(ip, "zen.example.")
    assert name == f"{expected}.zen.example"
    assert len(name.split(".")) == 32 + 2


@given(ipv4)
def test_ipv4_mapped_ipv6_is_looked_up_as_ipv4(ip: str) -> None:
    mapped = f"::ffff:{ip}"
    assert query_name(mapped, "z.example") == query_name(ip, "z.example")
    assert covers(V4, mapped)


def test_ipv6_test_points_are_asked_in_nibble_form() -> None:
    names = dict(self_test_names(ZEN))
    assert names["127.0.0.2"] == "2.0.0.127.zen.example"
    assert names["::ffff:7f00:2"] == ("2.0.0.0.0.0.f.7.f.f.f.f" + ".0" * 20 + ".zen.example")
    assert set(names) == {"127.0.0.2", "127.0.0.1", "::ffff:7f00:2", "::ffff:7f00:1"}
    assert [p for p, _ in self_test_names(V4)] == ["127.0.0.2", "127.0.0.1"]


def test_an_ipv4_only_list_does_not_cover_ipv6() -> None:
    assert not covers(V4, "2001:db8::1")
    assert covers(ZEN, "2001:db8::1")


# --- classification -----------------------------------------------------------------------


def test_nxdomain_is_clean() -> None:
    assert classify("192.0.2.1", ZEN, Reply(Rcode.NXDOMAIN)) == Clean("192.0.2.1", "zen")


def test_a_listed_code_gives_its_tag_severity_and_txt() -> None:
    answer = classify("192.0.2.1", ZEN, noerror("127.0.0.10", txt=("see", "there")))
    assert answer == Listed(
        "192.0.2.1", "zen", ("127.0.0.10",), ("PBL",), Severity.HIGH, "see; there"
    )


def test_several_listed_codes_keep_all_codes_and_the_highest_severity() -> None:
    answer = classify("192.0.2.1", ZEN, noerror("127.0.0.30", "127.0.0.2", "127.0.0.14"))
    assert isinstance(answer, Listed)
    assert answer.codes == ("127.0.0.2", "127.0.0.14", "127.0.0.30")
    assert answer.tags == ("SBL", "rep", "low")
    assert answer.severity is Severity.CRITICAL


def test_info_codes_alone_are_info() -> None:
    assert classify("192.0.2.1", ZEN, noerror("127.0.0.15")).status is Status.INFO


def test_an_unknown_127_code_uses_the_catalogue_default() -> None:
    answer = classify("192.0.2.1", V4, noerror("127.0.0.77"))
    assert isinstance(answer, Listed)
    assert answer.severity is Severity.MEDIUM
    assert answer.tags == ("unknown-code",)


def test_127_0_0_1_alone_is_never_a_listing() -> None:
    assert classify("192.0.2.1", ZEN, noerror("127.0.0.1")).status is Status.UNKNOWN


@pytest.mark.parametrize(
    "rcode", [Rcode.TIMEOUT, Rcode.SERVFAIL, Rcode.REFUSED, Rcode.TRUNCATED, Rcode.GARBAGE]
)
def test_no_usable_answer_is_unknown_with_the_reason(rcode: Rcode) -> None:
    answer = classify("192.0.2.1", ZEN, Reply(rcode))
    assert isinstance(answer, Unknown)
    assert answer.reason


def test_nodata_is_unknown_not_clean() -> None:
    assert classify("192.0.2.1", ZEN, noerror()).status is Status.UNKNOWN


@given(st.lists(loopback_codes, max_size=4), error_codes, st.data())
def test_an_error_code_anywhere_makes_the_answer_an_error(
    others: list[str], error: str, data: st.DataObject
) -> None:
    addresses = data.draw(st.permutations([*others, error]))
    assert classify("192.0.2.1", ZEN, noerror(*addresses)).status is Status.ERROR


@given(st.lists(loopback_codes, max_size=4), st.lists(outside_codes, min_size=1, max_size=3))
def test_any_answer_outside_127_8_is_unknown(inside: list[str], outside: list[str]) -> None:
    answer = classify("192.0.2.1", ZEN, noerror(*inside, *outside))
    assert answer.status is Status.UNKNOWN


@given(
    st.sampled_from(list(Rcode)),
    st.lists(st.one_of(loopback_codes, outside_codes, error_codes), max_size=5),
)
def test_classification_never_calls_an_error_code_or_foreign_answer_listed_or_clean(
    rcode: Rcode, addresses: list[str]
) -> None:
    answer = classify("192.0.2.1", ZEN, Reply(rcode, tuple(addresses)))
    first_error = ipaddress.IPv4Address("127.255.255.250")
    has_error = any(ipaddress.IPv4Address(a) >= first_error for a in addresses)
    foreign = any(not ipaddress.IPv4Address(a).is_loopback for a in addresses)
    if rcode is Rcode.NOERROR and (has_error or foreign):
        assert answer.status in (Status.ERROR, Status.UNKNOWN)
    if rcode not in (Rcode.NOERROR, Rcode.NXDOMAIN):
        assert answer.status is Status.UNKNOWN
    if answer.status is Status.CLEAN:
        assert rcode is Rcode.NXDOMAIN


@given(ipv4, st.lists(loopback_codes, min_size=1, max_size=3))
def test_ipv4_mapped_ipv6_classifies_like_ipv4(ip: str, codes: list[str]) -> None:
    as_v4 = classify(ip, ZEN, noerror(*codes))
    as_mapped = classify(f"::ffff:{ip}", ZEN, noerror(*codes))
    assert replace(as_mapped, ip=ip) == as_v4
    assert query_name(f"::ffff:{ip}", ZEN.zone) == query_name(ip, ZEN.zone)


# --- zone self-test -----------------------------------------------------------------------

LISTED = noerror("127.0.0.2")
CLEAN = Reply(Rcode.NXDOMAIN)


def health(zone_list: ZoneList, listed: Reply, clean: Reply) -> ZoneHealth:
    return zone_health(zone_list, {"127.0.0.2": listed, "127.0.0.1": clean})


def test_a_zone_honouring_its_test_points_is_ok() -> None:
    assert health(V4, LISTED, CLEAN) is ZoneHealth.OK


def test_a_zone_not_listing_its_test_point_is_dead() -> None:
    assert health(V4, CLEAN, CLEAN) is ZoneHealth.DEAD


def test_a_zone_listing_127_0_0_1_lists_everything() -> None:
    assert health(V4, LISTED, noerror("127.0.0.2")) is ZoneHealth.LISTS_EVERYTHING


def test_a_wildcard_answer_outside_127_8_lists_everything() -> None:
    assert health(V4, noerror("192.0.2.80"), noerror("192.0.2.80")) is ZoneHealth.LISTS_EVERYTHING


def test_error_codes_or_refused_mean_refusing() -> None:
    assert health(V4, noerror("127.255.255.254"), noerror("127.255.255.254")) is (
        ZoneHealth.REFUSING
    )
    assert health(V4, Reply(Rcode.REFUSED), Reply(Rcode.REFUSED)) is ZoneHealth.REFUSING


def test_timeouts_mean_unreachable() -> None:
    assert health(V4, Reply(Rcode.TIMEOUT), Reply(Rcode.TIMEOUT)) is ZoneHealth.UNREACHABLE


def test_an_ipv6_list_must_honour_its_ipv6_test_points_too() -> None:
    points = {"127.0.0.2": LISTED, "127.0.0.1": CLEAN, "::ffff:7f00:2": CLEAN}
    assert zone_health(ZEN, {**points, "::ffff:7f00:1": CLEAN}) is ZoneHealth.DEAD
    points["::ffff:7f00:2"] = LISTED
    assert zone_health(ZEN, points) is ZoneHealth.UNREACHABLE  # the missing reply
    assert zone_health(ZEN, {**points, "::ffff:7f00:1": CLEAN}) is ZoneHealth.OK


def test_answers_of_an_unhealthy_zone_change_nothing() -> None:
    listed = classify("192.0.2.1", V4, LISTED)
    result = SweepResult((listed,), {"v4": ZoneHealth.LISTS_EVERYTHING})
    (trusted,) = result.trusted
    assert trusted.status is Status.UNKNOWN
    assert SweepResult((listed,), {"v4": ZoneHealth.OK}).trusted == (listed,)


# --- confirmation -------------------------------------------------------------------------

FIRST = classify("192.0.2.1", V4, LISTED)
SECOND_LISTED = classify("192.0.2.1", V4, noerror("127.0.0.2", "127.0.0.3"))
SECOND_CLEAN = classify("192.0.2.1", V4, CLEAN)


def test_a_new_listing_counts_when_the_second_query_agrees() -> None:
    assert needs_confirmation(Status.CLEAN, FIRST)
    assert confirm(Status.CLEAN, FIRST, SECOND_LISTED) == SECOND_LISTED


def test_a_new_listing_the_second_query_denies_keeps_the_previous_state() -> None:
    answer = confirm(None, FIRST, SECOND_CLEAN)
    assert answer.status is Status.UNKNOWN


def test_an_ip_already_listed_needs_no_confirmation() -> None:
    assert not needs_confirmation(Status.LISTED, FIRST)
    assert confirm(Status.LISTED, FIRST, SECOND_CLEAN) == FIRST


@given(st.sampled_from([None, *Status]), st.sampled_from([FIRST, SECOND_CLEAN]))
def test_confirmation_never_produces_a_listing_from_one_listed_answer(
    previous: Status | None, second: Listed | Clean
) -> None:
    result = confirm(previous, FIRST, second)
    if previous is not Status.LISTED and second.status is not Status.LISTED:
        assert result.status is Status.UNKNOWN


# --- budget -------------------------------------------------------------------------------


def test_queries_per_day_counts_ips_and_test_points_per_sweep() -> None:
    assert queries_per_day(100, timedelta(minutes=30)) == (100 + 2) * 48


def test_budget_problems_name_the_list_that_would_be_exceeded() -> None:
    assert budget_problems([ZEN, V4], 1000, timedelta(minutes=30)) == []
    (problem,) = budget_problems([ZEN, V4], 10000, timedelta(minutes=15))
    assert problem.startswith("zen: ")
    assert "300000" in problem


@given(st.integers(1, 100000), st.integers(1000, 10**7))
def test_min_interval_keeps_the_schedule_within_budget(ips: int, budget: int) -> None:
    interval = min_interval(ips, budget)
    if ips + 2 <= budget:
        assert queries_per_day(ips, interval) <= budget


@given(st.integers(0, 2000), st.floats(0.1, 3600), st.integers())
def test_send_offsets_spread_queries_evenly_inside_the_window(
    n: int, window: float, seed: int
) -> None:
    offsets = send_offsets(n, window, random.Random(seed))
    assert len(offsets) == n
    assert offsets == sorted(offsets)
    assert all(0 <= t < window for t in offsets)
    slot = window / max(n, 1)
    for index, offset in enumerate(offsets):
        assert index * slot <= offset <= (index + 1) * slot


def test_send_offsets_are_reproducible_from_the_seed() -> None:
    assert send_offsets(5, 10, random.Random(7)) == send_offsets(5, 10, random.Random(7))
    assert send_offsets(5, 10, random.Random(7)) != send_offsets(5, 10, random.Random(8))


def test_an_untabled_code_in_127_255_255_0_24_is_an_error_not_a_listing() -> None:
    assert classify("192.0.2.1", V4, noerror("127.255.255.100")).status is Status.ERROR


@given(
    st.lists(st.tuples(st.floats(0, 5), st.integers(0, 50)), min_size=1, max_size=6),
    st.floats(0.5, 500),
    st.integers(),
)
def test_zone_slots_hold_the_rate_across_consecutive_calls(
    calls: list[tuple[float, int]], rate: float, seed: int
) -> None:
    rng = random.Random(seed)
    now, free_at = 0.0, None
    sent: list[float] = []
    for pause, n in calls:
        now += pause
        times, free_at = zone_slots(now, free_at, n, rate, rng)
        assert all(t >= now for t in times)  # never before it was asked for
        sent += times
    assert sent == sorted(sent)
    # One query per slot of 1/rate s: m+1 queries span at least m-1 whole slots.
    for m in (2, 5, 10):
        for k in range(len(sent) - m):
            assert sent[k + m] - sent[k] >= (m - 1) / rate - 1e-9
