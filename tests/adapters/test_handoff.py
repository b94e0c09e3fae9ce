"""Both ends of each worker's socket pair, in one event loop over a real socket pair.

The listener's end hands messages and connection admissions to the daemon's
end; the daemon's delivery end sends transactions to a delivery end, which
runs them through a real :class:`Connections` to an aiosmtpd sink on loopback
(the sink records the source address of each connection).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from hrmonitor.adapters.smtp_in import Tenant
from hrmonitor.adapters.smtp_in import handoff as inbound
from hrmonitor.adapters.smtp_in.connections import ConnectionLimits
from hrmonitor.adapters.smtp_in.session import FAILED_REPLY
from hrmonitor.adapters.smtp_out import Connections, OutboundSettings, Sent
from hrmonitor.adapters.smtp_out import handoff as outbound
from hrmonitor.adapters.smtp_out.data import Body
from hrmonitor.core.delivery.envelope import Submission
from hrmonitor.errors import BindError
from tests.fixtures.daemon_lab import until
from tests.fixtures.smtp_sink import SmtpSink

A = TypeVar("A", bound=asyncio.Protocol)
B = TypeVar("B", bound=asyncio.Protocol)


_open: list[asyncio.BaseTransport] = []


async def pair(left: Callable[[], A], right: Callable[[], B]) -> tuple[A, B]:
    """The two ends on a socket pair; closed at the test's end (``closed_after``)."""
    loop = asyncio.get_running_loop()
    one, two = socket.socketpair()
    transport_a, a = await loop.create_unix_connection(left, sock=one)
    transport_b, b = await loop.create_unix_connection(right, sock=two)
    _open.extend((transport_a, transport_b))
    return a, b


@pytest.fixture(autouse=True)
async def closed_after() -> AsyncIterator[None]:
    yield
    for transport in _open:
        transport.close()
    _open.clear()
    await asyncio.sleep(0)  # the transports' connection_lost


def submission(data: bytes = b"Subject: hi\r\n\r\nbody\r\n") -> Submission:
    return Submission(
        tenant="contoso",
        client_ip="127.0.0.5",
        helo="client\udcff.test",  # a byte aiosmtpd could not decode (surrogateescape)
        mail_from="a@contoso.test",
        recipients=("x@rcpt.test", "Ünï@rcpt.test"),
        data=data,
        received_at=datetime(2026, 12, 7, 12, 0, 1, 250000, tzinfo=UTC),
        smtputf8=True,
        auth_user=None,
    )


async def test_a_message_crosses_whole_and_the_daemons_reply_comes_back() -> None:
    taken: list[Submission] = []

    async def accept(message: Submission) -> str:
        taken.append(message)
        return f"250 2.0.0 Ok: queued as {len(taken)}"

    limits = ConnectionLimits(10, 10)
    end, daemon = await pair(
        lambda: inbound.ListenerEnd(lambda _t: None),
        lambda: inbound.DaemonEnd("listener process 1", accept, limits, 10_000_000, ()),
    )
    big = submission(b"Subject: big\r\n\r\n" + b"x" * 3_000_000 + b"\r\n")
    replies = await asyncio.gather(end.accept(submission()), end.accept(big))
    assert sorted(replies) == ["250 2.0.0 Ok: queued as 1", "250 2.0.0 Ok: queued as 2"]
    assert sorted(taken, key=lambda s: len(s.data)) == [submission(), big]
    daemon.close()


async def test_connections_are_counted_by_the_daemon_and_given_back_when_a_process_goes() -> None:
    async def accept(_message: Submission) -> str:
        return "250 ok"

    limits = ConnectionLimits(total=10, per_client=2)
    ends = [
        await pair(
            lambda: inbound.ListenerEnd(lambda _t: None),
            lambda: inbound.DaemonEnd("p", accept, limits, 1000, ()),
        )
        for _ in range(2)
    ]
    (one, _daemon_one), (two, daemon_two) = ends
    assert await one.admit("192.0.2.1") is None
    assert await two.admit("192.0.2.1") is None
    refused = await two.admit("192.0.2.1")
    assert refused is not None
    assert "max_connections_per_client = 2" in refused
    assert limits.open == 2
    one.release("192.0.2.1")
    assert await two.admit("192.0.2.1") is None  # the slot one gave back
    assert limits.open == 2
    two.release("192.0.2.99")  # never admitted through this pair: ignored, the pair stays up
    assert await two.admit("192.0.2.2") is None
    assert limits.open == 3
    two.release("192.0.2.2")
    daemon_two.close()  # the process holding both is gone: its connections count no more
    await asyncio.wait_for(daemon_two.closed, 5)
    assert limits.open == 0


async def test_the_daemon_gone_answers_451_to_what_was_handed_over() -> None:
    started = asyncio.Event()

    async def accept(_message: Submission) -> str:
        started.set()
        await asyncio.sleep(3600)
        return "250 never"

    end, daemon = await pair(
        lambda: inbound.ListenerEnd(lambda _t: None),
        lambda: inbound.DaemonEnd("p", accept, ConnectionLimits(5, 5), 1000, ()),
    )
    waiting = asyncio.ensure_future(end.accept(submission()))
    await started.wait()
    daemon.close()
    assert await asyncio.wait_for(waiting, 5) == FAILED_REPLY
    await asyncio.wait_for(end.closed, 5)
    assert await end.accept(submission()) == FAILED_REPLY


