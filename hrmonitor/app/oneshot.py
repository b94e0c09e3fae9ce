"""One-shot commands of the CLI: check, report, history, db upgrade."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hrmonitor.adapters.clock import SystemClock
from hrmonitor.adapters.store import open_store
from hrmonitor.app.monitoring import (
    alert_channels,
    dnsbl_engine,
    open_configured_store,
    zone_lists,
)
from hrmonitor.config import Config
from hrmonitor.core.catalogue import ZoneList
from hrmonitor.core.check import Verdict, verdict
from hrmonitor.core.model import Clock, Severity, canonical_ip
from hrmonitor.errors import OperatorError
from hrmonitor.services.alerting import Alerting
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


async def run_check(
    config: Config, ips: Sequence[str] = (), pool: str | None = None, clock: Clock | None = None
) -> CheckOutcome:
    """One sweep now, stored and alerted like the daemon's, and its Nagios verdict."""
    clock = clock or SystemClock()
    targets = _check_ips(config, ips, pool)
    lists = zone_lists(config)
    store = await asyncio.to_thread(open_configured_store, config, clock)
    try:
        alerting = Alerting(store, alert_channels(config), config.alerting.repeat_after)
        async with dnsbl_engine(config) as engine:
            monitor = Monitor(engine, lists, store, clock, alerting.emit_batch, config.core_pools())
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
    by_key = {z.key: z for z in lists}
    data: dict[str, Any] = {
        "zones": [
            {"name": z.key, "zone": z.zone, "health": str(report.result.health.get(z.key, "ok"))}
            for z in lists
        ],
        "results": [
            _result_row(answer, original, monitor.pool_of(answer.ip), by_key)
            for answer, original in zip(trusted, raw, strict=True)
        ],
        "verdict": result.name.lower(),
        "exit": int(result),
        "checked_at": report.at.isoformat(),
    }
    return CheckOutcome(result, data)


def _result_row(
    answer: Any, original: Any, pool: str | None, by_key: dict[str, ZoneList]
) -> dict[str, Any]:
    zone = by_key.get(answer.zone)
    severity = getattr(answer, "severity", None)
    txt = getattr(answer, "txt", "") or getattr(answer, "reason", "")
    row: dict[str, Any] = {
        "ip": answer.ip,
        "pool": pool,
        "zone": zone.zone if zone else answer.zone,
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


def report_data(config: Config, clock: Clock | None = None) -> dict[str, Any]:
    from hrmonitor.services.report import build_report  # noqa: PLC0415  (not on check's path)

    store = open_configured_store(config, clock)
    try:
        return build_report(config, store, (clock or SystemClock()).now())
    finally:
        store.close()


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
        return build_history(store, canonical)
    finally:
        store.close()


def upgrade_database(config: Config) -> bool:
    store = open_store(config.database.url)
    try:
        return store.upgrade()
    finally:
        store.close()
