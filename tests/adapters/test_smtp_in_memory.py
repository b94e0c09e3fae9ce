"""Memory for one large message on the receive -> store path (issue 13, item 1).

The listener reads DATA into the one buffer that is stored, so receiving and
queueing a message allocate (Python-level, traced) under twice its size. The
client is another process, so nothing of its own is traced; the store is
SQLite on disk, as the daemon's default. What SQLite itself allocates is not
traced: ``test_queue_memory`` bounds that by the process's peak RSS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hrmonitor.adapters.smtp_in import Listener, ListenerSettings, Tenant
from hrmonitor.adapters.store.engine import create_store_engine
from hrmonitor.adapters.store.migrate import upgrade
from hrmonitor.adapters.store.queue.repository import NewMessage, QueueRepository
from hrmonitor.core.delivery.envelope import Submission
from tests.fixtures.hostile_mime import nested_multipart
from tests.fixtures.peers import FakeClock

CLIENT = """
import smtplib, sys
port, path = int(sys.argv[1]), sys.argv[2]
with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=60) as smtp:
    smtp.ehlo()
    smtp.mail("a@contoso.test")
    smtp.rcpt("b@rcpt.test")
    code, text = smtp.data(open(path, "rb").read())
print(code, text.decode())
"""


class Queueing:
    """The accept callback: store the message in the queue, then answer 250."""

    def __init__(self, queue: QueueRepository) -> None:
        self.queue = queue
        self.count = 0

    async def accept(self, submission: Submission) -> str:
        self.count += 1
        message = NewMessage(
            id=f"m{self.count}",
            tenant=submission.tenant,
            client_ip=submission.client_ip,
            mail_from=submission.mail_from,
            recipients=submission.recipients,
            body=submission.data,
            arrived_at=submission.received_at,
            pool="normal",
            risk="normal",
        )
        self.queue.enqueue([message])
        return f"250 2.0.0 Ok: queued as {message.id}"


@pytest.fixture
async def queueing(
    tmp_path: Path, fake_clock: FakeClock
) -> AsyncIterator[tuple[Listener, QueueRepository]]:
    engine = create_store_engine(f"sqlite:///{tmp_path}/queue.db")
    upgrade(engine)
    queue = QueueRepository(engine)
    settings = ListenerSettings(
        host="127.0.0.1",
        port=0,
        hostname="relay.test",
        tenants=(Tenant("contoso", (ipaddress.ip_network("127.0.0.0/8"),)),),
    )
    listener = Listener(settings, Queueing(queue).accept, fake_clock)
    await listener.start()
    yield listener, queue
    await listener.stop()
    engine.dispose()


async def send(port: int, path: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(port), str(path), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    return out.decode()


async def test_receiving_and_storing_1mb_of_nested_mime_allocates_under_twice_its_size(
    queueing: tuple[Listener, QueueRepository], tmp_path: Path
) -> None:
    listener, queue = queueing
    small, large = tmp_path / "small.eml", tmp_path / "nested.eml"
    small.write_bytes(nested_multipart(50))
    message = nested_multipart(15_000)  # 1.08 MB
    large.write_bytes(message)
    assert (await send(listener.port, small)).startswith("250")  # imports, caches: baseline

    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        reply = await send(listener.port, large)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()

    assert reply.startswith("250"), reply
    stored = queue.body("m2")
    assert stored.startswith(b"Received: from client.test ([127.0.0.1])\r\n")
    assert stored.endswith(message)  # byte for byte after the Received: field
    assert peak < 2 * len(message), f"traced peak {peak / len(message):.2f}x the message"
