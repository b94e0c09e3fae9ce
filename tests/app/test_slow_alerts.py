"""A webhook receiver that trickles its answer cannot stall the daemon (a real process).

The receiver accepts each POST and then sends its answer one byte every
0.3 s, forever: httpx's timeout is per read, so the channel's ``timeout``
never tripped and every sweep, rotation tick and the shutdown waited on it.
With alerts queued to their own worker and a total deadline per send, the
sweeps keep counting, a delisted retired IP comes back on time, and SIGTERM
ends the daemon within ``[alerting] shutdown_wait``.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from tests.fixtures.app_config import make_config
from tests.fixtures.daemon import DaemonFactory
from tests.fixtures.daemon_lab import state_of
from tests.fixtures.rbldnsd import Rbldnsd

pytestmark = pytest.mark.slow


class TricklingWebhook:
    """Reads each request's head, then answers one byte every ``every`` seconds, never ending."""

    def __init__(self, every: float = 0.3) -> None:
        self.every = every
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"z" * 100_000:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(self.every)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()


@pytest.fixture
async def trickling_webhook() -> AsyncIterator[TricklingWebhook]:
    receiver = TricklingWebhook()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _sweeps(port: int, pool: str) -> int:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    pattern = rf'hrmonitor_sweeps_total{{outcome="ok",pool="{pool}"}} ([0-9.]+)'
    found = re.search(pattern, text)
    return int(float(found.group(1))) if found else 0


async def _until(condition: Callable[[], bool], within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await asyncio.to_thread(condition):
        if loop.time() > deadline:
            pytest.fail(f"{what}: not within {within}s")
        await asyncio.sleep(0.2)


async def test_a_trickling_webhook_holds_up_neither_sweeps_nor_rotation_nor_shutdown(
    tmp_path: Path,
    rbldnsd: Rbldnsd,
    trickling_webhook: TricklingWebhook,
    daemon_process: DaemonFactory,
) -> None:
    metrics = _free_port()
    webhook = f"""
[[alerts]]
type = "webhook"
url = "http://127.0.0.1:{trickling_webhook.port}/hook"
timeout = "2s"

[alerting]
shutdown_wait = "3s"
"""
    config = make_config(tmp_path, rbldnsd=rbldnsd, metrics=f"127.0.0.1:{metrics}", extra=webhook)
    daemon = await asyncio.to_thread(daemon_process, config)

    # The first sweep's listings are alerts: the webhook is busy trickling from here on.
    await _until(lambda: trickling_webhook.requests >= 1, 20, "an alert reached the webhook")
    await _until(lambda: _sweeps(metrics, "high-risk") >= 6, 40, "six sweeps of high-risk")
    await _until(lambda: state_of(tmp_path, "127.0.0.20") == "retired", 20, "retired")
    rbldnsd.delist_ip("127.0.0.20")  # clean for the 2 s cool-down: rotation brings it back
    await _until(
        lambda: state_of(tmp_path, "127.0.0.20") in ("standby", "warming", "active"),
        40,
        "127.0.0.20 restored by rotation",
    )
    assert trickling_webhook.requests >= 2  # the deadline ended a send and the worker went on

    # The old daemon never ended here (stop() gives up after 30 s).
    assert await asyncio.to_thread(daemon.stop) == 0
    log = daemon.log.read_text()
    assert "hrmonitor stopping" in log
    assert "no complete answer within 2s" in log
