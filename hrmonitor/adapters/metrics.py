"""Prometheus exposition: a registry of hrmonitor's own, served over HTTP.

The services call the small recording methods; nothing else imports
prometheus_client. Gauges that describe the pools (states, listings, queue) are
set from the store after each change, so a scrape always shows stored truth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.exposition import generate_latest

IP_STATES = ("active", "warming", "standby", "retired", "disabled")
HEALTHS = ("ok", "dead", "lists-everything", "refusing", "unreachable")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
            "hrmonitor_alerts", "Alerts raised", ["kind", "severity"], registry=r
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
        for zone, current in health.items():
            for candidate in HEALTHS:
                self._zone_health.labels(zone, candidate).set(1 if candidate == current else 0)

    def count_answers(self, answers: Iterable[tuple[str, str]]) -> None:
        for zone, status in answers:
            self._answers.labels(zone, status).inc()

    def sweep_done(self, pool: str, outcome: str, seconds: float) -> None:
        self._sweeps.labels(pool, outcome).inc()
        self._sweep_seconds.labels(pool).observe(seconds)

    def accepted(self, pool: str) -> None:
        self._accepted.labels(pool).inc()

    def attempt(self, pool: str, source_ip: str, result: str) -> None:
        self._deliveries.labels(pool, source_ip, result).inc()

    def set_queue(self, depth: Mapping[str, int]) -> None:
        for pool, count in depth.items():
            self._queue.labels(pool).set(count)

    def alert(self, kind: str, severity: str) -> None:
        self._alerts.labels(kind, severity).inc()
