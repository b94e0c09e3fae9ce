"""The daemon's worker processes, as an operator runs it: a real ``hrmonitor run``.

By default a daemon serves SMTP in one listener process and sends in one
delivery process (``[listener] processes``, ``[delivery] processes``). These
tests find them as the daemon's child processes, kill them (``kill -9``),
kill the daemon itself, and check what the operator would: mail still flows
from the right source IP, a dead worker is started again, nothing outlives
the daemon, the node's connection limits hold across listener processes, and
a reload reaches them. Peers: rbldnsd, a DNS server for the mail domains and
an aiosmtpd sink that records each connection's source address.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import pytest

from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.daemon_lab import NORMAL, RelayLab, swaks, swaks_status, until
from tests.fixtures.processes import children
from tests.fixtures.smtp_sink import SmtpSink

pytestmark = pytest.mark.slow

LISTENER = "hrmonitor.app.listener_worker"
DELIVERY = "hrmonitor.app.delivery_worker"


def worker(pid: int, module: str) -> int | None:
    return next((child for child, command in children(pid).items() if module in command), None)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def greeting(port: int, client: str) -> tuple[socket.socket, str]:
    """A connection from ``client`` and the first line the daemon wrote."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(client, 0))
    line = sock.makefile("rb").readline().decode()
    return sock, line


async def test_by_default_smtp_in_and_out_run_in_worker_processes(
    relay_lab: RelayLab, smtp_sink: SmtpSink
) -> None:
    daemon = await relay_lab.start()
    listener = worker(daemon.process.pid, LISTENER)
    delivery = worker(daemon.process.pid, DELIVERY)
    assert listener is not None, children(daemon.process.pid)
    assert delivery is not None, children(daemon.process.pid)
    await swaks(daemon.port, "--from", "a@contoso.test", "--to", "one@rcpt.test")
    [message] = await smtp_sink.wait_for(1, timeout=20)
    assert message.peer in NORMAL  # the daemon chose the source IP; the worker bound it
    assert b"from client.test ([127.0.0.5])" in message.data  # the listener's Received:
    assert "listener process(es), pids" in daemon.log.read_text()
    assert daemon.stop() == 0
    assert not alive(listener)
    assert not alive(delivery)
    refused = socket.socket()
    with pytest.raises(ConnectionRefusedError):
        refused.connect(("127.0.0.1", daemon.port))
    refused.close()


async def test_a_killed_listener_process_is_started_again(
    relay_lab: RelayLab, smtp_sink: SmtpSink
) -> None:
    daemon = await relay_lab.start()
    first = worker(daemon.process.pid, LISTENER)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await until(lambda: worker(daemon.process.pid, LISTENER) not in (None, first), within=30)
    await until(lambda: "SMTP listener" in daemon.log.read_text(), within=5)
    await until(lambda: "exited with status -9; starting another" in daemon.log.read_text())
    await swaks(daemon.port, "--from", "a@contoso.test", "--to", "after@rcpt.test")
    await smtp_sink.wait_for(1, timeout=20, where=lambda m: "after@rcpt.test" in m.rcpts)


async def test_a_killed_delivery_process_is_started_again_and_its_mail_delivered(
    relay_lab: RelayLab, smtp_sink: SmtpSink
) -> None:
    """A transaction in flight when its process dies is deferred, then delivered once."""
    daemon = await relay_lab.start()
    first = worker(daemon.process.pid, DELIVERY)
    assert first is not None
    smtp_sink.delay = 30.0  # the RCPT waits: the transaction is in flight
    await swaks(daemon.port, "--from", "a@contoso.test", "--to", "inflight@rcpt.test")
    await until(lambda: smtp_sink.waiting == 1, within=20)
    smtp_sink.delay = 0.0
    os.kill(first, signal.SIGKILL)
    await until(lambda: worker(daemon.process.pid, DELIVERY) not in (None, first), within=30)
    # The lab's retry is 1 s: the deferred recipient goes again through the new process.
    found = await smtp_sink.wait_for(1, timeout=30, where=lambda m: "inflight@rcpt.test" in m.rcpts)
    assert len(found) == 1
    assert "delivery process 1" in daemon.log.read_text()


