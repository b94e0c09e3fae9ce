"""Several ``hrmonitor run`` nodes on one PostgreSQL database, each a separate process.

Peers on loopback, started by fixtures: PostgreSQL (a schema per test),
rbldnsd behind a proxy that counts every DNSBL question, a DNS server for
the mail domains, and an aiosmtpd MX that records each message and can be
made slow (``smtp_sink.delay``: each RCPT waits). Nodes beat every 500 ms;
the lease is short where a test waits for it to run out, and long where a
spurious take-over on a loaded machine would blur what the test proves.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hrmonitor.cli import main
from tests.fixtures.app_config import POOLS, make_config
from tests.fixtures.daemon import DaemonFactory
from tests.fixtures.daemon_lab import HIGH, NORMAL, start, until
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.rbldnsd import LossyProxy, Rbldnsd
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


# The lab's POOLS, every pool swept once at start and then hourly: a test sees each
# sweep it causes.
HOURLY_POOLS = POOLS.replace(
    'when_exhausted = "use-listed"\n', 'when_exhausted = "use-listed"\ninterval = "1h"\n'
).replace('interval = "1s"', 'interval = "1h"')


class Lab:
    """What each node's config points at."""

    def __init__(
        self,
        tmp_path: Path,
        database: str,
        dnsbl: tuple[str, int],
        mail_dns: DnsTestServer,
        sink: SmtpSink,
    ) -> None:
        self.tmp_path = tmp_path
        self.database = database
        self.dnsbl = dnsbl
        self.mail_dns = mail_dns
        self.sink = sink

    def config(
        self, name: str, *, lease: str = "3s", pools: str = HOURLY_POOLS, extra: str = ""
    ) -> Path:
        directory = self.tmp_path / name
        directory.mkdir(exist_ok=True)
        return make_config(
            directory,
            nameserver=self.dnsbl,
            mail_dns=(self.mail_dns.host, self.mail_dns.port),
            database=self.database,
            delivery_port=self.sink.port,
            pools=pools,
            command_timeout="120s",  # a slow MX in these tests is slow, not gone
            extra=f'[node]\nname = "{name}"\nlease = "{lease}"\nheartbeat = "500ms"\n{extra}',
        )

    def scalar(self, sql: str) -> int:
        engine = create_engine(self.database)
        try:
            with engine.connect() as conn:
                return int(conn.execute(text(sql)).scalar_one())
        finally:
            engine.dispose()


@pytest.fixture
def lab(
    tmp_path: Path,
    postgres_url: str,
    counting_proxy: LossyProxy,
    mail_dns: DnsTestServer,
    smtp_sink: SmtpSink,
) -> Lab:
    return Lab(tmp_path, postgres_url, counting_proxy.address, mail_dns, smtp_sink)


async def send(port: int, rcpt: str, sender: str = "a@contoso.test") -> None:
    message = f"From: {sender}\r\nTo: {rcpt}\r\nSubject: cluster\r\n\r\nhello\r\n"
    await aiosmtplib.send(
        message, hostname="127.0.0.1", port=port, sender=sender, recipients=[rcpt], timeout=30
    )


def pending(lab: Lab) -> int:
    return lab.scalar("SELECT count(*) FROM queue_recipients WHERE status <> 'delivered'")


async def test_restarting_one_node_under_load_delivers_nothing_twice(
    lab: Lab, smtp_sink: SmtpSink, daemon_process: DaemonFactory
) -> None:
    """A starting node used to make every node's claims due again (issue 11)."""
    a = await start(daemon_process, lab.config("a", lease="20s"))
    b = await start(daemon_process, lab.config("b", lease="20s"))
    smtp_sink.delay = 1.0  # deliveries in flight on b while a restarts
    rcpts = [f"r{i}@rcpt.test" for i in range(60)]
    gate = asyncio.Semaphore(5)  # within the listener's connections per client

    async def one(rcpt: str) -> None:
        async with gate:
            await send(b.port, rcpt)

    await asyncio.gather(*(one(r) for r in rcpts))
    await until(lambda: lab.scalar(
        "SELECT count(*) FROM queue_recipients WHERE status = 'delivering'"
    ) >= 10, within=30)  # fmt: skip
    await asyncio.to_thread(a.stop)
    a = await start(daemon_process, a.config)
    await until(lambda: pending(lab) == 0, within=60)
    received = Counter(r for m in smtp_sink.messages for r in m.rcpts)
    assert set(received) == set(rcpts)
    assert [r for r, n in received.items() if n > 1] == []


