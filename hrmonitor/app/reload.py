"""SIGHUP: read and check the config again, hand each running part its new settings.

What a reload does, in the order ``Daemon.reload`` calls it:

1. Log files are reopened (logrotate's ``postrotate kill -HUP``).
2. The config file and everything it points at are read and checked as at
   start-up (:func:`read_config`). Any problem: each is logged, the running
   config stays, nothing changes.
3. Everything new is built before anything is handed over (:func:`plan`):
   routing rules, reply patterns, alert channels, the zone lists, the pools,
   the listener's tenants. Then the pools are checked against the store
   (:func:`check_pools`): a pool removed while mail waits for it, or an IP the
   store refuses (moved between pools, a former high-risk IP in a normal
   pool), refuses the whole reload; so a file or a pool that fails changes
   nothing.
4. In place (:func:`hand_over`), for the next message, reply, sweep or
   connection: routing rules and settings, sending limits, tenants (their
   domains and networks), remote-reply patterns, alert channels and their
   repeat interval, the pools (IPs added or removed move through the rotation
   controller, each audited by ``reload``; pool settings apply from the next
   rotation tick), the DNSBL zones and sweep schedules (a removed zone's open
   alerts resolve; it no longer counts for cool-down). Counters (sending
   limits, reply thresholds, open alerts) are kept; no connection or queued
   message is touched.

What a running daemon cannot change in place (where it listens, the
database, the metrics address, ...) is compared and each changed part is
logged as taking effect at the next restart; the daemon keeps the old value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from hrmonitor.adapters.alerts import Channel
from hrmonitor.adapters.rule_files import load_feedback_files
from hrmonitor.adapters.smtp_in import Listener
from hrmonitor.adapters.smtp_in import Tenant as ListenerTenant
from hrmonitor.adapters.store import Store
from hrmonitor.app.build import alert_channels, routing_parts, zone_lists
from hrmonitor.app.smtp_parts import listener_tenants
from hrmonitor.app.validate import config_problems
from hrmonitor.app.worker_processes import ListenerProcesses
from hrmonitor.config.files import RuleKind
from hrmonitor.config.loading import Config, load_config
from hrmonitor.core.dnsbl.catalogue import ZoneList
from hrmonitor.core.feedback.rules import FeedbackRule
from hrmonitor.core.model import Pool
from hrmonitor.core.routing.decide import RoutingSettings, Tenant
from hrmonitor.core.routing.rules import RoutingRule
from hrmonitor.errors import ConfigError, raise_problems
from hrmonitor.services.alerting import Alerting
from hrmonitor.services.monitor import Monitor
from hrmonitor.services.relay.routing import Router
from hrmonitor.services.relay.runner import Relay
from hrmonitor.services.rotation.controller import RELOAD_ACTOR, Controller

log = logging.getLogger(__name__)

# Sections read once at start-up: a change is logged and waits for a restart.
RESTART_ONLY = (
    "database", "dns", "listener", "metrics", "node", "rotation", "surge", "verp", "bounces",
)  # fmt: skip
# [alerting] keys the alert outbox was built with (channels and repeat_after reload).
ALERTING_OUTBOX = ("queue_size", "attempts", "shutdown_wait")
# [dnsbl] keys the DNSBL engine (its resolver and rate limits) was built with.
DNSBL_ENGINE = ("nameservers", "port", "max_in_flight", "rate_per_zone")


class SweepSchedule(Protocol):
    """The daemon's sweep jobs, one per pool (``daemon.SweepJobs``)."""

    def replace(self, old: Sequence[Pool], new: Sequence[Pool], sweep_all_now: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class Reloadable:
    """The running parts that take new settings in place."""

    router: Router
    alerting: Alerting
    controller: Controller
    monitor: Monitor
    listener: Listener | ListenerProcesses
    relay: Relay
    store: Store
    sweeps: SweepSchedule


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a reload hands over, built from the new config before any part is touched."""

    old: Config
    new: Config
    rules: tuple[RoutingRule, ...]
    settings: RoutingSettings
    tenants: list[Tenant]
    feedback: Sequence[FeedbackRule]
    channels: list[Channel]
    lists: tuple[ZoneList, ...]
    pools: tuple[Pool, ...]
    listener_tenants: tuple[ListenerTenant, ...]

    @property
    def removed_pools(self) -> list[str]:
        return [name for name in self.old.pools if name not in self.new.pools]


def read_config(source: Path) -> Config:
    """The config file, checked as ``hrmonitor run`` checks it (its own ports aside)."""
    config = load_config(source)
    raise_problems(config_problems(config))
    return config


def plan(old: Config, new: Config) -> Plan:
    """Build every new part; a ConfigError (RuleError) here leaves every part as it was."""
    rules, settings, tenants = routing_parts(new)
    return Plan(
        old=old,
        new=new,
        rules=rules,
        settings=settings,
        tenants=tenants,
        feedback=load_feedback_files([f.path for f in new.rule_files(RuleKind.FEEDBACK)]),
        channels=alert_channels(new),
        lists=zone_lists(new),
        pools=new.core_pools(),
        listener_tenants=listener_tenants(new),
    )


async def check_pools(new: Plan, parts: Reloadable, now: datetime) -> None:
    """Refuse (ConfigError) what cannot change in place; register the new IPs otherwise.

    A pool removed while mail waits for it is refused: that mail could only
    be held for ever or sent from another pool's IPs, and neither is the
    operator's call to make by deleting a section. Deliver it (or wait) first.
    ``sync_pools`` refuses what it refuses at start-up (an IP moved between
    pools, a former high-risk IP in a normal pool) and writes nothing then;
    otherwise it registers the added IPs, which nothing uses until the
    controller is handed the new pools.
    """
    source = str(new.new.source)
    problems: list[ConfigError] = []
    if new.removed_pools:
        waiting = await asyncio.to_thread(parts.relay.queue.waiting, now)
        for name in new.removed_pools:
            count = sum(n for pool, _, n, _ in waiting if pool == name)
            if count:
                problems.append(
                    ConfigError(
                        source,
                        f"pools.{name}",
                        f"removed while {count} message(s) wait for it in the queue: keep the "
                        "pool until they are delivered (hrmonitor queue show)",
                    )
                )
    raise_problems(problems)
    refused = await asyncio.to_thread(parts.store.sync_pools, new.pools, now)
    raise_problems([ConfigError(source, "pools", problem) for problem in refused])


async def hand_over(new: Plan, parts: Reloadable, now: datetime) -> list[str]:
    """Give every part its new settings; one line per IP moved (the log's)."""
    old_pools = new.old.core_pools()
    parts.router.reconfigure(new.rules, new.settings, new.tenants, new.pools)
    parts.alerting.reconfigure(new.channels, new.new.alerting.repeat_after)
    parts.controller.reconfigure_feedback(new.feedback)
    parts.listener.reconfigure_tenants(new.listener_tenants)
    # While the controller swaps its pools, the relay accepts either pool's IPs; then
    # only the new ones (an attempt in flight from a removed IP finishes as it began).
    both = {p.name: frozenset(p.all_ips) for p in old_pools}
    for pool in new.pools:
        both[pool.name] = both.get(pool.name, frozenset()) | frozenset(pool.all_ips)
    parts.relay.reconfigure_pools(both)
    zones_changed = parts.monitor.lists != new.lists
    parts.monitor.reconfigure(new.lists, new.pools)
    moved = await parts.controller.reconfigure(
        new.pools, [z.key for z in new.lists], now, RELOAD_ACTOR
    )
    parts.relay.reconfigure_pools({p.name: frozenset(p.all_ips) for p in new.pools})
    parts.sweeps.replace(old_pools, new.pools, zones_changed)
    open_alerts = await asyncio.to_thread(parts.store.open_alerts)
    await parts.monitor.resolve_unconfigured_zones(open_alerts)
    await parts.monitor.resolve_unconfigured_pools(open_alerts)
    return moved


def restart_only(old: Config, new: Config) -> list[str]:
    """What changed that takes effect at the next restart only."""
    waiting = [name for name in RESTART_ONLY if getattr(old, name) != getattr(new, name)]
    engine = [k for k in DNSBL_ENGINE if getattr(old.dnsbl, k) != getattr(new.dnsbl, k)]
    waiting += [f"dnsbl.{key}" for key in engine]
    outbox = [k for k in ALERTING_OUTBOX if getattr(old.alerting, k) != getattr(new.alerting, k)]
    waiting += [f"alerting.{key}" for key in outbox]
    if old.limits.sync != new.limits.sync:
        waiting.append("limits.sync")
    if old.delivery.model_copy(update={"feedback": ()}) != new.delivery.model_copy(
        update={"feedback": ()}
    ):
        waiting.append("delivery (all but feedback)")
    scanner = ("rspamd_url", "rspamd_timeout", "rspamd_password")
    if any(getattr(old.routing, key) != getattr(new.routing, key) for key in scanner):
        waiting.append("routing.rspamd_*")
    return waiting


def reopen_log_files() -> int:
    """Close every file the root logger writes to; each reopens at its next record."""
    reopened = 0
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.close()  # FileHandler.emit opens its file again (the new one, after a mv)
            reopened += 1
    return reopened
