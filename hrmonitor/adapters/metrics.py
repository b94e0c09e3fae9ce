"""Prometheus exposition: a registry of hrmonitor's own, served over HTTP.

The services call the small recording methods; nothing else imports
prometheus_client. Counters move as things happen (messages accepted, delivery
attempts by pool, source IP and result, per destination domain, sweeps, alerts).
Gauges that describe the pools (states, listings, suspensions, warm-up usage,
health, queue size and age) are set from the store by the daemon's refresh job,
so a scrape shows stored truth, at most one refresh old.

Cardinality is bounded: IP and pool labels come from the config; destination
domains get a label of their own for the first ``destination_labels`` domains
seen (sticky, so a counter never moves between series), the rest count under
``other``.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
)
from prometheus_client.exposition import generate_latest

IP_STATES = ("active", "warming", "standby", "retired", "disabled")
HEALTHS = ("ok", "dead", "lists-everything", "refusing", "unreachable")
POOL_HEALTHS = ("healthy", "degraded", "critical", "exhausted")
OTHER = "other"


@dataclass(frozen=True, slots=True)
class IpGauges:
    """One IP's stored view, for the gauges: state, listings, suspensions, warm-up."""

    pool: str
    ip: str
    state: str
    listed_on: tuple[str, ...] = ()  # zones (catalogue keys) with an open listing
    suspensions: int = 0
    sent_today: int = 0
    daily_cap: int | None = None


@dataclass(frozen=True, slots=True)
class QueueGauge:
    """Messages of one pool in one state, and how long the oldest has waited."""

    pool: str
    state: str
    messages: int
    oldest_seconds: float


def _package_version() -> str:
    try:
        return version("hrmonitor")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


