"""The sections of the configuration: one strict pydantic model per TOML table.

Values are checked as they are read (durations, sizes, IPs, networks); what
needs the whole file (an IP in two pools, a shared /64) is checked by
:mod:`hrmonitor.config.loading`, which assembles these into
:class:`~hrmonitor.config.loading.Config`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hrmonitor.config.values import (
    IP,
    Address,
    Bool,
    DatabaseUrl,
    Domain,
    Duration,
    Float,
    HeaderName,
    HttpUrl,
    Int,
    Name,
    Network,
    Port,
    Size,
    Timeout,
)
from hrmonitor.core.model import OnListing, RiskClass, Severity, WhenExhausted
from hrmonitor.core.units import parse_duration


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class DatabaseConfig(Section):
    url: DatabaseUrl = "sqlite:///hrmonitor.db"  # a relative SQLite file: next to the config


class DnsConfig(Section):
    nameservers: tuple[IP, ...] = ()
    port: Port = 53
    timeout: Timeout = timedelta(seconds=2)
    attempts: Int = Field(default=2, ge=1, le=10)
    # How long a sender domain's "no records" or failed lookup is remembered: in an
    # outage each domain then costs one timeout per this long, not one per message.
    negative_ttl: Duration = timedelta(seconds=30)


class DnsblConfig(Section):
    catalogue: tuple[Name, ...] = ()  # the operator's own, layered over the shipped file
    zones: tuple[Name, ...] = ("spamhaus-zen", "spamcop", "barracuda", "mailspike-z", "psbl")
    interval: Duration = timedelta(minutes=30)
    dqs_key: str = ""
    # A resolver for the lists alone (e.g. one registered with Barracuda, or a
    # local rbldnsd mirror); empty: the [dns] resolver.
    nameservers: tuple[IP, ...] = ()
    port: Port | None = None  # None: [dns] port
    max_in_flight: Int = Field(default=128, ge=1, le=4096)
    rate_per_zone: Float = Field(default=50.0, gt=0, le=100_000)  # queries per second per zone
    # Queries per zone per day for lists whose catalogue entry names no budget of its
    # own (Spamhaus: < 300k); a schedule over it is warned about at start.
    daily_budget: Int = Field(default=250_000, ge=1)

    @field_validator("zones")
    @classmethod
    def _zones_unique(cls, zones: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(zones)) != len(zones):
            raise ValueError("a zone is named twice")
        return zones


class WarmupStageConfig(Section):
    daily_cap: Int = Field(ge=1)
    min_delivery_rate: Float = Field(default=0.9, ge=0, le=1)


# SparkPost/SendGrid style ramp, compressed: caps per IP per day.
DEFAULT_WARMUP = tuple(
    WarmupStageConfig(daily_cap=cap) for cap in (50, 100, 500, 1000, 5000, 10000, 20000, 50000)
)


class PoolConfig(Section):
    risk: RiskClass
    ips: tuple[IP, ...] = ()
    standby: tuple[IP, ...] = ()
    interval: Duration | None = None  # None: [dnsbl] interval
    on_listing: OnListing = OnListing.RETIRE
    retire_at: Severity = Severity.HIGH
    min_active: Int = Field(default=1, ge=0)
    cooldown: Duration = timedelta(hours=24)
    when_exhausted: WhenExhausted = WhenExhausted.DEFER
    warmup: tuple[WarmupStageConfig, ...] = DEFAULT_WARMUP
    idle_rewarm: Duration = timedelta(days=30)

    @model_validator(mode="after")
    def _high_pools_defer(self) -> PoolConfig:
        if self.risk is not RiskClass.NORMAL and self.when_exhausted is WhenExhausted.USE_LISTED:
            raise ValueError(
                "when_exhausted = 'use-listed' is only allowed for normal pools: "
                "high-risk mail must be held, never sent from a listed IP"
            )
        if not self.ips and not self.standby:
            raise ValueError("a pool needs at least one IP in ips or standby")
        if self.min_active > len(self.ips) + len(self.standby):
            raise ValueError(
                f"min_active = {self.min_active} but the pool has only "
                f"{len(self.ips) + len(self.standby)} IP(s) in ips and standby"
            )
        return self


class ListenerConfig(Section):
    bind: str = "127.0.0.1:2525"
    hostname: Domain = "localhost"
    max_message_size: Size = 35_000_000
    max_recipients: Int = Field(default=1000, ge=1)
    max_line_length: Int = Field(default=998, ge=78, le=1_000_000)
    tls_cert: str = ""
    tls_key: str = ""
    auth_file: str = ""  # "user:scrypt$..." lines (hrmonitor auth hash); needs tls_cert
    max_connections: Int = Field(default=600, ge=1)
    max_connections_per_client: Int = Field(default=50, ge=1)
    idle_timeout: Duration = timedelta(minutes=5)
    address_literals: Literal["refuse", "deliver"] = "refuse"
    # SMTP sessions served by this many processes beside the daemon's (0: in its own).
    processes: Int = Field(default=1, ge=0, le=64)

    @field_validator("bind")
    @classmethod
    def _bind(cls, bind: str) -> str:
        split_address(bind)
        return bind

    @model_validator(mode="after")
    def _tls_pair(self) -> ListenerConfig:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        return self


class TenantConfig(Section):
    name: Name
    networks: tuple[Network, ...] = ()
    domains: tuple[Domain, ...] = ()
    users: tuple[Name, ...] = ()  # SMTP AUTH user names allowed to relay for this tenant


class RoutingConfig(Section):
    rules: tuple[Name, ...] = ()  # the operator's own, layered over the shipped file
    spam_threshold: Float = 5.0
    spam_headers: tuple[HeaderName, ...] = ("X-Spam-Score", "X-Spam-Status", "X-Rspamd-Score")
    trusted_filters: tuple[Network, ...] = ("127.0.0.1/32",)
    dns_unknown_hold: Duration = timedelta(minutes=10)
    on_dns_unknown: str = "high-risk"
    relay_pool: str = ""  # a pool of risk "relay" for relayed foreign-domain mail; "" = off
    rspamd_url: HttpUrl | Literal[""] = ""  # e.g. "http://127.0.0.1:11333"; "" = off
    rspamd_timeout: Timeout = timedelta(seconds=5)
    rspamd_password: str = ""


class LimitsConfig(Section):
    recipients_per_hour: Int = Field(default=1000, ge=1)
    recipients_per_day: Int = Field(default=10000, ge=1)
    # Several nodes: how often each publishes its counts and reads the others'. A
    # sender can pass a limit by what the other nodes accepted from it within about
    # two of these.
    sync: Duration = timedelta(seconds=1)


class DeliveryConfig(Section):
    port: Port = 25
    retry: tuple[Duration, ...] = tuple(parse_duration(x) for x in ("1m", "5m", "15m", "1h", "4h"))
    max_queue_time: Duration = timedelta(days=5)
    feedback: tuple[Name, ...] = ()  # the operator's own, layered over the shipped file
    connect_timeout: Timeout = timedelta(seconds=30)
    command_timeout: Timeout = timedelta(seconds=60)
    per_destination_concurrency: Int = Field(default=10, ge=1, le=100_000)
    concurrency: Int = Field(default=100, ge=1, le=100_000)
    # SMTP transactions run in this many processes beside the daemon's (0: in its own).
    processes: Int = Field(default=1, ge=0, le=64)

    @field_validator("retry")
    @classmethod
    def _retry_nonempty(cls, retry: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
        if not retry:
            raise ValueError("needs at least one retry interval")
        return retry


class RotationConfig(Section):
    tick: Duration = timedelta(seconds=5)  # time-based transitions: cool-downs, expiries, days
    blocklist_pause: Duration = timedelta(hours=2)  # a reply naming a blocklist suspends this long
    # ... for that destination only; this many independent destinations within the window: all
    blocklist_destinations: int = Field(default=3, ge=1)
    blocklist_window: Duration = timedelta(hours=1)
    bind_pause: Duration = timedelta(minutes=10)  # an IP that cannot be bound sits out this long


class NodeConfig(Section):
    """This daemon's place among several nodes on one PostgreSQL store."""

    name: str = Field(default="", max_length=100, pattern=r"^[A-Za-z0-9._-]*$")  # "": hostname
    lease: Duration = timedelta(seconds=30)  # silent this long: a node's claims and roles move
    heartbeat: Duration = timedelta(seconds=5)  # how often a node says it is alive

    @model_validator(mode="after")
    def _beats_within_lease(self) -> NodeConfig:
        if self.heartbeat <= timedelta(0):
            raise ValueError("heartbeat must be positive")
        if self.heartbeat * 2 > self.lease:
            raise ValueError("lease must be at least twice the heartbeat, or a live node loses it")
        return self


