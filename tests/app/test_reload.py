"""SIGHUP reloads a running ``hrmonitor run``: config in place, a bad one refused, logs reopened.

Peers as in test_relay_daemon: rbldnsd (127.0.0.21-22 delisted here), a DNS
server for the mail domains, and the sink MX, which records each message's
source address, so it proves which pool's routing sent it.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
from pathlib import Path

import aiosmtplib
import pytest

from tests.fixtures.app_config import POOLS, ROUTING, TENANTS, make_config
from tests.fixtures.daemon_lab import (
    HIGH,
    NORMAL,
    RelayLab,
    history_process,
    lab_dns,
    state_of,
    swaks_status,
    until,
)
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.rbldnsd import Rbldnsd
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

MINE = '[rules.contoso-bulk]\nsender_domain = "bulk.contoso.test"\nrisk = "high"\n'


@pytest.fixture
def mail_dns(dns_server: DnsTestServer, smtp_sink: SmtpSink) -> DnsTestServer:
    lab_dns(dns_server, smtp_sink, dsn_mx=False)
    dns_server.add("bulk.contoso.test", "A", "127.0.0.5")
    return dns_server


async def send(client: aiosmtplib.SMTP, sender: str, rcpt: str) -> None:
    message = f"From: {sender}\r\nTo: {rcpt}\r\nSubject: reload\r\n\r\nbody\r\n"
    await client.sendmail(sender, [rcpt], message)


async def test_a_hup_applies_a_new_routing_rule_without_dropping_a_session(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    for ip in ("127.0.0.21", "127.0.0.22"):
        rbldnsd.delist_ip(ip)
    config = relay_lab.config()
    daemon = await relay_lab.start(config)
    session = aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.port, timeout=20)
    await session.connect()
    await send(session, "a@bulk.contoso.test", "before@rcpt.test")
    [before] = await smtp_sink.wait_for(1, 30)
    assert before.peer in NORMAL  # no rule for bulk mail yet

    (tmp_path / "mine.toml").write_text(MINE)
    relay_lab.config(routing=ROUTING.replace('"]', '", "mine.toml"]'))
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
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    config = relay_lab.config()
    daemon = await relay_lab.start(config)
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


async def test_a_hup_reopens_the_log_file_after_logrotate_moves_it(
    tmp_path: Path,
    relay_lab: RelayLab,
) -> None:
    config = relay_lab.config()
    log = tmp_path / "hrmonitor.log"
    process = (await relay_lab.start(config, log_file=log)).process
    await until(lambda: log.exists() and _RUNNING.search(log.read_text()) is not None, 30)
    log.rename(tmp_path / "hrmonitor.log.1")  # logrotate, then postrotate: kill -HUP
    process.send_signal(signal.SIGHUP)
    await until(lambda: log.exists() and "reloaded" in log.read_text())
    assert "hrmonitor running" in (tmp_path / "hrmonitor.log.1").read_text()
    assert "hrmonitor running" not in log.read_text()
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 30) == 0
    assert "draining" in log.read_text()  # SIGTERM still drains, logged to the new file


# --- pools, zones and tenants in place --------------------------------------------------

NORMAL_12 = """
[pools.normal]
risk = "normal"
ips = ["127.0.0.12"]
when_exhausted = "use-listed"
"""

HIGH_POOL = POOLS.split("[pools.high-risk]")[1]


def pools_with(normal: str) -> str:
    return normal + "\n[pools.high-risk]" + HIGH_POOL


def tried(config_dir: Path, rcpt: str) -> int:
    """How many attempts the queue has made for ``rcpt`` (the daemon's own database)."""
    with sqlite3.connect(config_dir / "hrmonitor.db") as db:
        row = db.execute(
            "SELECT attempts FROM queue_recipients WHERE address = ?", (rcpt,)
        ).fetchone()
    return int(row[0]) if row else 0


def listed_on(config_dir: Path, ip: str, zone: str) -> bool:
    """Whether the daemon's store holds an open listing of ``ip`` on ``zone``."""
    with sqlite3.connect(config_dir / "hrmonitor.db") as db:
        row = db.execute(
            "SELECT 1 FROM listings WHERE ip = ? AND list_key = ? AND cleared_at IS NULL",
            (ip, zone),
        ).fetchone()
    return row is not None


def open_alerts(config_dir: Path) -> set[str]:
    with sqlite3.connect(config_dir / "hrmonitor.db") as db:
        return {k for (k,) in db.execute("SELECT key FROM alerts WHERE resolved_at IS NULL")}


async def test_a_hup_moves_added_and_removed_ips_through_the_controller_audited(
    tmp_path: Path,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    """Normal pool .10/.11 -> .12: mail queued before the reload leaves from .12 after it,
    new mail too, and `history` tells each IP's move by "reload"."""
    smtp_sink.script("queued@rcpt.test", "451 4.3.0 not now")  # until the reload is done
    config = relay_lab.config()
    daemon = await relay_lab.start(config)
    session = aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.port, timeout=20)
    await session.connect()
    await send(session, "a@contoso.test", "queued@rcpt.test")
    await until(lambda: tried(tmp_path, "queued@rcpt.test") > 0, 60)

    relay_lab.config(pools=pools_with(NORMAL_12))
    daemon.process.send_signal(signal.SIGHUP)
    await until(lambda: "reloaded" in daemon.log.read_text(), 60)
    smtp_sink.script("queued@rcpt.test", "250 2.1.5 ok")
    await send(session, "a@contoso.test", "after@rcpt.test")  # the session survived
    await session.quit()
    received = await smtp_sink.wait_for(2, 60)
    assert {m.rcpts[0]: m.peer for m in received} == {
        "queued@rcpt.test": "127.0.0.12",  # queued for the pool, sent from what it is now
        "after@rcpt.test": "127.0.0.12",
    }
    log = daemon.log.read_text()
    assert "reload: pool normal: 127.0.0.10 removed from pool normal in the config" in log
    assert "reload: pool normal: 127.0.0.12 added to pool normal (ips) in the config" in log
    assert "pools changed: takes effect at the next restart" not in log
    assert await daemon.stop_async() == 0

    added = [
        (e["from"], e["to"], e["reason"])
        for e in history_process(config, "127.0.0.12")["audit"]
        if e["by"] == "reload"
    ]  # a new IP in a pool with a warm-up schedule warms up first, as a promotion does
    assert added == [("active", "warming", "added to pool normal (ips) in the config")]
    for gone in ("127.0.0.10", "127.0.0.11"):
        record = history_process(config, gone)
        assert record["state"] == "retired"
        moves = [(e["from"], e["to"], e["reason"]) for e in record["audit"] if e["by"] == "reload"]
        assert moves == [("active", "retired", "removed from pool normal in the config")]


async def test_a_hup_with_new_zones_sees_their_listings_and_resolves_a_removed_zones_alert(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    mail_dns: DnsTestServer,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    """Started on the dead list only (its zone-health alert open, 127.0.0.20's listing on
    bl unseen); after the reload to bl, the listing is seen and dead's alert resolved."""
    config = make_config(
        tmp_path, rbldnsd=rbldnsd, mail_dns=(mail_dns.host, mail_dns.port),
        delivery_port=smtp_sink.port, zones=("dead",),
    )  # fmt: skip
    daemon = await relay_lab.start(config)
    await until(lambda: "zone dead is dead" in daemon.log.read_text(), 60)
    assert not listed_on(tmp_path, "127.0.0.20", "bl")

    make_config(
        tmp_path, rbldnsd=rbldnsd, mail_dns=(mail_dns.host, mail_dns.port),
        delivery_port=smtp_sink.port, zones=("bl",),
    )  # fmt: skip
    daemon.process.send_signal(signal.SIGHUP)
    await until(lambda: listed_on(tmp_path, "127.0.0.20", "bl"), 60)
    await until(lambda: any(k.endswith(":127.0.0.20:bl") for k in open_alerts(tmp_path)), 60)
    await until(lambda: "zone dead is no longer configured" in daemon.log.read_text(), 60)
    log = daemon.log.read_text()
    assert "dnsbl changed: takes effect at the next restart" not in log
    assert "Traceback" not in log
    assert await daemon.stop_async() == 0
    assert "zone-health:dead" not in open_alerts(tmp_path)


async def test_a_hup_adds_a_tenant_network_for_the_next_connection(
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    tenants = TENANTS.replace("127.0.0.0/8", "127.0.0.5/32")
    config = relay_lab.config(tenants=tenants)
    daemon = await relay_lab.start(config)
    code, out = await swaks_status(
        daemon.port, "--from", "a@contoso.test", "--to", "before@rcpt.test", client="127.0.0.7"
    )
    assert code != 0, out  # 127.0.0.7 is nobody's yet
    assert "5.7.1" in out
    kept = aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.port, timeout=20,
                           source_address=("127.0.0.5", 0))  # fmt: skip
    await kept.connect()

    wider = TENANTS.replace('"127.0.0.0/8"', '"127.0.0.5/32", "127.0.0.7/32"')
    relay_lab.config(tenants=wider)
    daemon.process.send_signal(signal.SIGHUP)
    await until(lambda: "reloaded" in daemon.log.read_text(), 60)
    code, out = await swaks_status(
        daemon.port, "--from", "a@contoso.test", "--to", "after@rcpt.test", client="127.0.0.7"
    )
    assert code == 0, out
    await send(kept, "a@contoso.test", "kept@rcpt.test")  # the open session was not dropped
    await kept.quit()
    received = await smtp_sink.wait_for(2, 60)
    assert sorted(m.rcpts[0] for m in received) == ["after@rcpt.test", "kept@rcpt.test"]
    assert "tenants.networks" not in daemon.log.read_text()
    assert await daemon.stop_async() == 0


async def test_a_hup_that_moves_an_ip_to_another_pool_changes_nothing(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    mail_dns: DnsTestServer,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    """127.0.0.11 moved to high-risk (refused by the store) in the same edit as a new
    normal IP and a new zone: none of it is applied, the daemon runs on the old config."""
    config = relay_lab.config()
    daemon = await relay_lab.start(config)
    moved = POOLS.replace('ips = ["127.0.0.10", "127.0.0.11"]', 'ips = ["127.0.0.12"]').replace(
        'standby = ["127.0.0.22"]', 'standby = ["127.0.0.22", "127.0.0.11"]'
    )
    make_config(
        tmp_path, rbldnsd=rbldnsd, mail_dns=(mail_dns.host, mail_dns.port),
        delivery_port=smtp_sink.port, zones=("bl", "dead"), pools=moved,
    )  # fmt: skip
    daemon.process.send_signal(signal.SIGHUP)
    await until(lambda: "keeping the running config" in daemon.log.read_text(), 60)
    log = daemon.log.read_text()
    assert "127.0.0.11 belongs to pool 'normal'" in log
    assert "reload: pool" not in log
    assert "zone dead" not in log

    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.port, timeout=20)
    await client.connect()
    for n in range(4):
        await send(client, "a@contoso.test", f"still{n}@rcpt.test")
    await client.quit()
    received = await smtp_sink.wait_for(4, 60)
    assert {m.peer for m in received} <= NORMAL
    assert await daemon.stop_async() == 0
    assert state_of(tmp_path, "127.0.0.12") is None  # never registered
    assert state_of(tmp_path, "127.0.0.10") == "active"


BULK_POOL = """
[pools.bulk]
risk = "high"
ips = ["127.0.0.13"]
"""
TO_BULK = '[rules.to-bulk]\nsender_domain = "bulk.contoso.test"\npool = "bulk"\n'


async def test_a_hup_that_removes_a_pool_with_mail_waiting_for_it_is_refused(
    tmp_path: Path,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    """The bulk pool's message waits (the MX defers it) when a reload drops the pool: the
    reload is refused, the pool stays, and the message leaves from it once the MX takes it."""
    smtp_sink.script("waiting@rcpt.test", "451 4.3.0 not now")
    (tmp_path / "bulk.toml").write_text(TO_BULK)
    with_bulk = ROUTING.replace('"]', '", "bulk.toml"]')
    config = relay_lab.config(pools=POOLS + BULK_POOL, routing=with_bulk)
    daemon = await relay_lab.start(config)
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.port, timeout=20)
    await client.connect()
    await send(client, "a@bulk.contoso.test", "waiting@rcpt.test")
    await until(lambda: tried(tmp_path, "waiting@rcpt.test") > 0, 60)

    relay_lab.config()  # no bulk pool, no rule for it
    daemon.process.send_signal(signal.SIGHUP)
    await until(lambda: "keeping the running config" in daemon.log.read_text(), 60)
    assert "pools.bulk: removed while 1 message(s) wait for it" in daemon.log.read_text()
    smtp_sink.script("waiting@rcpt.test", "250 2.1.5 ok")
    await send(client, "a@bulk.contoso.test", "next@rcpt.test")  # the rule still holds
    await client.quit()
    received = await smtp_sink.wait_for(2, 60)
    assert {m.rcpts[0]: m.peer for m in received} == {
        "waiting@rcpt.test": "127.0.0.13",
        "next@rcpt.test": "127.0.0.13",
    }
    assert await daemon.stop_async() == 0
    assert state_of(tmp_path, "127.0.0.13") == "active"


async def test_an_attempt_in_flight_from_a_removed_ip_finishes(
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    """The MX holds the RCPT of a message sent from .10/.11 while a reload removes both:
    that transaction completes from its IP, once; the next message leaves from .12."""
    config = relay_lab.config()
    daemon = await relay_lab.start(config)
    smtp_sink.delay = 5.0
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=daemon.port, timeout=20)
    await client.connect()
    await send(client, "a@contoso.test", "inflight@rcpt.test")
    await until(lambda: smtp_sink.waiting > 0, 60)  # the attempt is at the MX now

    relay_lab.config(pools=pools_with(NORMAL_12))
    daemon.process.send_signal(signal.SIGHUP)
    await until(lambda: "reloaded" in daemon.log.read_text(), 60)
    smtp_sink.delay = 0.0
    await send(client, "a@contoso.test", "next@rcpt.test")
    await client.quit()
    received = await smtp_sink.wait_for(2, 60)
    peers = {m.rcpts[0]: m.peer for m in received}
    assert peers["inflight@rcpt.test"] in NORMAL
    assert peers["next@rcpt.test"] == "127.0.0.12"
    assert len(smtp_sink.for_rcpt("inflight@rcpt.test")) == 1
    assert await daemon.stop_async() == 0
