"""``hrmonitor queue`` against a running ``hrmonitor run`` process, on SQLite and PostgreSQL
(issue 14.1): list, show, hold, release, flush, delete and bounce.

Peers on loopback: rbldnsd (every pool IP delisted, so both pools can send), a DNS
server for the mail domains, and an aiosmtpd MX that answers as each test scripts
and records the source address of every delivery: it proves which pool sent what,
and that a held or deleted message never left.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hrmonitor.cli import main
from tests.fixtures.daemon import DaemonFactory, DaemonProcess
from tests.fixtures.daemon_lab import HIGH, NORMAL, config_for, lab_dns, start, swaks
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.rbldnsd import Rbldnsd
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

DEFER = "451 4.7.1 greylisted, try later"


@pytest.fixture
def lab(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    dns_server: DnsTestServer,
    smtp_sink: SmtpSink,
    store_url: str,
) -> Callable[[str], Path]:
    """Writes the config: every pool IP clean, rcpt.test and contoso.test mail to the sink."""
    for ip in sorted(NORMAL | HIGH):
        rbldnsd.delist_ip(ip)
    lab_dns(dns_server, smtp_sink)  # contoso.test's MX is the sink: DSNs to our senders land there

    def write(retry: str) -> Path:
        return config_for(tmp_path, rbldnsd, dns_server, smtp_sink, database=store_url, retry=retry)

    return write


async def hrmonitor(config: Path, *args: str, expect: int = 0) -> str:
    """The CLI in-process (in a thread: queue commands run their own event loop)."""

    def invoke() -> Any:
        return CliRunner().invoke(main, [*args, "--config", str(config)], catch_exceptions=False)

    result = await asyncio.to_thread(invoke)
    assert result.exit_code == expect, result.output
    return str(result.output)


async def queue_json(config: Path, *args: str) -> dict[str, Any]:
    data = json.loads(await hrmonitor(config, "queue", *args, "--json"))
    assert isinstance(data, dict)
    return data


async def send(daemon: DaemonProcess, sender: str, rcpt: str, subject: str) -> None:
    envelope = ("--from", sender, "--to", rcpt, "--header", f"Subject: {subject}")
    await asyncio.wait_for(swaks(daemon.port, *envelope), 30)


async def until_queued(config: Path, rcpt: str, state: str, within: float = 20.0) -> str:
    """Wait until a message to ``rcpt`` is listed in ``state``; its queue ID."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        for message in (await queue_json(config, "--state", state))["messages"]:
            if any(r["address"] == rcpt for r in message["recipients"]):
                assert isinstance(message["id"], str)
                return message["id"]
        await asyncio.sleep(0.2)
    pytest.fail(f"no {state} message to {rcpt} within {within}s")


async def test_a_held_message_waits_while_others_are_retried_and_goes_on_release(
    lab: Callable[[str], Path], smtp_sink: SmtpSink, daemon_process: DaemonFactory
) -> None:
    config = lab('["1s"]')  # a deferred message is retried every second
    daemon = await start(daemon_process, config)
    smtp_sink.script("held@rcpt.test", DEFER)
    smtp_sink.script("control@rcpt.test", DEFER)
    await send(daemon, "alice@contoso.test", "held@rcpt.test", "to be held")
    await send(daemon, "alice@contoso.test", "control@rcpt.test", "the control")
    held = await until_queued(config, "held@rcpt.test", "deferred")
    await until_queued(config, "control@rcpt.test", "deferred")

    listing = await hrmonitor(config, "mailq")  # the alias
    [line] = [line for line in listing.splitlines() if line.startswith(held[:12])]
    # deferred, or active while the runner retries it (every second)
    assert re.search(r" (deferred|active) +normal ", line), line
    assert "<alice@contoso.test> -> held@rcpt.test" in line
    assert DEFER in line  # the last reply
    assert "pool normal (recipients by age in minutes)" in listing
    summary = (await queue_json(config, "--destination", "rcpt.test"))["summary"]
    assert [(r["pool"], r["destination"], r["total"]) for r in summary] == [
        ("normal", "rcpt.test", 2)
    ]

    for _ in range(5):  # a recipient the runner holds at that instant is left to it: again
        out = await hrmonitor(config, "queue", "hold", held[:12], "--reason", "customer asked")
        if out.splitlines()[0] == f"{held[:12]}: hold 1 recipient(s)":
            break
    else:
        pytest.fail(f"never held: {out}")
    smtp_sink.script("held@rcpt.test")  # the MX would take both now
    smtp_sink.script("control@rcpt.test")
    await smtp_sink.wait_for(1, 20, lambda m: "control@rcpt.test" in m.rcpts)
    await asyncio.sleep(3)  # three retry periods: a held message must not leave in them
    assert smtp_sink.for_rcpt("held@rcpt.test") == []
    [listed] = (await queue_json(config, "--state", "held"))["messages"]
    assert (listed["id"], listed["state"]) == (held, "held")

    await hrmonitor(config, "queue", "release", held[:12])
    [delivered] = await smtp_sink.wait_for(1, 20, lambda m: "held@rcpt.test" in m.rcpts)
    assert delivered.peer in NORMAL

    # The MX has it; the daemon records the outcome a moment later (group commit).
    for _ in range(100):
        shown = json.loads(await hrmonitor(config, "queue", "show", held[:12], "--json"))
        if shown["recipients"][0]["status"] != "delivering":
            break
        await asyncio.sleep(0.2)
    assert shown["id"] == held
    assert shown["pool"] == "normal"
    assert shown["reasons"] == []  # no rule matched: the normal pool
    assert [r["status"] for r in shown["recipients"]] == ["delivered"]
    replies = [a["reply"] for a in shown["attempts"]]
    assert replies[0] == DEFER
    assert replies[-1].startswith("250")
    assert [(a["action"], a["reason"]) for a in shown["actions"]] == [
        ("hold", "customer asked"),
        ("release", "queue release by the operator"),
    ]
    assert all(a["by"].startswith("operator:") for a in shown["actions"])
    assert await asyncio.to_thread(daemon.stop) == 0