async def test_a_delivery_process_outlives_a_stray_sigterm_until_the_daemon_has_drained(
    relay_lab: RelayLab, smtp_sink: SmtpSink
) -> None:
    """A SIGTERM to the whole process group (a terminal, a unit without KillMode=mixed)
    reaches the delivery process too: it must not cut the deliveries the daemon drains."""
    daemon = await relay_lab.start()
    delivery = worker(daemon.process.pid, DELIVERY)
    assert delivery is not None
    smtp_sink.delay = 2.0  # the RCPT waits: a transaction is in flight during the stop
    await swaks(daemon.port, "--from", "a@contoso.test", "--to", "draining@rcpt.test")
    await until(lambda: smtp_sink.waiting == 1, within=20)
    os.kill(delivery, signal.SIGTERM)
    assert await daemon.stop_async() == 0  # the daemon's own SIGTERM: drain, then stop
    [message] = smtp_sink.for_rcpt("draining@rcpt.test")  # drained through that process
    assert message.peer in NORMAL
    assert not alive(delivery)  # and it ended with the daemon
    assert "delivery process went away" not in daemon.log.read_text()


async def test_nothing_outlives_a_daemon_killed_with_sigkill(relay_lab: RelayLab) -> None:
    daemon = await relay_lab.start()
    workers = list(children(daemon.process.pid))
    assert len(workers) == 2
    daemon.kill()
    await until(lambda: not any(alive(pid) for pid in workers), within=15)
    probe = socket.socket()
    with pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", daemon.port))  # no orphan still accepting on the port
    probe.close()


async def test_connection_limits_hold_for_the_node_across_listener_processes(
    relay_lab: RelayLab,
) -> None:
    config = relay_lab.config(listener="processes = 3\nmax_connections_per_client = 4")
    daemon = await relay_lab.start(config)
    listeners = [p for p, c in children(daemon.process.pid).items() if LISTENER in c]
    assert len(listeners) == 3
    held: list[socket.socket] = []
    try:
        for _ in range(4):
            sock, line = await asyncio.to_thread(greeting, daemon.port, "127.0.0.5")
            held.append(sock)
            assert line.startswith("220 "), line
        # Three processes, each with its own count, would have taken 12.
        sock, line = await asyncio.to_thread(greeting, daemon.port, "127.0.0.5")
        sock.close()
        assert line.startswith("421 4.7.0"), line
        sock, line = await asyncio.to_thread(greeting, daemon.port, "127.0.0.6")
        held.append(sock)
        assert line.startswith("220 "), line  # another client has its own count
        held.pop(0).close()  # one ends: its slot comes back
        await until(lambda: _greets(daemon, "127.0.0.5"), within=10)
    finally:
        for sock in held:
            sock.close()


def _greets(daemon: DaemonProcess, client: str) -> bool:
    sock, line = greeting(daemon.port, client)
    sock.close()
    return line.startswith("220 ")


async def test_a_reload_gives_every_listener_process_the_new_tenants(
    relay_lab: RelayLab, smtp_sink: SmtpSink
) -> None:
    narrow = (
        '[[tenants]]\nname = "contoso"\nnetworks = ["127.0.0.5/32"]\ndomains = ["contoso.test"]'
    )
    wide = narrow.replace('["127.0.0.5/32"]', '["127.0.0.5/32", "127.0.0.9/32"]')
    config = relay_lab.config(tenants=narrow, listener="processes = 2")
    daemon = await relay_lab.start(config)
    code, text = await swaks_status(
        daemon.port, "--from", "a@contoso.test", "--to", "x@rcpt.test", client="127.0.0.9"
    )
    assert code != 0
    assert "550 5.7.1" in text
    config.write_text(config.read_text().replace(narrow, wide))
    daemon.process.send_signal(signal.SIGHUP)
    await until(lambda: "reloaded" in daemon.log.read_text(), within=20)
    for n in range(4):  # whichever process the kernel hands each connection to
        await swaks(daemon.port, "--from", "a@contoso.test", "--to", f"r{n}@rcpt.test",
                    client="127.0.0.9")  # fmt: skip
    await smtp_sink.wait_for(4, timeout=20)
