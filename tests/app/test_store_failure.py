"""The queue runner with a failing store, through a real ``hrmonitor run`` process.

The store is the daemon's own SQLite file; the test adds a trigger that
refuses every update of a queue recipient with "database or disk is full",
which is what a full disk does to the runner's claims while reads (the
queue's next due time) still work: the pass fails, the next one is due at
once. The runner must back off and log the outage once per interval with a
count, not a traceback per try, and deliver once the store works again.
"""

from __future__ import annotations

import asyncio
import smtplib
import sqlite3
from pathlib import Path

import pytest

from tests.fixtures.app_config import make_config
from tests.fixtures.daemon import DaemonFactory
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.rbldnsd import Rbldnsd
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

_DISK_FULL = """
CREATE TRIGGER disk_full BEFORE UPDATE ON queue_recipients
BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END
"""


def _execute(database: Path, statement: str) -> None:
    with sqlite3.connect(database, timeout=30) as db:
        db.execute(statement)


def _send(port: int, rcpt: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=("127.0.0.5", 0)) as client:
        client.sendmail("a@contoso.test", [rcpt], b"Subject: hi\r\n\r\nhello\r\n")


async def test_a_failing_store_makes_the_queue_runner_back_off_and_log_a_bounded_count(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    dns_server: DnsTestServer,
    smtp_sink: SmtpSink,
    daemon_process: DaemonFactory,
) -> None:
    dns_server.add("rcpt.test", "MX", "10 mx.rcpt.test.")
    dns_server.add("mx.rcpt.test", "A", smtp_sink.host)
    dns_server.add("contoso.test", "A", "127.0.0.5")
    config = make_config(
        tmp_path,
        rbldnsd=rbldnsd,
        mail_dns=(dns_server.host, dns_server.port),
        delivery_port=smtp_sink.port,
    )
    daemon = await asyncio.to_thread(daemon_process, config)
    database = tmp_path / "hrmonitor.db"
    await asyncio.to_thread(_execute, database, _DISK_FULL)

    await asyncio.to_thread(_send, daemon.port, "bob@rcpt.test")  # accepted: inserts still work
    await asyncio.sleep(6)  # the old runner retried this pass ~50 times a second
    log = daemon.log.read_text()
    assert "queue runner pass failed" in log
    assert log.count("queue runner pass failed") <= 2, log[-3000:]
    assert log.count("ERROR hrmonitor.services.relay.runner") <= 2  # a traceback each, at most
    assert not smtp_sink.messages

    await asyncio.to_thread(_execute, database, "DROP TRIGGER disk_full")
    [received] = await smtp_sink.wait_for(1, timeout=60)  # the backoff is capped: it recovers
    assert received.rcpts == ("bob@rcpt.test",)
    assert "queue runner passes work again after" in daemon.log.read_text()
    assert await daemon.stop_async() == 0
