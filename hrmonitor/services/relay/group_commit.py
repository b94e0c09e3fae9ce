"""Group commit: acceptances that arrive while a write runs go together into the next one.

Every waiter is released only after the transaction holding its items
committed, so a 250 is never sent for mail that is not durable, while one
fsync serves many concurrent messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Group commit: items submitted while a write runs go together into the next write."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]], max_batch: int) -> None:
        self._write = write
        self._max = max_batch
        self._task: asyncio.Task[None] | None = None

        self._pending: list[tuple[list[T], asyncio.Future[None]]] = []

    async def submit(self, items: list[T]) -> None:
        """Returns once ``items`` are written (all in the same transaction)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        while self._pending:
            batch: list[tuple[list[T], asyncio.Future[None]]] = []
            size = 0
            while self._pending and (not batch or size + len(self._pending[0][0]) <= self._max):
                entry = self._pending.pop(0)
                batch.append(entry)
                size += len(entry[0])
            try:
                await self._write([item for items, _ in batch for item in items])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
