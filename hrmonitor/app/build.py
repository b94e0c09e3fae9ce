"""Building blocks of the composition root: each turns Config into one adapter or service.

Those of a sweep live in ``monitoring`` (the probe imports only that) and are
re-exported here for the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hrmonitor.adapters.dns.mail import MailDns
from hrmonitor.adapters.rspamd import Rspamd
from hrmonitor.adapters.rule_files import load_bounce_files, load_routing_files
from hrmonitor.app.compose import build_controller, node_name
from hrmonitor.app.monitoring import (
    alert_channels,
    dnsbl_engine,
    open_configured_store,
    schedule_warnings,
    zone_lists,
)
from hrmonitor.app.smtp_parts import authenticator
from hrmonitor.config.files import RuleKind
from hrmonitor.config.loading import Config
from hrmonitor.core.bounce.reason import BouncePatterns
from hrmonitor.core.routing.decide import RoutingSettings, Tenant
from hrmonitor.core.routing.limits import SendingLimits
from hrmonitor.core.routing.rules import RoutingRule, check_rule_pools
from hrmonitor.core.surge import SurgeSettings
from hrmonitor.core.surge.anomaly import AnomalyMethod, AnomalyParams
from hrmonitor.core.surge.verp import BatvKeys
from hrmonitor.errors import ConfigError
from hrmonitor.services.alerting import Alerting
from hrmonitor.services.relay.routing import Router
from hrmonitor.services.rotation.controller import Controller

__all__ = [
    "alert_channels",
    "authenticator",
    "batv_keys",
    "bounce_patterns",
    "build_router",
    "dnsbl_engine",
    "mail_dns",
    "node_name",
    "open_configured_store",
    "open_controller",
    "routing_parts",
    "schedule_warnings",
    "surge_settings",
    "zone_lists",
]

log = logging.getLogger(__name__)


# --- building blocks --------------------------------------------------------------------


def mail_dns(config: Config) -> MailDns:
    """Sender-domain, MX and address lookups through the configured resolver."""
    return MailDns(
        nameservers=tuple(str(ns) for ns in config.dns.nameservers),
        port=config.dns.port,
        timeout=config.dns.timeout.total_seconds(),
        attempts=config.dns.attempts,
    )


def build_router(config: Config) -> Router:
    """The per-message routing decision maker, with its sender-domain DNS and limits."""
    rules, settings, tenants = routing_parts(config)
    return Router(
        rules, config.core_pools(), settings, mail_dns(config), tenants,
        scanner=spam_scanner(config), negative_ttl=config.dns.negative_ttl,
    )  # fmt: skip


def routing_parts(
    config: Config,
) -> tuple[tuple[RoutingRule, ...], RoutingSettings, list[Tenant]]:
    """The router's rules (checked against the pools), settings and tenants."""
    pools = config.core_pools()
    rules = load_routing_files([f.path for f in config.rule_files(RuleKind.ROUTING)])
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
    tenants = [
        Tenant(t.name, tuple(str(n) for n in t.networks), tuple(t.domains)) for t in config.tenants
    ]
    return rules, settings, tenants


def spam_scanner(config: Config) -> Rspamd | None:
    """rspamd over HTTP where ``[routing] rspamd_url`` names one; else None (headers only)."""
    routing = config.routing
    if not routing.rspamd_url:
        return None
    return Rspamd(
        routing.rspamd_url, routing.rspamd_timeout.total_seconds(), routing.rspamd_password
    )


def open_controller(config: Config) -> tuple[Controller, Callable[[], None]]:
    """A rotation controller on the configured store for one command, and how to close it."""
    store = open_configured_store(config)
    channels = alert_channels(config)
    # An operator's action is told under the node's name, as the daemon tells its alerts.
    alerting = Alerting(store, channels, config.alerting.repeat_after, node=node_name(config))
    return build_controller(config, store, alerting), store.close


def surge_settings(config: Config) -> SurgeSettings:
    surge = config.surge
    try:
        return SurgeSettings(
            window=surge.window,
            bucket=surge.bucket,
            min_messages=surge.min_volume,
            min_dsns=surge.min_dsns,
            ratio=surge.ratio,
            anomaly=AnomalyParams(
                method=AnomalyMethod(surge.detector),
                ewma_lambda=surge.ewma_lambda,
                ewma_limit=surge.ewma_limit,
                cusum_k=surge.cusum_k,
                cusum_h=surge.cusum_h,
            ),
            clear_after=surge.clear_after,
            max_keys=surge.max_keys,
            outbound_index=surge.outbound_index,
            rates_window=surge.rates_window,
            client_learning=surge.client_learning,
            spam_threshold=config.routing.spam_threshold,
        )
    except ValueError as error:  # the core checks how the settings fit together
        raise ConfigError(str(config.source), "surge", str(error)) from None


def batv_keys(config: Config) -> BatvKeys | None:
    """The BATV signing keys when ``[verp] enabled``; None leaves senders untagged."""
    verp = config.verp
    if not verp.enabled:
        return None
    secrets = {int(k): v.encode() for k, v in verp.old_secrets.items()}
    secrets[verp.key_number] = verp.secret.encode()
    return BatvKeys(secrets, verp.key_number, verp.valid_days)


def bounce_patterns(config: Config) -> BouncePatterns:
    """The shipped patterns and the operator's (``[bounces] patterns``), read together."""
    return load_bounce_files([f.path for f in config.rule_files(RuleKind.BOUNCE)])
