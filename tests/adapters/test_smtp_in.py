"""The SMTP listener against real SMTP clients on loopback: who may relay, what is refused."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hrmonitor.adapters.smtp_in import Listener, ListenerSettings, Tenant, tenant_for
from hrmonitor.core.delivery.envelope import Submission
from tests.fixtures.peers import FakeClock

TENANT_IP = "127.0.0.5"
STRANGER_IP = "127.0.0.99"


class Recorder:
    def __init__(self) -> None:
        self.accepted: list[Submission] = []

    async def accept(self, submission: Submission) -> str:
        self.accepted.append(submission)
        return "250 2.0.0 Ok: queued as test"


Served = tuple[Listener, Recorder]  # the listener fixtures: a running listener, what it took


@pytest.fixture
async def listener(fake_clock: FakeClock) -> AsyncIterator[Served]:
    recorder = Recorder()
    settings = ListenerSettings(
        host="127.0.0.1",
        port=0,
        hostname="relay.test",
        tenants=(Tenant("contoso", (ipaddress.ip_network("127.0.0.0/29"),)),),
        max_message_size=10_000,
        max_recipients=3,
    )
    server = Listener(settings, recorder.accept, fake_clock)
    await server.start()
    yield server, recorder
    await server.stop()


class Client:
    """A raw SMTP client: sends exactly the bytes a test wants, reads each reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, source: str) -> Client:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 5
        )
        client = cls(reader, writer)
        await client.reply()
        return client

    async def reply(self) -> str:
        lines = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 5)).decode()
            lines.append(line.rstrip("\r\n"))
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    async def cmd(self, line: str | bytes) -> str:
        self.writer.write(line if isinstance(line, bytes) else line.encode() + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def _session(port: int, source: str = TENANT_IP) -> Client:
    client = await Client.open(port, source)
    assert (await client.cmd("EHLO client.test")).startswith("250")
    return client


async def test_tenant_mail_is_handed_over_with_envelope_and_received_header(
    listener: Served,
) -> None:
    server, recorder = listener
    client = await _session(server.port)
    assert (await client.cmd("MAIL FROM:<a@contoso.test>")).startswith("250")
    assert (await client.cmd("RCPT TO:<b@rcpt.test>")).startswith("250")
    assert (await client.cmd("DATA")).startswith("354")
    reply = await client.cmd(b"Subject: hi\r\n\r\nhello\r\n..dot\r\n.\r\n")
    assert reply == "250 2.0.0 Ok: queued as test"
    await client.close()
    (sub,) = recorder.accepted
    assert (sub.tenant, sub.client_ip, sub.mail_from, sub.recipients) == (
        "contoso",
        TENANT_IP,
        "a@contoso.test",
        ("b@rcpt.test",),
    )
    assert sub.data.startswith(b"Received: from client.test ([127.0.0.5])\r\n")
    assert sub.data.endswith(b"Subject: hi\r\n\r\nhello\r\n.dot\r\n")


@pytest.mark.parametrize(
    "rcpt",
    [
        "<b@rcpt.test>",
        "<user%other.test@relay.test>",
        '<"user@other.test"@relay.test>',
        "<@relay.test:user@other.test>",
        "<user@other.test@relay.test>",
    ],
)
async def test_a_stranger_gets_relaying_denied_for_every_address_form(
    listener: Served, rcpt: str
) -> None:
    server, recorder = listener
    client = await _session(server.port, STRANGER_IP)
    assert (await client.cmd("MAIL FROM:<a@contoso.test>")).startswith("250")
    assert (await client.cmd(f"RCPT TO:{rcpt}")).startswith("550 5.7.1 relaying denied")
    assert (await client.cmd("DATA")).startswith("503")
    await client.close()
    assert recorder.accepted == []


@pytest.mark.parametrize(
    "rcpt",
    [
        "<user%other.test@relay.test>",
        '<"user@other.test"@relay.test>',
        "<@relay.test:user@other.test>",
        "<user@other.test@relay.test>",
    ],
)
async def test_relay_trick_address_forms_are_refused_even_from_a_tenant(
    listener: Served, rcpt: str
) -> None:
    server, _ = listener
    client = await _session(server.port)
    assert (await client.cmd("MAIL FROM:<a@contoso.test>")).startswith("250")
    assert (await client.cmd(f"RCPT TO:{rcpt}")).startswith("550 5.7.1")
    await client.close()


async def test_injection_characters_and_invalid_addresses_get_501_or_553(listener: Served) -> None:
    server, _ = listener
    client = await _session(server.port)
    assert (await client.cmd(b"MAIL FROM:<a\x00@contoso.test>\r\n")).startswith("501")
    assert (await client.cmd(b"MAIL FROM:<a\r@contoso.test>\r\n")).startswith("501")
    assert (await client.cmd("MAIL FROM:<not an address>")).startswith("553")
    assert (await client.cmd("MAIL FROM:<a@contoso.test>")).startswith("250")
    assert (await client.cmd("RCPT TO:<nodomain>")).startswith("553")
    assert (await client.cmd("RCPT TO:<x@bad_domain.test>")).startswith("553")
    await client.close()


async def test_oversized_message_gets_552_5_3_4_and_is_not_stored(listener: Served) -> None:
    server, recorder = listener
    client = await _session(server.port)
    assert (await client.cmd("MAIL FROM:<a@contoso.test> SIZE=20000")).startswith("552")
    assert (await client.cmd("MAIL FROM:<a@contoso.test>")).startswith("250")
    assert (await client.cmd("RCPT TO:<b@rcpt.test>")).startswith("250")
    assert (await client.cmd("DATA")).startswith("354")
    big = b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 300 + b".\r\n"
    assert (await client.cmd(big)).startswith("552 5.3.4")
    await client.close()
    assert recorder.accepted == []


async def test_recipient_limit_answers_452_for_the_extra_recipient(listener: Served) -> None:
    server, _ = listener
    client = await _session(server.port)
    await client.cmd("MAIL FROM:<a@contoso.test>")
    for n in range(3):
        assert (await client.cmd(f"RCPT TO:<r{n}@rcpt.test>")).startswith("250")
    assert (await client.cmd("RCPT TO:<r4@rcpt.test>")).startswith("452 4.5.3")
    await client.close()


async def test_bare_lf_in_data_is_stored_as_crlf_and_nul_as_received(listener: Served) -> None:
    server, recorder = listener
    client = await _session(server.port)
    await client.cmd("MAIL FROM:<a@contoso.test>")
    await client.cmd("RCPT TO:<b@rcpt.test>")
    await client.cmd("DATA")
    assert (await client.cmd(b"Subject: x\r\n\r\nbare\nlf and \x00 nul\r\n.\r\n")).startswith("250")
    await client.close()
    assert recorder.accepted[0].data.endswith(b"bare\r\nlf and \x00 nul\r\n")


async def test_overlong_line_is_refused_and_the_session_survives(listener: Served) -> None:
    server, recorder = listener
    client = await _session(server.port)
    await client.cmd("MAIL FROM:<a@contoso.test>")
    await client.cmd("RCPT TO:<b@rcpt.test>")
    await client.cmd("DATA")
    assert (await client.cmd(b"Subject: x\r\n\r\n" + b"y" * 2000 + b"\r\n.\r\n")).startswith(
        "500 5.5.2"
    )
    assert (await client.cmd("NOOP")).startswith("250")
    await client.close()
    assert recorder.accepted == []


async def test_smtputf8_and_8bitmime_are_offered_and_utf8_addresses_accepted(
    listener: Served,
) -> None:
    server, recorder = listener
    client = await Client.open(server.port, TENANT_IP)
    ehlo = await client.cmd("EHLO client.test")
    assert "SMTPUTF8" in ehlo
    assert "8BITMIME" in ehlo
    assert (await client.cmd("MAIL FROM:<jörg@contoso.test> SMTPUTF8 BODY=8BITMIME")).startswith(
        "250"
    )
    assert (await client.cmd("RCPT TO:<zoë@bücher.test>")).startswith("250")
    await client.cmd("DATA")
    assert (await client.cmd("Subject: grüße\r\n\r\nä\r\n.\r\n".encode())).startswith("250")
    await client.close()
    assert recorder.accepted[0].smtputf8 is True
    assert recorder.accepted[0].recipients == ("zoë@bücher.test",)


async def test_a_multi_line_reply_goes_out_in_one_write(
    listener: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EHLO's reply is one write, not one write (and send()) per line."""
    server, _ = listener
    writes: list[bytes] = []
    write = asyncio.StreamWriter.write

    def counting(self: asyncio.StreamWriter, data: bytes | bytearray | memoryview) -> None:
        writes.append(bytes(data))
        write(self, data)

    monkeypatch.setattr(asyncio.StreamWriter, "write", counting)
    client = await Client.open(server.port, TENANT_IP)
    writes.clear()
    ehlo = await client.cmd("EHLO client.test")
    lines = ehlo.splitlines()
    assert lines[0] == "250-relay.test"
    assert lines[-1].startswith("250 ")
    assert len(lines) >= 4
    replies = [w for w in writes if w.startswith(b"250")]  # the client's EHLO is not one
    assert replies == ["\r\n".join(lines).encode() + b"\r\n"]
    assert (await client.cmd("MAIL FROM:<a@contoso.test>")).startswith("250")  # still a session
    await client.close()


async def test_a_failing_accept_callback_answers_451_and_the_listener_keeps_serving(
    fake_clock: FakeClock,
) -> None:
    async def broken(_: Submission) -> str:
        raise RuntimeError("store down")

    settings = ListenerSettings(
        "127.0.0.1", 0, "relay.test", (Tenant("t", (ipaddress.ip_network("127.0.0.0/8"),)),)
    )
    server = Listener(settings, broken, fake_clock)
    await server.start()
    try:
        client = await _session(server.port)
        await client.cmd("MAIL FROM:<a@contoso.test>")
        await client.cmd("RCPT TO:<b@rcpt.test>")
        await client.cmd("DATA")
        assert (await client.cmd(b"Subject: x\r\n\r\nx\r\n.\r\n")).startswith("451 4.3.0")
        assert (await client.cmd("NOOP")).startswith("250")
        await client.close()
    finally:
        await server.stop()


def test_tenant_for_matches_networks_and_mapped_ipv4() -> None:
    tenants = (
        Tenant("a", (ipaddress.ip_network("10.0.0.0/8"),)),
        Tenant("b", (ipaddress.ip_network("::1/128"),)),
    )
    assert tenant_for(tenants, "10.1.2.3") == "a"
    assert tenant_for(tenants, "::ffff:10.1.2.3") == "a"
    assert tenant_for(tenants, "::1") == "b"
    assert tenant_for(tenants, "192.0.2.1") is None
    assert tenant_for(tenants, "garbage") is None


def test_listener_remembers_tenant_answers_and_formats_dates_as_the_email_package() -> None:
    from datetime import UTC, datetime, timedelta, timezone
    from email.utils import format_datetime

    tenants = (Tenant("a", (ipaddress.ip_network("10.0.0.0/8"),)),)
    listener = Listener(ListenerSettings("127.0.0.1", 0, "mx.test", tenants), None, None)  # type: ignore[arg-type]
    for _ in range(2):  # the second round answers from the listener's memory
        for ip in ("10.1.2.3", "::ffff:10.1.2.3", "192.0.2.1", "garbage"):
            assert listener.tenant_of(ip) == tenant_for(tenants, ip)
    moment = datetime(2026, 3, 1, 12, 0, 59, 999_999, tzinfo=UTC)
    for when in (
        moment,
        moment + timedelta(microseconds=1),  # the next second
        moment + timedelta(microseconds=2),
        moment.astimezone(timezone(timedelta(hours=2))),  # the same instant, another zone
        moment,
    ):
        assert listener.date_text(when) == format_datetime(when)


@pytest.fixture
async def tls_listener(fake_clock: FakeClock, tmp_path: Path) -> AsyncIterator[Served]:
    from tests.fixtures.smtp_sink import self_signed_files

    cert, key = self_signed_files(tmp_path)
    recorder = Recorder()
    settings = ListenerSettings(
        host="127.0.0.1",
        port=0,
        hostname="relay.test",
        tenants=(Tenant("contoso", (ipaddress.ip_network("127.0.0.0/29"),)),),
        tls_cert=str(cert),
        tls_key=str(key),
    )
    users = {("alice", "s3cret"): "fabrikam"}
    server = Listener(
        settings, recorder.accept, fake_clock, authenticate=lambda u, p: users.get((u, p))
    )
    await server.start()
    yield server, recorder
    await server.stop()


async def test_starttls_is_offered_and_auth_only_after_tls(tls_listener: Served) -> None:
    import aiosmtplib

    server, _ = tls_listener
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=server.port, source_address=(STRANGER_IP, 0),
        start_tls=False, validate_certs=False, timeout=5,
    )  # fmt: skip
    await client.connect()
    await client.ehlo()
    assert client.supports_extension("starttls")
    assert not client.supports_extension("auth")
    await client.starttls(validate_certs=False)
    await client.ehlo()
    assert client.supports_extension("auth")
    await client.quit()


async def test_an_authenticated_user_relays_for_its_tenant_from_anywhere(
    tls_listener: Served,
) -> None:
    import aiosmtplib

    server, recorder = tls_listener
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=server.port, source_address=(STRANGER_IP, 0),
        start_tls=True, validate_certs=False, timeout=5,
    )  # fmt: skip
    await client.connect()
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        await client.login("alice", "wrong")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await client.sendmail("a@fabrikam.test", ["b@rcpt.test"], b"Subject: x\r\n\r\nx\r\n")
    await client.login("alice", "s3cret")
    await client.sendmail("a@fabrikam.test", ["b@rcpt.test"], b"Subject: x\r\n\r\nx\r\n")
    await client.quit()
    (sub,) = recorder.accepted
    assert (sub.tenant, sub.auth_user, sub.client_ip) == ("fabrikam", "alice", STRANGER_IP)
    assert b"with ESMTPSA" in sub.data


