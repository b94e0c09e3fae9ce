"""Issue 12 items 2 and 3 as an operator met them: a real ``hrmonitor run`` process.

Peers on loopback, started by fixtures: rbldnsd (lists 127.0.0.20-22 until a
test delists them), a DNS server for the mail domains, the recording MX and a
webhook receiver. Null-sender mail goes to the high-risk pool.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fixtures.daemon_lab import (
    RelayLab,
    history,
    report_pools,
    state_of,
    swaks,
    until,
)
from tests.fixtures.rbldnsd import Rbldnsd
from tests.fixtures.smtp_sink import SmtpSink
from tests.fixtures.webhook import WebhookReceiver

pytestmark = pytest.mark.slow


WARMING_POOLS = """
[pools.normal]
risk = "normal"
ips = ["127.0.0.10", "127.0.0.11"]

[pools.high-risk]
risk = "high"
ips = ["127.0.0.20"]
standby = ["127.0.0.21", "127.0.0.22"]
interval = "1s"
cooldown = "1h"
warmup = [{ daily_cap = 2 }, { daily_cap = 4 }]
"""


async def test_a_warming_ip_out_of_capacity_brings_in_the_next_standby_instead_of_holding_mail(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    """Item 2: the listed IP retires, a standby warms up under a cap of 2; the third DSN
    must not wait for tomorrow while a clean standby is there."""
    for ip in ("127.0.0.21", "127.0.0.22"):
        rbldnsd.delist_ip(ip)
    config = relay_lab.config(pools=WARMING_POOLS)
    daemon = await relay_lab.start(config)
    await until(lambda: state_of(tmp_path, "127.0.0.20") == "retired")
    await until(lambda: state_of(tmp_path, "127.0.0.21") == "warming")

    for n in range(4):
        await swaks(daemon.port, "--from", "<>", "--to", f"dsn{n}@rcpt.test")
        await smtp_sink.wait_for(n + 1, 30)
    peers = [m.peer for m in smtp_sink.messages]
    assert peers[:2] == ["127.0.0.21", "127.0.0.21"]
    assert peers[2:] == ["127.0.0.22", "127.0.0.22"]  # promoted when .21's cap ran out
    assert state_of(tmp_path, "127.0.0.22") == "warming"

    high = report_pools(config)["high-risk"]
    ips = {row["ip"]: row for row in high["ips"]}
    assert ips["127.0.0.21"]["eligible"] is False
    assert "cap" in ips["127.0.0.21"]["not_eligible"]
    assert ips["127.0.0.20"]["retirement"]["waits_on"] in ("cooldown", "delisting")
    assert await daemon.stop_async() == 0


UNBINDABLE_POOLS = """
[pools.normal]
risk = "normal"
ips = ["127.0.0.10", "127.0.0.11"]

[pools.high-risk]
risk = "high"
ips = ["10.255.255.1", "10.255.255.2"]
interval = "1s"
"""


async def test_an_unbindable_high_risk_pool_pages_once_and_reports_exhausted(
    smtp_sink: SmtpSink,
    webhook: WebhookReceiver,
    relay_lab: RelayLab,
) -> None:
    """Item 3: one message held by a pool whose addresses are not on the host, retried every
    second, the rotation ticking five times a second: one webhook, not a flapping pair."""
    extra = f'[[alerts]]\ntype = "webhook"\nurl = "{webhook.url}"\ntimeout = "2s"\n'
    config = relay_lab.config(pools=UNBINDABLE_POOLS, extra=extra)
    daemon = await relay_lab.start(config)
    await swaks(daemon.port, "--from", "<>", "--to", "held@rcpt.test")

    def exhausted() -> list[bool]:
        return [bool(b["resolved"]) for b in webhook.bodies if b["kind"] == "pool-exhausted"]

    await until(lambda: bool(exhausted()))
    await asyncio.sleep(8)  # a bounded look: about eight retries and forty ticks
    assert exhausted() == [False]
    assert smtp_sink.messages == []
    high = report_pools(config)["high-risk"]
    assert high["health"] == "exhausted"
    assert high["summary"]["score"] == 0
    assert all(row["eligible"] is False for row in high["ips"])
    assert await daemon.stop_async() == 0


COOLING_POOLS = """
[pools.normal]
risk = "normal"
ips = ["127.0.0.10", "127.0.0.11"]

[pools.high-risk]
risk = "high"
ips = ["127.0.0.20", "127.0.0.21"]
interval = "1s"
cooldown = "3s"
"""


async def test_a_dead_zone_does_not_keep_a_delisted_ip_retired_and_report_says_what_it_waits_on(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    relay_lab: RelayLab,
) -> None:
    """Item 5: ``dead.test`` (it does not even list its test point) is configured next to
    ``bl``; the cool-down counts ``bl`` alone, and report/history say what the IP waits on."""
    rbldnsd.delist_ip("127.0.0.21")
    config = relay_lab.config(pools=COOLING_POOLS)
    text = config.read_text().replace('zones = ["bl"]', 'zones = ["bl", "dead"]')
    config.write_text(text)
    daemon = await relay_lab.start(config)
    await until(lambda: state_of(tmp_path, "127.0.0.20") == "retired")

    retired = {row["ip"]: row for row in report_pools(config)["high-risk"]["ips"]}["127.0.0.20"]
    outlook = retired["retirement"]
    assert outlook["waits_on"] == "delisting"
    assert "bl" in outlook["reason"]
    assert outlook["earliest_return"] is None
    assert outlook["zones_counted"] == ["bl"]  # dead.test is not healthy: not counted
    assert history(config, "127.0.0.20")["retirement"]["waits_on"] == "delisting"

    rbldnsd.delist_ip("127.0.0.20")
    await until(lambda: history(config, "127.0.0.20")["retirement"] is None or (
        history(config, "127.0.0.20")["retirement"]["waits_on"] == "cooldown"
    ))  # fmt: skip
    await until(lambda: state_of(tmp_path, "127.0.0.20") == "standby", within=30)
    assert await daemon.stop_async() == 0
