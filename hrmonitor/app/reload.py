"""SIGHUP: read and check the config again, hand each running part its new settings.

What a reload does, in the order ``Daemon.reload`` calls it:

1. Log files are reopened (logrotate's ``postrotate kill -HUP``).
2. The config file and everything it points at are read and checked as at
   start-up (:func:`read_config`). Any problem: each is logged, the running
   config stays, nothing changes.
3. Everything new is built before anything is handed over (:func:`apply`), so
   a rule file that fails halfway changes nothing either.
4. In place, for the next message, reply or alert: routing rules, routing
   settings and sending limits, tenants' routing facts, remote-reply patterns,
   alert channels and their repeat interval. Counters (sending limits, reply
   thresholds, open alerts) are kept; no connection or queued message is
   touched.

Sections that a running daemon cannot change in place (pools, zones, the
listener, the database, ...) are compared and each changed one is logged as
taking effect at the next restart; the daemon keeps running on the old ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from hrmonitor.adapters.rule_files import load_feedback_files
from hrmonitor.app.build import alert_channels, routing_parts
from hrmonitor.app.validate import config_problems
from hrmonitor.config.files import RuleKind
from hrmonitor.config.loading import Config, load_config
from hrmonitor.errors import raise_problems
from hrmonitor.services.alerting import Alerting
from hrmonitor.services.relay.routing import Router
from hrmonitor.services.rotation.controller import Controller

log = logging.getLogger(__name__)

# Sections read once at start-up: a change is logged and waits for a restart.
RESTART_ONLY = (
    "database", "dns", "dnsbl", "pools", "listener", "metrics", "rotation", "surge", "verp",
    "bounces",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reloadable:
    """The running parts that take new settings in place."""

    router: Router
    alerting: Alerting
    controller: Controller


def read_config(source: Path) -> Config:
    """The config file, checked as ``hrmonitor run`` checks it (its own ports aside)."""
    config = load_config(source)
    raise_problems(config_problems(config))
    return config


def apply(old: Config, new: Config, parts: Reloadable) -> list[str]:
    """Hand ``parts`` the settings of ``new``; returns what waits for a restart.

    Builds everything first: a RuleError here leaves every part as it was.
    """
    rules, settings, tenants = routing_parts(new)
    feedback = load_feedback_files([f.path for f in new.rule_files(RuleKind.FEEDBACK)])
    channels = alert_channels(new)
    parts.router.reconfigure(rules, settings, tenants)
    parts.alerting.reconfigure(channels, new.alerting.repeat_after)
    parts.controller.reconfigure_feedback(feedback)
    return _restart_only(old, new)


def _restart_only(old: Config, new: Config) -> list[str]:
    waiting = [name for name in RESTART_ONLY if getattr(old, name) != getattr(new, name)]
    if [t.networks for t in old.tenants] != [t.networks for t in new.tenants]:
        waiting.append("tenants.networks (the listener's acceptance)")
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
