"""DNSBL sweeps in the store: only trustworthy answers from healthy zones move listings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hrmonitor.adapters.store import Store
from hrmonitor.adapters.store.records import ZoneHealthChange
from hrmonitor.core.model import (
    Clean,
    Error,
    Info,
    Listed,
    Severity,
    Status,
    Unknown,
    ZoneHealth,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
IP = "203.0.113.20"
ZEN = "spamhaus-zen"
SPAMCOP = "spamcop"
OK = {ZEN: ZoneHealth.OK, SPAMCOP: ZoneHealth.OK}


def listed(zone: str = ZEN, codes: tuple[str, ...] = ("127.0.0.2",), txt: str = "SBL") -> Listed:
    return Listed(IP, zone, codes, ("SBL",), Severity.CRITICAL, txt)


def test_a_listing_opens_extends_and_closes_as_one_interval(store: Store) -> None:
    opened = store.record_sweep([listed(), Clean(IP, SPAMCOP)], OK, T0)
    assert [(r.ip, r.zone, r.first_seen, r.cleared_at) for r in opened.listed] == [
        (IP, ZEN, T0, None)
    ]
    assert opened.cleared == ()

    later = T0 + timedelta(minutes=30)
    extended = store.record_sweep([listed(codes=("127.0.0.3",), txt="SBL2")], OK, later)
    assert not extended  # still listed: nothing new to tell
    (current,) = store.current_listings(IP)
    assert (current.first_seen, current.last_seen, current.codes, current.txt) == (
        T0,
        later,
        ("127.0.0.3",),
        "SBL2",
    )

    cleared_at = T0 + timedelta(hours=2)
    closed = store.record_sweep([Clean(IP, ZEN)], OK, cleared_at)
    assert [(r.zone, r.first_seen, r.cleared_at) for r in closed.cleared] == [(ZEN, T0, cleared_at)]
    assert store.current_listings() == []
    (interval,) = store.listing_history(IP)
    assert (interval.first_seen, interval.last_seen, interval.cleared_at) == (
        T0,
        later,
        cleared_at,
    )


def test_a_second_listing_after_a_clear_is_a_new_interval(store: Store) -> None:
    store.record_sweep([listed()], OK, T0)
    store.record_sweep([Clean(IP, ZEN)], OK, T0 + timedelta(hours=1))
    again = store.record_sweep([listed()], OK, T0 + timedelta(hours=2))
    assert len(again.listed) == 1
    history = store.listing_history(IP)
    assert [h.is_open for h in history] == [False, True]


def test_unknown_and_error_answers_leave_an_open_listing_alone(store: Store) -> None:
    store.record_sweep([listed()], OK, T0)
    for answer in (
        Unknown(IP, ZEN, "timeout"),
        Error(IP, ZEN, ("127.255.255.254",), "public resolver refused"),
    ):
        changes = store.record_sweep([answer], OK, T0 + timedelta(hours=1))
        assert not changes
    (still,) = store.current_listings(IP)
    assert (still.first_seen, still.last_seen) == (T0, T0)


def test_an_info_answer_closes_a_listing_of_that_zone(store: Store) -> None:
    """Mailspike: listed at L3 (127.0.0.12), then a reputation level (127.0.0.14) means delisted."""
    mailspike = "mailspike-z"
    health = {mailspike: ZoneHealth.OK}
    l3 = Listed(IP, mailspike, ("127.0.0.12",), ("L3-bad",), Severity.LOW)
    store.record_sweep([l3], health, T0)
    later = T0 + timedelta(hours=1)
    changes = store.record_sweep(
        [Info(IP, mailspike, ("127.0.0.14",), ("reputation",))], health, later
    )
    assert [(r.zone, r.cleared_at) for r in changes.cleared] == [(mailspike, later)]
    assert store.current_listings(IP) == []
    assert store.clean_since(IP, [mailspike]) == later


def test_unknown_error_and_info_never_open_a_listing(store: Store) -> None:
    changes = store.record_sweep(
        [
            Unknown(IP, ZEN, "SERVFAIL"),
            Error(IP, SPAMCOP, ("127.255.255.255",), "rate limited"),
            Info("203.0.113.21", ZEN, ("127.0.0.13",), ("L3",)),
        ],
        OK,
        T0,
    )
    assert not changes
    assert store.current_listings() == []


def test_answers_from_an_unhealthy_zone_change_no_listing(store: Store) -> None:
    store.record_sweep([listed()], OK, T0)
    dead = {ZEN: ZoneHealth.LISTS_EVERYTHING, SPAMCOP: ZoneHealth.OK}
    changes = store.record_sweep(
        [Clean(IP, ZEN), listed(SPAMCOP)], dead, T0 + timedelta(minutes=30)
    )
    assert changes.cleared == ()
    assert [r.zone for r in changes.listed] == [SPAMCOP]
    assert {r.zone for r in store.current_listings(IP)} == {ZEN, SPAMCOP}
    (zen,) = [r for r in store.current_listings(IP) if r.zone == ZEN]
    assert zen.last_seen == T0


def test_a_zone_missing_from_health_counts_as_unhealthy(store: Store) -> None:
    changes = store.record_sweep([listed(ZEN)], {SPAMCOP: ZoneHealth.OK}, T0)
    assert not changes
    assert store.current_listings() == []
    assert store.latest_answers() == []


def test_only_the_latest_answer_per_ip_and_zone_is_kept(store: Store) -> None:
    for minutes in range(5):
        store.record_sweep([Clean(IP, ZEN)], OK, T0 + timedelta(minutes=minutes))
    store.record_sweep([Unknown(IP, SPAMCOP, "timeout")], OK, T0)
    answers = {(a.ip, a.zone): a for a in store.latest_answers(IP)}
    assert len(answers) == 2
    zen = answers[(IP, ZEN)]
    assert (zen.status, zen.checked_at, zen.clean_since) == (
        Status.CLEAN,
        T0 + timedelta(minutes=4),
        T0,
    )
    spamcop = answers[(IP, SPAMCOP)]
    assert (spamcop.status, spamcop.txt, spamcop.clean_since) == (Status.UNKNOWN, "timeout", None)


def test_zone_health_changes_are_recorded_and_reported(store: Store) -> None:
    first = store.record_sweep([], OK, T0)
    assert first.zones == ()  # a zone first seen healthy is no news
    bad = {ZEN: ZoneHealth.UNREACHABLE, SPAMCOP: ZoneHealth.OK}
    later = T0 + timedelta(minutes=30)
    changes = store.record_sweep([], bad, later, details={ZEN: "no answer from test point"})
    assert changes.zones == (
        ZoneHealthChange(ZEN, ZoneHealth.OK, ZoneHealth.UNREACHABLE, "no answer from test point"),
    )
    same = store.record_sweep([], bad, later + timedelta(minutes=30))
    assert same.zones == ()
    health = store.zone_health()
    assert health[ZEN].health is ZoneHealth.UNREACHABLE
    assert health[ZEN].changed_at == later
    assert health[ZEN].checked_at == later + timedelta(minutes=30)
    assert health[SPAMCOP].changed_at == T0


def test_a_zone_first_seen_unhealthy_is_reported(store: Store) -> None:
    changes = store.record_sweep([], {"sorbs": ZoneHealth.DEAD}, T0)
    assert changes.zones == (ZoneHealthChange("sorbs", None, ZoneHealth.DEAD, ""),)


def test_clean_since_is_the_start_of_clean_answers_on_every_zone(store: Store) -> None:
    zones = [ZEN, SPAMCOP]
    store.record_sweep([listed(), Clean(IP, SPAMCOP)], OK, T0)
    assert store.clean_since(IP, zones) is None  # open listing
    cleared = T0 + timedelta(hours=1)
    store.record_sweep([Clean(IP, ZEN), Clean(IP, SPAMCOP)], OK, cleared)
    assert store.clean_since(IP, zones) == cleared
    store.record_sweep(
        [Clean(IP, ZEN), Info(IP, SPAMCOP, ("127.0.0.14",), ("L4",))],
        OK,
        cleared + timedelta(hours=1),
    )
    assert store.clean_since(IP, zones) == cleared  # Info is not a listing: the run goes on


def test_clean_since_needs_an_answer_on_every_zone(store: Store) -> None:
    store.record_sweep([Clean(IP, ZEN)], OK, T0)
    assert store.clean_since(IP, [ZEN]) == T0
    assert store.clean_since(IP, [ZEN, SPAMCOP]) is None
    assert store.clean_since(IP, []) is None


def test_unknown_or_error_breaks_the_clean_run(store: Store) -> None:
    store.record_sweep([Clean(IP, ZEN)], OK, T0)
    store.record_sweep([Unknown(IP, ZEN, "timeout")], OK, T0 + timedelta(hours=1))
    assert store.clean_since(IP, [ZEN]) is None
    restart = T0 + timedelta(hours=2)
    store.record_sweep([Clean(IP, ZEN)], OK, restart)
    assert store.clean_since(IP, [ZEN]) == restart
    store.record_sweep([Error(IP, ZEN, ("127.255.255.254",), "refused")], OK, restart)
    assert store.clean_since(IP, [ZEN]) is None


def test_an_unhealthy_zone_breaks_the_clean_run_of_every_ip_on_it(store: Store) -> None:
    store.record_sweep([Clean(IP, ZEN), Clean("203.0.113.21", ZEN)], OK, T0)
    store.record_sweep([], {ZEN: ZoneHealth.DEAD}, T0 + timedelta(hours=1))
    assert store.clean_since(IP, [ZEN]) is None
    assert store.clean_since("203.0.113.21", [ZEN]) is None


def test_current_listings_filter_by_ip(store: Store) -> None:
    other = Listed("203.0.113.21", ZEN, ("127.0.0.4",), ("XBL",), Severity.CRITICAL)
    store.record_sweep([listed(), other], OK, T0)
    assert [r.ip for r in store.current_listings()] == [IP, "203.0.113.21"]
    assert [r.ip for r in store.current_listings("203.0.113.21")] == ["203.0.113.21"]


def test_clean_run_says_since_when_and_up_to_when_every_zone_was_clean(store: Store) -> None:
    zones = [ZEN, SPAMCOP]
    store.record_sweep([Clean(IP, ZEN), Clean(IP, SPAMCOP)], OK, T0)
    store.record_sweep([Clean(IP, ZEN)], OK, T0 + timedelta(hours=1))
    run = store.clean_run(IP, zones)
    assert run is not None
    assert (run.since, run.checked_at) == (T0, T0)  # spamcop was last seen clean at T0
    store.record_sweep([Clean(IP, SPAMCOP)], OK, T0 + timedelta(hours=2))
    run = store.clean_run(IP, zones)
    assert run is not None
    assert run.checked_at == T0 + timedelta(hours=1)


def test_listed_keys_are_the_pairs_whose_latest_answer_is_listed(store: Store) -> None:
    """The monitor's cheap read of which listings are known (so only new ones are confirmed)."""
    other = "203.0.113.21"
    other_listed = Listed(other, ZEN, ("127.0.0.3",), ("XBL",), Severity.CRITICAL, "XBL")
    store.record_sweep([Clean(IP, ZEN), Clean(other, ZEN)], OK, T0)
    assert store.listed_keys() == set()
    store.record_sweep(
        [listed(ZEN), Unknown(IP, SPAMCOP, "timeout"), other_listed], OK, T0 + timedelta(1)
    )
    assert store.listed_keys() == {(IP, ZEN), (other, ZEN)}
    assert store.listed_keys() == {
        (a.ip, a.zone) for a in store.latest_answers() if a.status is Status.LISTED
    }
    store.record_sweep([Clean(other, ZEN)], OK, T0 + timedelta(2))
    assert store.listed_keys() == {(IP, ZEN)}
