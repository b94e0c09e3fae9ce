"""End to end through a real ``hrmonitor run`` process: swaks in, an aiosmtpd MX out.

Peers, all on loopback and started by fixtures: rbldnsd (the DNSBL, which
lists 127.0.0.20-22 in its standard zone until a test delists them), a DNS
server for the mail domains (contoso.test exists and has an MX, nowhere.test
does not exist, rcpt.test's MX is the sink), and the sink, which records the
source address of every connection. Pools: normal 127.0.0.10-11, high-risk
127.0.0.20-21 plus standby 127.0.0.22. The sink proves which pool sent what.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import signal
import socket
import sqlite3
from pathlib import Path

import aiosmtplib
import pytest
from click.testing import CliRunner

from hrmonitor.cli import main
from tests.fixtures.app_config import ROUTING
from tests.fixtures.daemon_lab import (
    DOWN,
    HIGH,
    NORMAL,
    RelayLab,
    state_is,
    state_of,
    swaks,
    swaks_status,
    until,
)
from tests.fixtures.rbldnsd import Rbldnsd
from tests.fixtures.rspamd import RspamdServer
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow


async def test_each_message_leaves_from_the_pool_its_routing_names(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    for ip in ("127.0.0.21", "127.0.0.22"):
        rbldnsd.delist_ip(ip)
    daemon = await relay_lab.start()
    await until(lambda: state_of(tmp_path, "127.0.0.20") == "retired")
    smtp_sink.script("gone@rcpt.test", "550 5.1.1 <gone@rcpt.test>: no such user")

    await swaks(daemon.port, "--from", "a@contoso.test", "--to", "clean@rcpt.test")
    await swaks(
        daemon.port, "--from", "a@contoso.test", "--to", "spam@rcpt.test",
        "--add-header", "X-Spam-Score: 9.3", client="127.0.0.1",
    )  # fmt: skip
    await swaks(daemon.port, "--from", "<>", "--to", "dsn@rcpt.test")
    await swaks(daemon.port, "--from", "a@nowhere.test", "--to", "nodomain@rcpt.test")
    await swaks(daemon.port, "--from", "a@contoso.test", "--to", "gone@rcpt.test")

    await smtp_sink.wait_for(5, 30)
    peer = {m.rcpts[0]: m.peer for m in smtp_sink.messages}
    assert peer["clean@rcpt.test"] in NORMAL
    assert peer["spam@rcpt.test"] in HIGH - {"127.0.0.20"}
    assert peer["dsn@rcpt.test"] in HIGH - {"127.0.0.20"}
    assert smtp_sink.for_rcpt("dsn@rcpt.test")[0].mail_from == ""  # relayed as a null sender
    assert peer["nodomain@rcpt.test"] in HIGH - {"127.0.0.20"}
    [bounce] = smtp_sink.for_rcpt("a@contoso.test")  # the DSN for gone@rcpt.test
    assert bounce.mail_from == ""
    assert bounce.peer in HIGH - {"127.0.0.20"}
    assert b"multipart/report" in bounce.data
    assert b"delivery-status" in bounce.data
    assert b"gone@rcpt.test" in bounce.data
    assert not smtp_sink.for_rcpt("gone@rcpt.test")

    def contoso_rates() -> dict[str, object]:
        result = CliRunner().invoke(main, ["report", "--json", "--config", str(daemon.config)])
        rows: dict[str, dict[str, object]] = {
            row["tenant"]: row for row in json.loads(result.stdout)["tenants"]
        }
        return rows.get("contoso", {})

    await until(lambda: contoso_rates().get("hard_bounces") == 1)
    rates = contoso_rates()
    assert rates["sent"] == 4  # clean, spam, no-domain, gone: the null-sender mail is no tenant's
    assert rates["hard_bounce_rate"] == 0.25
    assert rates["bounce_status"] == "pause"  # 25 % is over the 10 % pause threshold
    assert await daemon.stop_async() == 0


async def test_an_exhausted_high_risk_pool_holds_mail_until_an_ip_is_back(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    daemon = await relay_lab.start()
    for ip in sorted(HIGH):  # the standby is listed too: taken out, never promoted
        await until(state_is(tmp_path, ip, "retired"))

    await swaks(daemon.port, "--from", "<>", "--to", "held@rcpt.test")
    await swaks(daemon.port, "--from", "a@contoso.test", "--to", "normal@rcpt.test")
    await smtp_sink.wait_for(1, 20)
    await asyncio.sleep(2)  # a bounded look for mail that must not arrive
    assert [m.rcpts for m in smtp_sink.messages] == [("normal@rcpt.test",)]
    assert smtp_sink.messages[0].peer in NORMAL

    rbldnsd.delist_ip("127.0.0.22")  # clean for the 2s cool-down: standby, then promoted
    [held] = await smtp_sink.wait_for(1, 30, lambda m: "held@rcpt.test" in m.rcpts)
    assert held.peer == "127.0.0.22"
    assert await daemon.stop_async() == 0


async def test_kill_9_during_a_load_loses_no_acknowledged_message(
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    """2,000 messages over 10 connections; kill -9 after 600 acknowledgements; restart;
    every message that got a 250 arrives (at least once)."""
    total, kill_after, connections = 2000, 600, 10
    config = relay_lab.config()
    daemon = await relay_lab.start(config)
    acknowledged: set[int] = set()
    numbers = iter(range(total))
    up = asyncio.Event()
    up.set()
    restarted = asyncio.Event()

    async def client() -> None:
        pending: int | None = None
        while True:
            await up.wait()
            port = daemon.port
            try:
                async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=20) as smtp:
                    while True:
                        if pending is None:
                            pending = next(numbers, None)
                        if pending is None:
                            return
                        sender = f"s{pending % 50}@contoso.test"  # under the sending limits
                        message = (
                            f"From: {sender}\r\nTo: m{pending}@rcpt.test\r\n"
                            f"Subject: load {pending}\r\n\r\n" + ("x" * 70 + "\r\n") * 14
                        )
                        await smtp.sendmail(sender, [f"m{pending}@rcpt.test"], message)
                        acknowledged.add(pending)
                        pending = None
            except DOWN:
                await restarted.wait()  # the daemon is down: retry the unacknowledged one
            except aiosmtplib.SMTPResponseException as error:
                # A listener process whose daemon died answers 451 to the message it was
                # handing over: not acknowledged, so the client sends it again, as an MTA
                # does after any 4xx.
                if not 400 <= error.code < 500:
                    raise
                await restarted.wait()

    async def crash() -> None:
        nonlocal daemon
        await until(lambda: len(acknowledged) >= kill_after, 120)
        up.clear()
        daemon.kill()
        daemon = await relay_lab.start(config)
        up.set()
        restarted.set()

    await asyncio.gather(crash(), *(client() for _ in range(connections)))
    assert len(acknowledged) == total

    def delivered() -> set[int]:
        return {int(r[1:].split("@")[0]) for m in smtp_sink.messages for r in m.rcpts}

    await until(lambda: acknowledged <= delivered(), 180)
    assert await daemon.stop_async() == 0
    counts = {n: 0 for n in acknowledged}
    for number in itertools.chain.from_iterable(
        (int(r[1:].split("@")[0]) for r in m.rcpts) for m in smtp_sink.messages
    ):
        counts[number] += 1
    assert min(counts.values()) >= 1


async def test_an_exhausted_normal_pool_with_use_listed_sends_from_its_least_listed_ip(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    """Degraded delivery stays inside the normal pool: never a high-risk IP."""
    rbldnsd.list_ip("127.0.0.10", code="127.0.0.2")
    rbldnsd.list_ip("127.0.0.11", code="127.0.0.2")
    for ip in ("127.0.0.20", "127.0.0.21", "127.0.0.22"):  # the high pool is healthy
        rbldnsd.delist_ip(ip)
    daemon = await relay_lab.start()
    for ip in ("127.0.0.10", "127.0.0.11"):
        await until(state_is(tmp_path, ip, "retired"))

    await swaks(daemon.port, "--from", "a@contoso.test", "--to", "degraded@rcpt.test")
    [message] = await smtp_sink.wait_for(1, 30, lambda m: "degraded@rcpt.test" in m.rcpts)
    # Both are listed once: the tie goes to the lower address (core.selection's rule).
    assert message.peer == "127.0.0.10"
    assert state_of(tmp_path, "127.0.0.20") == "active"  # a healthy high pool lent nothing
    assert await daemon.stop_async() == 0


async def test_smtp_auth_over_tls_lets_a_tenant_user_relay_from_outside_its_networks(
    tmp_path: Path,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    """127.0.0.9 is in no tenant network: refused without AUTH, with a wrong password,
    and relayed (from a normal-pool IP) after STARTTLS and a good AUTH as alice."""
    from hrmonitor.core.credentials import hash_password
    from tests.fixtures.smtp_sink import self_signed_files

    cert, key = self_signed_files(tmp_path)
    (tmp_path / "auth.txt").write_text(f"alice:{hash_password('s3cret', b'0123456789abcdef')}\n")
    tenants = (
        '[[tenants]]\nname = "contoso"\nnetworks = ["127.0.0.5/32"]\n'
        'domains = ["contoso.test"]\nusers = ["alice"]\n'
    )
    listener = f'tls_cert = "{cert}"\ntls_key = "{key}"\nauth_file = "auth.txt"\n'
    config = relay_lab.config(tenants=tenants, listener=listener)
    daemon = await relay_lab.start(config)
    envelope = ("--from", "a@contoso.test", "--to", "authed@rcpt.test")

    code, out = await swaks_status(daemon.port, *envelope, client="127.0.0.9")
    assert code != 0
    assert "550 5.7.1" in out  # relaying denied: not a tenant network, not authenticated

    code, out = await swaks_status(
        daemon.port, *envelope, "--tls", "--auth", "LOGIN", "--auth-user", "alice",
        "--auth-password", "wrong", client="127.0.0.9",
    )  # fmt: skip
    assert code != 0
    assert "535" in out

    code, out = await swaks_status(
        daemon.port, *envelope, "--tls", "--auth", "LOGIN", "--auth-user", "alice",
        "--auth-password", "s3cret", client="127.0.0.9",
    )  # fmt: skip
    assert code == 0, out
    [message] = await smtp_sink.wait_for(1, 30, lambda m: "authed@rcpt.test" in m.rcpts)
    assert message.peer in NORMAL
    assert await daemon.stop_async() == 0


async def test_a_restarted_daemon_still_counts_a_senders_last_day_against_its_limits(
    rbldnsd: Rbldnsd,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    """Two recipients before a restart and one after cross a limit of two an hour:
    the restarted daemon counts the sender's mail from the queue, so the third
    recipient leaves from the high-risk pool, as it would without the restart."""
    # The high-risk IPs must stay in rotation: listed, the first run's sweep retires them
    # and the third recipient waits, or not, depending on who wins that race.
    for ip in sorted(HIGH):
        rbldnsd.delist_ip(ip)
    config = relay_lab.config(extra="[limits]\nrecipients_per_hour = 2\nrecipients_per_day = 100\n")
    daemon = await relay_lab.start(config)
    await swaks(daemon.port, "--from", "a@contoso.test", "--to", "one@rcpt.test,two@rcpt.test")
    [first] = await smtp_sink.wait_for(1, 30)
    assert first.peer in NORMAL
    assert await daemon.stop_async() == 0

    daemon = await relay_lab.start(config)
    await swaks(daemon.port, "--from", "a@contoso.test", "--to", "three@rcpt.test")
    [third] = await smtp_sink.wait_for(1, 30, lambda m: "three@rcpt.test" in m.rcpts)
    assert third.peer in HIGH
    assert await daemon.stop_async() == 0
    log = daemon.log.read_text()
    assert "counted the last day's mail of 1 sender(s)" in log
    assert "Running job" not in log  # APScheduler's line per job run stays quiet (-vv shows it)
    assert "handling connection" not in log  # nor aiosmtpd's lines per SMTP command
    # One line per message accepted and per delivery attempt, with its pool and source IP.
    assert re.search(r": from=<a@contoso\.test>, size=\d+, nrcpt=1, message-id=<[^>]+>, "
                     r"client=unknown\[127\.0\.0\.5\], pool=high-risk, "
                     r"rules=over-sending-limits$", log, re.M), log  # fmt: skip
    assert re.search(
        r": to=<three@rcpt\.test>, relay=mx\.rcpt\.test\[127\.0\.0\.\d+\]:\d+, delay=[\d.]+, "
        r"dsn=2\.0\.0, status=sent \(250 .*\), pool=high-risk, source=127\.0\.0\.2\d, ",
        log,
    )


async def test_rspamd_scores_each_message_and_an_unscored_one_goes_high(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
    rspamd: RspamdServer,
) -> None:
    """[routing] rspamd_url: a real rspamd scores each accepted message (its test rule
    reads X-Test-Spamminess); 9 leaves high-risk, 1 normal. With rspamd gone, the
    shipped rule spam-score-unknown sends mail high-risk (fail closed)."""
    # The high-risk IPs must stay in rotation: listed, the first sweep would retire them
    # and the spammy message would wait, or not, depending on who wins that race.
    for ip in sorted(HIGH):
        rbldnsd.delist_ip(ip)

    def config(url: str, directory: Path) -> Path:
        directory.mkdir()
        routing = f'{ROUTING}rspamd_url = "{url}"\nrspamd_timeout = "2s"\n'
        return relay_lab.config(directory, routing=routing)

    daemon = await relay_lab.start(config(rspamd.url, tmp_path / "up"))
    for score, rcpt in (("9", "spammy@rcpt.test"), ("1", "fine@rcpt.test")):
        await swaks(
            daemon.port, "--from", "a@contoso.test", "--to", rcpt,
            "--add-header", f"X-Test-Spamminess: {score}",
        )  # fmt: skip
    await smtp_sink.wait_for(2, 30)
    peer = {m.rcpts[0]: m.peer for m in smtp_sink.messages}
    assert peer["spammy@rcpt.test"] in HIGH
    assert peer["fine@rcpt.test"] in NORMAL
    assert await daemon.stop_async() == 0

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens after this
    daemon = await relay_lab.start(config(gone, tmp_path / "down"))
    await swaks(daemon.port, "--from", "a@contoso.test", "--to", "unscored@rcpt.test")
    [unscored] = await smtp_sink.wait_for(1, 30, lambda m: "unscored@rcpt.test" in m.rcpts)
    assert unscored.peer in HIGH
    assert await daemon.stop_async() == 0
    with sqlite3.connect(tmp_path / "down" / "hrmonitor.db") as db:
        [(reasons,)] = db.execute("SELECT reasons FROM queue_messages").fetchall()
    [reason] = [r for r in json.loads(reasons) if r["rule"] == "spam-score-unknown"]
    assert "ConnectError" in reason["detail"]


async def test_a_second_sigterm_during_the_drain_is_the_same_request_not_a_kill(
    smtp_sink: SmtpSink, relay_lab: RelayLab
) -> None:
    """An operator who sends SIGTERM again (Ctrl-C twice, a second `kill`) while the
    daemon drains: the drain goes on and the daemon exits 0. Before, the handlers were
    removed as the shutdown began, and the default action killed it mid-drain (-15)."""
    daemon = await relay_lab.start()
    smtp_sink.delay = 2.0  # the RCPT waits: a delivery is in flight when the stop begins
    await swaks(daemon.port, "--from", "a@contoso.test", "--to", "twice@rcpt.test")
    await until(lambda: smtp_sink.waiting == 1, within=20)
    daemon.process.send_signal(signal.SIGTERM)
    await until(lambda: "hrmonitor stopping" in daemon.log.read_text(), within=10)
    daemon.process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(daemon.process.wait, 30)
    assert code == 0
    [message] = smtp_sink.for_rcpt("twice@rcpt.test")  # the drain finished its delivery
    assert message.peer in NORMAL
