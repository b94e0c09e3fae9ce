"""Hostile MIME (issue 13, item 1): what 1 MB of 15,000 nested multiparts costs.

Three measurements, all on loopback:

1. ``hrmonitor bounce --json FILE`` as a process: wall time and peak RSS, beside
   the same command on a small bounce (the start-up baseline).
2. ``classify_message`` in-process: seconds, and the peak of traced Python
   memory as a multiple of the message size.
3. ``hrmonitor run`` as a process (a test DNS server on loopback, no MX needed):
   a client sends the hostile message; as soon as its final dot is written a
   second client sends NOOPs, one after another, until the first client has its
   250 and a second more has passed. Reported: the slowest NOOP round trip, the
   250's delay after the dot, and the daemon's peak RSS (VmHWM) above its RSS
   before the message.

    .venv/bin/python benchmarks/hostile_mime.py [--levels 15000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hrmonitor.core.bounce.classify import classify_message
from tests.fixtures.app_config import make_config
from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.hostile_mime import nested_multipart

SMALL = Path(__file__).resolve().parents[1] / "tests/data/bounces/own/postfix_autosubmitted_01.eml"


def cli_run(file: Path) -> tuple[float, int]:
    """Seconds and peak RSS (bytes) of ``hrmonitor bounce --json FILE``."""
    console_script = str(Path(sys.executable).with_name("hrmonitor"))
    start = time.perf_counter()
    process = subprocess.Popen(
        [console_script, "bounce", "--json", str(file)], stdout=subprocess.DEVNULL
    )
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = 0
    return time.perf_counter() - start, usage.ru_maxrss * 1024


def rss(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


async def reply(reader: asyncio.StreamReader) -> str:
    while True:
        line = (await reader.readline()).decode()
        if line[3:4] != "-":
            return line


async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, text: str) -> str:
    writer.write(text.encode() + b"\r\n")
    await writer.drain()
    return await reply(reader)


async def against_daemon(port: int, pid: int, message: bytes) -> tuple[float, float, int]:
    """(slowest NOOP, 250 delay after the dot, peak RSS above the RSS before)."""
    sender = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.5", 0))
    other = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.5", 0))
    for reader, writer in (sender, other):
        await reply(reader)
        await command(reader, writer, "EHLO bench.test")
    await command(*sender, "MAIL FROM:<a@contoso.test>")
    await command(*sender, "RCPT TO:<nested@rcpt.test>")
    await command(*sender, "DATA")
    before = rss(pid, "VmRSS")
    sender[1].write(message + b".\r\n")
    await sender[1].drain()
    dot = time.perf_counter()
    accepted = asyncio.create_task(reply(sender[0]))
    slowest = 0.0
    done_at = None
    while done_at is None or time.perf_counter() - done_at < 1.0:
        start = time.perf_counter()
        await command(*other, "NOOP")
        slowest = max(slowest, time.perf_counter() - start)
        if done_at is None and accepted.done():
            done_at = time.perf_counter()
    answer = accepted.result()
    assert answer.startswith("250"), answer
    for _, writer in (sender, other):
        writer.close()
    return slowest, done_at - dot, rss(pid, "VmHWM") - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, default=15_000)
    args = parser.parse_args()
    message = nested_multipart(args.levels)
    size = len(message)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        hostile = directory / "nested.eml"
        hostile.write_bytes(message)
        print(f"message: {args.levels} nested multipart/mixed levels, {size / 1e6:.2f} MB")

        small_s, small_rss = cli_run(SMALL)
        big_s, big_rss = cli_run(hostile)
        print(
            f"hrmonitor bounce, small bounce: {small_s:6.2f} s, peak RSS {small_rss / 1e6:6.1f} MB"
        )
        print(
            f"hrmonitor bounce, nested:       {big_s:6.2f} s, peak RSS {big_rss / 1e6:6.1f} MB "
            f"(+{(big_rss - small_rss) / size:.1f}x the message)"
        )

        tracemalloc.start()
        start = time.perf_counter()
        kind = classify_message(message).kind
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(
            f"classify_message in-process:    {seconds:6.3f} s (traced), kind {kind}, "
            f"peak traced {peak / size:.1f}x the message"
        )

        dns = DnsTestServer()
        dns.start()
        daemon = None
        try:
            dns.add("contoso.test", "A", "127.0.0.5")
            dns.add("contoso.test", "MX", "10 mx.contoso.test.")
            dns.add("mx.contoso.test", "A", "127.0.0.5")
            config = make_config(directory, nameserver=(dns.host, dns.port), delivery_port=9)
            daemon = DaemonProcess(config, directory / "daemon.log")
            time.sleep(2.0)  # the first sweep and start-up work settle
            pid = daemon.process.pid
            slowest, delay, growth = asyncio.run(against_daemon(daemon.port, pid, message))
            print(
                f"daemon: slowest NOOP on a second connection {slowest * 1000:6.1f} ms; "
                f"250 after the dot {delay * 1000:6.1f} ms; peak RSS +{growth / 1e6:.1f} MB "
                f"({growth / size:.1f}x the message)"
            )
        finally:
            if daemon is not None:
                daemon.stop()
            dns.stop()


if __name__ == "__main__":
    main()
