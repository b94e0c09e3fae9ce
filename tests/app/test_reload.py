"""SIGHUP reloads a running ``hrmonitor run``: config in place, a bad one refused, logs reopened.

Peers as in test_relay_daemon: rbldnsd (127.0.0.21-22 delisted here), a DNS
server for the mail domains, and the sink MX, which records each message's
source address, so it proves which pool's routing sent it.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiosmtplib
import pytest

from tests.fixtures.app_config import ROUTING, make_config
from tests.fixtures.daemon import DaemonFactory
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.rbldnsd import Rbldnsd
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

NORMAL = {"127.0.0.10", "127.0.0.11"}
HIGH = {"127.0.0.20", "127.0.0.21", "127.0.0.22"}  # .20 is listed, retired soon
MINE = '[rules.contoso-bulk]\nsender_domain = "bulk.contoso.test"\nrisk = "high"\n'


@pytest.fixture
def mail_dns(dns_server: DnsTestServer, smtp_sink: SmtpSink) -> DnsTestServer:
    dns_server.add("rcpt.test", "MX", "10 mx.rcpt.test.")
    dns_server.add("mx.rcpt.test", "A", smtp_sink.host)
    dns_server.add("contoso.test", "A", "127.0.0.5")
    dns_server.add("bulk.contoso.test", "A", "127.0.0.5")
    return dns_server


def lab_config(
    tmp_path: Path, rbldnsd: Rbldnsd, mail_dns: DnsTestServer, sink: SmtpSink, **more: str
) -> Path:
    return make_config(
        tmp_path,
        rbldnsd=rbldnsd,
        mail_dns=(mail_dns.host, mail_dns.port),
        delivery_port=sink.port,
        **more,  # type: ignore[arg-type]
    )


async def until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(0.05)


async def send(client: aiosmtplib.SMTP, sender: str, rcpt: str) -> None:
    message = f"From: {sender}\r\nTo: {rcpt}\r\nSubject: reload\r\n\r\nbody\r\n"
    await client.sendmail(sender, [rcpt], message)


async def test_a_hup_applies_a_new_routing_rule_without_dropping_a_session(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    mail_dns: DnsTestServer,
    smtp_sink: SmtpSink,
    daemon_process: DaemonFactory,
) -> None:
    for ip in ("127.0.0.21", "127.0.0.22"):
        rbldnsd.delist_ip(ip)
    config = lab_config(tmp_path, rbldnsd, mail_dns, smtp_sink)
    daemon = await asyncio.to_thread(daemon_process, config)
    session = aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.port, timeout=20)
    await session.connect()
    await send(session, "a@bulk.contoso.test", "before@rcpt.test")
    [before] = await smtp_sink.wait_for(1, 30)
    assert before.peer in NORMAL  # no rule for bulk mail yet

    (tmp_path / "mine.toml").write_text(MINE)
    lab_config(
        tmp_path, rbldnsd, mail_dns, smtp_sink,
        routing=ROUTING.replace('"]', '", "mine.toml"]'),
    )  # fmt: skip
    daemon.process.send_signal(signal.SIGHUP)
    await until(lambda: "reloaded" in daemon.log.read_text())

    await send(session, "a@bulk.contoso.test", "after@rcpt.test")  # the same session
    await send(session, "a@contoso.test", "plain@rcpt.test")
    await session.quit()
    received = await smtp_sink.wait_for(3, 30)
    peer = {m.rcpts[0]: m.peer for m in received}
    assert peer["after@rcpt.test"] in HIGH
    assert peer["plain@rcpt.test"] in NORMAL
    assert daemon.process.poll() is None
    assert await daemon.stop_async() == 0


async def test_a_hup_with_a_bad_config_logs_it_and_keeps_running_on_the_old(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    mail_dns: DnsTestServer,
    smtp_sink: SmtpSink,
    daemon_process: DaemonFactory,
) -> None:
    config = lab_config(tmp_path, rbldnsd, mail_dns, smtp_sink)
    daemon = await asyncio.to_thread(daemon_process, config)
    good = config.read_text()
    config.write_text(good.replace('interval = "1s"', 'interval = "0s"', 1))
    daemon.process.send_signal(signal.SIGHUP)
    await until(lambda: "keeping the running config" in daemon.log.read_text())
    assert f"reload refused: {config}: dnsbl.interval: must be longer than 0" in (
        daemon.log.read_text()
    )
    (tmp_path / "mine.toml").write_text("[rules.spam-scor]\nenabled = false\n")  # a typo
    config.write_text(good.replace(ROUTING.split('"')[1], "mine.toml"))
    daemon.process.send_signal(signal.SIGHUP)
    await until(lambda: daemon.log.read_text().count("keeping the running config") == 2)
    log = daemon.log.read_text()
    assert "rules.spam-scor.enabled: switches off no rule" in log
    assert "Traceback" not in log
    assert daemon.process.poll() is None

    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.port, timeout=20)
    await client.connect()
    await send(client, "a@contoso.test", "still@rcpt.test")
    await client.quit()
    [message] = await smtp_sink.wait_for(1, 30)
    assert message.peer in NORMAL
    assert await daemon.stop_async() == 0


_RUNNING = re.compile(r"hrmonitor running: .* SMTP on [^\s]+:(\d+)(?!\d)")


@pytest.fixture
def log_file_daemon(tmp_path: Path) -> Iterator[Callable[[Path, Path], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "hrmonitor", "run", "--config", str(config)]
        process = subprocess.Popen(
            [*command, "--log-file", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


async def test_a_hup_reopens_the_log_file_after_logrotate_moves_it(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    mail_dns: DnsTestServer,
    smtp_sink: SmtpSink,
    log_file_daemon: Callable[[Path, Path], subprocess.Popen[bytes]],
) -> None:
    config = lab_config(tmp_path, rbldnsd, mail_dns, smtp_sink)
    log = tmp_path / "hrmonitor.log"
    process = log_file_daemon(config, log)
    await until(lambda: log.exists() and _RUNNING.search(log.read_text()) is not None, 30)
    log.rename(tmp_path / "hrmonitor.log.1")  # logrotate, then postrotate: kill -HUP
    process.send_signal(signal.SIGHUP)
    await until(lambda: log.exists() and "reloaded" in log.read_text())
    assert "hrmonitor running" in (tmp_path / "hrmonitor.log.1").read_text()
    assert "hrmonitor running" not in log.read_text()
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 30) == 0
    assert "draining" in log.read_text()  # SIGTERM still drains, logged to the new file
