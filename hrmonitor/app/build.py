"""The composition root: builds adapters and services from a Config, and owns their lifecycle.

Nothing else wires parts together. The CLI calls the functions here; the
daemon (:class:`Daemon`) is one AsyncExitStack that opens everything in order
and closes it in reverse, and SIGTERM/SIGINT mean: stop accepting, drain, stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from hrmonitor.adapters.alerts import Channel, EmailChannel, LogChannel, WebhookChannel
from hrmonitor.adapters.clock import SystemClock
from hrmonitor.adapters.dns.dnsbl import DnsblEngine, read_catalogue
from hrmonitor.adapters.dns.mail import MailDns
from hrmonitor.adapters.metrics import Metrics
from hrmonitor.adapters.scheduler import Scheduler
from hrmonitor.adapters.store import Store, open_store
from hrmonitor.config import Config, split_address
from hrmonitor.core.catalogue import ZoneList
from hrmonitor.core.check import Verdict, verdict
from hrmonitor.core.dnsbl import budget_problems
from hrmonitor.core.limits import SendingLimits
from hrmonitor.core.model import Clock, Severity, canonical_ip
from hrmonitor.core.routing import RoutingSettings, Tenant
from hrmonitor.core.routing_rules import check_rule_pools, load_routing_files
from hrmonitor.errors import ConfigError, OperatorError
from hrmonitor.services.alerting import Alerting
from hrmonitor.services.controller import Controller
from hrmonitor.services.monitor import Monitor, SweepReport
from hrmonitor.services.report import build_history, build_report
from hrmonitor.services.routing import Router

log = logging.getLogger(__name__)

# A list's TTL: polling faster gains nothing and costs budget (docs/dnsbl-facts.md).
MIN_USEFUL_INTERVAL_SECONDS = 15 * 60


# --- building blocks --------------------------------------------------------------------


def open_configured_store(config: Config, clock: Clock | None = None) -> Store:
    """Open the store, migrate it if needed, and register the configured pools.

    A pool change the store refuses (an IP that served a high-risk pool now in
    the normal pool, an IP moved between pools) is a config error: exit 2.
    """
    store = open_store(config.database.url)
    try:
        store.upgrade()
        now = (clock or SystemClock()).now()
        problems = store.sync_pools(config.core_pools(), now)
    except Exception:
        store.close()
        raise
    if problems:
        store.close()
        raise ConfigError(str(config.source), "pools", problems[0])
    return store


def zone_lists(config: Config) -> tuple[ZoneList, ...]:
    catalogue = read_catalogue([config.path(p) for p in config.dnsbl.catalogue])
    return catalogue.select(
        config.dnsbl.zones, config.dnsbl.dqs_key, config_file=str(config.source)
    )


def dnsbl_engine(config: Config) -> DnsblEngine:
    return DnsblEngine(
        config.dns.nameservers,
        config.dns.port,
        config.dns.timeout.total_seconds(),
        config.dns.attempts,
        max_in_flight=config.dnsbl.max_in_flight,
        rate_per_zone=config.dnsbl.rate_per_zone,
    )


def alert_channels(config: Config) -> list[Channel]:
    channels: list[Channel] = [LogChannel()]
    for alert in config.alerts:
        timeout = alert.timeout.total_seconds()
        if alert.type == "webhook":
            channels.append(WebhookChannel(alert.url, timeout, alert.min_severity))
        elif alert.type == "email":
            channels.append(
                EmailChannel(
                    alert.to,
                    alert.sender,
                    alert.smtp_host,
                    alert.smtp_port,
                    timeout,
                    alert.min_severity,
                )
            )
    return channels


def schedule_warnings(config: Config, lists: Sequence[ZoneList]) -> list[str]:
    """Warnings, not refusals: short intervals are fine for labs and tests."""
    warnings = []
    for pool in config.core_pools():
        seconds = pool.interval.total_seconds()
        if seconds < MIN_USEFUL_INTERVAL_SECONDS:
            warnings.append(
                f"pool {pool.name}: interval {seconds:g}s is shorter than the lists' TTL "
                f"(~{MIN_USEFUL_INTERVAL_SECONDS // 60} min): faster sweeps add load, not news"
            )
        warnings.extend(
            f"pool {pool.name}: {p}"
            for p in budget_problems(lists, len(pool.all_ips), pool.interval)
        )
    return warnings


def build_router(config: Config) -> Router:
    """The per-message routing decision maker, with its sender-domain DNS and limits."""
    pools = config.core_pools()
    rules = load_routing_files([config.path(p) for p in config.routing.rules])
    check_rule_pools(rules, pools)
    settings = RoutingSettings(
        spam_threshold=config.routing.spam_threshold,
        spam_headers=tuple(config.routing.spam_headers),
        trusted_filters=tuple(str(n) for n in config.routing.trusted_filters),
        dns_unknown_hold=config.routing.dns_unknown_hold,
        on_dns_unknown=config.routing.on_dns_unknown,
        relay_pool=config.routing.relay_pool,
        limits=SendingLimits(
            recipients_per_hour=config.limits.recipients_per_hour,
            recipients_per_day=config.limits.recipients_per_day,
        ),
    )
    mail_dns = MailDns(
        nameservers=tuple(str(ns) for ns in config.dns.nameservers),
        port=config.dns.port,
        timeout=config.dns.timeout.total_seconds(),
        attempts=config.dns.attempts,
    )
    tenants = [
        Tenant(t.name, tuple(str(n) for n in t.networks), tuple(t.domains)) for t in config.tenants
    ]
    return Router(rules, pools, settings, mail_dns, tenants)


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
        chosen += [ip for ip in config.pools[pool].ips + config.pools[pool].standby]
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
            monitor = Monitor(engine, lists, store, clock, alerting.emit, config.core_pools())
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


def open_controller(config: Config) -> tuple[Controller, Callable[[], None]]:
    """A rotation controller on the configured store for one command, and how to close it."""
    store = open_configured_store(config)
    alerting = Alerting(store, alert_channels(config), config.alerting.repeat_after)
    zones = [z.key for z in zone_lists(config)]
    return Controller(store, config.core_pools(), zones, alerting), store.close


# --- report and history ---------------------------------------------------------------------


def report_data(config: Config, clock: Clock | None = None) -> dict[str, Any]:
    store = open_configured_store(config, clock)
    try:
        return build_report(config, store, (clock or SystemClock()).now())
    finally:
        store.close()


def history_data(config: Config, ip: str) -> dict[str, Any]:
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


# --- the daemon -----------------------------------------------------------------------------


class Daemon:
    """``hrmonitor run``: monitor on a schedule, relay mail, rotate IPs, tell people."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.metrics = Metrics()
        self.metrics_port: int | None = None

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        config = self.config
        lists = zone_lists(config)
        for warning in schedule_warnings(config, lists):
            log.warning("%s", warning)
        async with AsyncExitStack() as stack:
            store = await asyncio.to_thread(open_configured_store, config, self.clock)
            stack.callback(store.close)
            alerting = Alerting(
                store, alert_channels(config), config.alerting.repeat_after, self.metrics
            )
            engine = dnsbl_engine(config)
            await engine.open()
            stack.push_async_callback(engine.close)
            monitor = Monitor(
                engine, lists, store, self.clock, alerting.emit, config.core_pools(), self.metrics
            )
            if config.metrics.bind:
                host, port = split_address(config.metrics.bind)
                self.metrics_port = self.metrics.serve(host, port)
                stack.callback(self.metrics.close)
            scheduler = Scheduler()
            for pool in config.core_pools():
                scheduler.every(
                    f"sweep:{pool.name}",
                    pool.interval,
                    _sweep_job(monitor, pool.name),
                    first_run=self.clock.now(),
                )
            scheduler.start()
            stack.callback(scheduler.shutdown)
            self._install_signals(stack)
            log.info(
                "hrmonitor running: pools %s, lists %s",
                ", ".join(config.pools),
                ", ".join(z.key for z in lists),
            )
            self.ready.set()
            await self.stopping.wait()
            log.info("hrmonitor stopping")

    def _install_signals(self, stack: AsyncExitStack) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):  # not the main thread
                continue
            stack.callback(loop.remove_signal_handler, sig)


def _sweep_job(monitor: Monitor, pool: str) -> Any:
    async def job() -> None:
        await monitor.sweep_pool(pool)

    return job
