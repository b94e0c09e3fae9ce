"""Issue 14 item 3: the per-message lines of a real ``hrmonitor run`` process.

swaks sends, the aiosmtpd sink is the MX (``mx.rcpt.test``), the daemon's log
file is read back: one line per accepted message and one per recipient per
attempt, Postfix's fields in Postfix's shapes (``core.delivery.maillog``),
a line when a held message is routed again, ``status=expired`` at the end of
the queue lifetime, and the same fields as JSON keys with ``--log-format json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.fixtures.daemon_lab import RelayLab, lab_dns, state_is, swaks, until
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.rbldnsd import Rbldnsd
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = [pytest.mark.slow, pytest.mark.rbldnsd]

HIGH_OK = ("127.0.0.21", "127.0.0.22")  # delisted below; 127.0.0.20 stays listed
NORMAL = ("127.0.0.10", "127.0.0.11")
QUEUED = re.compile(r"queued as (\w+)")


@pytest.fixture
def mail_dns(dns_server: DnsTestServer, smtp_sink: SmtpSink) -> DnsTestServer:
    lab_dns(dns_server, smtp_sink)  # contoso.test's MX is the sink: the DSNs go there
    dns_server.servfail("flaky.test")  # a sender domain whose DNS is unknown: held
    dns_server.servfail("dead.test")  # a recipient domain whose MX cannot be looked up
    return dns_server


def queue_id(swaks_output: str) -> str:
    match = QUEUED.search(swaks_output)
    assert match, swaks_output
    return match.group(1)


def lines_of(log: Path, pattern: str) -> list[str]:
    found = re.compile(pattern)
    return [line for line in log.read_text().splitlines() if found.search(line)]


async def line_of(log: Path, pattern: str) -> str:
    """The one log line matching ``pattern``, once it is there (waits for it)."""
    await until(lambda: bool(lines_of(log, pattern)), within=60)
    [line] = lines_of(log, pattern)
    return line


def message(body: str) -> list[str]:
    return ["--header", "Message-Id: <m1@contoso.test>", "--body", body]


async def test_each_message_and_attempt_has_one_postfix_shaped_line(
    rbldnsd: Rbldnsd,
    mail_dns: DnsTestServer,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    for ip in HIGH_OK:
        rbldnsd.delist_ip(ip)
    config = relay_lab.config()
    text = config.read_text().replace("[delivery]\n", '[delivery]\nmax_queue_time = "4s"\n')
    config.write_text(text)
    daemon = await relay_lab.start(config)
    log = daemon.log
    relay = rf"mx\.rcpt\.test\[{re.escape(smtp_sink.host)}\]:{smtp_sink.port}"
    smtp_sink.script("later@rcpt.test", "451 4.7.1 later", "250 2.1.5 ok")
    smtp_sink.script("gone@rcpt.test", "550 5.1.1 <gone@rcpt.test>: no such user")

    # Accepted, deferred once (a 4xx), then sent.
    out = await swaks(daemon.port, "--from", "a@contoso.test", "--to", "later@rcpt.test",
                      *message("hello"))  # fmt: skip
    qid = queue_id(out)
    accepted = await line_of(log, rf"{qid}: from=")
    assert re.search(
        rf" INFO hrmonitor\.services\.relay\.acceptance: \[[^]]+\] {qid}: from=<a@contoso\.test>,"
        rf" size=\d+, nrcpt=1, message-id=<m1@contoso\.test>, client=unknown\[127\.0\.0\.5\],"
        r" pool=normal, rules=none$",
        accepted,
    ), accepted
    sized = re.search(r"size=(\d+)", accepted)
    assert sized is not None
    size = int(sized.group(1))
    assert size > len("hello")  # the whole message as stored, headers included
    deferred = await line_of(log, rf"{qid}: to=<later@rcpt\.test>, .* status=deferred")
    assert re.search(
        rf"{qid}: to=<later@rcpt\.test>, relay={relay}, delay=[\d.]+, dsn=4\.7\.1,"
        rf" status=deferred \(451 4\.7\.1 later\), pool=normal, source=127\.0\.0\.1[01],"
        r" attempts=1$",
        deferred,
    ), deferred
    sent = await line_of(log, rf"{qid}: to=<later@rcpt\.test>, .* status=sent")
    assert re.search(
        rf"{qid}: to=<later@rcpt\.test>, relay={relay}, delay=[\d.]+, dsn=2\.0\.0,"
        rf" status=sent \(250 2\.0\.0 Ok: received\), pool=normal, source=127\.0\.0\.1[01],"
        r" attempts=2$",
        sent,
    ), sent

    # A 5xx: bounced with the reply's own status, and the DSN that goes back.
    qid = queue_id(await swaks(daemon.port, "--from", "a@contoso.test", "--to", "gone@rcpt.test"))
    bounced = await line_of(log, rf"{qid}: to=<gone@rcpt\.test>")
    assert re.search(
        rf"{qid}: to=<gone@rcpt\.test>, relay={relay}, delay=[\d.]+, dsn=5\.1\.1,"
        rf" status=bounced \(550 5\.1\.1 <gone@rcpt\.test>: no such user\), pool=normal,"
        r" source=127\.0\.0\.1[01], attempts=1$",
        bounced,
    ), bounced
    notice = await line_of(log, rf"{qid}: sender non-delivery notification: ")
    dsn_id = notice.rsplit(" ", 1)[1]
    dsn_accepted = await line_of(log, rf"{dsn_id}: from=")
    assert re.search(
        rf"{dsn_id}: from=<>, size=\d+, nrcpt=1, message-id=<[^>]+@relay\.test>, client=local,"
        rf" pool=high-risk, rules=[\w,-]+, dsn-of={qid}$",
        dsn_accepted,
    ), dsn_accepted
    dsn_sent = await line_of(log, rf"{dsn_id}: to=<a@contoso\.test>")
    assert re.search(r" status=sent \(.*\), pool=high-risk, source=127\.0\.0\.2[12], ", dsn_sent)

    # Held (the sender domain's DNS fails), then routed again once it answers.
    qid = queue_id(await swaks(daemon.port, "--from", "a@flaky.test", "--to", "held@rcpt.test"))
    held = await line_of(log, rf"{qid}: from=")
    assert re.search(r", pool=\S+, rules=dns-unknown, held-until=\S+$", held), held
    mail_dns.heal("flaky.test")  # now NXDOMAIN: a sender domain without records
    rerouted = await line_of(log, rf"{qid}: rerouted ")
    assert rerouted.endswith(
        f"{qid}: rerouted pool=high-risk reason=sender-domain-without-records"
        " (was held: dns-unknown)"
    ), rerouted
    sent = await line_of(log, rf"{qid}: to=<held@rcpt\.test>")
    assert re.search(r" status=sent \(.*\), pool=high-risk, source=127\.0\.0\.2[12], ", sent)

    # No MX answer: deferred with relay=none, then expired at the end of the lifetime.
    qid = queue_id(await swaks(daemon.port, "--from", "a@contoso.test", "--to", "x@dead.test"))
    first = await line_of(log, rf"{qid}: to=<x@dead\.test>, .* attempts=1$")
    assert re.search(
        rf"{qid}: to=<x@dead\.test>, relay=none, delay=[\d.]+, dsn=4\.4\.3,"
        r" status=deferred \(MX lookup: .+\), pool=normal, source=none, attempts=1$",
        first,
    ), first
    expired = await line_of(log, rf"{qid}: to=<x@dead\.test>, .* status=expired")
    assert re.search(
        rf"{qid}: to=<x@dead\.test>, relay=none, delay=[\d.]+, dsn=4\.4\.7,"
        r" status=expired \(expired after 4s in queue, last reason: MX lookup: .+\),"
        r" pool=normal, source=none, attempts=\d+$",
        expired,
    ), expired
    assert await daemon.stop_async() == 0
    assert not lines_of(log, r" (accepted from|bounced pool) ")  # the old shapes are gone


async def test_json_lines_carry_the_same_fields_and_a_pool_without_ips_expires(
    tmp_path: Path,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    """Every high-risk IP listed: a null-sender message waits for an IP, then expires with
    the reason it waited ("has no eligible IP"), not as a bounce of that reason."""
    config = relay_lab.config()
    text = config.read_text().replace("[delivery]\n", '[delivery]\nmax_queue_time = "3s"\n')
    config.write_text(text)
    daemon = await relay_lab.start(config, ("--log-format", "json"))
    for ip in ("127.0.0.20", "127.0.0.21", "127.0.0.22"):
        await until(state_is(tmp_path, ip, "retired"))
    qid = queue_id(await swaks(daemon.port, "--from", "<>", "--to", "dsn@rcpt.test"))
    ok = queue_id(await swaks(daemon.port, "--from", "a@contoso.test", "--to", "ok@rcpt.test"))

    def entries() -> list[dict[str, object]]:
        return [json.loads(line) for line in daemon.log.read_text().splitlines() if line]

    def of(queue: str, event: str, **more: object) -> list[dict[str, object]]:
        return [
            e for e in entries()
            if e.get("queue_id") == queue and e.get("event") == event
            and all(e.get(k) == v for k, v in more.items())
        ]  # fmt: skip

    await until(lambda: bool(of(qid, "attempt", status="expired")), within=60)
    await until(lambda: bool(of(ok, "attempt", status="sent")), within=60)
    assert await daemon.stop_async() == 0
    [accepted] = of(qid, "accepted")
    assert {k: accepted[k] for k in ("from", "nrcpt", "client", "pool", "rules")} == {
        "from": "", "nrcpt": 1, "client": "unknown[127.0.0.5]", "pool": "high-risk",
        "rules": "null-sender",
    }  # fmt: skip
    assert accepted["msg"] == f"{qid}: from=<>, size={accepted['size']}, nrcpt=1, " + (
        f"message-id=<{accepted['message_id']}>, client=unknown[127.0.0.5], pool=high-risk, "
        "rules=null-sender"
    )
    waits = of(qid, "attempt", status="deferred")
    assert waits
    assert {(w["relay"], w["dsn"], w["source"]) for w in waits} == {("none", "4.4.0", "none")}
    assert str(waits[0]["reply"]).startswith("pool high-risk has no eligible IP for mx.rcpt.test")
    [expired] = of(qid, "attempt", status="expired")
    assert expired["dsn"] == "4.4.7"
    assert expired["to"] == "dsn@rcpt.test"
    assert str(expired["reply"]).startswith(
        "expired after 3s in queue, last reason: pool high-risk has no eligible IP"
    )
    assert expired["level"] == "INFO"
    assert expired["logger"] == "hrmonitor.services.relay.delivery"
    [sent] = of(ok, "attempt", status="sent")
    assert sent["relay"] == f"mx.rcpt.test[{smtp_sink.host}]:{smtp_sink.port}"
    assert (sent["dsn"], sent["reply"], sent["pool"]) == (
        "2.0.0",
        "250 2.0.0 Ok: received",
        "normal",
    )
    assert sent["source"] in ("127.0.0.10", "127.0.0.11")
    assert isinstance(sent["delay"], float)
    assert isinstance(sent["msg"], str)
    assert sent["msg"].startswith(f"{ok}: to=<ok@rcpt.test>, relay={sent['relay']}, delay=")
