"""The daemon's memory for one large message (issue 13, item 1): peak RSS above baseline.

Each case starts its own ``hrmonitor run --config FILE`` (the config a user
would write: SQLite store, the shipped rules, the defaults for everything
else; DNS from a test server on loopback; the MX refuses on port 9, so the
message is received, routed, stored, answered, classified and deferred, but
never sent). The daemon is warmed first: a few ordinary messages and one
small message of the hostile shape, so lazy imports, the classification
thread and the store's caches are in the baseline. Then its peak RSS mark
(VmHWM) is reset (``/proc/PID/clear_refs``), the baseline is the mean VmRSS
over half a second, the message is sent (smtplib), and for three seconds
after the 250 a thread samples VmRSS every millisecond. Reported: peak
above baseline (VmHWM, and the highest sample) as a multiple of the
message's size, and what is still held after those seconds.

``--deliver`` puts Postfix's ``smtp-sink`` (``benchmarks/relay.py``'s Sink) behind
the MX name instead, so the message is also sent, and the window lasts until the
sink has counted it (at least three seconds).

Cases: the hostile message (1 MB of 15,000 nested multipart/mixed parts,
``tests/fixtures/hostile_mime.py``), an ordinary 1 MB message (a base64
attachment) and an ordinary 10 MB one, to tell proportional from constant.

``--diagnose`` runs the daemon in this process instead, under tracemalloc,
only to find where the copies are: traced (Python) peak above baseline, and
the biggest allocation sites in the fullest of the snapshots taken while the
message is processed. tracemalloc sees no allocator overhead and nothing
SQLite allocates; the RSS figures are the ones that count.

    .venv/bin/python benchmarks/hostile_memory.py [--cases hostile,plain1,plain10]
    MALLOC_ARENA_MAX=1 .venv/bin/python benchmarks/hostile_memory.py   # passed to the daemon
    .venv/bin/python benchmarks/hostile_memory.py --postgres   # the store on 127.0.0.1:5432
    .venv/bin/python benchmarks/hostile_memory.py --warm-large # a 1 MB message in the warm-up
    .venv/bin/python benchmarks/hostile_memory.py --deliver    # an MX that takes it
    .venv/bin/python benchmarks/hostile_memory.py --diagnose --cases hostile
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import random
import re
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.relay import SINK_HOST, Sink
from tests.fixtures.app_config import make_config
from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.hostile_mime import nested_multipart

SENDER = "bench@contoso.test"
RECIPIENT = "bob@rcpt.test"
# make_config's speed-ups for tests; the benchmark runs the defaults instead.
FAST = re.compile(
    r'^(interval|cooldown|tick|timeout|refresh|connect_timeout|command_timeout) = "[^"]*"\n'
    r"|^retry = .*\n",
    re.MULTILINE,
)


def ordinary(size: int, seed: int = 1) -> bytes:
    """A plain message of about ``size`` bytes: a short text and a base64 attachment."""
    rng = random.Random(seed)
    payload = base64.encodebytes(rng.randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
    head = (
        f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: report\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="xx"\r\n\r\n'
        "--xx\r\nContent-Type: text/plain\r\n\r\nThe report is attached.\r\n"
        "--xx\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        "\r\n"
    ).encode()
    return head + payload + b"--xx--\r\n"


CASES: dict[str, Callable[[], bytes]] = {
    "hostile": lambda: nested_multipart(15_000),
    "plain1": lambda: ordinary(1_000_000),
    "plain10": lambda: ordinary(10_000_000),
}


def status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def send(port: int, message: bytes) -> str:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="bench.test", timeout=120) as client:
        client.ehlo()
        client.mail(SENDER)
        client.rcpt(RECIPIENT)
        code, text = client.data(message)
    return f"{code} {text.decode(errors='replace')}"


WARM_LARGE = [False]  # --warm-large: one plain 1 MB message in the warm-up too


def warm(port: int) -> None:
    for n in range(5):
        send(port, ordinary(20_000, seed=n))
    send(port, nested_multipart(300))
    if WARM_LARGE[0]:  # SQLite's page caches (2 MB a connection) and malloc's pools filled
        send(port, ordinary(1_000_000, seed=99))
    time.sleep(1.0)  # classification of the warm-up messages (off the loop) settles


POSTGRES = os.environ.get(
    "HRMONITOR_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema on the local PostgreSQL for one daemon (dropped after): its URL."""
    from sqlalchemy import create_engine, make_url, text

    schema = f"hrm_memory_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(POSTGRES).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


DATABASE: list[str | None] = [None]  # None: SQLite in the run's directory
SINK: list[Sink] = []  # --deliver: the MX that takes the mail


def config_for(directory: Path, dns: DnsTestServer) -> Path:
    port = SINK[0].port if SINK else 9
    path = make_config(
        directory, nameserver=(dns.host, dns.port), delivery_port=port, database=DATABASE[0]
    )
    path.write_text(FAST.sub("", path.read_text()))
    return path


def start_dns(mx: str = "127.0.0.50") -> DnsTestServer:
    dns = DnsTestServer()
    dns.start()
    dns.add("contoso.test", "A", "127.0.0.5")
    dns.add("contoso.test", "MX", "10 mx.contoso.test.")
    dns.add("mx.contoso.test", "A", "127.0.0.5")
    dns.add("rcpt.test", "MX", "10 mx.rcpt.test.")
    dns.add("mx.rcpt.test", "A", mx)
    return dns


