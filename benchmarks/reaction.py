"""Reaction time of the rotation controller, against real peers on loopback.

Run from the repository root (needs the ``rbldnsd`` binary)::

    .venv/bin/python benchmarks/reaction.py                # 2s sweeps, 5 listings
    .venv/bin/python benchmarks/reaction.py --interval 5 --trials 3

One process holds the whole chain: rbldnsd serving ``bl.test`` -> the DNSBL
engine -> the monitor, sweeping the high-risk pool every ``--interval``
seconds on the system clock -> the store (SQLite) -> the controller -> the
queue runner, delivering a steady stream of high-risk mail (one message every
20 ms) to an aiosmtpd MX that stamps each arrival with ``time.monotonic()``.

1. **Listing**: at a random point of the sweep cycle an active high-risk IP is
   added to ``bl.test`` by replacing its zone file (temp file + rename + HUP).
   Measured: zone-file change -> the last message that arrived from that IP,
   and -> the IP's retirement. The bound is one sweep interval + 2 s.
2. **Blocklist-naming 5xx**: the MX answers ``554 5.7.1 ... blocked using
   bl.test`` for one recipient. Measured: from the relay handing the reply to
   the controller (``on_reply``) to that IP being ineligible for that provider
   in the picker's view; and whether the next attempt to that provider used
   another IP. The bound is 100 ms and "before the next attempt".

A HAND-BUILT COMPOSITION, on purpose and labelled so in its output: it answers
a question the daemon as a process cannot, how long the controller's
in-memory decision takes (microseconds, read inside ``on_reply``), and it
routes every message high-risk with a stubbed MX lookup so that only the
rotation path is timed. Its figures are the controller's reaction, not the
relay's throughput; for the product as run see ``benchmarks/relay.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NORMAL = ("127.0.5.10", "127.0.5.11")
HIGH = ("127.0.5.20", "127.0.5.21", "127.0.5.22")
STANDBY = ("127.0.5.23", "127.0.5.24", "127.0.5.25", "127.0.5.26", "127.0.5.27")
SINK_HOST = "127.0.5.50"


@dataclass
class Stamps:
    """Arrival time of every message at the MX, by source address."""

    by_peer: dict[str, list[float]] = field(default_factory=dict)

    def add(self, peer: str) -> None:
        self.by_peer.setdefault(peer, []).append(time.monotonic())


async def run(interval: float, trials: int, seed: int) -> dict[str, Any]:
    from aiosmtpd.smtp import SMTP

    from hrmonitor.adapters.clock import SystemClock
    from hrmonitor.adapters.dns.dnsbl.engine import DnsblEngine
    from hrmonitor.adapters.rule_files import load_feedback_files
    from hrmonitor.adapters.smtp_out import Connections, OutboundSettings
    from hrmonitor.adapters.store import open_store
    from hrmonitor.adapters.store.queue.repository import QueueRepository
    from hrmonitor.core.alert import Alert
    from hrmonitor.core.delivery.envelope import Submission
    from hrmonitor.core.delivery.retry import RetryPolicy
    from hrmonitor.core.feedback.replies import RemoteReply
    from hrmonitor.core.model import IPState, Pool, PoolPolicy, RiskClass
    from hrmonitor.core.mx import MxHost, MxOutcome, MxResult
    from hrmonitor.core.rotation.selection import NoEligibleIp, choose_source_ip
    from hrmonitor.core.routing.decide import RouteDecision
    from hrmonitor.services.monitor import Monitor
    from hrmonitor.services.relay.runner import Relay, RelaySettings
    from hrmonitor.services.relay.source_ip import PoolPicker
    from hrmonitor.services.rotation.controller import Controller
    from tests.fixtures.rbldnsd import STANDARD_FILES, STANDARD_ZONES, Rbldnsd

    rng = random.Random(seed)
    clock = SystemClock()
    stamps = Stamps()
    blocked: dict[str, str] = {}  # rcpt -> the 5xx to answer

    class Handler:
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                              options: list[str]) -> str:  # fmt: skip
            reply = blocked.get(address.lower())
            if reply:
                return reply
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 ok"

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            stamps.add(session.peer[0])
            return "250 2.0.0 ok"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(), hostname="mx.sink.test", loop=loop), host=SINK_HOST, port=0
    )
    sink_port = int(server.sockets[0].getsockname()[1])

    async def mx(domain: str) -> MxResult:
        return MxResult(domain, MxOutcome.HOSTS, (MxHost(0, SINK_HOST),))

    async def route(sub: Submission) -> RouteDecision:
        return RouteDecision("high-risk", RiskClass.HIGH, (), {})

    pools = [
        Pool("normal", RiskClass.NORMAL, NORMAL, (), PoolPolicy(), timedelta(seconds=interval)),
        Pool("high-risk", RiskClass.HIGH, HIGH, STANDBY,
             PoolPolicy(min_active=3, cooldown=timedelta(hours=1)), timedelta(seconds=interval)),
    ]  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="hrm-reaction-"))
    rbldnsd = Rbldnsd(STANDARD_ZONES, STANDARD_FILES, "127.0.0.1", None)
    store = open_store(f"sqlite:///{work / 'hrmonitor.db'}")
    store.upgrade()
    assert store.sync_pools(pools, clock.now()) == []
    engine = DnsblEngine([rbldnsd.host], rbldnsd.port, 0.5, 2)
    await engine.open()
    alerts: list[Alert] = []

    class Sink:
        async def emit(self, alert: Alert) -> None:
            alerts.append(alert)

        async def emit_batch(self, batch: Sequence[Alert]) -> None:
            alerts.extend(batch)

    monitor = Monitor(engine, [rbldnsd.catalogue()["bl"]], store, clock, Sink().emit_batch, pools)
    controller = Controller(
        store,
        pools,
        ["bl"],
        Sink(),
        feedback_rules=load_feedback_files([ROOT / "rules/feedback.toml"]),
    )
    monitor.on_sweep(controller.on_sweep_report)
    await controller.load(clock.now())

    reply_latency: list[float] = []
    next_attempt_ok: list[bool] = []

    def on_reply(reply: RemoteReply) -> None:
        started = time.perf_counter()
        controller.on_reply(reply)
        if reply.code >= 500 and "blocked using" in reply.text:
            now = clock.now()
            offered = controller.candidates_now("high-risk", now)
            reply_latency.append(time.perf_counter() - started)
            picks = [choose_source_ip(offered, "generic", now, n) for n in range(len(offered))]
            next_attempt_ok.append(
                all(isinstance(p, NoEligibleIp) or p.ip != reply.source_ip for p in picks)
            )

    connections = Connections(
        OutboundSettings(
            port=sink_port, helo_name="relay.test", connect_timeout=5, command_timeout=10
        )
    )
    relay = Relay(
        queue=QueueRepository(store.engine),
        route=route,
        picker=PoolPicker(controller.candidates),
        mx=mx,
        sender=connections,
        clock=clock,
        settings=RelaySettings(
            hostname="relay.test",
            pool_ips={p.name: frozenset(p.all_ips) for p in pools},
            retry=RetryPolicy.of([timedelta(minutes=10)], timedelta(hours=2)),
            poll_seconds=0.1,
        ),
        on_reply=on_reply,
    )
    runner = asyncio.create_task(relay.run())
    stop = asyncio.Event()
    sent = 0

    async def load() -> None:
        nonlocal sent
        while not stop.is_set():
            sent += 1
            rcpt = f"m{sent}@rcpt.test"
            await relay.accept(
                Submission(
                    "lab",
                    "127.0.0.5",
                    "client.test",
                    "a@lab.test",
                    (rcpt,),
                    b"Subject: r\r\n\r\nx\r\n",
                    clock.now(),
                )
            )
            await asyncio.sleep(0.02)

    async def sweeper() -> None:
        while not stop.is_set():
            began = time.monotonic()
            await monitor.sweep_pool("high-risk")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))

    tasks = [asyncio.create_task(load()), asyncio.create_task(sweeper())]
    results: list[dict[str, float]] = []
    try:
        await asyncio.sleep(2 * interval)
        for _ in range(trials):
            active = [r.ip for r in store.ip_records("high-risk") if r.state is IPState.ACTIVE]
            victim = rng.choice(active)
            await asyncio.sleep(rng.uniform(0, interval))  # anywhere in the sweep cycle
            changed = time.monotonic()
            await asyncio.to_thread(rbldnsd.list_ip, victim)
            retired_at = None
            deadline = changed + interval + 5
            while time.monotonic() < deadline:
                if retired_at is None and store.ip_record(victim).state is IPState.RETIRED:  # type: ignore[union-attr]
                    retired_at = time.monotonic()
                await asyncio.sleep(0.01)
            last = max(
                (t for t in stamps.by_peer.get(victim, []) if t >= changed - 5), default=changed
            )
            results.append({
                "ip_retired_s": (retired_at or float("nan")) - changed,
                "last_message_s": max(0.0, last - changed),
            })  # fmt: skip
        # the blocklist-naming 5xx: one recipient answers 554 naming bl.test
        for n in range(20):
            rcpt = f"blocked{n}@rcpt.test"
            blocked[rcpt] = "554 5.7.1 Service unavailable; client host blocked using bl.test"
            await relay.accept(
                Submission(
                    "lab",
                    "127.0.0.5",
                    "client.test",
                    "a@lab.test",
                    (rcpt,),
                    b"Subject: b\r\n\r\nx\r\n",
                    clock.now(),
                )
            )
            await asyncio.sleep(0.05)
        await asyncio.sleep(1)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await relay.stop()
        await runner
        await controller.drain()
        await connections.close()
        await engine.close()
        server.close()
        store.close()
        rbldnsd.stop()
    latencies_ms = sorted(x * 1000 for x in reply_latency)
    return {
        "interval_s": interval,
        "bound_s": interval + 2,
        "listings": results,
        "worst_last_message_s": max(r["last_message_s"] for r in results),
        "worst_retired_s": max(r["ip_retired_s"] for r in results),
        "replies": len(latencies_ms),
        "reply_to_suspension_ms": {
            "median": statistics.median(latencies_ms) if latencies_ms else None,
            "max": latencies_ms[-1] if latencies_ms else None,
        },
        "next_attempt_avoided_ip": all(next_attempt_ok) if next_attempt_ok else None,
        "messages_sent": sent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interval", type=float, default=2.0, help="sweep interval, seconds")
    parser.add_argument("--trials", type=int, default=5, help="listings to measure")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(
        "composition: hand-built in this process (monitor, controller, relay; routing and MX"
        " stubbed), not `hrmonitor run`: it times the controller's reaction only",
        flush=True,
    )
    outcome = asyncio.run(run(args.interval, args.trials, args.seed))
    for row in outcome["listings"]:
        print(
            f"listing: retired after {row['ip_retired_s']:.2f}s, "
            f"last message from it {row['last_message_s']:.2f}s after the zone change"
        )
    print(
        f"worst: last message {outcome['worst_last_message_s']:.2f}s "
        f"(bound {outcome['bound_s']:.1f}s = interval + 2s)"
    )
    latency = outcome["reply_to_suspension_ms"]
    print(
        f"blocklist 5xx -> suspension: {outcome['replies']} replies, median "
        f"{latency['median']:.3f} ms, max {latency['max']:.3f} ms (bound 100 ms); next attempt "
        f"avoided the IP: {outcome['next_attempt_avoided_ip']}"
    )
    ok = (
        outcome["worst_last_message_s"] <= outcome["bound_s"]
        and (latency["max"] or 0) < 100
        and outcome["next_attempt_avoided_ip"]
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