class Metrics:
    def __init__(self, *, node: str = "", destination_labels: int = 20) -> None:
        self.registry = CollectorRegistry()
        self._destination_labels = destination_labels
        self._labelled: set[str] = set()
        r = self.registry
        self._ip_state = Gauge(
            "hrmonitor_ip_state", "1 for the state an IP is in", ["pool", "ip", "state"], registry=r
        )
        self._ip_listings = Gauge(
            "hrmonitor_ip_listings", "Open confirmed listings of an IP", ["pool", "ip"], registry=r
        )
        self._zone_health = Gauge(
            "hrmonitor_zone_health", "1 for a zone's current health", ["zone", "health"], registry=r
        )
        self._answers = Counter(
            "hrmonitor_dnsbl_answers", "DNSBL answers by status", ["zone", "status"], registry=r
        )
        self._sweeps = Counter(
            "hrmonitor_sweeps", "Sweeps by pool and outcome", ["pool", "outcome"], registry=r
        )
        self._sweep_seconds = Histogram(
            "hrmonitor_sweep_duration_seconds", "Sweep duration", ["pool"], registry=r
        )
        self._accepted = Counter(
            "hrmonitor_messages_accepted", "Messages accepted by pool", ["pool"], registry=r
        )
        self._deliveries = Counter(
            "hrmonitor_delivery_attempts",
            "Delivery attempts",
            ["pool", "source_ip", "result"],
            registry=r,
        )
        self._queue = Gauge(
            "hrmonitor_queue_recipients", "Queued recipients by pool", ["pool"], registry=r
        )
        self._alerts = Counter(
            "hrmonitor_alerts",
            "Alerts raised: conditions that opened (not repeats, not flapping re-fires)",
            ["kind", "severity"],
            registry=r,
        )
        self._alerts_resent = Counter(
            "hrmonitor_alert_resends",
            "Alerts sent again: repeat (still open after repeat_after) or refire (opened again"
            " within repeat_after of its resolution)",
            ["kind", "severity", "reason"],
            registry=r,
        )
        self._destinations = Counter(
            "hrmonitor_destination_attempts",
            "Delivery attempts by destination domain (the first N domains; the rest 'other')",
            ["destination", "result"],
            registry=r,
        )
        self._queue_messages = Gauge(
            "hrmonitor_queue_messages",
            "Messages in the queue by pool and state (active, deferred, held)",
            ["pool", "state"],
            registry=r,
        )
        self._queue_oldest = Gauge(
            "hrmonitor_queue_oldest_age_seconds",
            "Age of the oldest message by pool and state",
            ["pool", "state"],
            registry=r,
        )
        self._zone_last_success = Gauge(
            "hrmonitor_zone_last_success_timestamp_seconds",
            "When a sweep last found the zone healthy (Unix time)",
            ["zone"],
            registry=r,
        )
        self._listed = Gauge(
            "hrmonitor_ip_listed", "1 while an IP has an open listing on a zone",
            ["pool", "ip", "zone"], registry=r,
        )  # fmt: skip
        self._suspensions = Gauge(
            "hrmonitor_ip_suspensions", "Suspensions in force on an IP", ["pool", "ip"], registry=r
        )
        self._warmup_sent = Gauge(
            "hrmonitor_ip_sent_today", "Messages an IP sent today", ["pool", "ip"], registry=r
        )
        self._warmup_cap = Gauge(
            "hrmonitor_ip_daily_cap",
            "A warming IP's daily cap (absent when it has none)",
            ["pool", "ip"],
            registry=r,
        )
        self._pool_health = Gauge(
            "hrmonitor_pool_health", "1 for a pool's current health", ["pool", "health"], registry=r
        )
        self._pool_score = Gauge(
            "hrmonitor_pool_health_score", "A pool's health score, 0-100", ["pool"], registry=r
        )
        self._build = Info("hrmonitor_build", "Version of hrmonitor and Python", registry=r)
        self._build.info({"version": _package_version(), "python": platform.python_version()})
        self._node = Info("hrmonitor_node", "The node this daemon is", registry=r)
        self._node.info({"node": node or platform.node()})
        self._listed_seen: set[tuple[str, str, str]] = set()
        self._queue_seen: set[tuple[str, str]] = set()
        self._caps: set[tuple[str, str]] = set()
        self._alerts_dropped = Counter(
            "hrmonitor_alerts_dropped",
            "Alerts dropped from a channel's full queue",
            ["channel"],
            registry=r,
        )
        self._roles = Gauge(
            "hrmonitor_node_role",
            "1 for each once-per-cluster role this node holds now",
            ["node", "role"],
            registry=r,
        )
        self._server: tuple[WSGIServer, Thread] | None = None

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics endpoint; returns the bound port (port 0 picks one)."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = (server, thread)
        return int(server.server_port)

    def close(self) -> None:
        if self._server is not None:
            server, thread = self._server
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._server = None

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def set_ip(self, pool: str, ip: str, state: str, listings: int) -> None:
        for candidate in IP_STATES:
            self._ip_state.labels(pool, ip, candidate).set(1 if candidate == state else 0)
        self._ip_listings.labels(pool, ip).set(listings)

    def set_zone_health(self, health: Mapping[str, str]) -> None:
        """Each zone's health after a sweep; a healthy zone's last success is now."""
        now = time.time()
        for zone, current in health.items():
            for candidate in HEALTHS:
                self._zone_health.labels(zone, candidate).set(1 if candidate == current else 0)
            if current == "ok":
                self._zone_last_success.labels(zone).set(now)

    def count_answers(self, answers: Iterable[tuple[str, str]]) -> None:
        for zone, status in answers:
            self._answers.labels(zone, status).inc()

    def sweep_done(self, pool: str, outcome: str, seconds: float) -> None:
        self._sweeps.labels(pool, outcome).inc()
        self._sweep_seconds.labels(pool).observe(seconds)

    def accepted(self, pool: str) -> None:
        self._accepted.labels(pool).inc()

    def attempt(self, pool: str, source_ip: str, result: str, destination: str = "") -> None:
        """One delivery attempt's result (delivered, deferred, bounced) from ``source_ip``."""
        self._deliveries.labels(pool, source_ip, result).inc()
        if destination:
            self._destinations.labels(self._destination_label(destination), result).inc()

    def _destination_label(self, domain: str) -> str:
        domain = domain.lower()
        if domain in self._labelled:
            return domain
        if len(self._labelled) < self._destination_labels:
            self._labelled.add(domain)
            return domain
        return OTHER

    def set_ips(self, ips: Iterable[IpGauges]) -> None:
        """Every IP's state, listings, suspensions and warm-up usage, as the store has them."""
        listed_now: set[tuple[str, str, str]] = set()
        for gauge in ips:
            self.set_ip(gauge.pool, gauge.ip, gauge.state, len(gauge.listed_on))
            for zone in gauge.listed_on:
                listed_now.add((gauge.pool, gauge.ip, zone))
            self._suspensions.labels(gauge.pool, gauge.ip).set(gauge.suspensions)
            self._warmup_sent.labels(gauge.pool, gauge.ip).set(gauge.sent_today)
            key = (gauge.pool, gauge.ip)
            if gauge.daily_cap is not None:
                self._warmup_cap.labels(*key).set(gauge.daily_cap)
                self._caps.add(key)
            elif key in self._caps:  # warm-up over: the cap no longer applies
                self._warmup_cap.remove(*key)
                self._caps.discard(key)
        for listed in listed_now:
            self._listed.labels(*listed).set(1)
        for cleared in self._listed_seen - listed_now:
            self._listed.labels(*cleared).set(0)
        self._listed_seen |= listed_now

    def set_pool_health(self, pool: str, health: str, score: int) -> None:
        for candidate in {*POOL_HEALTHS, health}:
            self._pool_health.labels(pool, candidate).set(1 if candidate == health else 0)
        self._pool_score.labels(pool).set(score)

    def set_queue_detail(self, gauges: Iterable[QueueGauge]) -> None:
        """Messages and the oldest's age per pool and state; a state now empty reads 0."""
        seen: set[tuple[str, str]] = set()
        for gauge in gauges:
            seen.add((gauge.pool, gauge.state))
            self._queue_messages.labels(gauge.pool, gauge.state).set(gauge.messages)
            self._queue_oldest.labels(gauge.pool, gauge.state).set(gauge.oldest_seconds)
        for pool, state in self._queue_seen - seen:
            self._queue_messages.labels(pool, state).set(0)
            self._queue_oldest.labels(pool, state).set(0)
        self._queue_seen |= seen

    def set_queue(self, depth: Mapping[str, int]) -> None:
        for pool, count in depth.items():
            self._queue.labels(pool).set(count)

    def alert(self, kind: str, severity: str) -> None:
        self._alerts.labels(kind, severity).inc()

    def alert_resent(self, kind: str, severity: str, reason: str) -> None:
        self._alerts_resent.labels(kind, severity, reason).inc()

    def alert_dropped(self, channel: str) -> None:
        self._alerts_dropped.labels(channel).inc()

    def set_roles(self, node: str, held: Mapping[str, bool]) -> None:
        for role, holds in held.items():
            self._roles.labels(node, role).set(1 if holds else 0)