async def test_flush_delete_and_bounce_against_the_running_daemon(
    lab: Callable[[str], Path], smtp_sink: SmtpSink, daemon_process: DaemonFactory
) -> None:
    config = lab('["1h"]')  # after one deferral nothing is tried again for an hour
    daemon = await start(daemon_process, config)
    for name in ("flushed", "deleted", "bounced"):
        smtp_sink.script(f"{name}@rcpt.test", DEFER)
        await send(daemon, "alice@contoso.test", f"{name}@rcpt.test", name)
    ids = {
        name: await until_queued(config, f"{name}@rcpt.test", "deferred")
        for name in ("flushed", "deleted", "bounced")
    }
    for name in ids:
        smtp_sink.script(f"{name}@rcpt.test")  # the MX takes all of them now

    # flush: due now, not in an hour.
    await hrmonitor(config, "queue", "flush", "--destination", "rcpt.test", "--sender", "ALICE")
    await smtp_sink.wait_for(3, 20, lambda m: m.mail_from == "alice@contoso.test")
    # A flush delivered all three: start again with three deferred messages for the rest.
    smtp_sink.messages.clear()
    for name in ("deleted", "bounced"):
        smtp_sink.script(f"{name}@rcpt.test", DEFER)
        await send(daemon, "alice@contoso.test", f"{name}@rcpt.test", f"{name} again")
    ids = {
        name: await until_queued(config, f"{name}@rcpt.test", "deferred")
        for name in ("deleted", "bounced")
    }
    for name in ids:
        smtp_sink.script(f"{name}@rcpt.test")

    # delete: gone from the queue, with its attempts; nothing is ever sent.
    await hrmonitor(config, "queue", "delete", ids["deleted"], "--reason", "spam run")
    await hrmonitor(config, "queue", "show", ids["deleted"], expect=2)
    assert all(m["id"] != ids["deleted"] for m in (await queue_json(config))["messages"])

    # bounce: a DSN to the sender, through the high-risk pool; the recipient is bounced.
    out = await hrmonitor(config, "queue", "bounce", ids["bounced"], "--reason", "abuse desk")
    assert "DSN" in out
    [dsn] = await smtp_sink.wait_for(1, 20, lambda m: "alice@contoso.test" in m.rcpts)
    assert dsn.peer in HIGH
    assert dsn.mail_from == ""
    report = message_from_bytes(dsn.data)
    assert report.get_content_type() == "multipart/report"
    text = dsn.data.decode(errors="replace")
    assert "bounced@rcpt.test" in text
    assert "5.0.0" in text
    shown = await queue_json(config, "show", ids["bounced"])
    assert [r["status"] for r in shown["recipients"]] == ["bounced"]
    assert shown["actions"][0]["action"] == "bounce"

    # A flush of everything now finds nothing to send: the deleted message stays unsent.
    await hrmonitor(config, "queue", "flush", "--all")
    await asyncio.sleep(2)
    assert smtp_sink.for_rcpt("deleted@rcpt.test") == []
    assert smtp_sink.for_rcpt("bounced@rcpt.test") == []
    assert await asyncio.to_thread(daemon.stop) == 0


async def test_an_action_needs_ids_a_filter_or_all(lab: Callable[[str], Path]) -> None:
    config = lab('["1s"]')
    out = await hrmonitor(config, "queue", "delete", expect=2)
    assert "name queue IDs, a filter, or --all" in out
    await hrmonitor(config, "queue", "show", "0123456789ab", expect=2)
