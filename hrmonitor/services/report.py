"""The pool health report and an IP's history, as JSON-able data from the store.

``hrmonitor report`` prints this through the terminal adapter, ``--json`` prints
it as it is: one builder, so the two can never disagree. Health is computed
per pool (core.health) from that pool's IPs only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from hrmonitor.adapters.store import Store, nodes
from hrmonitor.adapters.store.queue.repository import QueueRepository
from hrmonitor.adapters.store.records import IpRecord, ListingRecord, Suspension
from hrmonitor.config.loading import Config
from hrmonitor.core.health import IpCondition, pool_health
from hrmonitor.core.model import IPState, PoolPolicy, ZoneHealth
from hrmonitor.core.rotation.eligibility import blockers
from hrmonitor.core.rotation.timers import return_outlook
from hrmonitor.core.rotation.views import IpView, OpenListing
from hrmonitor.core.rotation.warmup import WarmupView
from hrmonitor.core.surge import RateThresholds, rate_rows

WHOLE_IP = "*"
# Data older than this many of the shortest pool interval means no daemon is sweeping.
STALE_AFTER_INTERVALS = 3


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _listing(listing: ListingRecord, zone_of: Mapping[str, str]) -> dict[str, Any]:
    return {
        "zone": listing.zone,
        # The catalogue key is what config and alerts name; the DNS zone is what a
        # postmaster looks up by hand (dig, the list's removal page).
        "dns_zone": zone_of.get(listing.zone, listing.zone),
        "codes": list(listing.codes),
        "tags": list(listing.tags),
        "severity": str(listing.severity),
        "txt": listing.txt,
        "since": _iso(listing.first_seen),
        "last_seen": _iso(listing.last_seen),
    }


def _suspension(suspension: Suspension) -> dict[str, Any]:
    return {
        "scope": suspension.scope,
        "reason": suspension.reason,
        "since": _iso(suspension.since),
        "until": _iso(suspension.until),
        "by": suspension.actor,
    }


def _daily_cap(config: Config, record: IpRecord) -> int | None:
    if record.state is not IPState.WARMING or record.warmup_stage is None:
        return None
    stages = config.pools[record.pool].warmup
    if not stages:
        return None
    return stages[min(record.warmup_stage, len(stages) - 1)].daily_cap


def cooldown_zones(config: Config, store: Store) -> tuple[str, ...]:
    """The zones a cool-down counts (configured and healthy now), as the controller counts them."""
    health = store.zone_health()
    return tuple(z for z in config.dnsbl.zones if z in health and health[z].health is ZoneHealth.OK)


def _view(
    record: IpRecord,
    listings: list[ListingRecord],
    suspensions: list[Suspension],
    store: Store,
    zones: tuple[str, ...],
    now: datetime,
) -> IpView:
    """The IP as rotation sees it (``services.rotation.eligibility`` builds the same view)."""
    run = store.clean_run(record.ip, zones) if record.state is IPState.RETIRED else None
    warmup = None
    if record.state is IPState.WARMING:
        warmup = WarmupView(
            stage=record.warmup_stage or 0,
            stage_since=record.warmup_since or record.state_since,
            day=record.sent_day,
            sent=record.sent_today,
            delivered=record.delivered_today,
        )
    return IpView(
        ip=record.ip,
        pool=record.pool,
        state=record.state,
        state_since=record.state_since,
        state_until=record.state_until,
        state_actor=record.state_actor,
        listings=tuple(
            OpenListing(x.zone, x.codes, x.severity, x.first_seen, x.tags, x.txt) for x in listings
        ),
        clean_since=run.since if run else None,
        clean_checked_at=run.checked_at if run else None,
        last_sent_at=record.last_sent_at,
        sent_today=record.sent_on(now.date()),
        warmup=warmup,
        suspensions=tuple(s.as_core() for s in suspensions),
    )


def retirement(store: Store, view: IpView, policy: PoolPolicy, zones: tuple[str, ...]) -> Any:
    """Why a retired IP is out, which clock it waits on, when it returns at the earliest."""
    if view.state is not IPState.RETIRED:
        return None
    retired = [
        e for e in store.audit_trail(view.ip) if e.kind == "state" and e.to_state == "retired"
    ]
    outlook = return_outlook(view, policy)
    return {
        "reason": retired[-1].reason if retired else "",
        "by": view.state_actor,
        "since": _iso(view.state_since),
        "waits_on": str(outlook.waits_on),
        "detail": outlook.detail,
        "earliest_return": _iso(outlook.earliest),
        "cooldown": str(policy.cooldown),
        "zones_counted": list(zones),
    }


def freshness(config: Config, store: Store, now: datetime) -> dict[str, Any]:
    """When a daemon last wrote what the report shows, and whether that is too old.

    A daemon's sweep stamps every configured zone's health (``hrmonitor check``
    does not), so the newest zone-health ``checked_at`` is the daemon's last
    word; none at all means no daemon has swept this store.
    """
    health = store.zone_health()
    stamps = [health[z].checked_at for z in config.dnsbl.zones if z in health]
    as_of = max(stamps) if stamps else None
    shortest = min((p.interval for p in config.core_pools()), default=config.dnsbl.interval)
    limit: timedelta = STALE_AFTER_INTERVALS * shortest
    return {
        "data_as_of": _iso(as_of),
        "stale": as_of is None or now - as_of > limit,
        "stale_after_seconds": limit.total_seconds(),
    }


def build_report(
    config: Config, store: Store, now: datetime, zone_of: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The report; ``zone_of`` maps each configured list's catalogue key to its DNS zone."""
    zone_of = zone_of or {}
    records = store.ip_records()
    counted = cooldown_zones(config, store)
    core_pools = {pool.name: pool for pool in config.core_pools()}
    listings: dict[str, list[ListingRecord]] = {}
    for listing in store.current_listings():
        listings.setdefault(listing.ip, []).append(listing)
    suspensions: dict[str, list[Suspension]] = {}
    for suspension in store.active_suspensions(now):
        suspensions.setdefault(suspension.ip, []).append(suspension)
    repository = QueueRepository(store.engine)
    queue = repository.counts()
    rates = rate_rows(repository.tenant_counts(now - config.surge.rates_window))

    pools = []
    for name, pool in config.pools.items():
        configured = set(pool.ips) | set(pool.standby)
        own = [r for r in records if r.pool == name and r.ip in configured]
        views = {
            r.ip: _view(r, listings.get(r.ip, []), suspensions.get(r.ip, []), store, counted, now)
            for r in own
        }
        blocked = blockers(core_pools[name], list(views.values()), now)
        conditions = [
            IpCondition(
                r.ip,
                r.state,
                len(listings.get(r.ip, ())),
                any(s.scope == WHOLE_IP for s in suspensions.get(r.ip, ())),
                bool(suspensions.get(r.ip)),
                eligible=r.ip not in blocked,
            )
            for r in own
        ]
        summary = pool_health(pool.risk, pool.min_active, conditions)
        pools.append(
            {
                "name": name,
                "risk": str(pool.risk),
                "health": str(summary.health),
                "summary": summary.as_dict(),
                "policy": {
                    "on_listing": str(pool.on_listing),
                    "retire_at": str(pool.retire_at),
                    "min_active": pool.min_active,
                    "when_exhausted": str(pool.when_exhausted),
                },
                "queue": queue.get(name, {}),
                "ips": [
                    {
                        "ip": r.ip,
                        "state": str(r.state),
                        "state_since": _iso(r.state_since),
                        "warmup_stage": r.warmup_stage if r.state is IPState.WARMING else None,
                        "sent_today": r.sent_on(now.date()),
                        "daily_cap": _daily_cap(config, r),
                        "last_sent_at": _iso(r.last_sent_at),
                        "eligible": r.ip not in blocked,
                        "not_eligible": blocked.get(r.ip),
                        "retirement": retirement(
                            store, views[r.ip], core_pools[name].policy, counted
                        ),
                        "listings": [_listing(x, zone_of) for x in listings.get(r.ip, ())],
                        "suspensions": [_suspension(s) for s in suspensions.get(r.ip, ())],
                    }
                    for r in own
                ],
            }
        )
    health = store.zone_health()
    # The configured lists only, each once: a list removed from the config is no
    # longer queried, so its last stored health (often "dead") says nothing now.
    zones = [
        {
            "name": key,
            "dns_zone": zone_of.get(key, key),
            "health": str(record.health) if record else "unknown",
            "detail": record.detail if record else "not checked by a daemon yet",
            "checked_at": _iso(record.checked_at) if record else None,
            "changed_at": _iso(record.changed_at) if record else None,
        }
        for key in config.dnsbl.zones
        for record in [health.get(key)]
    ]
    alerts = [
        {
            "key": a.key,
            "kind": a.kind,
            "severity": str(a.severity),
            "summary": a.payload.get("summary", ""),
            "first_at": _iso(a.first_at),
            "last_sent_at": _iso(a.last_sent_at),
            "resolved_at": _iso(a.resolved_at),
        }
        for a in store.recent_alerts(20)
    ]
    totals: dict[str, int] = {}
    for counts in queue.values():
        for status, count in counts.items():
            totals[status] = totals.get(status, 0) + count
    return {
        "generated_at": now.isoformat(),
        **freshness(config, store, now),
        "pools": pools,
        "zones": zones,
        "queue": {"by_pool": queue, "totals": totals},
        "alerts": alerts,
        "cluster": _cluster(config, store),
        "tenants": [row.as_dict() for row in rates],
        "thresholds": {
            "hard_bounce_review": RateThresholds().bounce_review,
            "hard_bounce_pause": RateThresholds().bounce_pause,
            "complaint_review": RateThresholds().complaint_review,
            "complaint_pause": RateThresholds().complaint_pause,
        },
    }