class Sampler(threading.Thread):
    """VmRSS of ``pid`` every millisecond until stopped: the highest and the last sample."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.highest = 0
        self.last = 0
        self.samples = 0
        self._stop_at = threading.Event()

    def run(self) -> None:
        while not self._stop_at.is_set():
            self.last = status(self.pid, "VmRSS")
            self.highest = max(self.highest, self.last)
            self.samples += 1
            time.sleep(0.001)

    def stop(self) -> None:
        self._stop_at.set()
        self.join()


def measure(name: str, message: bytes, directory: Path, dns: DnsTestServer) -> None:
    daemon = DaemonProcess(config_for(directory, dns), directory / f"{name}.log")
    try:
        pid = daemon.process.pid
        warm(daemon.port)
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        readings = []
        for _ in range(50):
            readings.append(status(pid, "VmRSS"))
            time.sleep(0.01)
        baseline = statistics.mean(readings)
        sampler = Sampler(pid)
        sampler.start()
        delivered = SINK[0].count() + 1 if SINK else 0
        reply = send(daemon.port, message)
        time.sleep(3.0)  # classification, the delivery attempt and its deferral
        while SINK and SINK[0].count() < delivered:
            time.sleep(0.1)
        sampler.stop()
        hwm = status(pid, "VmHWM")
        size = len(message)
        print(
            f"{name:8} {size / 1e6:6.2f} MB  baseline {baseline / 1e6:6.1f} MB  "
            f"peak +{(hwm - baseline) / 1e6:6.2f} MB = {(hwm - baseline) / size:4.2f}x (VmHWM), "
            f"+{(sampler.highest - baseline) / 1e6:6.2f} MB = "
            f"{(sampler.highest - baseline) / size:4.2f}x (highest of {sampler.samples} samples); "
            f"held after 3 s +{(sampler.last - baseline) / 1e6:5.2f} MB  [{reply[:3]}]"
        )
    finally:
        daemon.stop()


def diagnose(name: str, message: bytes, directory: Path, dns: DnsTestServer) -> None:
    """The daemon in this process under tracemalloc: where the Python-level copies are."""
    import asyncio

    from hrmonitor.app.daemon import Daemon
    from hrmonitor.config.loading import load_config

    config = load_config(config_for(directory, dns))
    port: list[int] = []

    def client() -> None:
        while not port:
            time.sleep(0.05)
        warm(port[0])
        snapshots = []
        message_file = directory / "message.eml"
        message_file.write_bytes(message)
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        # The client is another process: nothing of its own is traced.
        sender = subprocess.Popen(
            [sys.executable, __file__, "--send", str(port[0]), str(message_file)]
        )
        until = None
        while until is None or time.monotonic() < until:
            snapshots.append(tracemalloc.take_snapshot())
            time.sleep(0.05)
            if until is None and sender.poll() is not None:
                until = time.monotonic() + 2.0
        peak = tracemalloc.get_traced_memory()[1]
        fullest = max(snapshots, key=lambda s: sum(t.size for t in s.traces))
        size = len(message)
        print(
            f"{name}: traced (Python) peak +{(peak - baseline) / 1e6:.2f} MB = "
            f"{(peak - baseline) / size:.2f}x the message ({len(snapshots)} snapshots)"
        )
        filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
        for stat in fullest.filter_traces(filters).statistics("traceback")[:8]:
            if stat.size < size // 20:
                break
            print(f"  {stat.size / 1e6:6.2f} MB in {stat.count} block(s):")
            for line in stat.traceback.format(limit=4, most_recent_first=True):
                print("     " + line)
        os.kill(os.getpid(), signal.SIGTERM)

    async def main() -> None:
        daemon = Daemon(config)
        task = asyncio.create_task(daemon.run())
        while not port:
            await asyncio.sleep(0.05)
            if daemon.listener_port is not None:
                port.append(daemon.listener_port)
            if task.done():
                task.result()
        await task

    tracemalloc.start(8)
    threading.Thread(target=client, daemon=True).start()
    asyncio.run(main())
    tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="hostile,plain1,plain10")
    parser.add_argument("--diagnose", action="store_true", help="in-process, tracemalloc")
    parser.add_argument("--postgres", action="store_true", help="the store on PostgreSQL")
    parser.add_argument("--warm-large", action="store_true", help="warm with 1 MB too")
    parser.add_argument("--deliver", action="store_true", help="an MX (smtp-sink) that takes it")
    parser.add_argument("--send", nargs=2, help=argparse.SUPPRESS)  # PORT FILE: the client
    args = parser.parse_args()
    WARM_LARGE[0] = args.warm_large
    if args.send:
        print(send(int(args.send[0]), Path(args.send[1]).read_bytes()))
        return
    arenas = os.environ.get("MALLOC_ARENA_MAX", "unset")
    store = "PostgreSQL" if args.postgres else "SQLite"
    mx = "smtp-sink" if args.deliver else "refusing (port 9)"
    print(f"MALLOC_ARENA_MAX={arenas}; store {store}; MX {mx}; the daemon as a process per case")
    sink_dir = tempfile.TemporaryDirectory()
    if args.deliver:
        SINK.append(Sink(Path(sink_dir.name)))
    dns = start_dns(SINK_HOST if args.deliver else "127.0.0.50")
    try:
        for name in args.cases.split(","):
            message = CASES[name]()
            with contextlib.ExitStack() as stack:
                tmp = stack.enter_context(tempfile.TemporaryDirectory())
                if args.postgres:
                    DATABASE[0] = stack.enter_context(postgres_schema())
                if args.diagnose:
                    diagnose(name, message, Path(tmp), dns)
                else:
                    measure(name, message, Path(tmp), dns)
    finally:
        dns.stop()
        for sink in SINK:
            sink.stop()
        sink_dir.cleanup()


if __name__ == "__main__":
    main()
