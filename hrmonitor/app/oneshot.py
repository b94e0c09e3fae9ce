"""One-shot commands of the CLI: check, report, history, db upgrade."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from hrmonitor.adapters.clock import SystemClock
from hrmonitor.adapters.store import ListingChanges, Store, open_store
from hrmonitor.adapters.store.records import AlertRecord, ListingRecord
from hrmonitor.app.monitoring import (
    build_monitor,
    dnsbl_engine,
    open_configured_store,
    zone_lists,
)
from hrmonitor.config.loading import Config
from hrmonitor.core.alert import Alert
from hrmonitor.core.dnsbl.catalogue import ZoneList
from hrmonitor.core.dnsbl.check import Verdict, verdict
from hrmonitor.core.model import (
    Answer,
    Clean,
    Clock,
    Listed,
    Severity,
    ZoneHealth,
    canonical_ip,
)
from hrmonitor.errors import OperatorError, StoreError
from hrmonitor.services.monitor import Monitor, SweepReport

# --- check --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    verdict: Verdict
    data: dict[str, Any]


def _check_ips(config: Config, ips: Sequence[str], pool: str | None) -> list[str]:
    if pool is not None and pool not in config.pools:
        raise OperatorError(f"--pool {pool!r}: no such pool (have: {', '.join(config.pools)})")
    chosen: list[str] = []
    for text in ips:
        try:
            chosen.append(canonical_ip(text))
        except ValueError:
            raise OperatorError(f"{text!r} is not an IP address") from None
    if pool is not None:
        chosen += [*config.pools[pool].ips, *config.pools[pool].standby]
    if not ips and pool is None:
        chosen = [ip for p in config.core_pools() for ip in p.all_ips]
    return list(dict.fromkeys(chosen))


class CheckRecord(StrEnum):
    """What ``hrmonitor check`` writes to the store (``--record``); it never sends alerts.

    A probe runs from wherever the monitoring system is, often with its own
    resolver: a resolver that cannot reach the lists there says nothing about the
    lists, so by default (``listings``) the check stores the answers of the zones
    that passed their self-test in its own sweep, and the listings they open or
    close, and leaves zone health, and every alert, to the daemon. ``all`` stores
    zone health too (a check from the daemon's host, with its resolver); ``none``
    writes no sweep data at all.
    """

    LISTINGS = "listings"
    ALL = "all"
    NONE = "none"


class _CheckStore:
    """The monitor's store as ``hrmonitor check`` may write it (see :class:`CheckRecord`)."""

    def __init__(self, store: Store, record: CheckRecord) -> None:
        self._store = store
        self._record = record

    def listed_keys(self) -> set[tuple[str, str]]:
        return self._store.listed_keys()

    # check tells nobody, so it has no untold listings to catch up on (the daemon does).
    def current_listings(self, ip: str | None = None) -> list[ListingRecord]:
        return []

    def open_alerts(self) -> list[AlertRecord]:
        return []

    def record_sweep(
        self, answers: Sequence[Answer], health: Mapping[str, ZoneHealth], now: datetime
    ) -> ListingChanges:
        if self._record is CheckRecord.NONE:
            return ListingChanges()
        if self._record is CheckRecord.ALL:
            return self._store.record_sweep(answers, health, now)
        # Only the zones that answered their test points here: the others' answers
        # (and the clean runs they would break) are not this probe's to judge.
        healthy = {zone for zone, h in health.items() if h is ZoneHealth.OK}
        usable = [a for a in answers if a.zone in healthy]
        return self._store.record_sweep(
            usable, dict.fromkeys(healthy, ZoneHealth.OK), now, zone_health=False
        )


async def _no_alerts(alerts: Sequence[Alert]) -> None:
    """check's exit status and output are its alert; the daemon tells the channels."""


async def run_check(
    config: Config,
    ips: Sequence[str] = (),
    pool: str | None = None,
    clock: Clock | None = None,
    record: CheckRecord = CheckRecord.LISTINGS,
) -> CheckOutcome:
    """One sweep now and its Nagios verdict; stored as ``record`` says, never alerted."""
    clock = clock or SystemClock()
    targets = _check_ips(config, ips, pool)
    lists = zone_lists(config)
    store = await asyncio.to_thread(open_configured_store, config, clock)
    try:
        async with dnsbl_engine(config) as engine:
            monitor = build_monitor(config, engine, _CheckStore(store, record), clock, _no_alerts)
            report = await monitor.sweep(targets, pool=pool)
    finally:
        store.close()
    return check_outcome(config, lists, report, monitor)


def check_outcome(
    config: Config, lists: Sequence[ZoneList], report: SweepReport, monitor: Monitor
) -> CheckOutcome:
    def retire_at(ip: str) -> Severity:
        pool = monitor.pool_of(ip)
        return config.pools[pool].retire_at if pool else Severity.HIGH

    trusted = report.result.trusted
    raw = report.result.answers
    result = verdict(trusted, report.result.health, retire_at)
    data: dict[str, Any] = {
        "zones": [
            {"name": z.key, "zone": z.zone, "health": str(report.result.health.get(z.key, "ok"))}
            for z in lists
        ],
        "results": _result_rows(trusted, raw, monitor.pool_of, {z.key: z.zone for z in lists}),
        "verdict": result.name.lower(),
        "exit": int(result),
        "checked_at": report.at.isoformat(),
    }
    return CheckOutcome(result, data)


def _result_rows(
    trusted: Sequence[Answer],
    raw: Sequence[Answer],
    pool_of: Callable[[str], str | None],
    zone_of: Mapping[str, str],
) -> list[dict[str, Any]]:
    """One row per answer: 40,960 of them for 4,096 IPs on 10 lists, so little work per row.

    An answer its zone's health left as it was (the same object as the raw
    answer) that is Clean or Listed, nearly all of them, gets its row from a
    literal; the others take the generic path of ``_result_row``.
    """
    pools = {ip: pool_of(ip) for ip in {answer.ip for answer in trusted}}
    zones = {key: zone_of.get(key, key) for key in {answer.zone for answer in trusted}}
    rows: list[dict[str, Any]] = []
    append = rows.append
    for answer, original in zip(trusted, raw, strict=True):
        kind = type(answer)
        if answer is not original or (kind is not Clean and kind is not Listed):
            append(_result_row(answer, original, pools[answer.ip], zones))
            continue
        if kind is Clean:
            status, codes, tags, severity, txt = "clean", [], [], None, ""
        else:
            assert isinstance(answer, Listed)
            status, codes, tags = "listed", list(answer.codes), list(answer.tags)
            severity = str(answer.severity) if answer.severity else None
            txt = answer.txt or ""
        ip, key = answer.ip, answer.zone
        append(
            {
                "ip": ip,
                "pool": pools[ip],
                "zone": zones[key],
                "list": key,
                "status": status,
                "codes": codes,
                "tags": tags,
                "severity": severity,
                "txt": txt,
            }
        )
    return rows


def _result_row(
    answer: Any, original: Any, pool: str | None, zone_of: Mapping[str, str]
) -> dict[str, Any]:
    severity = getattr(answer, "severity", None)
    txt = getattr(answer, "txt", "") or getattr(answer, "reason", "")
    row: dict[str, Any] = {
        "ip": answer.ip,
        "pool": pool,
        "zone": zone_of.get(answer.zone, answer.zone),
        "list": answer.zone,
        "status": str(answer.status),
        "codes": list(getattr(answer, "codes", ()) or getattr(original, "codes", ())),
        "tags": list(getattr(answer, "tags", ())),
        "severity": str(severity) if severity else None,
        "txt": txt,
    }
    if original.status is not answer.status:
        row["untrusted_status"] = str(original.status)
    return row


# --- report and history ---------------------------------------------------------------------


def _dns_zones(config: Config) -> dict[str, str]:
    """Each configured list's catalogue key and the DNS zone it queries."""
    return {z.key: z.zone for z in zone_lists(config)}


def report_data(config: Config, clock: Clock | None = None) -> dict[str, Any]:
    with ReportSource(config, clock) as source:
        return source.read()


class ReportSource:
    """The report, read again and again from one store: what ``report --watch`` refreshes.

    The store is opened, migrated and its pools registered once, and the
    catalogue read once; each :meth:`read` is only the queries of the report
    (a refresh used to reconnect, check the migrations and parse the
    catalogue every time).
    """

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self._config = config
        self._clock = clock or SystemClock()
        self._zone_of = _dns_zones(config)
        self._store = open_configured_store(config, clock)

    def read(self) -> dict[str, Any]:
        from hrmonitor.services.report import build_report  # noqa: PLC0415  (not on check's path)

        try:
            return build_report(self._config, self._store, self._clock.now(), self._zone_of)
        except StoreError:
            # The pools do not ping a connection before using it: one the server
            # closed (a PostgreSQL restart) fails a single read, and the pool drops
            # it. A watch running for hours reads once more rather than dying.
            return build_report(self._config, self._store, self._clock.now(), self._zone_of)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> ReportSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def history_data(config: Config, ip: str) -> dict[str, Any]:
    from hrmonitor.services.report import build_history  # noqa: PLC0415  (not on check's path)

    try:
        canonical = canonical_ip(ip)
    except ValueError:
        raise OperatorError(f"{ip!r} is not an IP address") from None
    store = open_configured_store(config)
    try:
        if store.ip_record(canonical) is None:
            raise OperatorError(f"{canonical} is not an IP of any configured pool")
        return build_history(store, canonical, config, SystemClock().now(), _dns_zones(config))
    finally:
        store.close()


def upgrade_database(config: Config) -> tuple[str | None, str | None]:
    """Apply the migrations; the revision before and after (None: an empty database)."""
    store = open_store(config.database.url)
    try:
        before = store.revision()
        store.upgrade()
        return before, store.revision()
    finally:
        store.close()