async def test_new_tenants_reach_the_listener_process() -> None:
    heard: list[tuple[Tenant, ...]] = []
    tenants = (Tenant("contoso", ()),)

    async def accept(_message: Submission) -> str:
        return "250 ok"

    _end, daemon = await pair(
        lambda: inbound.ListenerEnd(heard.append),
        lambda: inbound.DaemonEnd("p", accept, ConnectionLimits(5, 5), 1000, tenants),
    )
    fabrikam = (Tenant("fabrikam", (ipaddress.ip_network("192.0.2.0/24"),)),)
    daemon.send_tenants(fabrikam)
    await until(lambda: len(heard) == 2, within=5)
    assert heard == [tenants, fabrikam]  # at connection, then the reload's


@pytest.fixture
async def delivery(smtp_sink: SmtpSink) -> AsyncIterator[outbound.DaemonEnd]:
    connections = Connections(OutboundSettings(port=smtp_sink.port, helo_name="relay.test"))
    daemon, worker = await pair(
        lambda: outbound.DaemonEnd("delivery process 1"),
        lambda: outbound.DeliveryEnd(connections, 50_000_000),
    )
    yield daemon
    daemon.close()
    await asyncio.wait_for(worker.closed, 5)
    await connections.close()


async def test_a_transaction_runs_in_the_delivery_process_from_the_source_ip_asked(
    delivery: outbound.DaemonEnd, smtp_sink: SmtpSink
) -> None:
    smtp_sink.script("gone@rcpt.test", "550 5.1.1 <gone@rcpt.test>: no such user")
    outcome = await delivery.send_transaction(
        source_ip="127.0.0.11",
        host=smtp_sink.host,
        mail_from="a@contoso.test",
        recipients=["x@rcpt.test", "gone@rcpt.test"],
        body=b"Subject: hi\r\n\r\nbody\r\n",
    )
    assert isinstance(outcome, Sent)
    assert outcome.source_ip == "127.0.0.11"
    assert outcome.replies["x@rcpt.test"].code == 250
    assert outcome.replies["gone@rcpt.test"].code == 550
    [received] = await smtp_sink.wait_for(1)
    assert received.peer == "127.0.0.11"
    assert received.rcpts == ("x@rcpt.test",)
    assert received.data.endswith(b"body\r\n")


async def test_a_body_read_in_slices_arrives_whole(
    delivery: outbound.DaemonEnd, smtp_sink: SmtpSink
) -> None:
    message = b"Subject: sliced\r\n\r\n" + b"".join(b"line %06d\r\n" % i for i in range(50_000))

    async def slices() -> AsyncIterator[bytes]:
        for at in range(0, len(message), 65536):
            await asyncio.sleep(0)  # the store's thread, in the daemon
            yield message[at : at + 65536]

    body = Body(size=len(message), eight_bit=False, read=slices)
    send = functools.partial(
        delivery.send_transaction,
        source_ip="127.0.0.10",
        host=smtp_sink.host,
        mail_from="a@contoso.test",
    )
    both = await asyncio.gather(
        send(recipients=["big@rcpt.test"], body=body),
        send(recipients=["small@rcpt.test"], body=b"Subject: s\r\n\r\nsmall\r\n"),
    )
    assert all(isinstance(o, Sent) for o in both)
    [big] = await smtp_sink.wait_for(1, where=lambda m: "big@rcpt.test" in m.rcpts)
    assert big.data == message


async def test_an_unbindable_source_ip_raises_bind_error_as_in_the_daemon(
    delivery: outbound.DaemonEnd, smtp_sink: SmtpSink
) -> None:
    with pytest.raises(BindError):
        await delivery.send_transaction(
            source_ip="192.0.2.55",  # not on this machine: bind() fails, nothing is sent
            host=smtp_sink.host,
            mail_from="a@contoso.test",
            recipients=["x@rcpt.test"],
            body=b"Subject: hi\r\n\r\nbody\r\n",
        )
    assert smtp_sink.messages == []


async def test_a_transaction_given_up_on_is_cancelled_in_the_delivery_process(
    delivery: outbound.DaemonEnd, smtp_sink: SmtpSink
) -> None:
    smtp_sink.delay = 1.0  # each RCPT waits: the transaction is in flight when cancelled
    sending = asyncio.ensure_future(
        delivery.send_transaction(
            source_ip="127.0.0.10",
            host=smtp_sink.host,
            mail_from="a@contoso.test",
            recipients=["slow@rcpt.test"],
            body=b"Subject: hi\r\n\r\nbody\r\n",
        )
    )
    await until(lambda: smtp_sink.waiting == 1, within=5)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    await asyncio.sleep(1.5)  # past the RCPT's delay: a live transaction would send DATA now
    assert smtp_sink.messages == []


async def test_the_delivery_process_gone_fails_the_transactions_in_flight(
    smtp_sink: SmtpSink,
) -> None:
    connections = Connections(OutboundSettings(port=smtp_sink.port))
    daemon, worker = await pair(
        lambda: outbound.DaemonEnd("delivery process 1"),
        lambda: outbound.DeliveryEnd(connections, 1000),
    )
    smtp_sink.delay = 5.0
    sending = asyncio.ensure_future(
        daemon.send_transaction(
            source_ip="127.0.0.10",
            host=smtp_sink.host,
            mail_from="a@contoso.test",
            recipients=["x@rcpt.test"],
            body=b"Subject: hi\r\n\r\nbody\r\n",
        )
    )
    await until(lambda: smtp_sink.waiting == 1, within=5)
    worker.close()
    outcome = await asyncio.wait_for(sending, 5)
    assert not isinstance(outcome, Sent)
    assert outcome.reason == "the delivery process went away"
    assert outcome.reply is None  # a connection failure: deferred, never a bounce
    await connections.close()
