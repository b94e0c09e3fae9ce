"""What rotation does outside memory: store writes, alerts and DNSBL re-checks.

Work that must not hold up its caller (the relay's synchronous reply
callback, a decision that holds the controller's lock) runs in background
tasks (:meth:`RotationEffects.spawn`): a failure there is logged, never
raised; :meth:`RotationEffects.drain` waits for all of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol

from hrmonitor.core.alert import Alert, AlertKind
from hrmonitor.core.rotation.suspension import Suspension
from hrmonitor.services.rotation.store import RotationStore

log = logging.getLogger(__name__)


class AlertSink(Protocol):
    async def emit(self, alert: Alert) -> object: ...


Recheck = Callable[[str], Awaitable[object]]


class RotationEffects:
    """The controller's writes, alerts, re-checks and background tasks."""

    def __init__(self, store: RotationStore, alerts: AlertSink, recheck: Recheck | None) -> None:
        self._store = store
        self._alerts = alerts
        self._recheck = recheck
        self._tasks: set[asyncio.Task[None]] = set()

    async def emit(
        self, alerts: Sequence[Alert], *, latched: bool = False, told: list[Alert] | None = None
    ) -> None:
        """Send a decision's alerts; ``latched``: alerts the exhaustion latch let through.

        ``told`` given (a sweep's decision), the alerts go there instead: the monitor
        merges them with its listing alerts and sends one batch. Otherwise (no monitor
        in between: a controller driven directly) they go out as they are.
        """
        wanted = [
            alert
            for alert in alerts
            # the controller's latch tells these (core.rotation.exhaustion)
            if alert.kind is not AlertKind.POOL_EXHAUSTED or latched
        ]
        if told is not None:
            told.extend(wanted)
            return
        for alert in wanted:
            try:
                await self._alerts.emit(alert)
            except Exception:
                log.exception("alert %s could not be sent", alert.key)

    async def store_suspension(self, s: Suspension) -> None:
        await asyncio.to_thread(
            self._store.add_suspension,
            s.ip,
            s.scope,
            s.reason,
            dict(s.evidence),
            s.since,
            s.until,
            s.actor,
        )

    async def lift_suspension(
        self, ip: str, scope: str, now: datetime, actor: str, reason: str
    ) -> bool:
        return await asyncio.to_thread(self._store.lift_suspension, ip, scope, now, actor, reason)

    async def ask_recheck(self, ip: str) -> None:
        if self._recheck is None:
            return
        try:
            await self._recheck(ip)
        except Exception:
            log.exception("DNSBL re-check of %s failed", ip)

    def spawn(self, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("rotation background work failed")

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the background work (store writes, alerts, re-checks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