class AlertConfig(Section):
    type: Literal["log", "webhook", "email"]
    url: HttpUrl | Literal[""] = ""  # webhook
    # webhook body: "json" (hrmonitor's), "alertmanager" (API v2 postableAlerts, to
    # http://HOST:9093/api/v2/alerts) or "slack" (an incoming-webhook message)
    format: Literal["json", "alertmanager", "slack"] = "json"
    to: tuple[Address, ...] = ()  # email
    sender: Address = "hrmonitor@localhost"  # email envelope and From
    smtp_host: Name = "127.0.0.1"  # email
    smtp_port: Port = 25
    timeout: Timeout = timedelta(seconds=10)
    min_severity: Severity = Severity.LOW

    @model_validator(mode="after")
    def _complete(self) -> AlertConfig:
        if self.type == "webhook" and not self.url:
            raise ValueError("a webhook alert needs url = 'http(s)://...'")
        if self.type == "email" and not self.to:
            raise ValueError("an email alert needs to = ['someone@example.net']")
        if self.type != "webhook" and self.format != "json":
            raise ValueError(f"format = {self.format!r} is for webhooks; {self.type} has none")
        return self


class AlertingConfig(Section):
    repeat_after: Duration = timedelta(hours=4)  # a still-open alert is re-sent after this
    queue_size: int = Field(default=1000, ge=1)  # alerts waiting per channel; full drops oldest
    attempts: int = Field(default=3, ge=1, le=20)  # tries per alert and channel, with backoff
    shutdown_wait: Duration = timedelta(seconds=5)  # how long shutdown waits for queued alerts


