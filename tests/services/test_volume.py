"""Per-IP volume: counted in memory, written once per batch; warm-up caps exact across nodes.

Real stores (SQLite, and PostgreSQL when it is there); a second node is a
second Store and Controller on the same database, as a second daemon would be.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event

from hrmonitor.adapters.store import Store, open_store
from hrmonitor.core.feedback.replies import RemoteReply
from hrmonitor.core.model import IPState, WarmupStage
from hrmonitor.services.relay.source_ip import PoolPicker
from hrmonitor.services.rotation.controller import Controller
from hrmonitor.services.rotation.volume import block_size
from tests.services.test_controller import T0, ZONES, Alerts, pools, states, sweep

WARMING = "127.0.2.3"
CAP = 20
WARMUP = (WarmupStage(CAP), WarmupStage(100))


@contextmanager
def commits(store: Store) -> Iterator[list[int]]:
    """Counts the transactions committed on ``store``'s engine inside the block."""
    seen = [0]

    def on_commit(_conn: Any) -> None:
        seen[0] += 1

    event.listen(store.engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(store.engine, "commit", on_commit)


def node(store: Store, name: str) -> Controller:
    return Controller(store, pools(warmup=WARMUP), ZONES, Alerts(), node=name)


async def warming(store: Store) -> None:
    """Retire 127.0.2.2 by a listing, so the never-used standby 127.0.2.3 starts warming."""
    assert store.sync_pools(pools(warmup=WARMUP), T0 - timedelta(days=1)) == []
    first = node(store, "setup")
    await first.load(T0)
    await first.on_sweep(sweep(store, T0, ["127.0.2.2"]), T0)
    await first.close()
    assert states(store)[WARMING] is IPState.WARMING


async def sends_until_capped(controller: Controller, limit: int = 500, stop: bool = False) -> int:
    """Pick 127.0.2.3 for mail until this node may not any more (or ``limit`` sends with
    ``stop``); how many it sent."""
    picker = PoolPicker(controller.candidates, take=controller.take)
    others = frozenset({"127.0.2.1", "127.0.2.2"})
    sent = 0
    for _ in range(limit):
        chosen = await picker.pick("high-risk", "mx.example.net", T0, others)
        if chosen is None:
            await controller.drain()  # the block asked for in the background arrives
            chosen = await picker.pick("high-risk", "mx.example.net", T0, others)
            if chosen is None:
                return sent
        assert chosen == WARMING
        controller.on_reply(RemoteReply(250, "2.0.0", "ok", WARMING, "mx.example.net", T0))
        sent += 1
    assert stop, "the cap never stopped the picker"
    return sent


async def test_replies_are_counted_in_memory_and_written_in_one_transaction(
    store: Store,
) -> None:
    """200 delivered messages: no store transaction per message, one for the batch."""
    assert store.sync_pools(pools(), T0 - timedelta(days=1)) == []
    controller = Controller(store, pools(), ZONES, Alerts())
    await controller.load(T0)
    with commits(store) as seen:
        for n in range(200):
            ip = "127.0.2.1" if n % 2 else "127.0.2.2"
            controller.on_reply(RemoteReply(250, "2.0.0", "ok", ip, "mx.example.net", T0))
        await controller.drain()
    assert seen[0] == 1
    for ip in ("127.0.2.1", "127.0.2.2"):
        record = store.ip_record(ip)
        assert record is not None
        assert (record.sent_on(T0.date()), record.delivered_on(T0.date())) == (100, 100)
        assert record.last_sent_at == T0


async def test_two_nodes_together_send_exactly_the_warmup_cap(store: Store, store_url: str) -> None:
    """Two daemons on one store share a warming IP's daily cap: together exactly the cap."""
    await warming(store)
    second = open_store(store_url)
    try:
        a, b = node(store, "a"), node(second, "b")
        await a.load(T0)
        await b.load(T0)
        sent = {"a": 0, "b": 0}
        # Alternate small turns, so both nodes hold blocks at the same time.
        for _ in range(CAP):
            for name, controller in (("a", a), ("b", b)):
                picker = PoolPicker(controller.candidates, take=controller.take)
                chosen = await picker.pick(
                    "high-risk", "mx.example.net", T0, frozenset({"127.0.2.1", "127.0.2.2"})
                )
                if chosen is not None:
                    controller.on_reply(
                        RemoteReply(250, "2.0.0", "ok", chosen, "mx.example.net", T0)
                    )
                    sent[name] += 1
                await controller.drain()
        sent["a"] += await sends_until_capped(a)
        sent["b"] += await sends_until_capped(b)
        await a.close()
        await b.close()
    finally:
        second.close()
    assert sent["a"] + sent["b"] == CAP
    assert sent["a"] > 0
    assert sent["b"] > 0
    record = store.ip_record(WARMING)
    assert record is not None
    assert record.sent_on(T0.date()) == CAP


async def test_the_cap_holds_across_a_restart(store: Store) -> None:
    """A stopped node's unused block comes back; its restarted self sends the rest, no more."""
    await warming(store)
    before = node(store, "a")
    await before.load(T0)
    picker = PoolPicker(before.candidates, take=before.take)
    for _ in range(7):
        chosen = await picker.pick("high-risk", "mx.example.net", T0, frozenset({"127.0.2.1"}))
        if chosen != WARMING:
            await before.drain()
            continue
        before.on_reply(RemoteReply(250, "2.0.0", "ok", WARMING, "mx.example.net", T0))
    await before.close()
    record = store.ip_record(WARMING)
    assert record is not None
    sent_before = record.sent_on(T0.date())
    assert sent_before > 0
    after = node(store, "a")
    await after.load(T0)
    assert sent_before + await sends_until_capped(after) == CAP
    await after.close()


async def test_a_crashed_node_never_lets_the_cap_pass(store: Store) -> None:
    """Killed without a stop, its counts and block are lost: the cap binds early, not late."""
    await warming(store)
    crashed = node(store, "a")
    await crashed.load(T0)
    sent = await sends_until_capped(crashed, limit=5, stop=True)
    # no close(): what it counted since its last write is not in the store
    after = node(store, "a")
    await after.load(T0)
    total = sent + await sends_until_capped(after)
    assert CAP - 2 * block_size(CAP) <= total <= CAP
    await after.close()


def test_racing_reservations_never_exceed_the_cap(store: Store, store_url: str) -> None:
    """Four nodes asking for blocks at once: the grants add up to the cap exactly."""
    from tests.adapters.store.test_store_races import race

    assert store.sync_pools(pools(), T0) == []

    def reserve_all(node_store: Store, n: int) -> int:
        got = 0
        while granted := node_store.reserve_volume(f"n{n}", WARMING, T0.date(), 3, 50):
            got += granted
        return got

    assert sum(race(store_url, reserve_all)) == 50


def test_a_reservation_counts_what_a_node_sent_without_one(store: Store) -> None:
    """Sends from before the IP was warming count against its cap too."""
    from hrmonitor.adapters.store import VolumeCount

    assert store.sync_pools(pools(), T0) == []
    store.record_volumes("a", [VolumeCount(WARMING, T0.date(), sent=45, last_sent_at=T0)])
    assert store.reserve_volume("b", WARMING, T0.date(), 10, 50) == 5
    assert store.reserve_volume("a", WARMING, T0.date(), 10, 50) == 0
