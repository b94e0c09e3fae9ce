"""IPs joining or leaving a pool's config while the daemon runs (SIGHUP): audited moves.

A reload never edits states behind rotation's back; each IP it adds or removes
is one compare-and-set transition or one audit event by ``reload``, so
``hrmonitor history IP`` says what the config did and when:

- **removed**: an IP in rotation or standby is retired (it leaves the picker's
  view at once; an attempt already in flight finishes, mail queued for its pool
  goes out from the pool's other IPs). A retired or disabled IP keeps its state;
  the removal is recorded.
- **added**: registered as at start-up (``sync_pools``: ``ips`` active,
  ``standby`` standby), then: an IP of ``ips`` that would need a warm-up if
  promoted (the pool has a schedule and the IP is new or idle) starts warming;
  an IP a reload retired earlier returns to its configured role; any other
  state (retired on a listing, disabled by an operator) is kept, and the
  addition recorded.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from hrmonitor.adapters.store.records import IpRecord
from hrmonitor.core.model import AuditEvent, IPState, Pool
from hrmonitor.core.rotation.warmup import needs_warmup
from hrmonitor.services.rotation.store import RotationStore

log = logging.getLogger(__name__)

RELOAD_ACTOR = "reload"
_TAKEN_OUT = (IPState.ACTIVE, IPState.WARMING, IPState.STANDBY)


class PoolMembership:
    """Applies one reload's additions and removals to the store; see the module docstring."""

    def __init__(self, store: RotationStore) -> None:
        self._store = store

    async def remove(
        self, ip: str, pool: str, record: IpRecord | None, now: datetime, actor: str
    ) -> str:
        """``ip`` left ``pool``'s config: retire it if it could send; the log line."""
        if record is None:
            return f"pool {pool}: {ip} removed from the config (never stored)"
        reason = f"removed from pool {pool} in the config"
        evidence: dict[str, object] = {"config": "removed", "state": str(record.state)}
        if record.state in _TAKEN_OUT:
            event = AuditEvent(now, ip, pool, "state", str(record.state), str(IPState.RETIRED),
                               reason, actor, evidence)  # fmt: skip
            if await self._transition(ip, record.state, IPState.RETIRED, event):
                return f"pool {pool}: {ip} {reason}: {record.state} -> retired"
            return f"pool {pool}: {ip} {reason}: its state changed meanwhile, not retired"
        stays = f"{reason}; stays {record.state}"
        await self._record(
            AuditEvent(now, ip, pool, "config", str(record.state), None, stays, actor, evidence)
        )
        return f"pool {pool}: {ip} {reason}: stays {record.state}"

    async def add(
        self, ip: str, pool: Pool, record: IpRecord | None, now: datetime, actor: str
    ) -> str:
        """``ip`` joined ``pool``'s config (and the store, by ``sync_pools``); the log line."""
        role = "ips" if ip in pool.ips else "standby"
        reason = f"added to pool {pool.name} ({role}) in the config"
        if record is None:  # sync_pools registers every configured IP: not expected
            return f"pool {pool.name}: {ip} {reason}, but the store does not know it"
        evidence: dict[str, object] = {"config": "added", "role": role}
        target = record.state
        if record.state is IPState.RETIRED and record.state_actor == actor:
            target = IPState.ACTIVE if role == "ips" else IPState.STANDBY  # back after a removal
        if target is IPState.ACTIVE and needs_warmup(pool.policy, record.last_sent_at, now):
            target = IPState.WARMING
            evidence["warmup"] = True
        if target is not record.state:
            event = AuditEvent(now, ip, pool.name, "state", str(record.state), str(target),
                               reason, actor, evidence)  # fmt: skip
            if await self._transition(ip, record.state, target, event):
                return f"pool {pool.name}: {ip} {reason}: {record.state} -> {target}"
            return f"pool {pool.name}: {ip} {reason}: its state changed meanwhile"
        kept = f"{reason}: {record.state}"
        await self._record(
            AuditEvent(now, ip, pool.name, "config", None, None, kept, actor, evidence)
        )
        return f"pool {pool.name}: {ip} {reason}: {record.state}"

    async def _transition(self, ip: str, was: IPState, to: IPState, event: AuditEvent) -> bool:
        return await asyncio.to_thread(self._store.transition_ip, ip, was, to, event)

    async def _record(self, event: AuditEvent) -> None:
        await asyncio.to_thread(self._store.record_event, event)
