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
import sqlite3
from pathlib import Path

import pytest

from tests.fixtures.daemon import DaemonFactory
from tests.fixtures.daemon_lab import config_for, lab_dns, smtp_send, start
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.rbldnsd import Rbldnsd
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

_DISK_FULL = """
CREATE TRIGGER disk_full BEFORE UPDATE ON queue_recipients
BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END
"""


HELLO = b"Subject: hi\r\n\r\nhello\r\n"


def _execute(database: Path, statement: str) -> None:
    with sqlite3.connect(database, timeout=30) as db:
        db.execute(statement)


async def test_a_failing_store_makes_the_queue_runner_back_off_and_log_a_bounded_count(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    dns_server: DnsTestServer,
    smtp_sink: SmtpSink,
    daemon_process: DaemonFactory,
) -> None:
    lab_dns(dns_server, smtp_sink, dsn_mx=False)
    config = config_for(tmp_path, rbldnsd, dns_server, smtp_sink)
    daemon = await start(daemon_process, config)
    database = tmp_path / "hrmonitor.db"
    await asyncio.to_thread(_execute, database, _DISK_FULL)

    # Accepted: inserts still work.
    await asyncio.to_thread(smtp_send, daemon.port, "bob@rcpt.test", HELLO)
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
