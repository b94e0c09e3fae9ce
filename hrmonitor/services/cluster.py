"""Several nodes on one store: this node's heartbeat, its roles, and a dead node's claims.

Every ``heartbeat`` the node renews its row, hands the claims of nodes silent for
longer than the lease back to the queue (and wakes its runner), tells the relay
how many nodes share the per-destination caps, and takes or
renews each role (``sweeper``: the DNSBL sweeps; ``rotation``: the controller's
tick). The store settles every race on the database server's clock; this
service only keeps, per role, until when this node may act on it: the moment it
asked plus the lease less one heartbeat, so a node whose renewals stall stops
acting before another node can have taken the role.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from hrmonitor.core.model import Clock

log = logging.getLogger(__name__)


class NodeStore(Protocol):
    """What the cluster needs from the store (``adapters.store.nodes.NodeRegistry``)."""

    name: str

    def beat(self) -> None: ...

    def hold(self, role: str) -> bool: ...

    def take_over_claims(self, due: datetime) -> int: ...

    def live_count(self) -> int: ...

    def leave(self) -> None: ...


RoleGained = Callable[[str], Coroutine[Any, Any, None]]


class Cluster:
    """This node's part in the cluster; see the module docstring."""

    def __init__(
        self,
        nodes: NodeStore,
        roles: Sequence[str],
        *,
        lease: timedelta,
        heartbeat: timedelta,
        clock: Clock,
        on_claims_freed: Callable[[], None] = lambda: None,
        on_role_gained: RoleGained | None = None,
        on_members: Callable[[int], None] = lambda nodes: None,
    ) -> None:
        self._nodes = nodes
        self._roles = tuple(roles)
        self._lease = lease.total_seconds()
        self._heartbeat = heartbeat.total_seconds()
        self._clock = clock
        self._on_claims_freed = on_claims_freed
        self._on_role_gained = on_role_gained
        self._on_members = on_members
        self._held_until: dict[str, float] = {}
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._gains: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return self._nodes.name

    def holds(self, role: str) -> bool:
        """True while this node may act on ``role`` (its lease, less a heartbeat, runs)."""
        return time.monotonic() < self._held_until.get(role, 0.0)

    def held(self) -> list[str]:
        return [role for role in self._roles if self.holds(role)]

    async def beat(self) -> None:
        """One round: heartbeat, a dead node's claims, every role. Survives a store error."""
        try:
            await asyncio.to_thread(self._nodes.beat)
            freed = await asyncio.to_thread(self._nodes.take_over_claims, self._clock.now())
            self._on_members(await asyncio.to_thread(self._nodes.live_count))
        except Exception:
            log.exception("node %s: heartbeat failed", self.name)
            return
        if freed:
            log.warning(
                "node %s: took over %d recipient(s) claimed by a node silent for over %gs",
                self.name,
                freed,
                self._lease,
            )
            self._on_claims_freed()
        for role in self._roles:
            await self._renew(role)

    async def _renew(self, role: str) -> None:
        asked = time.monotonic()
        had = self.holds(role)
        try:
            ours = await asyncio.to_thread(self._nodes.hold, role)
        except Exception:
            log.exception("node %s: could not renew role %s", self.name, role)
            return
        if not ours:
            if had:
                log.warning("node %s: lost role %s to another node", self.name, role)
            self._held_until.pop(role, None)
            return
        self._held_until[role] = asked + self._lease - self._heartbeat
        if not had:
            log.info("node %s: now holds role %s", self.name, role)
            if self._on_role_gained is not None:
                task: asyncio.Task[None] = asyncio.create_task(self._on_role_gained(role))
                self._gains.add(task)
                task.add_done_callback(self._gains.discard)

    def start(self) -> None:
        """Beat every ``heartbeat`` in the background until :meth:`stop`."""
        self._task = asyncio.create_task(self._run(), name="cluster-heartbeat")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            await self.beat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._heartbeat)

    async def stop(self) -> None:
        """Stop beating, let role hand-overs in progress end, give the roles up at once."""
        self._stopping.set()
        if self._task is not None:
            await self._task
        if self._gains:
            await asyncio.gather(*self._gains, return_exceptions=True)
        self._held_until.clear()
        try:
            await asyncio.to_thread(self._nodes.leave)
        except Exception:
            log.exception(
                "node %s: could not sign off; its roles expire after the lease", self.name
            )
