"""Delivering a large stored message, against ``hrmonitor run`` as a process (issue 13, item 1).

The queue runner used to read a body too large for its claim whole before it
connected, so every delivery attempt of a 10 MB message held 10 MB more. It now
sends it a slice at a time as DATA goes out. The test isolates the delivery:
the recipient domain's MX answers SERVFAIL at first, so the message is received,
stored, classified and deferred before any body is read (by the old code too);
then the daemon's peak RSS mark is reset (``/proc/PID/clear_refs``), the MX
heals, and the retry delivers it. Peak above that baseline: 1.11x the message
before; 0.68x in slices with SQLite's page caches left at 2 MB a connection (the
pool's connections take turns, and each kept the pages it read); 0.17x now.
"""

from __future__ import annotations

import asyncio
import base64
import random
import sqlite3
from pathlib import Path

import pytest

from tests.fixtures.daemon_lab import RelayLab, smtp_send, until
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

RCPT = "large@rcpt.test"


def large_message(size: int) -> bytes:
    """A plain message of about ``size`` bytes: a short text and a base64 attachment, with
    a line that begins with a period (stuffed on the wire, unstuffed by the MX)."""
    payload = base64.encodebytes(random.Random(7).randbytes(size * 3 // 4))
    return (
        b"From: a@contoso.test\r\nTo: " + RCPT.encode() + b"\r\nSubject: large\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="xx"\r\n\r\n'
        b"--xx\r\nContent-Type: text/plain\r\n\r\n.a line with a leading period\r\n"
        b"--xx\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + payload.replace(b"\n", b"\r\n")
        + b"--xx--\r\n"
    )


def kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def reset_peak(pid: int) -> int:
    """VmHWM := VmRSS for ``pid``; returns that baseline."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return kib(pid, "VmRSS")


def queue_row(db: Path) -> tuple[str, str, str | None]:
    """(status, last reply, bounce kind) of the only recipient and its message."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT r.status, r.last_reply, m.bounce_kind FROM queue_recipients r"
            " JOIN queue_messages m ON m.id = r.message_id"
        ).fetchone()
    return ("", "", None) if row is None else row


async def test_a_stored_10mb_message_is_delivered_holding_a_slice_not_the_message(
    tmp_path: Path, relay_lab: RelayLab, mail_dns: DnsTestServer, smtp_sink: SmtpSink
) -> None:
    mail_dns.servfail("rcpt.test", "MX")
    daemon = await relay_lab.start()
    pid = daemon.process.pid
    message = large_message(10_000_000)
    await asyncio.to_thread(smtp_send, daemon.port, RCPT, message)
    db = tmp_path / "hrmonitor.db"

    def deferred_and_classified() -> bool:
        status, reply, kind = queue_row(db)
        return status == "deferred" and "MX lookup" in reply and kind is not None

    await until(deferred_and_classified, within=60)
    baseline = reset_peak(pid)
    mail_dns.heal("rcpt.test")
    [delivered] = await smtp_sink.wait_for(1, 60, lambda m: RCPT in m.rcpts)
    peak = kib(pid, "VmHWM") - baseline
    # The message as sent, below the daemon's Received: field (no 10 MB diff on failure).
    head, _, rest = delivered.data.partition(b"From: a@contoso.test\r\n")
    assert head.startswith(b"Received: "), head[:1000]
    assert len(head) < 1000
    assert rest == message.removeprefix(b"From: a@contoso.test\r\n"), "the body differs"
    assert f"SIZE={len(delivered.data)}" in delivered.mail_options
    # Read whole before it was sent: 1x the message, and more. In slices: a slice and
    # a piece (and the little SQLite's page cache keeps while it moves a large body).
    assert peak < 0.4 * len(message), (peak, len(message))
    assert await daemon.stop_async() == 0
