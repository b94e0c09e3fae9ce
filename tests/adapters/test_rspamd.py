"""The rspamd adapter against a real rspamd on loopback (tests/fixtures/rspamd.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from hrmonitor.adapters.rspamd import Rspamd
from tests.fixtures.rspamd import RspamdServer

MESSAGE = b"From: a@contoso.test\r\nTo: b@rcpt.test\r\nSubject: hello\r\n\r\nhello\r\n"


def with_header(name: str, value: str) -> bytes:
    return f"{name}: {value}\r\n".encode() + MESSAGE


async def scan(scanner: Rspamd, message: bytes, **envelope: object) -> tuple[float | None, str]:
    result = await scanner.scan(
        message,
        mail_from=str(envelope.get("mail_from", "a@contoso.test")),
        rcpts=list(envelope.get("rcpts", ["b@rcpt.test"])),  # type: ignore[call-overload]
        client_ip=envelope.get("client_ip", "127.0.0.5"),  # type: ignore[arg-type]
    )
    try:
        return result.score, result.problem
    finally:
        await scanner.close()


async def test_the_score_is_rspamds(rspamd: RspamdServer) -> None:
    assert await scan(Rspamd(rspamd.url, 5), with_header("X-Test-Spamminess", "7.5")) == (7.5, "")
    assert await scan(Rspamd(rspamd.url, 5), MESSAGE) == (0.0, "")


async def test_rspamd_is_told_the_envelope(rspamd: RspamdServer) -> None:
    message = with_header("X-Test-Envelope", "yes")
    score, _ = await scan(
        Rspamd(rspamd.url + "/", 5),
        message,
        mail_from="<envelope@contoso.test>",
        rcpts=["one@rcpt.test", "two@rcpt.test", "three@rcpt.test"],
        client_ip="192.0.2.7",
    )
    assert score == 1103.0  # 3 recipients + the client IP + the sender
    score, _ = await scan(Rspamd(rspamd.url, 5), message, client_ip=None)
    assert score == 1.0  # one recipient; no IP, another sender


async def test_no_server_is_no_score_and_says_why() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe is closed
    score, problem = await scan(Rspamd(f"http://127.0.0.1:{port}", 2), MESSAGE)
    assert score is None
    assert "ConnectError" in problem


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_server_that_does_not_answer_in_time_is_no_score(silent_server: int) -> None:
    score, problem = await scan(Rspamd(f"http://127.0.0.1:{silent_server}", 0.3), MESSAGE)
    assert score is None
    assert "Timeout" in problem


async def test_an_http_error_is_no_score(rspamd: RspamdServer) -> None:
    score, problem = await scan(Rspamd(rspamd.url + "/no/such/path", 5), MESSAGE)
    assert score is None
    assert problem.startswith("HTTP 500 from")  # rspamd's answer to a path it does not serve
