"""Outbound SMTP against a real aiosmtpd MX on loopback: bound source IPs, replies, reuse, TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hrmonitor.adapters.smtp_out import (
    Connections,
    Failed,
    OutboundSettings,
    Reply,
    Sent,
    check_bindable,
)
from hrmonitor.errors import BindError
from tests.fixtures.daemon_lab import until
from tests.fixtures.smtp_sink import DROP_IN_DATA, GARBAGE_IN_DATA, SinkFactory, SmtpSink

BODY = b"Subject: t\r\n\r\nhello\r\n.leading dot\r\n"


@pytest.fixture
async def connections(smtp_sink: SmtpSink) -> AsyncIterator[Connections]:
    conns = Connections(
        OutboundSettings(
            port=smtp_sink.port, helo_name="relay.test", connect_timeout=5, command_timeout=5
        )
    )
    yield conns
    await conns.close()


async def _send(conns: Connections, sink: SmtpSink, ip: str, rcpts: list[str]) -> Sent | Failed:
    return await conns.send(
        source_ip=ip, host=sink.host, mail_from="a@contoso.test", recipients=rcpts, body=BODY
    )


async def test_message_leaves_from_the_chosen_source_ip(
    connections: Connections, smtp_sink: SmtpSink
) -> None:
    first = await _send(connections, smtp_sink, "127.0.0.10", ["b@rcpt.test"])
    second = await _send(connections, smtp_sink, "127.0.0.21", ["b@rcpt.test"])
    assert isinstance(first, Sent)
    assert isinstance(second, Sent)
    assert first.replies["b@rcpt.test"].code == 250
    assert [m.peer for m in smtp_sink.messages] == ["127.0.0.10", "127.0.0.21"]
    assert smtp_sink.messages[0].data == BODY


async def test_per_recipient_replies_are_reported(
    connections: Connections, smtp_sink: SmtpSink
) -> None:
    smtp_sink.script("gone@rcpt.test", "550 5.1.1 no such user")
    smtp_sink.script("later@rcpt.test", "451 4.7.1 try later")
    outcome = await _send(
        connections, smtp_sink, "127.0.0.10", ["ok@rcpt.test", "gone@rcpt.test", "later@rcpt.test"]
    )
    assert isinstance(outcome, Sent)
    assert outcome.replies["gone@rcpt.test"] == Reply(550, "5.1.1 no such user")
    assert outcome.replies["later@rcpt.test"] == Reply(451, "4.7.1 try later")
    assert outcome.replies["ok@rcpt.test"].code == 250
    assert [m.rcpts for m in smtp_sink.messages] == [("ok@rcpt.test",)]


async def test_a_session_is_reused_for_the_same_source_ip_and_host(
    connections: Connections, smtp_sink: SmtpSink
) -> None:
    for _ in range(3):
        assert isinstance(await _send(connections, smtp_sink, "127.0.0.10", ["b@rcpt.test"]), Sent)
    assert len(smtp_sink.messages) == 3
    assert len(connections._idle[("127.0.0.10", smtp_sink.host, smtp_sink.port)]) == 1


async def test_an_idle_session_is_closed_after_idle_seconds_without_another_send(
    smtp_sink: SmtpSink,
) -> None:
    """A session kept for reuse says QUIT once idle ``idle_seconds``, though nothing is
    sent to its destination again (a checkout only looks at its own destination's)."""
    conns = Connections(
        OutboundSettings(
            port=smtp_sink.port, helo_name="relay.test", command_timeout=5, idle_seconds=0.2
        )
    )
    try:
        assert isinstance(await _send(conns, smtp_sink, "127.0.0.10", ["b@rcpt.test"]), Sent)
        assert isinstance(await _send(conns, smtp_sink, "127.0.0.11", ["b@rcpt.test"]), Sent)
        assert smtp_sink.quits == []  # kept for reuse
        await until(lambda: len(smtp_sink.quits) == 2, within=5)
        assert sorted(smtp_sink.quits) == ["127.0.0.10", "127.0.0.11"]
        assert conns._idle == {}  # nor are the destinations remembered
        assert conns._pruning is None  # and nothing is left scheduled
    finally:
        await conns.close()


async def test_an_unbindable_source_ip_raises_bind_error_and_sends_nothing(
    connections: Connections, smtp_sink: SmtpSink
) -> None:
    with pytest.raises(BindError, match=r"192\.0\.2\.77"):
        await _send(connections, smtp_sink, "192.0.2.77", ["b@rcpt.test"])
    assert smtp_sink.messages == []


async def test_a_connection_dropped_in_data_is_a_failure_without_a_reply(
    connections: Connections, smtp_sink: SmtpSink
) -> None:
    smtp_sink.script("b@rcpt.test", DROP_IN_DATA, "250 ok")
    outcome = await _send(connections, smtp_sink, "127.0.0.10", ["b@rcpt.test"])
    assert isinstance(outcome, Failed)
    assert not outcome.permanent
    assert smtp_sink.messages == []
    assert isinstance(await _send(connections, smtp_sink, "127.0.0.10", ["b@rcpt.test"]), Sent)


async def test_a_garbage_reply_is_a_temporary_failure(
    connections: Connections, smtp_sink: SmtpSink
) -> None:
    smtp_sink.script("b@rcpt.test", GARBAGE_IN_DATA)
    outcome = await _send(connections, smtp_sink, "127.0.0.10", ["b@rcpt.test"])
    assert isinstance(outcome, Failed)
    assert not outcome.permanent


async def test_nobody_listening_is_a_connect_failure(smtp_sink: SmtpSink) -> None:
    await smtp_sink.stop()
    conns = Connections(OutboundSettings(port=smtp_sink.port, connect_timeout=5, command_timeout=5))
    outcome = await _send(conns, smtp_sink, "127.0.0.10", ["b@rcpt.test"])
    assert isinstance(outcome, Failed)
    assert outcome.reason.startswith("connect")
    assert outcome.reply is None


async def test_starttls_is_used_when_offered_without_verifying_the_certificate(
    smtp_sink_factory: SinkFactory,
) -> None:
    sink = await smtp_sink_factory(host="127.0.0.51", tls=True)
    conns = Connections(OutboundSettings(port=sink.port, connect_timeout=5, command_timeout=5))
    try:
        outcome = await _send(conns, sink, "127.0.0.10", ["b@rcpt.test"])
    finally:
        await conns.close()
    assert isinstance(outcome, Sent)
    assert outcome.tls is True
    assert sink.messages[0].tls is True


def test_check_bindable_names_the_unbindable_ip() -> None:
    result = check_bindable(["127.0.0.10", "192.0.2.77"])
    assert result["127.0.0.10"] is None
    assert result["192.0.2.77"] is not None
    assert "99" in result["192.0.2.77"]
