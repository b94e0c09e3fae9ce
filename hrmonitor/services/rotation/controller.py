"""The rotation controller: feeds evidence to ``core.rotation.decide`` and applies the decisions.

Driven by the daemon: :meth:`Controller.on_sweep` after the monitor stored a
sweep, :meth:`Controller.on_reply` (sync, the relay's reply callback) or
:meth:`Controller.on_reply_evidence` for remote-reply evidence,
:meth:`Controller.tick` for the passage of time, :meth:`Controller.operator` for
``hrmonitor ip ...``. Each decision is per pool; transitions are applied
through the store's compare-and-set ``transition_ip`` (state + audit event in
one transaction), so two daemons on one store never apply the same transition
twice: the loser reloads and decides again (``services.rotation_apply``).

The picker's view (:meth:`Controller.candidates`, ``services.eligibility``) is
kept in memory and refreshed after every applied decision. A reply that
suspends an IP is put into memory synchronously, before anything is awaited,
so the very next attempt already sees it; storing, alerting and the DNSBL
re-check follow in a task (``services.reply_feedback``,
``services.rotation_effects``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from hrmonitor.adapters.store.records import ListingChanges
from hrmonitor.core.alert import Alert, AlertKind, alert_key
from hrmonitor.core.dnsbl.answers import SweepResult
from hrmonitor.core.feedback.replies import Evidence as ReplyEvidence
from hrmonitor.core.feedback.replies import RemoteReply
from hrmonitor.core.feedback.rules import FeedbackRule
from hrmonitor.core.model import IPState, Pool, Severity
from hrmonitor.core.rotation.decide import (
    Decision,
    Evidence,
    IpView,
    Lift,
    OperatorAction,
    Sweep,
    Tick,
    Transition,
    decide,
)
from hrmonitor.core.rotation.exhaustion import Change, ExhaustionLatch
from hrmonitor.core.rotation.promotion import exhaustion_alert
from hrmonitor.core.rotation.selection import IpCandidate
from hrmonitor.core.rotation.suspension import (
    BIND_FAILURE,
    WHOLE_IP,
    Pause,
    Suspension,
    bind_suspension,
)
from hrmonitor.core.rotation.warmup import daily_cap
from hrmonitor.errors import OperatorError
from hrmonitor.services.rotation.apply import MAX_ROUNDS, DecisionApplier
from hrmonitor.services.rotation.effects import AlertSink, Recheck, RotationEffects
from hrmonitor.services.rotation.eligibility import Eligibility
from hrmonitor.services.rotation.membership import RELOAD_ACTOR, PoolMembership
from hrmonitor.services.rotation.replies import ReplyFeedback
from hrmonitor.services.rotation.store import RotationStore
from hrmonitor.services.rotation.volume import FLUSH_SECONDS, VolumeLedger

__all__ = [
    "BIND_PROBE_ACTOR",
    "EXHAUSTED_SETTLE",
    "MAX_ROUNDS",
    "RECHECK_ACTOR",
    "RELOAD_ACTOR",
    "AlertSink",
    "BindProbe",
    "Controller",
    "OperatorResult",
    "Recheck",
    "RotationStore",
]

log = logging.getLogger(__name__)

RECHECK_ACTOR = "rotation.recheck"
BIND_PROBE_ACTOR = "rotation.bind-probe"
# How long a pool must stay able to send before its pool-exhausted alert resolves.
EXHAUSTED_SETTLE = timedelta(seconds=30)
# Which of these addresses bind now: ip -> None, or the error (``smtp_out.check_bindable``).
BindProbe = Callable[[Sequence[str]], Mapping[str, str | None]]
VOLUME_KEEP = timedelta(days=3)  # per-IP counts kept (the warm-up reads the last day's)


@dataclass(frozen=True, slots=True)
class OperatorResult:
    """What an operator action did: the transitions applied, or why nothing was."""

    ip: str
    pool: str
    transitions: tuple[Transition, ...] = ()
    refused: str | None = None

    @property
    def applied(self) -> bool:
        return self.refused is None


class Controller:
    """One per daemon (or per CLI invocation); see the module docstring."""

    def __init__(
        self,
        store: RotationStore,
        pools: Sequence[Pool],
        zones: Collection[str],
        alerts: AlertSink,
        *,
        recheck: Recheck | None = None,
        feedback_rules: Sequence[FeedbackRule] = (),
        blocklist_pause: timedelta = timedelta(hours=2),
        bind_pause: timedelta = timedelta(minutes=10),
        probe: BindProbe | None = None,
        exhausted_settle: timedelta = EXHAUSTED_SETTLE,
        node: str = "",
        volume_flush_seconds: float = FLUSH_SECONDS,
        blocklist_destinations: int = 3,
        blocklist_window: timedelta = timedelta(hours=1),
    ) -> None:
        self._store = store
        self._volume = VolumeLedger(store, node, volume_flush_seconds)
        # Shared with the parts below and changed in place by reconfigure().
        self._pools = {pool.name: pool for pool in pools}
        self._pool_of = {ip: pool.name for pool in pools for ip in pool.all_ips}
        self._bind_pause = bind_pause
        self._probe = probe
        self._settle = exhausted_settle
        self._latches: dict[str, ExhaustionLatch] = {}
        self._eligibility = Eligibility(store, self._pools, tuple(zones))
        self._effects = RotationEffects(store, alerts, recheck)
        self._applier = DecisionApplier(store, self._pools, self._eligibility, self._effects, node)
        self._feedback = ReplyFeedback(
            self._pool_of,
            self._eligibility,
            self._effects,
            rules=feedback_rules,
            blocklist_pause=blocklist_pause,
            blocklist_destinations=blocklist_destinations,
            blocklist_window=blocklist_window,
        )
        self._reconfig = PoolMembership(store)
        self._lock = asyncio.Lock()

    def reconfigure_feedback(self, rules: Sequence[FeedbackRule]) -> None:
        """New remote-reply patterns (a reload)."""
        self._feedback.reconfigure(rules)

    # --- the picker's view --------------------------------------------------------------

    def pool_of(self, ip: str) -> str | None:
        return self._pool_of.get(ip)

    def views(self, pool: str) -> list[IpView]:
        return list(self._eligibility.views(pool))

    def candidates_now(self, pool: str, now: datetime) -> list[IpCandidate]:
        """The pool's IPs as the picker must judge them now; [] for an unknown pool.

        A warming IP shows as much room under its cap as this node's reserved
        block has left (``services.rotation.volume``): none means capped here.
        """
        found = self._eligibility.candidates_now(pool, now)
        return [c if c.daily_cap is None else self._within_block(c, now) for c in found]

    def _within_block(self, candidate: IpCandidate, now: datetime) -> IpCandidate:
        cap = candidate.daily_cap
        assert cap is not None
        left = self._volume.left(candidate.ip, now)
        if left <= 0:
            self._volume.ask(candidate.ip, now, cap)
        return replace(candidate, sent_today=max(0, cap - left))

    def take(self, pool: str, ip: str, now: datetime) -> bool:
        """``source_ip.TakeFn``: the picker chose ``ip``; False if a warming IP has no room.

        A warming IP's message comes out of this node's block at the pick, not at the
        reply, so attempts in flight can never pass the cap together.
        """
        cap = self._cap_of(pool, ip)
        return cap is None or self._volume.take(ip, now, cap)

    def _cap_of(self, pool: str, ip: str) -> int | None:
        config = self._pools.get(pool)
        if config is None or not config.policy.warmup:
            return None
        for view in self._eligibility.views(pool):
            if view.ip == ip and view.state is IPState.WARMING:
                return daily_cap(config.policy, view.warmup.stage if view.warmup else 0)
        return None

    def listing_counts(self, pool: str) -> dict[str, int]:
        """Open listings per IP of ``pool``: ``selection.choose_least_listed`` (use-listed)."""
        return self._eligibility.listing_counts(pool)

    async def candidates(self, pool: str, now: datetime) -> list[IpCandidate]:
        """``source_ip.CandidatesFn``: what :meth:`candidates_now` says, awaitable."""
        return self.candidates_now(pool, now)

    def note_sent(self, ip: str, now: datetime, count: int = 1) -> None:
        """Count a message sent from ``ip`` (warm-up caps), in memory now, stored in a task."""
        pool = self._pool_of.get(ip)
        if pool is None:
            return
        self._eligibility.bump(pool, ip, now, count)
        self._volume.count(ip, now, sent=count)

    def note_delivered(self, ip: str, now: datetime, count: int = 1) -> None:
        """Count a message delivered from ``ip`` (the warm-up's delivery rate)."""
        if ip not in self._pool_of:
            return
        self._volume.count(ip, now, delivered=count)

    # --- evidence -----------------------------------------------------------------------

    async def load(self, now: datetime) -> None:
        """Read every pool's IPs from the store, and reserve warming IPs' first blocks."""
        for name in self._pools:
            await self._eligibility.reload(name, now)
            await self._reserve_blocks(name, now)

    async def _reserve_blocks(self, pool: str, now: datetime) -> None:
        """A first block for every warming IP of ``pool`` that has none (a promotion, a
        start), awaited: the very next pick may send from it."""
        for view in self._eligibility.views(pool):
            cap = self._cap_of(pool, view.ip)
            if cap is not None and self._volume.left(view.ip, now) <= 0:
                await self._volume.reserve(view.ip, now, cap)

    async def reconfigure(
        self,
        pools: Sequence[Pool],
        zones: Collection[str],
        now: datetime,
        actor: str = RELOAD_ACTOR,
    ) -> list[str]:
        """Take a new set of pools and zones (a reload); one line per IP it moved, for the log.

        The store must already know the new pools' IPs (``Store.sync_pools``). Every IP
        added or removed is an audited change by ``actor`` (``reconfigure`` module
        docstring); pool settings apply from the next decision. Pools added start
        with a quiet latch; pools removed are forgotten. Done under the controller's
        lock, with every pool's views read again before it returns, so no decision
        runs on a mix of old and new pools.
        """
        async with self._lock:
            was = dict(self._pool_of)
            self._pools.clear()
            self._pools.update({pool.name: pool for pool in pools})
            self._pool_of.clear()
            self._pool_of.update({ip: pool.name for pool in pools for ip in pool.all_ips})
            self._latches = {k: v for k, v in self._latches.items() if k in self._pools}
            self._eligibility.reconfigure(tuple(zones))
            removed = sorted(ip for ip in was if ip not in self._pool_of)
            added = sorted(ip for ip in self._pool_of if ip not in was)
            lines: list[str] = []
            if removed or added:
                stored = {r.ip: r for r in await asyncio.to_thread(self._store.ip_records)}
                for ip in removed:
                    lines.append(
                        await self._reconfig.remove(ip, was[ip], stored.get(ip), now, actor)
                    )
                for ip in added:
                    pool = self._pools[self._pool_of[ip]]
                    lines.append(await self._reconfig.add(ip, pool, stored.get(ip), now, actor))
            for name in self._pools:
                await self._eligibility.reload(name, now)
                await self._reserve_blocks(name, now)
        return lines

    async def readmit(self, now: datetime, actor: str = RELOAD_ACTOR) -> list[str]:
        """At start-up: the configured IPs that a reload retired when it removed them
        (the config has them again) go back to their configured role, as a reload
        adding them would; one line per IP, for the log."""
        async with self._lock:
            records = await asyncio.to_thread(self._store.ip_records)
            lines = []
            for record in records:
                pool = self._pools.get(self._pool_of.get(record.ip, ""))
                if pool is None or record.state is not IPState.RETIRED:
                    continue
                if record.state_actor == actor:
                    lines.append(await self._reconfig.add(record.ip, pool, record, now, actor))
            for name in self._pools:
                await self._eligibility.reload(name, now)
                await self._reserve_blocks(name, now)
        return lines

    @property
    def pools(self) -> Mapping[str, Pool]:
        """The configured pools by name: the live mapping, changed in place by a reload."""
        return self._pools

    async def on_sweep(
        self,
        result: SweepResult,
        now: datetime,
        changes: ListingChanges | None = None,
        *,
        told: list[Alert] | None = None,
    ) -> list[Decision]:
        """After the monitor stored a sweep: retire, alert, restore, promote.

        ``told``: the decisions' alerts are appended there for the caller to send
        (the monitor merges them with its own) instead of being sent here.
        """
        cleared = tuple((c.ip, c.zone) for c in changes.cleared) if changes else ()
        sweep = Sweep(now, tuple(result.answers), dict(result.health), cleared)
        return await self._decide_all([sweep], now, told)

    async def on_sweep_report(self, report: _SweepReport) -> list[Alert]:
        """``Monitor.on_sweep`` listener: the alerts of what was decided, for the monitor."""
        told: list[Alert] = []
        await self.on_sweep(report.result, report.at, report.changes, told=told)
        return told

    async def tick(self, now: datetime) -> list[Decision]:
        """Time-based transitions: cool-downs, operator ``until``, warm-up days, expiries.

        Bind failures are probed again first (binding a socket costs
        microseconds): an address that binds now is back before this tick decides.
        """
        await asyncio.to_thread(self._store.lift_expired, now)
        # The warm-up reads the latest day's counts; older days are history nobody reads.
        await asyncio.to_thread(self._store.prune_volume, (now - VOLUME_KEEP).date())
        self._eligibility.expire(now)
        await self._reprobe_binds(now)
        return await self._decide_all([Tick(now)], now)

    def on_relay_alert(self, alert: Alert) -> bool:
        """The relay's ``pool-exhausted`` signals, judged by the one definition (``eligibility``).

        An attempt that found no IP (or found one again) only asks the latch
        to look at the pool now; whether the pool can send is what eligibility
        says, so delivery and rotation cannot disagree. True if handled here;
        any other alert is for the caller to send.
        """
        if alert.kind is not AlertKind.POOL_EXHAUSTED or alert.pool not in self._pools:
            return False
        self._observe(alert.pool, alert.at)
        return True

    def on_reply(self, reply: RemoteReply) -> None:
        """The relay's (synchronous) reply callback: evidence -> suspension before returning.

        Remote replies also count the warm-up volume: every reply is a message
        attempted from ``reply.source_ip`` and a 2xx one delivered. The relay
        reports each distinct reply of a transaction, so a transaction with
        mixed replies counts more than once: the cap binds early, never late.
        """
        if not reply.own and reply.code >= 200:
            self.note_sent(reply.source_ip, reply.at)
            if reply.code < 300:
                self.note_delivered(reply.source_ip, reply.at)
        self._feedback.reply(reply)

    def on_bind_failure(self, ip: str, pool: str, error: str, now: datetime) -> None:
        """``relay.BindFailureFn``: the IP cannot send at all; suspend it whole, audited.

        An error about that IP, never a reason to use another pool: the relay
        retries with another IP of the same pool.
        """
        if self._pool_of.get(ip) != pool:
            return
        self._feedback.suspend_now(
            pool,
            Pause(ip, None, self._bind_pause, f"bind failed: {error}", now, BIND_FAILURE),
            now,
        )

    async def on_reply_evidence(
        self, evidence: ReplyEvidence, now: datetime, provider: str | None = None
    ) -> None:
        """Evidence already matched from a reply; ``provider`` names where a mention came from."""
        self._feedback.evidence(evidence, now, provider, True)
        await self.drain()

    async def operator(self, action: OperatorAction) -> OperatorResult:
        """An operator's retire/restore/disable/enable, refused with a reason if impossible."""
        pool = self._pool_of.get(action.ip)
        if pool is None:
            raise OperatorError(f"{action.ip} is not an IP of any configured pool")
        async with self._lock:
            await self._eligibility.reload(pool, action.at)
            views = self._eligibility.current(pool, action.at)
            decision = decide(self._pools[pool], views, [action], action.at)
            if decision.refusals:
                return OperatorResult(action.ip, pool, refused=decision.refusals[0].reason)
            applied = await self._applier.apply(pool, decision, action.at, [action])
            await self._reserve_blocks(pool, action.at)
            self._observe(pool, action.at)
        mine = tuple(t for d in applied for t in d.transitions if t.ip == action.ip)
        lifted = any(isinstance(a, Lift) for d in applied for a in d.actions)
        if not lifted and not any(t.rule == action.actor for t in mine):
            return OperatorResult(action.ip, pool, refused="another node changed the IP first")
        return OperatorResult(action.ip, pool, tuple(t for d in applied for t in d.transitions))

    async def drain(self) -> None:
        """Wait for the fast path's background work (store writes, alerts, re-checks)
        and write the volume counted so far."""
        await self._effects.drain()
        await self._volume.flush()

    async def close(self) -> None:
        """:meth:`drain`, and hand this node's unused warm-up blocks back (a stop)."""
        await self._effects.drain()
        await self._volume.flush(release=True)

    # --- inside -------------------------------------------------------------------------

    async def _decide_all(
        self, evidence: Sequence[Evidence], now: datetime, told: list[Alert] | None = None
    ) -> list[Decision]:
        done: list[Decision] = []
        async with self._lock:
            for name in self._pools:
                await self._eligibility.reload(name, now)
                views = self._eligibility.current(name, now)
                decision = decide(self._pools[name], views, evidence, now)
                done.extend(await self._applier.apply(name, decision, now, evidence, told))
                await self._reserve_blocks(name, now)
                self._observe(name, now)
        return done

    def _observe(self, pool: str, now: datetime) -> None:
        """Feed the pool's eligibility to its ``pool-exhausted`` latch; tell what it lets out."""
        config = self._pools[pool]
        views = self._eligibility.current(pool, now)
        sendable = self._eligibility.sendable(pool, now)
        first = pool not in self._latches
        latch, change = self._latches.get(pool, ExhaustionLatch()).observe(
            sendable, now, self._settle
        )
        self._latches[pool] = latch
        if first and sendable:
            # A pool-exhausted alert left open by an earlier run: resolve it (the
            # alerting sends a resolution only for an alert that is open).
            change = Change.RESOLVE
        if change is not None:
            alert = exhaustion_alert(config, views, now, resolved=change is Change.RESOLVE)
            if not (first and sendable):
                log.warning("%s", alert.summary)
            self._effects.spawn(self._effects.emit([alert], latched=True))

    async def _reprobe_binds(self, now: datetime) -> None:
        """Lift the bind failures whose address binds now; keep the others suspended."""
        if self._probe is None:
            return
        held = {
            view.ip: (pool, s)
            for pool in self._pools
            for view in self._eligibility.current(pool, now)
            if (s := bind_suspension(view, now)) is not None
        }
        if not held:
            return
        found = await asyncio.to_thread(self._probe, sorted(held))
        for ip, (pool, suspension) in sorted(held.items()):
            problem = found.get(ip, "not probed")
            if problem is None:
                reason = "the address binds again (re-probed)"
                await self._effects.lift_suspension(ip, WHOLE_IP, now, BIND_PROBE_ACTOR, reason)
                self._eligibility.lift(ip, WHOLE_IP)
                await self._effects.emit([bind_lifted_alert(pool, ip, now, suspension)])
            elif suspension.until - now < self._bind_pause / 2:
                # Still unbindable: extend before it lapses, so the IP is never offered
                # to the picker only to fail again (that is what made the alert flap).
                self.on_bind_failure(ip, pool, problem, now)


def bind_lifted_alert(pool: str, ip: str, now: datetime, was: Suspension) -> Alert:
    """The bind failure's suspension alert, resolved: the address binds again."""
    return Alert(
        AlertKind.SUSPENSION,
        Severity.MEDIUM,
        alert_key(AlertKind.SUSPENSION, pool, ip, WHOLE_IP),
        f"{ip} ({pool}) binds again: back in the pool",
        now,
        {"was": was.reason, "since": was.since},
        pool,
        ip,
        resolved=True,
    )


class _SweepReport(Protocol):
    """The parts of ``services.monitor.SweepReport`` the controller reads."""

    @property
    def at(self) -> datetime: ...

    @property
    def result(self) -> SweepResult: ...

    @property
    def changes(self) -> ListingChanges: ...
