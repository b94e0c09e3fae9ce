"""The picker's view of the pools: each IP as last read from the store, and what replies said since.

The views are read again after every applied decision (:meth:`Eligibility.reload`).
Between reads, reply feedback lives here, in memory: suspensions decided on
the fast path, kept until the store has them and beyond (a reload that races
the store write must not forget them), and slow-downs a provider asked for,
never stored (they shift traffic to other IPs of the pool and never hold
mail, ``core.selection``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from hrmonitor.core.feedback.replies import ProviderPause
from hrmonitor.core.model import IPState, Pool, ZoneHealth
from hrmonitor.core.rotation.decide import IpView, OpenListing, candidates
from hrmonitor.core.rotation.eligibility import eligible_ips
from hrmonitor.core.rotation.selection import IpCandidate
from hrmonitor.core.rotation.suspension import Suspension
from hrmonitor.core.rotation.warmup import WarmupView
from hrmonitor.services.rotation.store import RotationStore

log = logging.getLogger(__name__)


class Eligibility:
    """Every configured pool's IP views, fast-path suspensions and provider slow-downs."""

    def __init__(
        self, store: RotationStore, pools: Mapping[str, Pool], zones: Sequence[str]
    ) -> None:
        self._store = store
        self._pools = pools
        self._zones = tuple(zones)
        self._views: dict[str, list[IpView]] = {name: [] for name in pools}
        # Suspensions decided on the fast path, kept until the store has them and beyond:
        # a reload that races the store write must not forget them.
        self._fast: dict[tuple[str, str], Suspension] = {}
        # Slow-downs a provider asked for (ip, provider) -> until: in memory only, they
        # shift traffic to other IPs of the pool and never hold mail (core.selection).
        self._slow: dict[tuple[str, str], datetime] = {}

    def views(self, pool: str) -> list[IpView]:
        """The pool's views as last read (the list itself; [] for an unknown pool)."""
        return self._views.get(pool, [])

    def current(self, pool: str, now: datetime) -> list[IpView]:
        """The pool's views with the fast path's suspensions: what rotation decides on."""
        return self.with_fast(self.views(pool), now)

    def sendable(self, pool: str, now: datetime) -> bool:
        """Whether an IP of ``pool`` is eligible now (``core.rotation.eligibility``)."""
        config = self._pools.get(pool)
        return config is not None and bool(eligible_ips(config, self.current(pool, now), now))

    def reconfigure(self, zones: Sequence[str]) -> None:
        """Pools were added or removed (the shared mapping changed) or the zones changed."""
        self._zones = tuple(zones)
        self._views = {name: self._views.get(name, []) for name in self._pools}

    def candidates_now(self, pool: str, now: datetime) -> list[IpCandidate]:
        """The pool's IPs as the picker must judge them now; [] for an unknown pool."""
        config = self._pools.get(pool)
        if config is None:
            return []
        found = candidates(config, self.with_fast(self._views[pool], now), now)
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

    def with_fast(self, views: Sequence[IpView], now: datetime) -> list[IpView]:
        """``views`` with the fast path's suspensions still active at ``now`` added."""
        if not self._fast:
            return list(views)
        out = []
        for view in views:
            extra = [s for (ip, _), s in self._fast.items() if ip == view.ip and s.active(now)]
            out.append(replace(view, suspensions=(*view.suspensions, *extra)) if extra else view)
        return out

    def suspend(self, suspension: Suspension) -> None:
        """Hold a fast-path suspension in memory (the store gets it in a task)."""
        self._fast[(suspension.ip, suspension.scope)] = suspension

    def lift(self, ip: str, scope: str) -> None:
        """Forget ``ip``'s suspension of ``scope`` in memory (it was lifted in the store)."""
        self._fast.pop((ip, scope), None)
        for pool, views in self._views.items():
            self._views[pool] = [
                replace(v, suspensions=tuple(s for s in v.suspensions if s.scope != scope))
                if v.ip == ip
                else v
                for v in views
            ]

    def slow_down(self, evidence: ProviderPause, now: datetime) -> None:
        """Counted from the reply's time, extended by newer evidence, stale evidence ignored."""
        until = evidence.observed_at + evidence.duration
        key = (evidence.ip, evidence.provider)
        current = self._slow.get(key)
        if until <= now or (current is not None and until <= current):
            return
        self._slow[key] = until
        log.info("%s slowed for %s until %s: %s", evidence.ip, evidence.provider, until,
                 evidence.reason)  # fmt: skip

    def expire(self, now: datetime) -> None:
        """Forget the fast-path suspensions and slow-downs that ended by ``now``."""
        self._fast = {k: s for k, s in self._fast.items() if s.active(now)}
        self._slow = {k: until for k, until in self._slow.items() if now < until}

    def bump(self, pool: str, ip: str, now: datetime, count: int) -> None:
        """Count ``count`` messages sent from ``ip`` of ``pool`` in memory (warm-up caps)."""
        self._views[pool] = [
            replace(v, sent_today=v.sent_today + count, last_sent_at=now) if v.ip == ip else v
            for v in self._views[pool]
        ]

    async def reload(self, pool: str, now: datetime) -> None:
        """Read ``pool``'s views from the store again.

        A fast-path suspension the store now holds (as long or longer) is
        dropped from memory: from then on the store is its truth, so a lift
        there (``hrmonitor ip enable`` from another process) is seen here.
        """
        views = await asyncio.to_thread(self._load_views, self._pools[pool], now)
        # The store's sent count can lag the memory's (note_sent stores it in a task);
        # a warm-up cap must never forget a message already sent today.
        counted = {
            v.ip: v.sent_today
            for v in self._views.get(pool, ())
            if v.last_sent_at is not None and v.last_sent_at.date() == now.date()
        }
        views = [
            replace(v, sent_today=counted[v.ip]) if counted.get(v.ip, 0) > v.sent_today else v
            for v in views
        ]
        self._views[pool] = views
        stored = {(s.ip, s.scope): s.until for v in views for s in v.suspensions}
        self._fast = {
            key: s for key, s in self._fast.items() if key not in stored or stored[key] < s.until
        }

    def cooldown_zones(self) -> tuple[str, ...]:
        """The zones a cool-down counts clean time on: configured and healthy now.

        A dead, refusing or removed zone gives no evidence either way; requiring
        it would stop every cool-down for as long as it is down. With no healthy
        zone at all the clock stops (``clean_run`` of no zones is None).
        """
        health = self._store.zone_health()
        return tuple(z for z in self._zones if z in health and health[z].health is ZoneHealth.OK)

    def _load_views(self, pool: Pool, now: datetime) -> list[IpView]:
        members = set(pool.all_ips)
        records = [r for r in self._store.ip_records(pool.name) if r.ip in members]
        listings: dict[str, list[OpenListing]] = {}
        for lst in self._store.current_listings():
            # A list no longer configured is no longer evidence (a reload removed it).
            if lst.ip in members and lst.zone in self._zones:
                listings.setdefault(lst.ip, []).append(
                    OpenListing(
                        lst.zone, lst.codes, lst.severity, lst.first_seen, lst.tags, lst.txt
                    )
                )
        held: dict[str, list[Suspension]] = {}
        for s in self._store.active_suspensions(now):
            if s.ip in members:
                held.setdefault(s.ip, []).append(s.as_core())
        zones = self.cooldown_zones()
        views = []
        for r in records:
            run = None
            if r.state is IPState.RETIRED:  # a listing on a list no longer configured: no evidence
                run = self._store.clean_run(r.ip, zones, listed_on=self._zones)
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
