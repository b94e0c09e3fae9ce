"""The monitor: sweeps a pool's IPs against the DNS lists, stores what changed, tells people.

One sweep = the engine's self-test, lookups and confirmations (adapters.dns),
then ``record_sweep`` in the store (which keeps transitions, not every clean
answer), then the rotation controller's turn through ``on_sweep``, then one
batch of alerts: new and cleared listings merged with what rotation decided
about them (``merge_decided``: a listing that retires its IP is one alert
carrying the action) and zone-health changes. A sweep that fails
raises; the scheduler adapter logs it and the next sweep runs as planned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from hrmonitor.adapters.store.records import AlertRecord, ListingChanges, ListingRecord
from hrmonitor.core.alert import Alert, AlertKind, alert_key, merge_decided
from hrmonitor.core.dnsbl.answers import SweepResult
from hrmonitor.core.dnsbl.catalogue import ZoneList
from hrmonitor.core.model import Answer, Clock, Pool, Severity, Status, ZoneHealth

log = logging.getLogger(__name__)


class SweepEngine(Protocol):
    async def sweep(
        self,
        ips: Sequence[str],
        lists: Sequence[ZoneList],
        previous: Mapping[tuple[str, str], Status] | None = None,
    ) -> SweepResult: ...


class MonitorStore(Protocol):
    def record_sweep(
        self, answers: Sequence[Answer], health: Mapping[str, ZoneHealth], now: datetime
    ) -> ListingChanges: ...

    def listed_keys(self) -> set[tuple[str, str]]: ...

    def current_listings(self, ip: str | None = None) -> list[ListingRecord]: ...

    def open_alerts(self) -> list[AlertRecord]: ...


class MonitorMetrics(Protocol):
    def count_answers(self, answers: Sequence[tuple[str, str]]) -> None: ...

    def sweep_done(self, pool: str, outcome: str, seconds: float) -> None: ...

    def set_zone_health(self, health: Mapping[str, str]) -> None: ...


# A sweep's alerts go out together (``Alerting.emit_batch``): one dedupe transaction.
AlertSink = Callable[[Sequence[Alert]], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class SweepReport:
    pool: str | None
    at: datetime
    result: SweepResult
    changes: ListingChanges


# A listener (the rotation controller) returns the alerts of what it decided about the
# sweep: the monitor merges them with its own (``merge_decided``), one alert per event.
SweepListener = Callable[[SweepReport], Awaitable[Sequence[Alert] | None]]

_HEALTH_SEVERITY = {
    ZoneHealth.DEAD: Severity.HIGH,
    ZoneHealth.LISTS_EVERYTHING: Severity.HIGH,
    ZoneHealth.REFUSING: Severity.MEDIUM,
    ZoneHealth.UNREACHABLE: Severity.MEDIUM,
}


class Monitor:
    def __init__(
        self,
        engine: SweepEngine,
        lists: Sequence[ZoneList],
        store: MonitorStore,
        clock: Clock,
        emit: AlertSink,
        pools: Sequence[Pool] = (),
        metrics: MonitorMetrics | None = None,
    ) -> None:
        self._engine = engine
        self._lists = tuple(lists)
        self._by_key = {z.key: z for z in self._lists}
        self._store = store
        self._clock = clock
        self._emit = emit
        self._pool_of = {ip: pool.name for pool in pools for ip in pool.all_ips}
        self._pools = {pool.name: pool for pool in pools}
        self._metrics = metrics
        self._listeners: list[SweepListener] = []

    @property
    def lists(self) -> tuple[ZoneList, ...]:
        return self._lists

    def reconfigure(self, lists: Sequence[ZoneList], pools: Sequence[Pool]) -> None:
        """New lists and pools (a reload), for the next sweep; a sweep running keeps its own.

        A removed list's open alerts are resolved by :meth:`resolve_unconfigured_zones`.
        """
        self._lists = tuple(lists)
        self._by_key = {z.key: z for z in self._lists}
        self._pool_of = {ip: pool.name for pool in pools for ip in pool.all_ips}
        self._pools = {pool.name: pool for pool in pools}

    def on_sweep(self, listener: SweepListener) -> None:
        """Call ``listener`` after every stored sweep (the rotation controller)."""
        self._listeners.append(listener)

    def pool_of(self, ip: str) -> str | None:
        return self._pool_of.get(ip)

    async def sweep_pool(self, name: str) -> SweepReport:
        pool = self._pools[name]
        return await self.sweep(pool.all_ips, pool=name)

    async def sweep(self, ips: Sequence[str], pool: str | None = None) -> SweepReport:
        """Sweep ``ips``; answers of IPs that belong to no pool are reported, not stored."""
        started = time.perf_counter()
        # Only a Listed answer needs its previous status (to know if the listing is new),
        # so only the listed pairs are read, not the clean majority.
        listed = await asyncio.to_thread(self._store.listed_keys)
        previous = dict.fromkeys(listed, Status.LISTED)
        try:
            result = await self._engine.sweep(ips, self._lists, previous)
        except Exception:
            if self._metrics is not None:
                self._metrics.sweep_done(pool or "-", "failed", time.perf_counter() - started)
            raise
        now = self._clock.now()
        stored = [a for a in result.answers if a.ip in self._pool_of]
        changes = await asyncio.to_thread(self._store.record_sweep, stored, result.health, now)
        report = SweepReport(pool, now, result, changes)
        if self._metrics is not None:
            self._metrics.count_answers([(a.zone, str(a.status)) for a in result.trusted])
            self._metrics.set_zone_health({k: str(v) for k, v in result.health.items()})
            self._metrics.sweep_done(pool or "-", "ok", time.perf_counter() - started)
        own = self._alerts(changes, now, await self._untold(result, changes))
        decided: list[Alert] = []
        try:
            for listener in self._listeners:
                decided.extend(await listener(report) or ())
        finally:
            # A listener that fails (it raises on) does not hold back the sweep's news.
            alerts = [self._with_link(alert) for alert in merge_decided(own, decided)]
            if alerts:
                await self._emit(alerts)
        return report

    async def resolve_unconfigured_zones(self, records: Sequence[AlertRecord]) -> list[str]:
        """Resolve the alerts left open for lists no longer configured (start-up, reload).

        A list removed from the config is no longer queried, so no sweep will see
        it healthy again, or an IP delisted from it: its zone-health alert and its
        listing alerts would stay open for ever. Each resolution keeps the alert's
        kind, severity, pool and IP. ``records``: the store's open alerts.
        Returns the zones whose alerts were resolved.
        """
        now = self._clock.now()
        prefix = alert_key(AlertKind.ZONE_HEALTH, None, None, "")
        alerts = [
            Alert(
                kind=AlertKind.ZONE_HEALTH,
                severity=record.severity,
                key=record.key,
                summary=f"zone {zone} is no longer configured: its health alert is resolved",
                at=now,
                details={"zone": zone, "after": "unconfigured"},
                resolved=True,
            )
            for record in records
            if record.kind == AlertKind.ZONE_HEALTH and record.key.startswith(f"{prefix}:")
            for zone in [record.key.removeprefix(f"{prefix}:")]
            if zone not in self._by_key
        ]
        alerts += [
            alert
            for record in records
            if record.kind in (AlertKind.LISTING, AlertKind.NORMAL_IP_LISTED)
            and (alert := self._unconfigured_listing(record, now)) is not None
        ]
        if alerts:
            zones = sorted({str(a.details["zone"]) for a in alerts})
            log.info("resolving the alerts of unconfigured zones: %s", ", ".join(zones))
            await self._emit(alerts)
        return sorted({str(a.details["zone"]) for a in alerts})

    async def resolve_unconfigured_pools(self, records: Sequence[AlertRecord]) -> list[str]:
        """Resolve the alerts left open for pools no longer configured (start-up, reload).

        A pool removed from the config is no longer ticked by the controller, so a
        ``pool-exhausted`` or ``pool-below-min`` it raised, or an alert about one of
        its IPs, would stay open for ever (a reload refuses to remove a pool whose
        mail still waits, so nothing is left to deliver from it). Each resolution
        keeps the alert's kind, severity, pool and IP. ``records``: the store's open
        alerts. Returns the pools whose alerts were resolved.
        """
        now = self._clock.now()
        alerts = [
            Alert(
                kind=AlertKind(record.kind),
                severity=record.severity,
                key=record.key,
                summary=f"pool {pool} is no longer configured: its alert is resolved",
                at=now,
                details={"after": "unconfigured"},
                pool=pool,
                ip=ip if isinstance(ip, str) else None,
                resolved=True,
            )
            for record in records
            for pool, ip in [(record.payload.get("pool"), record.payload.get("ip"))]
            if isinstance(pool, str) and pool not in self._pools
        ]
        if alerts:
            pools = sorted({str(a.pool) for a in alerts})
            log.info("resolving the alerts of unconfigured pools: %s", ", ".join(pools))
            await self._emit(alerts)
        return sorted({str(a.pool) for a in alerts})

    def _unconfigured_listing(self, record: AlertRecord, now: datetime) -> Alert | None:
        """The resolution of a listing alert whose zone is no longer configured, or None."""
        details = record.payload.get("details")
        zone = details.get("zone") if isinstance(details, dict) else None
        if not isinstance(zone, str) or zone in self._by_key:
            return None
        pool, ip = record.payload.get("pool"), record.payload.get("ip")
        pool = pool if isinstance(pool, str) else None
        ip = ip if isinstance(ip, str) else None
        return Alert(
            kind=AlertKind(record.kind),  # a normal-pool IP's listing is normal-ip-listed
            event="delisting",
            severity=record.severity,
            key=record.key,
            summary=f"{ip} ({pool}) listing on {zone} no longer watched: {zone} is not configured",
            at=now,
            details={"zone": zone, "after": "unconfigured"},
            pool=pool,
            ip=ip,
            resolved=True,
        )

    async def _untold(self, result: SweepResult, changes: ListingChanges) -> list[ListingRecord]:
        """Open listings this sweep saw that nobody was told of.

        A listing is told when a sweep first records it. ``hrmonitor check`` records
        listings too but never alerts (its output is the alert), so a listing it saw
        first is not new to the daemon's next sweep: it is told here instead. Only
        listings still listed and without an open alert are, so this reads the store
        only while some listing is open, and tells each at most once.
        """
        new = {(x.ip, x.zone) for x in changes.listed}
        seen = {
            (a.ip, a.zone)
            for a in result.trusted
            if a.status is Status.LISTED and a.ip in self._pool_of and (a.ip, a.zone) not in new
        }
        if not seen:
            return []
        told = {a.key for a in await asyncio.to_thread(self._store.open_alerts)}
        current = await asyncio.to_thread(self._store.current_listings)
        return [
            x
            for x in current
            if (x.ip, x.zone) in seen
            and alert_key(AlertKind.LISTING, self._pool_of.get(x.ip), x.ip, x.zone) not in told
        ]

    def _alerts(
        self, changes: ListingChanges, now: datetime, untold: Sequence[ListingRecord] = ()
    ) -> list[Alert]:
        alerts = [
            self._listing_alert(listing, now, resolved=False)
            for listing in (*changes.listed, *untold)
        ]
        alerts += [self._listing_alert(listing, now, resolved=True) for listing in changes.cleared]
        for change in changes.zones:
            ok = change.after is ZoneHealth.OK
            zone = self._by_key.get(change.zone)
            alerts.append(
                Alert(
                    kind=AlertKind.ZONE_HEALTH,
                    severity=_HEALTH_SEVERITY.get(change.after, Severity.MEDIUM),
                    key=alert_key(AlertKind.ZONE_HEALTH, None, None, change.zone),
                    summary=(
                        f"zone {change.zone} is healthy again"
                        if ok
                        else f"zone {change.zone} is {change.after}: its answers are ignored"
                    ),
                    at=now,
                    details={
                        "zone": change.zone,
                        "dns_zone": zone.zone if zone else change.zone,
                        "before": str(change.before) if change.before else None,
                        "after": str(change.after),
                        "detail": change.detail,
                    },
                    resolved=ok,
                )
            )
        return alerts

    def _with_link(self, alert: Alert) -> Alert:
        """A listing alert of rotation's (a repeat) gets the zone's lookup link too."""
        zone_key = alert.details.get("zone")
        if "lookup_url" in alert.details or not isinstance(zone_key, str):
            return alert
        if alert.kind not in (AlertKind.LISTING, AlertKind.NORMAL_IP_LISTED, AlertKind.RETIREMENT):
            return alert
        zone = self._by_key.get(zone_key)
        if zone is None:
            return alert
        details = {**alert.details, "dns_zone": zone.zone, "lookup_url": zone.lookup_url}
        return replace(alert, details=details)

    def _listing_alert(self, listing: ListingRecord, now: datetime, *, resolved: bool) -> Alert:
        pool = self._pool_of.get(listing.ip)
        zone = self._by_key.get(listing.zone)
        what = "delisted from" if resolved else "listed on"
        return Alert(
            kind=AlertKind.LISTING,  # rotation says normal-ip-listed (merge_decided)
            event="delisting" if resolved else "",
            severity=listing.severity,
            key=alert_key(AlertKind.LISTING, pool, listing.ip, listing.zone),
            summary=f"{listing.ip} ({pool}) {what} {listing.zone}",
            at=now,
            details={
                "zone": listing.zone,
                "dns_zone": zone.zone if zone else listing.zone,
                "codes": listing.codes,
                "tags": listing.tags,
                "txt": listing.txt,
                "since": listing.first_seen,
                "cleared_at": listing.cleared_at,
                "lookup_url": zone.lookup_url if zone else "",
            },
            pool=pool,
            ip=listing.ip,
            resolved=resolved,
        )
