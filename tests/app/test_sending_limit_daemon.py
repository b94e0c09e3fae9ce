"""The sending-limit alert from a real ``hrmonitor run`` process (issue 13, item 4).

Over-limit mail was routed high-risk, but the alert the decision carried was
read nowhere. A sender over ``recipients_per_hour = 2`` now raises it once,
however many more messages it sends; the resolution (an hour later) is
proved with a fake clock in ``tests/services/test_sending_limit_alerts.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fixtures.daemon import DaemonFactory
from tests.fixtures.daemon_lab import config_for, lab_dns, smtp_send, start, until
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.rbldnsd import Rbldnsd
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow


def _send(port: int, number: int) -> None:
    smtp_send(port, f"m{number}@rcpt.test", f"Subject: {number}\r\n\r\nhello\r\n".encode())


async def test_a_sender_over_its_limit_raises_the_sending_limit_alert_once(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    dns_server: DnsTestServer,
    smtp_sink: SmtpSink,
    daemon_process: DaemonFactory,
) -> None:
    for ip in ("127.0.0.20", "127.0.0.21", "127.0.0.22"):
        rbldnsd.delist_ip(ip)  # a high-risk IP to send the over-limit mail from
    lab_dns(dns_server, smtp_sink, dsn_mx=False)
    config = config_for(
        tmp_path, rbldnsd, dns_server, smtp_sink,
        extra="[limits]\nrecipients_per_hour = 2\nrecipients_per_day = 100\n",
    )  # fmt: skip
    daemon = await start(daemon_process, config)
    for number in range(5):  # two under the limit, three over it
        await asyncio.to_thread(_send, daemon.port, number)
    await smtp_sink.wait_for(5, timeout=60)
    assert await daemon.stop_async() == 0
    log = daemon.log.read_text()
    raised = [line for line in log.splitlines() if "[sending-limit]" in line]
    assert len(raised) == 1, raised
    assert "sender a@contoso.test is over its sending limits" in raised[0]
    assert "3 recipients in the last hour > 2" in raised[0]

    # Restarted with a higher limit: the alert the first run left open is resolved
    # (it used to stay open for ever: the daemon knew its open senders in memory only).
    config.write_text(
        config.read_text().replace("recipients_per_hour = 2", "recipients_per_hour = 50")
    )
    again = await start(daemon_process, config)
    resolved = "[sending-limit] resolved: sender a@contoso.test is back under its sending limits"
    await until(lambda: resolved in again.log.read_text(), within=30)
    assert await again.stop_async() == 0
    told = [line for line in again.log.read_text().splitlines() if "[sending-limit]" in line]
    assert len(told) == 1, told  # resolved once, nothing raised again
    assert resolved in told[0]