def _cluster(config: Config, store: Store) -> dict[str, Any]:
    """The nodes the store has seen (alive or not) and who holds each role now."""
    held = {r.role: r for r in nodes.roles(store.engine)}
    return {
        "nodes": [
            {
                "name": n.name,
                "host": n.host,
                "pid": n.pid,
                "alive": n.alive,
                "started_at": _iso(n.started_at),
                "heartbeat_at": _iso(n.heartbeat_at),
                "stopped_at": _iso(n.stopped_at),
            }
            for n in nodes.members(store.engine, config.node.lease)
        ],
        "roles": {
            role: {
                "holder": held[role].holder if role in held else None,
                "since": _iso(held[role].since) if role in held else None,
            }
            for role in nodes.ROLES
        },
    }


def build_history(
    store: Store,
    ip: str,
    config: Config | None = None,
    now: datetime | None = None,
    zone_of: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    zone_of = zone_of or {}
    record = store.ip_record(ip)
    outlook = None
    if record is not None and config is not None and now is not None:
        pool = {p.name: p for p in config.core_pools()}.get(record.pool)
        if pool is not None:
            zones = cooldown_zones(config, store)
            own_listings = [x for x in store.current_listings() if x.ip == ip]
            held = store.active_suspensions(now, ip)
            view = _view(record, own_listings, held, store, zones, now)
            outlook = retirement(store, view, pool.policy, zones)
    return {
        "ip": ip,
        "pool": record.pool if record else None,
        "state": str(record.state) if record else None,
        "retirement": outlook,
        "pools_served": [
            {"pool": h.pool, "risk": str(h.risk), "first_seen": _iso(h.first_seen)}
            for h in store.pool_history(ip)
        ],
        "listings": [
            {**_listing(x, zone_of), "cleared_at": _iso(x.cleared_at)}
            for x in store.listing_history(ip)
        ],
        "audit": [
            {
                "at": _iso(e.at),
                "kind": e.kind,
                "from": e.from_state,
                "to": e.to_state,
                "reason": e.reason,
                "by": e.actor,
                "evidence": dict(e.evidence),
                "until": _iso(e.until),
            }
            for e in store.audit_trail(ip)
        ],
    }