async def test_a_killed_nodes_claims_are_delivered_by_the_other_within_the_lease(
    lab: Lab, smtp_sink: SmtpSink, daemon_process: DaemonFactory
) -> None:
    a = await start(daemon_process, lab.config("a"))
    smtp_sink.delay = 60.0  # a's deliveries hang at RCPT: its claims stay claimed
    rcpts = [f"k{i}@rcpt.test" for i in range(5)]
    await asyncio.gather(*(send(a.port, r) for r in rcpts))
    claimed = (
        "SELECT count(*) FROM queue_recipients WHERE claimed_by = 'a' AND status = 'delivering'"
    )
    await until(lambda: lab.scalar(claimed) == 5, within=30)
    b = await start(daemon_process, lab.config("b"))
    assert lab.scalar(claimed) == 5  # b's start left a's claims alone
    a.kill()
    smtp_sink.delay = 0.0
    # The wait is a timeout, not a speed figure: the old fixed 1,200 s lease never got here.
    await until(lambda: len(smtp_sink.messages) >= 5, within=60)
    assert sorted(r for m in smtp_sink.messages for r in m.rcpts) == sorted(rcpts)
    # b handed them back because a's lease ran out, not through some other path.
    assert "node b: took over 5 recipient(s) claimed by a node silent for over 3s" in (
        b.log.read_text()
    )


async def test_a_second_node_adds_no_dnsbl_queries(
    lab: Lab, counting_proxy: LossyProxy, daemon_process: DaemonFactory
) -> None:
    """One sweeper per cluster: the DNSBL sees one node's worth of queries."""
    await start(daemon_process, lab.config("a"))
    await until(lambda: sum(counting_proxy.questions.values()) > 0, within=30)
    await _settled(counting_proxy)
    one_node = Counter(counting_proxy.questions)
    b = await start(daemon_process, lab.config("b"))
    await asyncio.sleep(3)  # six heartbeats: b would have swept at start
    assert counting_proxy.questions == one_node
    assert max(one_node.values()) <= 2  # each question asked once (a listing confirmed twice)
    assert "hrmonitor.app.daemon: [b] hrmonitor running:" in b.log.read_text()  # who logs


async def test_when_the_sweeper_dies_another_node_sweeps_within_the_lease(
    lab: Lab, counting_proxy: LossyProxy, daemon_process: DaemonFactory
) -> None:
    a = await start(daemon_process, lab.config("a"))
    await until(lambda: sum(counting_proxy.questions.values()) > 0, within=30)
    b = await start(daemon_process, lab.config("b"))
    await _settled(counting_proxy)
    before = sum(counting_proxy.questions.values())
    a.kill()
    await until(lambda: sum(counting_proxy.questions.values()) > before, within=60)
    assert b.process.poll() is None
    assert "node b: now holds role sweeper" in b.log.read_text()

    def cluster() -> dict[str, Any]:
        result = CliRunner().invoke(main, ["report", "--json", "--config", str(b.config)])
        return dict(json.loads(result.stdout)["cluster"])

    assert {role: held["holder"] for role, held in cluster()["roles"].items()} == {
        "sweeper": "b",
        "rotation": "b",
    }
    # A node is alive while its heartbeat is within the lease. Its roles were renewed
    # after its last heartbeat of a round, or a round before it if it died in between,
    # so a role can move up to one heartbeat (500 ms) before its old holder reads dead.
    await until(lambda: not {n["name"]: n["alive"] for n in cluster()["nodes"]}["a"], within=5)
    assert {n["name"]: n["alive"] for n in cluster()["nodes"]} == {"a": False, "b": True}


async def _settled(proxy: LossyProxy, quiet: float = 1.5) -> None:
    """Wait until no question has been asked for ``quiet`` seconds (a sweep is over)."""
    last = -1
    while (now := sum(proxy.questions.values())) != last:
        last = now
        await asyncio.sleep(quiet)


