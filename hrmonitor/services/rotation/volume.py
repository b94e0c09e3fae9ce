"""Per-IP volume counted in memory and written in batches; warm-up caps shared out in blocks.

Every remote reply counts a message sent (and a 2xx one delivered) from its
source IP. Those counts wait here and go to the store together, at most once
per ``flush_seconds`` (one transaction per batch, never one per message), and
at :meth:`VolumeLedger.flush` (a drain, a stop).

A warming IP sends only out of a block of its daily cap this node reserved in
the store (``Store.reserve_volume``): the picker's candidates show a warming
IP capped while this node holds no block, and every pick takes one message out
of it (:meth:`VolumeLedger.take`). The next block is asked for in the
background when half of one is used. The nodes' blocks together never exceed
the cap, so the cap holds across nodes and restarts; see docs/decisions.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

from hrmonitor.adapters.store.records import VolumeCount

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
# A block is a tenth of the day's cap (at least 1, at most 100): small enough that
# nodes share a low early-stage cap evenly, large enough that a big cap costs about
# ten reservations a day per node.
BLOCK_SHARE = 10
MAX_BLOCK = 100
# After the cluster's cap is used up for the day, ask again only this often.
RETRY_SECONDS = 60.0


class VolumeStore(Protocol):
    def record_volumes(self, node: str, counts: list[VolumeCount]) -> None: ...

    def reserve_volume(
        self, node: str, ip: str, day: date, want: int, cap: int, counts: list[VolumeCount]
    ) -> int: ...


@dataclass(slots=True)
class _Pending:
    sent: int = 0
    delivered: int = 0
    last_sent_at: datetime | None = None


@dataclass(slots=True)
class _Block:
    day: date
    granted: int = 0  # messages of the IP's cap this node reserved today
    taken: int = 0  # picks out of them
    sent: int = 0  # replies counted from the IP today (a send not picked here counts too)
    asking: bool = False
    denied_at: datetime | None = None  # the cluster's cap was used up when last asked

    @property
    def left(self) -> int:
        return max(0, self.granted - max(self.taken, self.sent))


def block_size(cap: int) -> int:
    return max(1, min(MAX_BLOCK, cap // BLOCK_SHARE))


class VolumeLedger:
    """This node's unwritten per-IP counts and its warm-up blocks; see the module docstring."""

    def __init__(self, store: VolumeStore, node: str, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._store = store
        self._node = node
        self._flush_seconds = flush_seconds
        self._pending: dict[tuple[str, date], _Pending] = {}
        self._blocks: dict[str, _Block] = {}
        self._timer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # --- counts -------------------------------------------------------------------------

    def count(self, ip: str, now: datetime, *, sent: int = 0, delivered: int = 0) -> None:
        """Count messages from ``ip`` at ``now`` (written with the next batch)."""
        key = (ip, now.astimezone(UTC).date())
        entry = self._pending.get(key)
        if entry is None:
            entry = self._pending[key] = _Pending()
        entry.sent += sent
        entry.delivered += delivered
        if sent and (entry.last_sent_at is None or now > entry.last_sent_at):
            entry.last_sent_at = now
        block = self._blocks.get(ip)
        if sent and block is not None and block.day == key[1]:
            block.sent += sent
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._flush_later())

    def _take_pending(self) -> list[VolumeCount]:
        pending, self._pending = self._pending, {}
        return [
            VolumeCount(ip, day, p.sent, p.delivered, p.last_sent_at)
            for (ip, day), p in pending.items()
        ]

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._flush_seconds)
        self._timer = None
        await self._write()

    async def _write(self, released: list[VolumeCount] | None = None) -> None:
        batch = self._take_pending() + (released or [])
        if not batch:
            return
        try:
            await asyncio.to_thread(self._store.record_volumes, self._node, batch)
        except Exception:
            # Counted again next time: losing counts would let a warming IP pass its cap.
            log.exception("could not store the volume of %d IP(s); retrying", len(batch))
            for c in batch:
                if c.sent or c.delivered:
                    self.count(c.ip, c.last_sent_at or _noon(c.day), sent=c.sent,
                               delivered=c.delivered)  # fmt: skip

    async def flush(self, *, release: bool = False) -> None:
        """Write the counts now (and with ``release``, hand back unused warm-up blocks)."""
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        released = []
        if release:
            released = [
                VolumeCount(ip, block.day, released=block.left)
                for ip, block in self._blocks.items()
                if block.left
            ]
            self._blocks.clear()
        await self._write(released)

    # --- warm-up blocks -----------------------------------------------------------------

    def left(self, ip: str, now: datetime) -> int:
        """How many more messages this node may send today from warming ``ip``."""
        block = self._blocks.get(ip)
        if block is None or block.day != now.astimezone(UTC).date():
            return 0
        return block.left

    def take(self, ip: str, now: datetime, cap: int) -> bool:
        """Use one message of ``ip``'s block; False (and a block asked for) if there is none."""
        day = now.astimezone(UTC).date()
        block = self._blocks.get(ip)
        if block is None or block.day != day:
            block = self._blocks[ip] = _Block(day)
        taken = block.left > 0
        if taken:
            block.taken += 1
        if block.left * 2 < block_size(cap):
            self.ask(ip, now, cap)
        return taken

    def ask(self, ip: str, now: datetime, cap: int) -> None:
        """Ask the store for the next block of ``ip`` in the background (once at a time)."""
        day = now.astimezone(UTC).date()
        block = self._blocks.get(ip)
        if block is None or block.day != day:
            block = self._blocks[ip] = _Block(day)
        if block.asking:
            return
        if block.denied_at is not None and (now - block.denied_at).total_seconds() < RETRY_SECONDS:
            return
        block.asking = True
        task = asyncio.get_running_loop().create_task(self._reserve(ip, block, now, cap))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reserve(self, ip: str, now: datetime, cap: int) -> int:
        """Reserve a block of ``ip`` now and wait for it; the messages this node may send."""
        self.ask(ip, now, cap)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        return self.left(ip, now)

    async def _reserve(self, ip: str, block: _Block, now: datetime, cap: int) -> None:
        try:
            # The unwritten counts go in the same transaction: the cluster's total
            # must include every send of this node before it hands out more.
            batch = self._take_pending()
            try:
                granted = await asyncio.to_thread(
                    self._store.reserve_volume, self._node, ip, block.day, block_size(cap), cap,
                    batch,
                )  # fmt: skip
            except Exception:
                for c in batch:
                    self.count(c.ip, c.last_sent_at or _noon(c.day), sent=c.sent,
                               delivered=c.delivered)  # fmt: skip
                raise
            block.granted += granted
            block.denied_at = None if granted else now
            if not granted:
                log.info("%s reached its warm-up cap of %d for %s", ip, cap, block.day)
        except Exception:
            log.exception("could not reserve warm-up volume for %s", ip)
        finally:
            block.asking = False


def _noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
