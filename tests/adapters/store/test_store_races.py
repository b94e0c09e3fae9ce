"""Several daemons on one database at the same moment: each decision is taken exactly once.

Each worker thread has its own Store (its own engine and connections), as a second
node would; a barrier lines them up so their transactions really overlap. The
assertions hold whatever the interleaving, so nothing here depends on timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from hrmonitor.adapters.store import Store, open_store
from hrmonitor.core.model import (
    AuditEvent,
    IPState,
    Listed,
    Pool,
    PoolPolicy,
    RiskClass,
    Severity,
    ZoneHealth,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
IP = "203.0.113.20"
NODES = 4
T = TypeVar("T")


def race(url: str, work: Callable[[Store, int], T]) -> list[T]:
    """Run ``work`` on NODES stores at once; their results in node order."""
    stores = [open_store(url) for _ in range(NODES)]
    barrier = threading.Barrier(NODES, timeout=60)

    def node(n: int) -> T:
        barrier.wait()
        return work(stores[n], n)

    try:
        with ThreadPoolExecutor(NODES) as pool:
            return list(pool.map(node, range(NODES)))
    finally:
        for store in stores:
            store.close()


def registered(store: Store) -> Store:
    pool = Pool("high-risk", RiskClass.HIGH, (IP,), (), PoolPolicy(), timedelta(minutes=15))
    assert store.sync_pools([pool], T0) == []
    return store


def test_racing_nodes_retire_an_ip_once(store: Store, store_url: str) -> None:
    registered(store)

    def retire(node: Store, n: int) -> bool:
        event = AuditEvent(T0, IP, "high-risk", "state", "active", "retired", "listed", f"node-{n}")
        return node.transition_ip(IP, IPState.ACTIVE, IPState.RETIRED, event)

    assert sorted(race(store_url, retire)) == [False] * (NODES - 1) + [True]
    assert len(store.audit_trail(IP)) == 1


def test_racing_nodes_send_an_alert_once(store: Store, store_url: str) -> None:
    def claim(node: Store, _n: int) -> bool:
        return node.claim_alert(
            "pool-exhausted:high-risk",
            "pool-exhausted",
            Severity.CRITICAL,
            {},
            T0,
            timedelta(hours=1),
        )

    assert sorted(race(store_url, claim)) == [False] * (NODES - 1) + [True]


def test_racing_sweeps_open_one_listing_interval(store: Store, store_url: str) -> None:
    answer = Listed(IP, "spamhaus-zen", ("127.0.0.2",), ("SBL",), Severity.CRITICAL)

    def sweep(node: Store, _n: int) -> int:
        return len(node.record_sweep([answer], {"spamhaus-zen": ZoneHealth.OK}, T0).listed)

    assert sum(race(store_url, sweep)) == 1
    assert len(store.listing_history(IP)) == 1


def test_racing_suspensions_leave_one_open_suspension(store: Store, store_url: str) -> None:
    registered(store)

    def suspend(node: Store, n: int) -> None:
        until = T0 + timedelta(minutes=10 * (n + 1))
        node.add_suspension(IP, "outlook.com", "421", {}, T0, until, f"node-{n}")

    race(store_url, suspend)
    (only,) = store.active_suspensions(T0)
    assert only.until == T0 + timedelta(minutes=10 * NODES)  # the longest evidence wins


def test_racing_sends_lose_no_count(store: Store, store_url: str) -> None:
    registered(store)

    def send(node: Store, _n: int) -> None:
        for _ in range(5):
            node.record_sent(IP, T0)

    race(store_url, send)
    record = store.ip_record(IP)
    assert record is not None
    assert record.sent_on(T0.date()) == 5 * NODES


def test_racing_nodes_register_the_same_pools_without_failing(store: Store, store_url: str) -> None:
    pool = Pool(
        "high-risk", RiskClass.HIGH, (IP,), ("203.0.113.21",), PoolPolicy(), timedelta(minutes=15)
    )

    def sync(node: Store, _n: int) -> list[str]:
        return node.sync_pools([pool], T0)

    assert race(store_url, sync) == [[]] * NODES
    assert [(r.ip, r.state) for r in store.ip_records()] == [
        (IP, IPState.ACTIVE),
        ("203.0.113.21", IPState.STANDBY),
    ]
    assert len(store.pool_history(IP)) == 1