async def test_a_sender_over_its_limit_across_both_nodes_goes_high_risk_with_one_alert(
    lab: Lab, rbldnsd: Rbldnsd, smtp_sink: SmtpSink, daemon_process: DaemonFactory
) -> None:
    for ip in ("127.0.0.20", "127.0.0.21", "127.0.0.22"):
        rbldnsd.delist_ip(ip)
    limits = '[limits]\nrecipients_per_hour = 10\nsync = "200ms"\n'
    a = await start(daemon_process, lab.config("a", lease="20s", extra=limits))
    b = await start(daemon_process, lab.config("b", lease="20s", extra=limits))
    for i in range(8):
        await send(a.port, f"l{i}@rcpt.test", sender="heavy@contoso.test")
    published = "SELECT coalesce(sum(recipients), 0) FROM sender_counts WHERE node = 'a'"
    await until(lambda: lab.scalar(published) == 8, within=30)
    await asyncio.sleep(1.0)  # five of b's reads
    for i in range(8, 12):
        await send(b.port, f"l{i}@rcpt.test", sender="heavy@contoso.test")
    for i in range(12, 14):  # and back on a, which has read b's four by now
        await until(lambda: lab.scalar(published.replace("'a'", "'b'")) == 4, within=30)
        await asyncio.sleep(0.5)
        await send(a.port, f"l{i}@rcpt.test", sender="heavy@contoso.test")
    await until(lambda: len(smtp_sink.messages) >= 14, within=30)
    peer = {m.rcpts[0]: m.peer for m in smtp_sink.messages}
    assert {peer[f"l{i}@rcpt.test"] for i in range(10)} <= NORMAL
    assert {peer[f"l{i}@rcpt.test"] for i in range(10, 14)} <= HIGH
    alerts = [
        line
        for log in (a.log, b.log)
        for line in log.read_text().splitlines()
        if "[sending-limit]" in line
    ]
    assert len(alerts) == 1, alerts


async def test_a_nodes_per_ip_volume_rows_carry_its_configured_name(
    lab: Lab, smtp_sink: SmtpSink, daemon_process: DaemonFactory
) -> None:
    """ip_volume's node was the host name whatever [node] name said (issue 11 with 10)."""
    a = await start(daemon_process, lab.config("a"))
    await send(a.port, "v@rcpt.test")
    await until(lambda: len(smtp_sink.messages) >= 1, within=30)
    await asyncio.to_thread(a.stop)  # a stopping node writes its last counts
    assert lab.scalar("SELECT coalesce(sum(sent), 0) FROM ip_volume WHERE node = 'a'") == 1
    assert lab.scalar("SELECT count(*) FROM ip_volume WHERE node NOT IN ('a', '')") == 0


async def send_retrying(port: int, rcpt: str) -> int:
    """``send``, again after a 4xx (what a sending MTA does); returns the retries it took."""
    for retries in range(3):
        try:
            await send(port, rcpt)
            return retries
        except aiosmtplib.SMTPResponseException as exc:
            if not 400 <= exc.code < 500:
                raise
    pytest.fail(f"{rcpt} was refused three times")


async def test_killed_database_connections_cost_the_daemon_at_most_a_retry(
    tmp_path: Path,
    postgres_url: str,
    counting_proxy: LossyProxy,
    mail_dns: DnsTestServer,
    smtp_sink: SmtpSink,
    daemon_process: DaemonFactory,
) -> None:
    """The pool has no pre-ping (issue 10): a connection PostgreSQL killed fails one use.

    The daemon's connections carry an application_name of their own, so only they
    are terminated. Every message acknowledged before or after is delivered, the
    daemon keeps running, and a sender sees at most one 4xx per pool.
    """
    app = f"hrm-kill-{uuid.uuid4().hex[:12]}"
    database = make_url(postgres_url).update_query_dict({"application_name": app})
    lab = Lab(
        tmp_path,
        database.render_as_string(hide_password=False),
        counting_proxy.address,
        mail_dns,
        smtp_sink,
    )
    a = await start(daemon_process, lab.config("a", lease="20s"))
    before = [f"p{i}@rcpt.test" for i in range(5)]
    for rcpt in before:
        await send(a.port, rcpt)
    await until(lambda: len(smtp_sink.messages) >= 5, within=30)
    terminate = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        f" WHERE application_name = '{app}' AND pid <> pg_backend_pid()"
    )
    assert lab.scalar(terminate) >= 1  # the daemon's pooled connections
    after = [f"q{i}@rcpt.test" for i in range(5)]
    retries = [await send_retrying(a.port, rcpt) for rcpt in after]
    await until(lambda: len(smtp_sink.messages) >= 10, within=60)
    assert a.process.poll() is None
    assert {r for m in smtp_sink.messages for r in m.rcpts} == set(before + after)
    assert sum(retries) <= 2  # one failed use of a dead connection per pool, at most
