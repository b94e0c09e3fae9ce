"""The listener under hostile or sloppy clients, against ``hrmonitor run`` as a process.

Issue 13 items 6, 8, 9, 10 and 11: connection limits and the idle timeout,
address-literal recipients, bare CR/LF/NUL in commands and in DATA, and
sender-domain lookups during a resolver outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.daemon_lab import (
    NORMAL,
    RelayLab,
    swaks,
    swaks_status,
)
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

TENANT = "127.0.0.5"  # in the tenant's networks, not a trusted filter (127.0.0.1/32)


class Client:
    """A raw SMTP client that sends exactly the bytes a test wants."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, source: str = TENANT) -> tuple[Client, str]:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 10
        )
        client = cls(reader, writer)
        return client, await client.reply()

    async def reply(self, within: float = 10) -> str:
        lines: list[str] = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), within)).decode()
            if not line:
                return "\n".join([*lines, "<EOF>"])
            lines.append(line.rstrip("\r\n"))
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    async def send(self, data: bytes) -> str:
        self.writer.write(data)
        await self.writer.drain()
        return await self.reply()

    def close(self) -> None:
        self.writer.close()


Connect = Callable[..., Awaitable[tuple[Client, str]]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Opens raw clients (``await connect(port, source)``); all are closed at teardown."""
    opened: list[Client] = []

    async def open_client(port: int, source: str = TENANT) -> tuple[Client, str]:
        client, greeting = await Client.open(port, source)
        opened.append(client)
        return client, greeting

    yield open_client
    for client in opened:
        client.close()
        with contextlib.suppress(OSError):
            await client.writer.wait_closed()


@contextlib.contextmanager
def open_files_limit(limit: int) -> Iterator[None]:
    """The process's soft RLIMIT_NOFILE lowered to ``limit`` (a child started now keeps it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_idle_connections_from_one_client_cannot_starve_a_1024_fd_daemon(
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
    connect: Connect,
) -> None:
    """1,100 idle connections from one address, a daemon with 1,024 file descriptors and
    the default limits: the flood gets 421 past its share, a tenant still sends."""
    with open_files_limit(1024):
        daemon = await relay_lab.start()
    greetings: list[str] = []

    async def flood_one() -> None:
        try:
            _, greeting = await connect(daemon.port, "127.0.0.66")
        except (OSError, TimeoutError) as exc:
            greetings.append(f"<{type(exc).__name__}>")
            return
        greetings.append(greeting)

    for _ in range(11):  # in waves of 100, as fast as the listener accepts them
        await asyncio.gather(*(flood_one() for _ in range(100)))
    greeted = [g for g in greetings if g.startswith("220")]
    refused = [g for g in greetings if g.startswith("421 4.7.0")]
    assert len(greeted) == 50, greetings[:3]  # max_connections_per_client's default
    assert len(refused) == 1050, sorted(set(greetings))[:5]

    out = await swaks(daemon.port, "--from", "a@contoso.test", "--to", "legit@rcpt.test")
    assert "250 2.0.0" in out
    await smtp_sink.wait_for(1, 30)
    assert "refused with 421" in daemon.log.read_text()
    assert "max_connections_per_client = 50" in daemon.log.read_text()
    assert await asyncio.to_thread(daemon.stop) == 0


async def test_the_total_connection_limit_answers_421_and_idle_clients_time_out(
    relay_lab: RelayLab,
    connect: Connect,
) -> None:
    listener = 'max_connections = 3\nmax_connections_per_client = 2\nidle_timeout = "2s"'
    config = relay_lab.config(listener=listener)
    daemon = await relay_lab.start(config)
    opened = [await connect(daemon.port, f"127.0.0.{n}") for n in (70, 71, 72)]
    assert [greeting[:3] for _, greeting in opened] == ["220"] * 3
    _, fourth = await connect(daemon.port, "127.0.0.73")
    assert fourth.startswith("421 4.7.0"), fourth
    # Silent past idle_timeout: told why, then dropped; the slots free up.
    for client, _ in opened:
        reply = await client.reply()
        assert reply.startswith("421 4.4.2"), reply
        assert await client.reply() == "<EOF>"
    _, again = await connect(daemon.port, "127.0.0.73")
    assert again.startswith("220"), again
    assert "max_connections = 3" in daemon.log.read_text()
    assert await asyncio.to_thread(daemon.stop) == 0


