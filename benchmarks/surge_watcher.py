"""What the surge watcher costs per event on the acceptance path, and how much memory it holds.

Usage::

    .venv/bin/python benchmarks/surge_watcher.py [--events 1000000] [--seed 1] [--memory]

Synthetic relay traffic (seeded): 200 tenants, 5,000 destination domains, 24
source IPs, 1-3 recipients a message, one delivery outcome per recipient
(2 % hard bounces, 3 % deferrals), a returned bounce for 1 % of messages and
an ARF complaint for 0.05 %, over one virtual day; ``tick`` runs at every
virtual minute. Each minute's events are generated before its timed section,
so the numbers are the watcher's own cost. ``--memory`` repeats the run under
tracemalloc and reports what the watcher retains at the end (slower).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import resource
import sys
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from hrmonitor.core.alert import Alert
from hrmonitor.core.surge import (
    BounceReturned,
    DeliveryOutcome,
    FailedAddress,
    MessageAccepted,
    SurgeSettings,
)
from hrmonitor.services.surge.watcher import SurgeWatcher

START = datetime(2026, 11, 23, tzinfo=UTC)
Event = MessageAccepted | DeliveryOutcome | BounceReturned


async def _sink(alert: Alert) -> None:
    return None


def _minutes(total: int, seed: int) -> Iterator[tuple[datetime, list[Event]]]:
    """One virtual day of minutes, each (minute start, its events), ``total`` events in all."""
    rng = random.Random(seed)
    tenants = [f"t{i}" for i in range(200)]
    domains = [f"d{i}.example" for i in range(5000)]
    ips = [f"203.0.113.{i}" for i in range(24)]
    per_minute = max(1, total // 1440)
    produced, serial = 0, 0
    minute = 0
    while produced < total:
        at = START + timedelta(minutes=minute)
        events: list[Event] = []
        while len(events) < per_minute:
            serial += 1
            tenant = rng.choice(tenants)
            sender = f"u{rng.randrange(50)}@{tenant}.example"
            rcpts = tuple(
                f"r{rng.randrange(10**6)}@{rng.choice(domains)}" for _ in range(rng.randint(1, 3))
            )
            mid = f"<{serial}@{tenant}.example>"
            events.append(
                MessageAccepted(
                    at,
                    tenant,
                    sender,
                    rcpts,
                    message_id=mid,
                    client_ip="192.0.2.1",
                    spam_score=rng.random() * 4,
                )
            )
            for rcpt in rcpts:
                roll = rng.random()
                reason, hard = (
                    ("userunknown", True)
                    if roll < 0.02
                    else ("ratelimited", False)
                    if roll < 0.05
                    else ("delivered", False)
                )
                events.append(
                    DeliveryOutcome(at, tenant, sender, rcpt, rng.choice(ips), reason, hard, mid)
                )
            roll = rng.random()
            if roll < 0.01:
                events.append(
                    BounceReturned(
                        at,
                        sender,
                        (FailedAddress(rcpts[0], "mailboxfull", True),),
                        message_ids=(mid,),
                    )
                )
            elif roll < 0.0105:
                events.append(BounceReturned(at, sender, kind="arf", message_ids=(mid,)))
        yield at, events
        produced += len(events)
        minute += 1


def _feed(watcher: SurgeWatcher, events: list[Event]) -> None:
    accepted, delivered, returned = (
        watcher.message_accepted,
        watcher.delivery_outcome,
        watcher.bounce_returned,
    )
    for event in events:
        if type(event) is MessageAccepted:
            accepted(event)
        elif type(event) is DeliveryOutcome:
            delivered(event)
        else:
            returned(event)  # type: ignore[arg-type]


def run(total: int, seed: int) -> dict[str, float]:
    watcher = SurgeWatcher(SurgeSettings(), _sink)
    loop = asyncio.new_event_loop()
    event_seconds = tick_seconds = 0.0
    events = ticks = 0
    for at, minute in _minutes(total, seed):
        started = time.perf_counter()
        _feed(watcher, minute)
        event_seconds += time.perf_counter() - started
        started = time.perf_counter()
        loop.run_until_complete(watcher.tick(at + timedelta(minutes=1)))
        tick_seconds += time.perf_counter() - started
        ticks += 1
        events += len(minute)
    loop.close()
    snapshot = watcher.snapshot(START + timedelta(days=1))
    return {
        "events": events,
        "event_seconds": event_seconds,
        "events_per_second": events / event_seconds,
        "us_per_event": event_seconds / events * 1e6,
        "ticks": ticks,
        "ms_per_tick": tick_seconds / ticks * 1e3,
        "tracked_keys": snapshot.tracked_keys,
        "indexed_ids": snapshot.indexed_ids,
        "open_surges": len(snapshot.surges),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory", action="store_true", help="also measure retained memory (slow)")
    args = parser.parse_args(argv)
    result = run(args.events, args.seed)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"python {sys.version.split()[0]}, {result['events']:,.0f} events")
    print(f"events: {result['events_per_second']:,.0f}/s, {result['us_per_event']:.2f} us/event")
    print(f"ticks:  {result['ticks']:.0f}, {result['ms_per_tick']:.2f} ms each")
    print(f"state:  {result['tracked_keys']:.0f} keys, {result['indexed_ids']:.0f} indexed ids")
    print(f"open surges at the end: {result['open_surges']:.0f} (quiet traffic: expect 0)")
    print(f"max RSS (whole process, generator included): {rss:.0f} MiB")
    if args.memory:
        tracemalloc.start()
        watcher_result = _retained(args.events, args.seed)
        tracemalloc.stop()
        print(
            f"retained by the watcher after the run: {watcher_result / 2**20:.1f} MiB (tracemalloc)"
        )
    return 0


def _retained(total: int, seed: int) -> int:
    """Memory still allocated once the events are gone: the watcher's own state."""
    before = tracemalloc.get_traced_memory()[0]
    watcher = SurgeWatcher(SurgeSettings(), _sink)
    loop = asyncio.new_event_loop()
    for at, minute in _minutes(total, seed):
        _feed(watcher, minute)
        loop.run_until_complete(watcher.tick(at + timedelta(minutes=1)))
    loop.close()
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - before
    assert watcher.snapshot(START).tracked_keys > 0
    return retained


if __name__ == "__main__":
    raise SystemExit(main())
