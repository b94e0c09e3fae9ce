"""One MX cannot empty a pool: a real ``hrmonitor run`` process and two MXs on loopback.

The hostile MX (mx.hostile.test on 127.0.0.51) answers every recipient with a
5xx naming Spamhaus. It used to suspend each normal IP that met it for every
destination without a known provider ("generic"), for two hours: after two
replies the whole normal pool was suspended and mail to every other domain
was held with pool-exhausted. Now the replies suspend the IPs for
hostile.test only and mail to rcpt.test (the good MX on 127.0.0.50, the same
port) still leaves from the normal pool.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.fixtures.daemon import DaemonFactory
from tests.fixtures.daemon_lab import NORMAL, config_for, lab_dns, smtp_send, start
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.rbldnsd import Rbldnsd
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

BLOCKED = "554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org"


def _send(port: int, rcpt: str) -> None:
    smtp_send(port, rcpt, f"Subject: to {rcpt}\r\n\r\nhi\r\n".encode())


def _log_lines(path: Path, text: str, count: int, within: float = 60.0) -> list[str]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        lines = [line for line in path.read_text().splitlines() if text in line]
        if len(lines) >= count:
            return lines
        time.sleep(0.1)
    pytest.fail(f"{count} lines with {text!r} not logged:\n{path.read_text()[-3000:]}")


async def test_blocklist_replies_from_one_mx_leave_the_pool_sending_everywhere_else(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    dns_server: DnsTestServer,
    smtp_sink: SmtpSink,
    daemon_process: DaemonFactory,
) -> None:
    for ip in ("127.0.0.20", "127.0.0.21", "127.0.0.22"):
        rbldnsd.delist_ip(ip)  # the DSNs of the refused mail leave from high-risk
    hostile = SmtpSink("127.0.0.51")
    await hostile.start(smtp_sink.port)
    try:
        for rcpt in ("a@hostile.test", "b@hostile.test", "c@hostile.test"):
            hostile.script(rcpt, BLOCKED)
        dns_server.add("hostile.test", "MX", "10 mx.hostile.test.")
        dns_server.add("mx.hostile.test", "A", hostile.host)
        lab_dns(dns_server, smtp_sink)
        config = config_for(tmp_path, rbldnsd, dns_server, smtp_sink)
        daemon = await start(daemon_process, config)

        for rcpt in ("a@hostile.test", "b@hostile.test"):
            await asyncio.to_thread(_send, daemon.port, rcpt)
            await asyncio.to_thread(_log_lines, daemon.log, f"to=<{rcpt}>, ", 1)
        refused = await asyncio.to_thread(_log_lines, daemon.log, "@hostile.test>, ", 2)
        senders = {line.split(", source=")[1].split(",")[0] for line in refused}
        assert senders == NORMAL  # each normal IP met the hostile MX's blocklist reply
        await asyncio.to_thread(
            _log_lines, daemon.log, "suspended for hostile.test", 2
        )  # ... and was suspended for hostile.test (the alert says so)

        await asyncio.to_thread(_send, daemon.port, "good@rcpt.test")
        [good] = await smtp_sink.wait_for(1, 60, lambda m: "good@rcpt.test" in m.rcpts)
        assert good.peer in NORMAL  # the old daemon held it: pool-exhausted

        await asyncio.to_thread(_send, daemon.port, "c@hostile.test")  # that destination waits
        await asyncio.to_thread(
            _log_lines, daemon.log, "pool normal has no eligible IP for mx.hostile.test", 1
        )
        log = daemon.log.read_text()
        assert "suspended for generic" not in log
        assert "suspended for *" not in log
        assert await daemon.stop_async() == 0
    finally:
        await hostile.stop()