async def _data(client: Client) -> None:
    assert (await client.cmd("MAIL FROM:<a@contoso.test>")).startswith("250")
    assert (await client.cmd("RCPT TO:<b@rcpt.test>")).startswith("250")
    assert (await client.cmd("DATA")).startswith("354")


async def test_data_split_across_writes_and_dot_lines_are_unstuffed(listener: Served) -> None:
    server, recorder = listener
    client = await _session(server.port)
    await _data(client)
    for piece in (b"Subject: x\r\n\r\n.", b"hidden\r\n..two\r", b"\n.", b"\r\n"):
        client.writer.write(piece)
        await client.writer.drain()
    assert (await client.reply()).startswith("250")
    await client.close()
    assert recorder.accepted[0].data.endswith(b"Subject: x\r\n\r\nhidden\r\n.two\r\n")


async def test_an_empty_message_and_the_exact_size_limit_are_accepted(listener: Served) -> None:
    server, recorder = listener
    client = await _session(server.port)
    await _data(client)
    assert (await client.cmd(b".\r\n")).startswith("250")
    await _data(client)
    exact = b"x" * 98 + b"\r\n"
    assert (await client.cmd(exact * 100 + b".\r\n")).startswith("250")  # 10,000 bytes
    await _data(client)
    assert (await client.cmd(exact * 100 + b"y\r\n.\r\n")).startswith("552 5.3.4")
    await client.close()
    assert recorder.accepted[0].data.endswith(b"\r\n")
    assert recorder.accepted[1].data.endswith(exact * 100)
    assert len(recorder.accepted) == 2


async def test_a_command_sent_right_after_the_dot_is_still_answered(listener: Served) -> None:
    server, recorder = listener
    client = await _session(server.port)
    await _data(client)
    client.writer.write(b"Subject: x\r\n\r\nx\r\n.\r\nNOOP\r\n")
    await client.writer.drain()
    assert (await client.reply()).startswith("250 2.0.0")
    assert (await client.reply()).startswith("250")  # the NOOP
    await client.close()
    assert len(recorder.accepted) == 1
