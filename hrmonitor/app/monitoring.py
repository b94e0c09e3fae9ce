"""Building blocks of a sweep: the store, the lists, the DNSBL engine, the alert channels,
and the monitor itself (:func:`build_monitor`, which ``compose`` re-exports for the daemon).

Apart from ``build`` (which re-exports them) so that ``hrmonitor check``, a probe
started every few minutes, does not import the router, the controller, the
surge detector and the rule files the daemon needs besides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from hrmonitor.adapters.alerts import Channel, EmailChannel, LogChannel, WebhookChannel
from hrmonitor.adapters.clock import SystemClock
from hrmonitor.adapters.dns.dnsbl.engine import DnsblEngine, read_catalogue
from hrmonitor.adapters.store import Store, open_store
from hrmonitor.config.files import RuleKind
from hrmonitor.config.loading import Config
from hrmonitor.core.alert import Alert
from hrmonitor.core.dnsbl.answers import budget_problems
from hrmonitor.core.dnsbl.catalogue import ZoneList
from hrmonitor.core.model import Clock
from hrmonitor.errors import ConfigError, StoreError
from hrmonitor.services.monitor import Monitor, MonitorMetrics, MonitorStore, SweepEngine

# A list's TTL: polling faster gains nothing and costs budget (docs/dnsbl-facts.md).
MIN_USEFUL_INTERVAL_SECONDS = 15 * 60


def open_configured_store(config: Config, clock: Clock | None = None) -> Store:
    """Open the store, migrate it if needed, and register the configured pools.

    A pool change the store refuses (an IP that served a high-risk pool now in
    the normal pool, an IP moved between pools) is a config error: exit 2.
    """
    try:
        store = open_store(config.database.url)
    except StoreError as error:
        raise ConfigError(str(config.source), "database.url", str(error)) from None
    try:
        store.upgrade()
        now = (clock or SystemClock()).now()
        problems = store.sync_pools(config.core_pools(), now)
    except StoreError as error:
        store.close()
        raise ConfigError(str(config.source), "database.url", str(error)) from None
    except Exception:
        store.close()
        raise
    if problems:
        store.close()
        raise ConfigError(str(config.source), "pools", problems[0])
    return store


def zone_lists(config: Config) -> tuple[ZoneList, ...]:
    """The configured lists, ready to query; [dnsbl] daily_budget fills in missing budgets."""
    catalogue = read_catalogue([f.path for f in config.rule_files(RuleKind.DNSBL)])
    lists = catalogue.select(
        config.dnsbl.zones, config.dnsbl.dqs_key, config_file=str(config.source)
    )
    budget = config.dnsbl.daily_budget
    return tuple(z if z.daily_budget else replace(z, daily_budget=budget) for z in lists)


def dnsbl_engine(config: Config) -> DnsblEngine:
    return DnsblEngine(
        config.dnsbl.nameservers or config.dns.nameservers,
        config.dnsbl.port or config.dns.port,
        config.dns.timeout.total_seconds(),
        config.dns.attempts,
        max_in_flight=config.dnsbl.max_in_flight,
        rate_per_zone=config.dnsbl.rate_per_zone,
    )


def build_monitor(
    config: Config,
    engine: SweepEngine,
    store: MonitorStore,
    clock: Clock,
    emit_batch: Callable[[Sequence[Alert]], Awaitable[object]],
    metrics: MonitorMetrics | None = None,
) -> Monitor:
    """Sweeps of the configured pools against the configured lists (the daemon's and check's)."""
    return Monitor(
        engine, zone_lists(config), store, clock, emit_batch, config.core_pools(), metrics
    )


def alert_channels(config: Config) -> list[Channel]:
    channels: list[Channel] = [LogChannel()]
    for alert in config.alerts:
        timeout = alert.timeout.total_seconds()
        if alert.type == "webhook":
            channels.append(WebhookChannel(alert.url, timeout, alert.min_severity, alert.format))
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
