"""Sending-limit counts shared between nodes: each node's totals, read by the others."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hrmonitor.adapters.store import Store
from hrmonitor.adapters.store.sender_counts import SenderCounts

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_a_node_reads_the_others_totals_not_its_own_and_then_only_what_changed(
    store: Store,
) -> None:
    a = SenderCounts(store.engine, "a")
    b = SenderCounts(store.engine, "b")
    a.publish([("s@x.test", T0, 3), ("t@x.test", T0, 1)])
    b.publish([("s@x.test", T0, 2)])
    assert sorted(b.read_peers(T0 - timedelta(days=1))) == [
        ("a", "s@x.test", T0, 3),
        ("a", "t@x.test", T0, 1),
    ]
    assert a.read_peers(T0 - timedelta(days=1)) == [("b", "s@x.test", T0, 2)]
    a.publish([("s@x.test", T0, 5)])  # a's new total for that minute, over the old one
    assert ("a", "s@x.test", T0, 5) in b.read_peers(T0 - timedelta(days=1))
    assert b.read_peers(T0 + timedelta(minutes=1)) == []  # minutes before `since` are left out


def test_prune_forgets_minutes_past_the_window(store: Store) -> None:
    a = SenderCounts(store.engine, "a")
    a.publish([("s@x.test", T0 - timedelta(days=2), 3), ("s@x.test", T0, 1)])
    assert a.prune(T0 - timedelta(days=1)) == 1
    assert SenderCounts(store.engine, "b").read_peers(T0 - timedelta(days=3)) == [
        ("a", "s@x.test", T0, 1)
    ]
