"""The rotation controller: feeds evidence to ``core.rotation.decide`` and applies the decisions.

Driven by the daemon: :meth:`Controller.on_sweep` after the monitor stored a
sweep, :meth:`Controller.on_reply` (sync, the relay's reply callback) or
:meth:`Controller.on_reply_evidence` for remote-reply evidence,
:meth:`Controller.tick` for the passage of time, :meth:`Controller.operator` for
``hrmonitor ip ...``. Each decision is per pool; transitions are applied
through the store's compare-and-set ``transition_ip`` (state + audit event in
one transaction), so two daemons on one store never apply the same transition
twice: the loser reloads and decides again.

The picker's view (:meth:`Controller.candidates`) is kept in memory and
refreshed after every applied decision. A reply that suspends an IP is put into
memory synchronously, before anything is awaited, so the very next attempt
already sees it; storing, alerting and the DNSBL re-check follow in a task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from hrmonitor.adapters.store.records import (
    CleanRun,
    IpRecord,
    ListingChanges,
    ListingRecord,
)
from hrmonitor.adapters.store.records import Suspension as StoredSuspension
from hrmonitor.core.alert import Alert, AlertKind, alert_key
from hrmonitor.core.dnsbl import SweepResult
from hrmonitor.core.feedback import (
    BlocklistMention,
    FeedbackAction,
    PauseTracker,
    ProviderPause,
    RemoteReply,
    match_reply,
    provider_for,
)
from hrmonitor.core.feedback import Evidence as ReplyEvidence
from hrmonitor.core.feedback_rules import FeedbackRule
from hrmonitor.core.model import AuditEvent, IPState, Pool, Severity
from hrmonitor.core.rotation import (
    Decision,
    Evidence,
    IpView,
    OpenListing,
    OperatorAction,
    RecheckIp,
    SetWarmupStage,
    Suspend,
    Sweep,
    Tick,
    Transition,
    candidates,
    decide,
)
from hrmonitor.core.selection import IpCandidate
from hrmonitor.core.suspension import Pause, Suspension, apply_pause, current_for
from hrmonitor.core.warmup import WarmupView
from hrmonitor.errors import OperatorError

log = logging.getLogger(__name__)

RECHECK_ACTOR = "rotation.recheck"
# A decision that keeps losing compare-and-set races is given up (and retried next time).
MAX_ROUNDS = 4


class RotationStore(Protocol):
    """What the controller needs of the store (``adapters.store.Store`` satisfies it)."""

    def ip_records(self, pool: str | None = None) -> list[IpRecord]: ...

    def current_listings(self, ip: str | None = None) -> list[ListingRecord]: ...

    def clean_run(self, ip: str, zones: Collection[str]) -> CleanRun | None: ...

    def active_suspensions(
        self, now: datetime, ip: str | None = None
    ) -> list[StoredSuspension]: ...

    def lift_expired(self, now: datetime, actor: str = ...) -> list[StoredSuspension]: ...

    def transition_ip(
        self,
        ip: str,
        expected: IPState,
        to: IPState,
        event: AuditEvent,
        *,
        warmup_stage: int | None = None,
    ) -> bool: ...

    def set_warmup_stage(
        self, ip: str, expected: int | None, to: int | None, event: AuditEvent
    ) -> bool: ...

    def add_suspension(
        self,
        ip: str,
        scope: str,
        reason: str,
        evidence: dict[str, object],
        since: datetime,
        until: datetime,
        actor: str,
    ) -> StoredSuspension: ...

    def record_sent(self, ip: str, now: datetime, count: int = 1) -> int: ...

    def record_delivered(self, ip: str, now: datetime, count: int = 1) -> None: ...


class AlertSink(Protocol):
    async def emit(self, alert: Alert) -> object: ...


Recheck = Callable[[str], Awaitable[object]]


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
    ) -> None:
        self._store = store
        self._pools = {pool.name: pool for pool in pools}
        self._pool_of = {ip: pool.name for pool in pools for ip in pool.all_ips}
        self._zones = tuple(zones)
        self._alerts = alerts
        self._recheck = recheck
        self._rules = tuple(feedback_rules)
        self._blocklist_pause = blocklist_pause
        self._bind_pause = bind_pause
        self._tracker = PauseTracker()
        self._views: dict[str, list[IpView]] = {name: [] for name in self._pools}
        # Suspensions decided on the fast path, kept until the store has them and beyond:
        # a reload that races the store write must not forget them.
        self._fast: dict[tuple[str, str], Suspension] = {}
        # Slow-downs a provider asked for (ip, provider) -> until: in memory only, they
        # shift traffic to other IPs of the pool and never hold mail (core.selection).
        self._slow: dict[tuple[str, str], datetime] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- the picker's view --------------------------------------------------------------

    def pool_of(self, ip: str) -> str | None:
        return self._pool_of.get(ip)

    def views(self, pool: str) -> list[IpView]:
        return list(self._views.get(pool, ()))

    def candidates_now(self, pool: str, now: datetime) -> list[IpCandidate]:
        """The pool's IPs as the picker must judge them now; [] for an unknown pool."""
        config = self._pools.get(pool)
        if config is None:
            return []
        found = candidates(config, self._with_fast(self._views[pool], now), now)
        if not self._slow:
            return found
        return [self._with_slow(candidate, now) for candidate in found]

    def _with_slow(self, candidate: IpCandidate, now: datetime) -> IpCandidate:
        slowed = {p: until for (ip, p), until in self._slow.items() if ip == candidate.ip}
        active = {p: until for p, until in slowed.items() if now < until}
        return replace(candidate, slowed=active) if active else candidate

    def listing_counts(self, pool: str) -> dict[str, int]:
        """Open listings per IP of ``pool``: ``selection.choose_least_listed`` (use-listed)."""
        return {view.ip: len(view.listings) for view in self._views.get(pool, ())}

    async def candidates(self, pool: str, now: datetime) -> list[IpCandidate]:
        """``relay.CandidatesFn``: what :meth:`candidates_now` says, awaitable."""
        return self.candidates_now(pool, now)

    def note_sent(self, ip: str, now: datetime, count: int = 1) -> None:
        """Count a message sent from ``ip`` (warm-up caps), in memory now, stored in a task."""
        if ip not in self._pool_of:
            return
        self._bump(ip, now, count)
        self._spawn(self._store_volume(ip, now, count, delivered=False))

    def note_delivered(self, ip: str, now: datetime, count: int = 1) -> None:
        """Count a message delivered from ``ip`` (the warm-up's delivery rate)."""
        if ip not in self._pool_of:
            return
        self._spawn(self._store_volume(ip, now, count, delivered=True))

    # --- evidence -----------------------------------------------------------------------

    async def load(self, now: datetime) -> None:
        """Read every pool's IPs from the store (startup; tests)."""
        for name in self._pools:
            await self._reload(name, now)

    async def on_sweep(
        self, result: SweepResult, now: datetime, changes: ListingChanges | None = None
    ) -> list[Decision]:
        """After the monitor stored a sweep: retire, alert, restore, promote."""
        cleared = tuple((c.ip, c.zone) for c in changes.cleared) if changes else ()
        sweep = Sweep(now, tuple(result.answers), dict(result.health), cleared)
        return await self._decide_all([sweep], now)

    async def on_sweep_report(self, report: _SweepReport) -> None:
        """``Monitor.on_sweep`` listener."""
        await self.on_sweep(report.result, report.at, report.changes)

    async def tick(self, now: datetime) -> list[Decision]:
        """Time-based transitions: cool-downs, operator ``until``, warm-up days, expiries."""
        await asyncio.to_thread(self._store.lift_expired, now)
        self._fast = {k: s for k, s in self._fast.items() if s.active(now)}
        self._slow = {k: until for k, until in self._slow.items() if now < until}
        return await self._decide_all([Tick(now)], now)

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
        provider = provider_for(reply.destination_host)
        for evidence in match_reply(reply, provider, self._rules):
            self._fast_path(evidence, reply.at, provider, reply.code >= 500)

    def on_bind_failure(self, ip: str, pool: str, error: str, now: datetime) -> None:
        """``relay.BindFailureFn``: the IP cannot send at all; suspend it whole, audited.

        An error about that IP, never a reason to use another pool: the relay
        retries with another IP of the same pool.
        """
        if self._pool_of.get(ip) != pool:
            return
        self._suspend_now(
            pool,
            Pause(ip, None, self._bind_pause, f"bind failed: {error}", now, "bind-failure"),
            now,
        )

    async def on_reply_evidence(
        self, evidence: ReplyEvidence, now: datetime, provider: str | None = None
    ) -> None:
        """Evidence already matched from a reply; ``provider`` names where a mention came from."""
        self._fast_path(evidence, now, provider, True)
        await self.drain()

    async def operator(self, action: OperatorAction) -> OperatorResult:
        """An operator's retire/restore/disable/enable, refused with a reason if impossible."""
        pool = self._pool_of.get(action.ip)
        if pool is None:
            raise OperatorError(f"{action.ip} is not an IP of any configured pool")
        async with self._lock:
            await self._reload(pool, action.at)
            decision = decide(self._pools[pool], self._views[pool], [action], action.at)
            if decision.refusals:
                return OperatorResult(action.ip, pool, refused=decision.refusals[0].reason)
            applied = await self._apply(pool, decision, action.at, [action])
        mine = tuple(t for d in applied for t in d.transitions if t.ip == action.ip)
        if not any(t.rule == action.actor for t in mine):
            return OperatorResult(action.ip, pool, refused="another node changed the IP first")
        return OperatorResult(action.ip, pool, tuple(t for d in applied for t in d.transitions))

    async def drain(self) -> None:
        """Wait for the fast path's background work (store writes, alerts, re-checks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- inside -------------------------------------------------------------------------

    async def _decide_all(self, evidence: Sequence[Evidence], now: datetime) -> list[Decision]:
        done: list[Decision] = []
        async with self._lock:
            for name in self._pools:
                await self._reload(name, now)
                decision = decide(self._pools[name], self._views[name], evidence, now)
                done.extend(await self._apply(name, decision, now, evidence))
        return done

    async def _apply(
        self, pool: str, decision: Decision, now: datetime, evidence: Sequence[Evidence]
    ) -> list[Decision]:
        """Apply ``decision``; on a lost race reload and decide again. The applied decisions."""
        applied: list[Decision] = []
        for _ in range(MAX_ROUNDS):
            done, lost = await self._apply_transitions(decision)
            if lost is None:
                await self._apply_actions(decision, now)
                applied.append(decision)
                await self._emit(decision.alerts)
                break
            log.info("rotation: %s lost a race on %s; deciding again", pool, lost.ip)
            kept = [a for a in decision.alerts if a.ip in {t.ip for t in done}]
            applied.append(replace(decision, transitions=tuple(done), actions=(), alerts=()))
            await self._emit(kept)
            await self._reload(pool, now)
            decision = decide(self._pools[pool], self._views[pool], evidence, now)
        else:
            log.warning("rotation: %s kept losing races; will try again later", pool)
        await self._reload(pool, now)
        return applied

    async def _apply_transitions(
        self, decision: Decision
    ) -> tuple[list[Transition], Transition | None]:
        done: list[Transition] = []
        for t in decision.transitions:
            stage = 0 if t.to_state is IPState.WARMING else None
            ok = await asyncio.to_thread(
                self._store.transition_ip,
                t.ip,
                t.from_state,
                t.to_state,
                t.audit(),
                warmup_stage=stage,
            )
            if not ok:
                return done, t
            done.append(t)
            log.info("rotation: %s %s -> %s (%s)", t.ip, t.from_state, t.to_state, t.reason)
        return done, None

    async def _apply_actions(self, decision: Decision, now: datetime) -> None:
        for action in decision.actions:
            match action:
                case Suspend(suspension=s):
                    await self._store_suspension(s)
                case SetWarmupStage():
                    event = AuditEvent(
                        action.at,
                        action.ip,
                        decision.pool,
                        "warmup",
                        str(action.stage - 1),
                        str(action.stage),
                        action.reason,
                        "rotation.warmup",
                    )
                    await asyncio.to_thread(
                        self._store.set_warmup_stage,
                        action.ip,
                        action.stage - 1,
                        action.stage,
                        event,
                    )
                case RecheckIp():
                    # In a task: the re-check's sweep comes back through on_sweep, which
                    # waits for the lock this decision holds.
                    self._spawn(self._ask_recheck(action.ip))

    async def _emit(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            if alert.kind in (AlertKind.LISTING, AlertKind.DELISTING):
                continue  # the monitor tells these, with the zone's lookup link
            try:
                await self._alerts.emit(alert)
            except Exception:
                log.exception("alert %s could not be sent", alert.key)

    async def _reload(self, pool: str, now: datetime) -> None:
        self._views[pool] = await asyncio.to_thread(self._load_views, self._pools[pool], now)

    def _load_views(self, pool: Pool, now: datetime) -> list[IpView]:
        members = set(pool.all_ips)
        records = [r for r in self._store.ip_records(pool.name) if r.ip in members]
        listings: dict[str, list[OpenListing]] = {}
        for lst in self._store.current_listings():
            if lst.ip in members:
                listings.setdefault(lst.ip, []).append(
                    OpenListing(
                        lst.zone, lst.codes, lst.severity, lst.first_seen, lst.tags, lst.txt
                    )
                )
        held: dict[str, list[Suspension]] = {}
        for s in self._store.active_suspensions(now):
            if s.ip in members:
                held.setdefault(s.ip, []).append(s.as_core())
        views = []
        for r in records:
            run = self._store.clean_run(r.ip, self._zones) if r.state is IPState.RETIRED else None
            warmup = None
            if r.state is IPState.WARMING:
                warmup = WarmupView(
                    stage=r.warmup_stage or 0,
                    stage_since=r.warmup_since or r.state_since,
                    day=r.sent_day,
                    sent=r.sent_today,
                    delivered=r.delivered_today,
                )
            views.append(
                IpView(
                    ip=r.ip,
                    pool=pool.name,
                    state=r.state,
                    state_since=r.state_since,
                    state_until=r.state_until,
                    state_actor=r.state_actor,
                    listings=tuple(listings.get(r.ip, ())),
                    clean_since=run.since if run else None,
                    clean_checked_at=run.checked_at if run else None,
                    last_sent_at=r.last_sent_at,
                    sent_today=r.sent_on(now.date()),
                    warmup=warmup,
                    suspensions=tuple(held.get(r.ip, ())),
                )
            )
        return views

    def _with_fast(self, views: Sequence[IpView], now: datetime) -> list[IpView]:
        if not self._fast:
            return list(views)
        out = []
        for view in views:
            extra = [s for (ip, _), s in self._fast.items() if ip == view.ip and s.active(now)]
            out.append(replace(view, suspensions=(*view.suspensions, *extra)) if extra else view)
        return out

    def _slow_down(self, evidence: ProviderPause, now: datetime) -> None:
        """Counted from the reply's time, extended by newer evidence, stale evidence ignored."""
        until = evidence.observed_at + evidence.duration
        key = (evidence.ip, evidence.provider)
        current = self._slow.get(key)
        if until <= now or (current is not None and until <= current):
            return
        self._slow[key] = until
        log.info("%s slowed for %s until %s: %s", evidence.ip, evidence.provider, until,
                 evidence.reason)  # fmt: skip

    def _fast_path(
        self, evidence: ReplyEvidence, now: datetime, provider: str | None, permanent: bool
    ) -> None:
        """Suspend in memory now; store, alert and re-check in a task."""
        pool = self._pool_of.get(evidence.ip)
        if pool is None:
            return  # not our IP: never evidence about anything we own
        pause: Pause | None = None
        if isinstance(evidence, ProviderPause):
            if evidence.action is FeedbackAction.SLOW:
                self._slow_down(evidence, now)
                return
            if evidence.action is not FeedbackAction.PAUSE:
                return
            tracked = self._tracker.observe(evidence, now)
            if tracked is None:
                return
            pause = Pause(
                evidence.ip,
                evidence.provider,
                tracked.until - evidence.observed_at,
                evidence.reason,
                evidence.observed_at,
                evidence.rule,
            )
        elif isinstance(evidence, BlocklistMention):
            self._spawn(self._ask_recheck(evidence.ip))
            if provider is None or not permanent:
                return
            pause = Pause(
                evidence.ip,
                provider,
                self._blocklist_pause,
                f"remote reply names a blocklist: {evidence.reply_text}",
                evidence.observed_at,
                evidence.rule,
                evidence={"reply": evidence.reply_text},
            )
        if pause is not None:
            self._suspend_now(pool, pause, now)

    def _suspend_now(self, pool: str, pause: Pause, now: datetime) -> None:
        views = self._with_fast(self._views.get(pool, []), now)
        current = None
        for view in views:
            if view.ip == pause.ip:
                current = current_for(view.suspensions, pause.ip, pause.scope, now)
        suspension = apply_pause(current, pause, now)
        if suspension is None:
            return
        self._fast[(suspension.ip, suspension.scope)] = suspension
        alert = Alert(
            AlertKind.SUSPENSION,
            Severity.MEDIUM,
            alert_key(AlertKind.SUSPENSION, pool, suspension.ip, suspension.scope),
            f"{suspension.ip} ({pool}) suspended for {suspension.scope} until "
            f"{suspension.until.isoformat()}: {pause.reason}",
            now,
            {
                "scope": suspension.scope,
                "until": suspension.until,
                "rule": pause.rule,
                "reason": pause.reason,
            },
            pool,
            suspension.ip,
        )
        self._spawn(self._persist_fast(suspension, alert))

    async def _persist_fast(self, suspension: Suspension, alert: Alert) -> None:
        await self._store_suspension(suspension)
        await self._emit([alert])

    async def _store_suspension(self, s: Suspension) -> None:
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

    async def _ask_recheck(self, ip: str) -> None:
        if self._recheck is None:
            return
        try:
            await self._recheck(ip)
        except Exception:
            log.exception("DNSBL re-check of %s failed", ip)

    def _bump(self, ip: str, now: datetime, count: int) -> None:
        pool = self._pool_of.get(ip)
        if pool is None:
            return
        self._views[pool] = [
            replace(v, sent_today=v.sent_today + count, last_sent_at=now) if v.ip == ip else v
            for v in self._views[pool]
        ]

    async def _store_volume(self, ip: str, now: datetime, count: int, delivered: bool) -> None:
        write = self._store.record_delivered if delivered else self._store.record_sent
        await asyncio.to_thread(write, ip, now, count)

    def _spawn(self, work: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await work
            except Exception:
                log.exception("rotation background work failed")

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _SweepReport(Protocol):
    """The parts of ``services.monitor.SweepReport`` the controller reads."""

    @property
    def at(self) -> datetime: ...

    @property
    def result(self) -> SweepResult: ...

    @property
    def changes(self) -> ListingChanges: ...
