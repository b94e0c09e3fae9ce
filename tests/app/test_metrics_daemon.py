"""Prometheus metrics of a running ``hrmonitor run`` process move with what it does.

Peers on loopback: rbldnsd (its standard zone lists the high-risk IPs
127.0.0.20-22), a DNS server for the mail domains, an aiosmtpd MX that records
the source address, swaks as the client. The test scrapes /metrics over HTTP
as Prometheus would and reads the samples.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fixtures.daemon import DaemonFactory
from tests.fixtures.daemon_lab import (
    config_for,
    lab_dns,
    metrics_url,
    samples,
    scrape_until,
    start,
    swaks,
    value,
)
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.rbldnsd import Rbldnsd
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = [pytest.mark.slow, pytest.mark.rbldnsd]

NORMAL = ("127.0.0.10", "127.0.0.11")


async def send(port: int, rcpt: str) -> None:
    await swaks(port, "--from", "a@contoso.test", "--to", rcpt, "--silent", "2")


@pytest.fixture
def lab_config(
    tmp_path: Path, rbldnsd: Rbldnsd, dns_server: DnsTestServer, smtp_sink: SmtpSink
) -> Path:
    mail_dns = lab_dns(dns_server, smtp_sink, dsn_mx=False)
    return config_for(
        tmp_path, rbldnsd, mail_dns, smtp_sink, metrics="127.0.0.1:0", metrics_refresh="200ms"
    )


async def test_traffic_moves_the_counters_per_pool_source_ip_and_destination(
    lab_config: Path, smtp_sink: SmtpSink, daemon_process: DaemonFactory
) -> None:
    smtp_sink.script("later@rcpt.test", *["451 4.7.1 try again later"] * 200)
    daemon = await start(daemon_process, lab_config)
    url = metrics_url(daemon)
    for n in range(3):
        await send(daemon.port, f"user{n}@rcpt.test")
    await send(daemon.port, "later@rcpt.test")
    await smtp_sink.wait_for(3, 30, lambda m: m.rcpts[0].startswith("user"))

    # Counters and gauges settle at their own pace (classification runs after the 250,
    # gauges on the refresh job): wait until every value read below has arrived.
    text = await scrape_until(
        url,
        lambda t: (
            value(t, "hrmonitor_delivery_attempts_total", result="deferred") >= 1
            and value(t, "hrmonitor_queue_messages", pool="normal", state="deferred") == 1
            and value(t, "hrmonitor_messages_accepted_total", pool="normal") == 4
            and value(t, "hrmonitor_destination_attempts_total", result="delivered") == 3
        ),
        within=60.0,
    )
    assert value(text, "hrmonitor_messages_accepted_total", pool="normal") == 4
    delivered = samples(text, "hrmonitor_delivery_attempts_total")
    by_ip = {s["source_ip"] for s, v in delivered if s["result"] == "delivered" and v > 0}
    assert by_ip
    assert by_ip <= set(NORMAL)
    assert value(text, "hrmonitor_delivery_attempts_total", pool="normal", result="delivered") == 3
    assert value(text, "hrmonitor_destination_attempts_total", destination="rcpt.test",
                 result="delivered") == 3  # fmt: skip
    assert value(text, "hrmonitor_queue_oldest_age_seconds", pool="normal", state="deferred") > 0
    assert await daemon.stop_async() == 0


async def test_store_backed_gauges_show_listings_health_warmup_and_the_sweep(
    lab_config: Path, daemon_process: DaemonFactory
) -> None:
    daemon = await start(daemon_process, lab_config)
    url = metrics_url(daemon)
    text = await scrape_until(
        url,
        lambda t: (
            value(t, "hrmonitor_ip_listed", ip="127.0.0.20", zone="bl") == 1
            and value(t, "hrmonitor_zone_last_success_timestamp_seconds", zone="bl") > 0
        ),
        within=60.0,
    )
    # the standard zone lists the high-risk IPs: listed, and the pool's health shows it
    assert value(text, "hrmonitor_ip_listed", pool="high-risk", ip="127.0.0.20", zone="bl") == 1
    assert value(text, "hrmonitor_ip_listed", ip="127.0.0.10") == 0
    assert value(text, "hrmonitor_pool_health_score", pool="normal") == 100
    assert value(text, "hrmonitor_pool_health", pool="normal", health="healthy") == 1
    assert value(text, "hrmonitor_pool_health", pool="high-risk", health="healthy") == 0
    assert value(text, "hrmonitor_ip_sent_today", pool="normal", ip="127.0.0.10") == 0
    assert value(text, "hrmonitor_zone_last_success_timestamp_seconds", zone="bl") > (
        time.time() - 60
    )
    assert value(text, "hrmonitor_ip_state", ip="127.0.0.10", state="active") == 1
    [(build, _)] = samples(text, "hrmonitor_build_info")
    assert build["version"]
    assert build["python"]
    assert len(samples(text, "hrmonitor_node_info")) == 1
    assert await daemon.stop_async() == 0