class MetricsConfig(Section):
    bind: str = "127.0.0.1:9108"  # "" turns the endpoint off
    refresh: Duration = timedelta(seconds=15)  # store-backed gauges are set this often
    destination_labels: Int = Field(default=20, ge=0, le=1000)  # per-domain series; rest "other"

    @field_validator("refresh")
    @classmethod
    def _refresh_positive(cls, refresh: timedelta) -> timedelta:
        if refresh <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return refresh

    @field_validator("bind")
    @classmethod
    def _bind(cls, bind: str) -> str:
        if bind:
            split_address(bind)
        return bind


class BouncesConfig(Section):
    patterns: str = ""  # the operator's own patterns, tried before the shipped ones


class SurgeConfig(Section):
    window: Duration = timedelta(minutes=15)  # sliding window for DSN rates
    bucket: Duration = timedelta(minutes=1)
    min_volume: Int = Field(default=100, ge=1)  # messages in the window before a surge can open
    min_dsns: Int = Field(default=25, ge=1)  # DSNs in the window before a surge can open
    ratio: Float = Field(default=0.10, gt=0, le=1)  # Wilson lower bound of DSNs/messages
    detector: Literal["ewma", "cusum"] = "ewma"
    ewma_lambda: Float = Field(default=0.2, gt=0, le=1)
    ewma_limit: Float = Field(default=3.0, gt=0)
    cusum_k: Float = Field(default=0.5, gt=0)
    cusum_h: Float = Field(default=5.0, gt=0)
    clear_after: Int = Field(default=5, ge=1)  # quiet evaluations before a surge resolves
    max_keys: Int = Field(default=10_000, ge=10, le=10_000_000)  # tracked keys (LRU)
    outbound_index: Int = Field(default=100_000, ge=100, le=100_000_000)  # recent Message-IDs
    rates_window: Duration = timedelta(days=1)  # bounce/complaint rates in the report
    client_learning: Duration = timedelta(days=1)  # a new client after this is "rogue" evidence


class VerpConfig(Section):
    enabled: Bool = False
    secret: str = ""
    key_number: Int = Field(default=0, ge=0, le=9)
    valid_days: Int = Field(default=7, ge=1, le=499)
    old_secrets: dict[str, str] = {}  # key number -> secret, still verified during rotation

    @model_validator(mode="after")
    def _secret(self) -> VerpConfig:
        if self.enabled and len(self.secret) < 16:
            raise ValueError("verp.enabled needs a secret of at least 16 characters")
        for number in self.old_secrets:
            if not number.isdigit() or not 0 <= int(number) <= 9 or int(number) == self.key_number:
                raise ValueError(f"old_secrets key {number!r} must be another digit 0-9")
        return self


def split_address(bind: str) -> tuple[str, int]:
    """``"127.0.0.1:2525"`` / ``"[::1]:2525"`` -> (host, port); ValueError otherwise."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ValueError(f"{bind!r} is not host:port")
    return host.strip("[]"), int(port)