async def test_address_literal_recipients_are_refused_by_default_and_delivered_when_told(
    tmp_path: Path,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    refusing, delivering = tmp_path / "refuse", tmp_path / "deliver"
    refusing.mkdir()
    delivering.mkdir()
    daemon = await relay_lab.start(relay_lab.config(refusing))
    for rcpt in ("bob@[127.0.0.50]", "bob@[IPv6:::1]"):
        code, out = await swaks_status(
            daemon.port, "--from", "a@contoso.test", "--to", rcpt, client=TENANT
        )
        assert code != 0
        assert "550 5.7.1 address-literal recipients are not accepted" in out
    assert await asyncio.to_thread(daemon.stop) == 0

    listener = 'address_literals = "deliver"'
    config = relay_lab.config(delivering, listener=listener)
    daemon = await relay_lab.start(config)
    # The sink listens on 127.0.0.50 (the network rule: loopback literals only).
    await swaks(daemon.port, "--from", "a@contoso.test", "--to", "bob@[127.0.0.50]")
    [message] = await smtp_sink.wait_for(1, 30)
    assert message.rcpts == ("bob@[127.0.0.50]",)
    assert message.peer in NORMAL
    # The pools have no IPv6 address: refused now, not deferred for five days.
    code, out = await swaks_status(
        daemon.port, "--from", "a@contoso.test", "--to", "bob@[IPv6:::1]", client=TENANT
    )
    assert code != 0
    assert "550 5.4.4 no IPv6 source address" in out
    assert await asyncio.to_thread(daemon.stop) == 0


async def test_bare_cr_lf_and_nul_in_commands_get_501_and_in_data_become_line_ends(
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
    connect: Connect,
) -> None:
    daemon = await relay_lab.start()
    client, greeting = await connect(daemon.port)
    assert greeting.startswith("220")
    for line, problem in (
        (b"EHLO x\rX-Injected-Via-Helo: yes\r\n", "bare CR or LF"),
        (b"EHLO x\0nul\r\n", "NUL"),
        (b"EHLO x\n", "bare LF"),
        (b"HELO x\rX-Injected: yes\r\n", "bare CR or LF"),
    ):
        reply = await client.send(line)
        assert reply.startswith("501 5.5.2"), (line, reply)
        assert problem in reply, (line, reply)
    assert (await client.send(b"EHLO client.test\r\n")).startswith("250")
    for line, problem in (
        (b"MAIL FROM:<a@contoso.test>\n", "bare LF"),
        (b"MAIL FROM:<a@contoso.test>\rX: y\r\n", "bare CR or LF"),
    ):
        reply = await client.send(line)
        assert reply.startswith("501 5.5.2"), (line, reply)
        assert problem in reply, (line, reply)
    assert (await client.send(b"MAIL FROM:<a@contoso.test>\r\n")).startswith("250")
    for line in (b"RCPT TO:<b@rcpt.test>\n", b"RCPT TO:<b@rcpt.test>\rX: y\r\n"):
        reply = await client.send(line)
        assert reply.startswith("501 5.5.2"), (line, reply)
    assert (await client.send(b"RCPT TO:<injected@rcpt.test>\r\n")).startswith("250")
    assert (await client.send(b"DATA\r\n")).startswith("354")
    # An untrusted client hides a score header behind a bare CR: it must be stripped
    # like any other, since the MX will see a header there.
    body = b"Subject: hi\rX-Spam-Score: -99\r\nFrom: a@contoso.test\r\n\r\nbody\r\n.\r\n"
    assert (await client.send(body)).startswith("250")
    assert (await client.send(b"QUIT\r\n")).startswith("221")

    [message] = await smtp_sink.wait_for(1, 30)
    assert b"X-Spam-Score" not in message.data
    assert b"Subject: hi\r\nFrom: a@contoso.test\r\n" in message.data
    assert b"X-Injected" not in message.data
    assert b"\0" not in message.data
    assert b"Received: from client.test ([127.0.0.5])" in message.data
    assert await asyncio.to_thread(daemon.stop) == 0


async def test_a_bare_lf_message_is_accepted_and_relayed_with_crlf_line_ends(
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
    connect: Connect,
) -> None:
    """As PHP's mail() and many scripts send it: LF line ends, then CRLF.CRLF."""
    daemon = await relay_lab.start()
    client, _ = await connect(daemon.port)
    await client.send(b"EHLO client.test\r\n")
    await client.send(b"MAIL FROM:<a@contoso.test>\r\n")
    await client.send(b"RCPT TO:<lf@rcpt.test>\r\n")
    assert (await client.send(b"DATA\r\n")).startswith("354")
    lines = [b"Subject: lf", b"From: a@contoso.test", b""] + [
        b"line %d " % n * 8 for n in range(200)
    ]
    reply = await client.send(b"\n".join(lines) + b"\n\r\n.\r\n")
    assert reply.startswith("250"), reply
    [message] = await smtp_sink.wait_for(1, 30)
    assert b"\r\n".join(lines) + b"\r\n" in message.data
    assert b"\n" not in message.data.replace(b"\r\n", b"")
    assert await asyncio.to_thread(daemon.stop) == 0


async def test_a_resolver_outage_costs_one_lookup_per_sender_domain_not_one_per_message(
    mail_dns: DnsTestServer,
    relay_lab: RelayLab,
) -> None:
    mail_dns.drop("down.test")  # never answered: every lookup runs into its timeout
    daemon = await relay_lab.start()

    async def send(n: int) -> None:
        await swaks(daemon.port, "--from", "a@down.test", "--to", f"out{n}@rcpt.test")

    await asyncio.gather(*(send(n) for n in range(10)))  # together: they share one lookup
    for n in range(10, 15):  # one after another: the failed answer is remembered
        await send(n)
    asked = [q for q in mail_dns.queries if q[0] == "down.test."]
    # One lookup is A, AAAA and MX, each tried at most twice ([dns] attempts = 2).
    assert len({q[1] for q in asked}) == 3
    assert len(asked) <= 6, asked
    assert await asyncio.to_thread(daemon.stop) == 0
