"""Hostile MIME against ``hrmonitor run`` as a process (issue 13, item 1).

A tenant sends 1 MB of 15,000 nested ``multipart/mixed`` parts. Before the
fix the daemon classified it inside the event loop before the 250, with a
parser whose cost grew with the square of the nesting: nobody was answered
for tens of seconds. Now the parser is bounded and linear, and the
classification runs on a worker thread after the 250. The test pins the
order: the hostile message's final dot is sent, then a NOOP on a second
connection, and that NOOP must be answered (liveness, not a latency figure;
benchmarks/bounce_classify.py measures the latency and memory).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.fixtures.daemon_lab import RelayLab
from tests.fixtures.hostile_mime import nested_multipart
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

# Generous liveness bounds: the old daemon stayed silent for 40 s and more.
ANSWER_WITHIN = 20.0


async def reply(reader: asyncio.StreamReader) -> str:
    """One SMTP reply, all its lines."""
    lines = []
    while True:
        line = (await asyncio.wait_for(reader.readline(), ANSWER_WITHIN)).decode()
        assert line, "the connection was closed"
        lines.append(line)
        if line[3:4] != "-":
            return "".join(lines)


async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str) -> str:
    writer.write(line.encode() + b"\r\n")
    await writer.drain()
    return await reply(reader)


async def test_a_noop_on_another_connection_is_answered_while_nested_mime_is_processed(
    tmp_path: Path,
    smtp_sink: SmtpSink,
    relay_lab: RelayLab,
) -> None:
    config = relay_lab.config()
    daemon = await relay_lab.start(config)
    hostile = nested_multipart(15_000)
    assert len(hostile) > 1_000_000
    sender_r, sender_w = await asyncio.open_connection(
        "127.0.0.1", daemon.port, local_addr=("127.0.0.5", 0)
    )
    other_r, other_w = await asyncio.open_connection(
        "127.0.0.1", daemon.port, local_addr=("127.0.0.5", 0)
    )
    try:
        for reader, writer in ((sender_r, sender_w), (other_r, other_w)):
            assert (await reply(reader)).startswith("220")
            assert (await command(reader, writer, "EHLO client.test")).startswith("250")
        assert (await command(sender_r, sender_w, "MAIL FROM:<a@contoso.test>")).startswith("250")
        assert (await command(sender_r, sender_w, "RCPT TO:<nested@rcpt.test>")).startswith("250")
        assert (await command(sender_r, sender_w, "DATA")).startswith("354")
        sender_w.write(hostile + b".\r\n")
        await sender_w.drain()
        # The whole message is on its way: the other client must still be served.
        noop = await command(other_r, other_w, "NOOP")
        assert noop.startswith("250"), noop
        accepted = await reply(sender_r)
        assert accepted.startswith("250"), accepted
        assert (await command(other_r, other_w, "NOOP")).startswith("250")
        for writer in (sender_w, other_w):
            writer.write(b"QUIT\r\n")
    finally:
        for writer in (sender_w, other_w):
            writer.close()
    # The message was delivered, and classified off the 250's path (kind recorded later).
    [delivered] = await smtp_sink.wait_for(1, 60, lambda m: "nested@rcpt.test" in m.rcpts)
    assert len(delivered.data) >= len(hostile) - 1000
    kind = None
    for _ in range(200):
        with sqlite3.connect(tmp_path / "hrmonitor.db") as db:
            [(kind,)] = db.execute("SELECT bounce_kind FROM queue_messages").fetchall()
        if kind is not None:
            break
        await asyncio.sleep(0.1)
    assert kind == "none"
    assert await daemon.stop_async() == 0
    assert "Traceback" not in daemon.log.read_text()
