"""Group commit: writes that arrive while a write runs go together into the next one.

Every waiter is released only after the transaction holding its items
committed, so a 250 is never sent for mail that is not durable, while one
fsync serves many concurrent messages.

The relay keeps one group commit for everything it writes as it works
(:func:`queue_writes`): new messages, the bounce kinds found after their 250s
and attempt outcomes share a transaction, so the store pays one transaction
per batch, not one per kind of write. Items of different *lanes* (here: their
type) can share a batch; if such a batch fails, each lane is written again on
its own, so that one lane's failure (a message the store refuses) is not
reported to the others' waiters, whose writes may well succeed alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from hrmonitor.adapters.store.queue.repository import QueueRepository, QueueWrite
from hrmonitor.services.relay.settings import StoreCall

T = TypeVar("T")

_Entry = tuple[list[T], "asyncio.Future[None]"]


class GroupCommit(Generic[T]):
    """Group commit: items submitted while a write runs go together into the next write.

    ``lane``: what kind of write an item is (every item of one ``submit`` must be of
    one lane). A failed batch of several lanes is retried lane by lane.
    """

    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[None]],
        max_batch: int,
        lane: Callable[[T], Hashable] | None = None,
    ) -> None:
        self._write = write
        self._max = max_batch
        self._lane = lane
        self._task: asyncio.Task[None] | None = None

        self._pending: list[_Entry[T]] = []

    async def submit(self, items: Sequence[T]) -> None:
        """Returns once ``items`` are written (all in the same transaction)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((list(items), future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        while self._pending:
            batch: list[_Entry[T]] = []
            size = 0
            while self._pending and (not batch or size + len(self._pending[0][0]) <= self._max):
                entry = self._pending.pop(0)
                batch.append(entry)
                size += len(entry[0])
            try:
                await self._write([item for items, _ in batch for item in items])
            except Exception as exc:
                lanes = self._lanes(batch)  # only a failure needs them
                if len(lanes) < 2:
                    _settle(batch, exc)
                    continue
                for entries in lanes.values():  # each on its own: one lane's error is its own
                    try:
                        await self._write([item for items, _ in entries for item in items])
                    except Exception as lane_exc:
                        _settle(entries, lane_exc)
                    else:
                        _settle(entries, None)
            else:
                _settle(batch, None)

    def _lanes(self, batch: list[_Entry[T]]) -> dict[Hashable, list[_Entry[T]]]:
        lanes: dict[Hashable, list[_Entry[T]]] = {}
        for entry in batch:
            items = entry[0]
            key = self._lane(items[0]) if self._lane is not None and items else None
            lanes.setdefault(key, []).append(entry)
        return lanes


def _settle(entries: list[_Entry[T]], exc: Exception | None) -> None:
    for _, future in entries:
        if future.done():
            continue
        if exc is None:
            future.set_result(None)
        else:
            future.set_exception(exc)


def queue_writes(
    queue: QueueRepository, store: StoreCall, max_batch: int
) -> GroupCommit[QueueWrite]:
    """The relay's one group commit over the queue (``QueueRepository.write``), lanes by type."""

    async def write(batch: list[QueueWrite]) -> None:
        await store(queue.write, batch)

    return GroupCommit[QueueWrite](write, max_batch, lane=type)
