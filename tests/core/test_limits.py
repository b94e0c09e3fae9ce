"""The sending-limit window counts like a naive sum over the last hour and day, to the minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.routing.limits import DAY, HOUR, PeerCounts, RecipientWindow

T0 = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)


def minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


events = st.lists(
    st.tuples(st.integers(0, 3 * 24 * 3600), st.integers(1, 50)), min_size=1, max_size=60
)


@given(events, st.integers(0, 4 * 24 * 3600), st.booleans())
def test_counts_equal_a_naive_sum_over_the_minutes_of_each_window(
    raw: list[tuple[int, int]], probe: int, in_order: bool
) -> None:
    """In arrival order, or in any order (concurrent sessions; history counted again)."""
    window = RecipientWindow()
    history = [(T0 + timedelta(seconds=s), n) for s, n in raw]
    if in_order:
        history.sort()
    for at, n in history:
        window.record("a@contoso.test", n, at)
    now = max([at for at, _ in history] + [T0 + timedelta(seconds=probe)])

    def naive(span: timedelta) -> int:
        first, last = minute(now - span), minute(now)
        return sum(n for at, n in history if first < minute(at) <= last)

    assert window.counts("A@Contoso.test", now) == (naive(HOUR), naive(DAY))


def test_a_sender_with_a_day_of_traffic_is_counted_per_minute_not_per_message() -> None:
    window = RecipientWindow()
    for second in range(0, 24 * 3600, 2):  # 43,200 messages
        window.record("bulk@contoso.test", 1, T0 + timedelta(seconds=second))
    now = T0 + timedelta(hours=24) - timedelta(seconds=1)
    assert window.counts("bulk@contoso.test", now) == (30 * 60, 43_200)
    assert len(window._senders["bulk@contoso.test"].minutes) == 1440


def test_null_sender_and_prune() -> None:
    window = RecipientWindow()
    window.record("", 5, T0)
    assert window.counts("", T0) == (0, 0)
    window.record("a@contoso.test", 3, T0)
    window.prune(T0 + DAY + timedelta(minutes=1))
    assert window.counts("a@contoso.test", T0 + DAY + timedelta(minutes=1)) == (0, 0)
    assert not window._senders


def test_a_sender_with_or_without_brackets_is_one_sender_and_brackets_alone_are_null() -> None:
    window = RecipientWindow()
    window.record("<A@Contoso.test>", 2, T0)
    window.record(" a@contoso.test ", 3, T0)
    window.record("<>", 7, T0)
    assert window.counts("a@CONTOSO.test", T0 + timedelta(minutes=1)) == (5, 5)
    assert window.counts("<>", T0 + timedelta(minutes=1)) == (0, 0)
    assert list(window._senders) == ["a@contoso.test"]


@given(st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 5), st.integers(0, 50))))
def test_peer_counts_are_each_nodes_highest_total_per_minute_however_often_read(
    publications: list[tuple[str, int, int]],
) -> None:
    """A node's published total per minute only grows; reading it again adds nothing."""
    peers = PeerCounts()
    highest: dict[tuple[str, int], int] = {}
    for node, minute, total in publications + publications:  # every row read twice
        peers.merge(node, "s@x.test", T0 + timedelta(minutes=minute), total)
        highest[(node, minute)] = max(highest.get((node, minute), 0), total)
    last_hour, last_day = peers.counts("s@x.test", T0 + timedelta(minutes=5))
    assert last_hour == last_day == sum(highest.values())
