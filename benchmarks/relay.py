"""Relay throughput: smtp-source -> hrmonitor -> smtp-sink, and the same load through Postfix.

Run as root (Postfix's ``postfix start`` needs it) from the repository root::

    .venv/bin/python benchmarks/relay.py                 # 5,000 x 2 KB, 20 sessions, both MTAs
    .venv/bin/python benchmarks/relay.py --memory 20000  # plus the 20,000-message RSS run

Everything runs on loopback: smtp-source connects from 127.0.0.1, hrmonitor
listens on 127.0.0.1, Postfix on 127.0.0.70; both deliver from a bound
source address (hrmonitor's normal pool 127.0.0.10-11, Postfix's
``smtp_bind_address = 127.0.0.71``) to Postfix's smtp-sink on 127.0.0.60.

"Delivered messages/s" = messages counted by smtp-sink / seconds from the
start of smtp-source until smtp-sink counted the last one. Both sides are
durable before they acknowledge: hrmonitor commits to SQLite (WAL,
synchronous=FULL, group commit) before 250; Postfix fsyncs its queue file
(its default). hrmonitor runs as its own process (this script with
``serve``); its peak RSS is the kernel's VmHWM for that process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SINK_HOST = "127.0.0.60"
POSTFIX_HOST = "127.0.0.1"  # Postfix insists on an interface address for inet_interfaces
POSTFIX_BIND = "127.0.0.71"
NORMAL_IPS = ("127.0.0.10", "127.0.0.11")
HIGH_IPS = ("127.0.0.20",)
SBIN = ("/usr/sbin", "/usr/lib/postfix/sbin", "/sbin")


def binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))
    if found is None:
        sys.exit(f"{name} is not installed (Debian: postfix)")
    return found


def free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --- the hrmonitor side: a composition of the real listener, queue and runner ----------


async def serve(
    db: str, port: int, sink_port: int, concurrency: int, role: str, no_limits: bool
) -> None:
    import ipaddress

    from hrmonitor.adapters.clock import SystemClock
    from hrmonitor.adapters.rule_files import (
        SHIPPED_RULES,
        load_bounce_patterns,
        load_routing_files,
    )
    from hrmonitor.adapters.smtp_in import Listener, ListenerSettings, Tenant
    from hrmonitor.adapters.smtp_out import Connections, OutboundSettings
    from hrmonitor.adapters.store.engine import create_store_engine
    from hrmonitor.adapters.store.migrate import upgrade
    from hrmonitor.adapters.store.queue.repository import QueueRepository
    from hrmonitor.core.delivery.retry import RetryPolicy
    from hrmonitor.core.model import IPState, Pool, PoolPolicy, RiskClass
    from hrmonitor.core.mx import DomainStatus, MxHost, MxOutcome, MxResult
    from hrmonitor.core.rotation.selection import IpCandidate
    from hrmonitor.core.routing.decide import Tenant as RoutingTenant
    from hrmonitor.core.surge import SurgeSettings
    from hrmonitor.services.relay.routing import Router, RoutingSettings
    from hrmonitor.services.relay.runner import Relay, RelaySettings, route_with
    from hrmonitor.services.relay.source_ip import PoolPicker
    from hrmonitor.services.surge.traffic import TrafficFeed
    from hrmonitor.services.surge.watcher import SurgeWatcher

    if no_limits:
        # What-if experiment only: routing's per-sender recipient window counts every
        # event of the last day for every message (O(n) per message, O(n^2) per run);
        # this shows what the engine does without that cost. Off by default.
        from hrmonitor.core.routing.limits import RecipientWindow

        RecipientWindow.counts = lambda self, mail_from, now: (0, 0)  # type: ignore[method-assign]

    class ExistingDomains:
        async def sender_domain_status(self, domain: str) -> DomainStatus:
            return DomainStatus.EXISTS

    pools = [
        Pool("normal", RiskClass.NORMAL, NORMAL_IPS, (), PoolPolicy(), timedelta(minutes=30)),
        Pool("high-risk", RiskClass.HIGH, HIGH_IPS, (), PoolPolicy(), timedelta(minutes=15)),
    ]
    router = Router(
        load_routing_files([ROOT / "rules" / "routing.toml"]),
        pools,
        RoutingSettings(limits=_no_limits()),
        ExistingDomains(),
        tenants=[RoutingTenant("bench", ("127.0.0.0/8",), ())],
    )

    route = route_with(router)

    async def mx(domain: str) -> MxResult:
        return MxResult(domain, MxOutcome.HOSTS, (MxHost(0, SINK_HOST),))

    async def candidates(pool: str, now: object) -> list[IpCandidate]:
        ips = NORMAL_IPS if pool == "normal" else HIGH_IPS
        return [IpCandidate(ip, IPState.ACTIVE) for ip in ips]

    async def no_alerts(_alert: object) -> None:
        return None

    feed = TrafficFeed(
        SurgeWatcher(SurgeSettings(), no_alerts), load_bounce_patterns(SHIPPED_RULES)
    )
    engine = create_store_engine(f"sqlite:///{db}")
    upgrade(engine)
    clock = SystemClock()
    connections = Connections(
        OutboundSettings(port=sink_port, helo_name="hrmonitor.bench", connect_timeout=10,
                         command_timeout=30, max_messages_per_connection=1000)
    )  # fmt: skip
    relay = Relay(
        queue=QueueRepository(engine),
        route=route,
        picker=PoolPicker(candidates),  # type: ignore[arg-type]
        mx=mx,
        sender=connections,
        clock=clock,
        settings=RelaySettings(
            hostname="hrmonitor.bench",
            pool_ips={p.name: frozenset(p.all_ips) for p in pools},
            retry=RetryPolicy(),
            concurrency=concurrency,
            per_destination=concurrency,
            # a runner in its own process learns of new mail by polling, not by the event
            poll_seconds=0.05 if role == "runner" else 1.0,
        ),
        stored_form=router.stored_form,
        # as the daemon: every accepted message classified, every reply fed to the watcher
        on_accepted=feed.accepted_off_loop,
        on_outcome=feed.outcome,
    )
    listener = Listener(
        ListenerSettings(
            host="127.0.0.1", port=port, hostname="hrmonitor.bench",
            tenants=(Tenant("bench", (ipaddress.ip_network("127.0.0.0/8"),)),),
            reuse_port=True,
        ),
        relay.accept,
        clock,
    )  # fmt: skip
    if role != "listener":
        await relay.recover()
    if role != "runner":
        await listener.start()
    runner = asyncio.create_task(relay.run()) if role != "listener" else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("READY", flush=True)
    await stop.wait()
    if role != "runner":
        await listener.stop()
    await relay.stop()
    if runner is not None:
        await runner
    await connections.close()


def _no_limits() -> object:
    from hrmonitor.core.routing.limits import SendingLimits

    return SendingLimits(recipients_per_hour=10**9, recipients_per_day=10**9)


# --- peers ------------------------------------------------------------------------------


class Sink:
    """Postfix's smtp-sink with its running counter (``-c``) written to a file."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port(SINK_HOST)
        self.out = workdir / f"sink-{self.port}.txt"
        self._file = self.out.open("wb")
        self.process = subprocess.Popen(
            [binary("smtp-sink"), "-c", "-u", "nobody", f"{SINK_HOST}:{self.port}", "256"],
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def count(self) -> int:
        tail = self.out.read_bytes()[-200:].decode(errors="replace")
        found = re.findall(r"mesg=(\d+)", tail)
        return int(found[-1]) if found else 0

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self._file.close()


def source(
    host: str, port: int, messages: int, sessions: int, size: int
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [binary("smtp-source"), "-s", str(sessions), "-m", str(messages), "-l", str(size),
         "-f", "bench@bench.test", "-t", "rcpt@sink.test", "-M", "source.bench",
         f"{host}:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def measure(sink: Sink, host: str, port: int, messages: int, sessions: int, size: int,
            sample: object = None, timeout: float = 900) -> dict[str, float]:  # fmt: skip
    started = time.monotonic()
    client = source(host, port, messages, sessions, size)
    accepted_at = None
    while True:
        if accepted_at is None and client.poll() is not None:
            accepted_at = time.monotonic()
        count = sink.count()
        if callable(sample):
            sample()
        if count >= messages or time.monotonic() - started > timeout:
            break
        time.sleep(0.05)
    done = time.monotonic()
    if accepted_at is None:
        client.wait(60)
        accepted_at = time.monotonic()
    errors = client.stderr.read().decode(errors="replace") if client.stderr else ""
    return {
        "delivered": count,
        "seconds": done - started,
        "rate": count / (done - started),
        "accept_seconds": accepted_at - started,
        "source_rc": float(client.returncode or 0),
        "source_errors": float(len(errors.splitlines())),
    }


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_hrmonitor(workdir: Path, messages: int, sessions: int, size: int,
                  concurrency: int, split: bool,
                  listeners: int = 1, uvloop: bool = False, no_limits: bool = False,
                  ) -> tuple[dict[str, float], list[float]]:  # fmt: skip
    """One measured run; ``split`` runs the listener and the runner as two processes."""
    sink = Sink(workdir)
    port = free_port("127.0.0.1")
    db = workdir / f"hrmonitor-{port}.db"
    children = []
    try:
        roles = ["listener"] * listeners + ["runner"] if split else ["all"]
        for role in roles:
            child = subprocess.Popen(
                [sys.executable, __file__, "serve", "--db", str(db), "--port", str(port),
                 "--sink-port", str(sink.port), "--concurrency", str(concurrency),
                 "--role", role, *(["--uvloop"] if uvloop else []),
                 *(["--no-sending-limits"] if no_limits else [])],
                stdout=subprocess.PIPE, cwd=ROOT,
            )  # fmt: skip
            children.append(child)
            assert child.stdout is not None
            if child.stdout.readline().strip() != b"READY":
                raise RuntimeError(f"hrmonitor ({role}) did not start")
        result = measure(sink, "127.0.0.1", port, messages, sessions, size)
        rss = [peak_rss_mb(child.pid) for child in children]
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
            child.wait(60)
        sink.stop()
    return result, rss


POSTFIX_MAIN = """\
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench
mydomain = bench
myorigin = postfix.bench
mydestination =
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [{sink}]:{sink_port}
default_transport = smtp
smtp_bind_address = {bind}
smtp_bind_address_enforce = yes
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
maillog_file = {dir}/postfix.log
maillog_file_prefixes = {dir}
append_dot_mydomain = no
biff = no
alias_maps =
alias_database =
local_recipient_maps =
default_process_limit = 100
smtp_destination_concurrency_limit = 20
"""


def postfix_dir(workdir: Path, port: int, sink_port: int) -> Path:
    conf = workdir / f"postfix-{port}"
    (conf / "queue").mkdir(parents=True)
    (conf / "data").mkdir()
    main = POSTFIX_MAIN.format(dir=conf, host=POSTFIX_HOST, sink=SINK_HOST, sink_port=sink_port,
                               bind=POSTFIX_BIND)  # fmt: skip
    (conf / "main.cf").write_text(main)
    master = Path("/etc/postfix/master.cf").read_text()
    master = re.sub(r"(?m)^smtp(\s+inet\s)", rf"{POSTFIX_HOST}:{port}\1", master, count=1)
    (conf / "master.cf").write_text(master)
    # Postfix refuses world-writable parents and wants its queue owned by postfix.
    os.chmod(workdir, 0o755)
    os.chmod(conf, 0o755)
    subprocess.run([binary("postfix"), "-c", str(conf), "set-permissions"], check=False,
                   capture_output=True)  # fmt: skip
    subprocess.run([binary("postfix"), "-c", str(conf), "check"], check=False)
    return conf


def run_postfix(workdir: Path, messages: int, sessions: int, size: int) -> dict[str, float]:
    sink = Sink(workdir)
    port = free_port(POSTFIX_HOST)
    conf = postfix_dir(workdir, port, sink.port)
    command = [binary("postfix"), "-c", str(conf)]
    started = subprocess.run([*command, "start"], check=False, capture_output=True)
    if started.returncode != 0:
        sink.stop()
        raise RuntimeError(f"postfix start failed: {started.stderr.decode()}")
    try:
        _wait_listening(POSTFIX_HOST, port)
        return measure(sink, POSTFIX_HOST, port, messages, sessions, size)
    finally:
        subprocess.run([*command, "stop"], check=False, capture_output=True)
        sink.stop()


def _wait_listening(host: str, port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    srv = sub.add_parser("serve")
    srv.add_argument("--db", required=True)
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--sink-port", type=int, required=True)
    srv.add_argument("--concurrency", type=int, default=40)
    srv.add_argument("--role", choices=("all", "listener", "runner"), default="all")
    srv.add_argument("--uvloop", action="store_true")
    srv.add_argument("--no-sending-limits", action="store_true")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--concurrency", type=int, default=40)
    parser.add_argument("--memory", type=int, default=0, help="also run N messages for peak RSS")
    parser.add_argument("--skip-postfix", action="store_true")
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs of both MTAs")
    parser.add_argument(
        "--uvloop", action=argparse.BooleanOptionalAction, default=True,
        help="run hrmonitor on uvloop, as the daemon does (--no-uvloop: plain asyncio)",
    )  # fmt: skip
    parser.add_argument(
        "--no-sending-limits", action="store_true",
        help="what-if: stub routing's per-sender recipient window (see README)",
    )  # fmt: skip
    parser.add_argument(
        "--listeners", type=int, default=1,
        help="listener processes sharing the port (SO_REUSEPORT); each keeps its own limits",
    )  # fmt: skip
    parser.add_argument(
        "--split", action="store_true",
        help="listener and runner as two processes on one database (default: one process)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.command == "serve":
        # Logged as the daemon logs (INFO, a line per message accepted and per attempt,
        # the chatty libraries quiet), to a file beside the database, as Postfix logs
        # to its maillog_file: the comparison includes both sides' logging.
        from hrmonitor.cli import configure_logging

        configure_logging(logging.INFO, filename=str(Path(args.db).with_suffix(".log")))
        if args.uvloop:
            import uvloop  # the daemon runs on uvloop (hrmonitor.app.daemon.run_daemon)

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.run(
            serve(args.db, args.port, args.sink_port, args.concurrency, args.role,
                  args.no_sending_limits)
        )  # fmt: skip
        return
    with tempfile.TemporaryDirectory(prefix="hrmonitor-bench-") as tmp:
        workdir = Path(tmp)
        load = f"{args.messages} x {args.size} B, {args.sessions} sessions"
        split = args.split
        shape = "listener + runner processes" if split else "one process"
        if args.uvloop:
            shape += ", uvloop"
        if args.no_sending_limits:
            shape += ", sending-limit window stubbed"
        shape_args = (args.concurrency, split, args.listeners, args.uvloop,
                      args.no_sending_limits)  # fmt: skip
        ratios: list[float] = []
        for round_no in range(1, args.rounds + 1):
            # Alternate the two MTAs round by round: the machine's load drifts, and a
            # ratio of runs made seconds apart is fairer than one of runs made minutes apart.
            hr, hr_rss = run_hrmonitor(
                workdir, args.messages, args.sessions, args.size, *shape_args
            )
            print(f"[{round_no}] hrmonitor ({shape}): {load}: {hr['delivered']:.0f} delivered "
                  f"in {hr['seconds']:.2f} s = {hr['rate']:.0f} msg/s (accepted in "
                  f"{hr['accept_seconds']:.2f} s; peak RSS {_mb(hr_rss)})", flush=True)  # fmt: skip
            if args.skip_postfix:
                continue
            pf = run_postfix(workdir, args.messages, args.sessions, args.size)
            ratios.append(hr["rate"] / pf["rate"])
            print(f"[{round_no}] postfix: {load}: {pf['delivered']:.0f} delivered in "
                  f"{pf['seconds']:.2f} s = {pf['rate']:.0f} msg/s (accepted in "
                  f"{pf['accept_seconds']:.2f} s); ratio {ratios[-1]:.2f}x",
                  flush=True)  # fmt: skip
        if ratios:
            print(f"ratio hrmonitor/postfix: median {statistics.median(ratios):.2f}x "
                  f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x, {len(ratios)} rounds)",
                  flush=True)  # fmt: skip
        if args.memory:
            mem, mem_rss = run_hrmonitor(
                workdir, args.memory, args.sessions, args.size, *shape_args
            )
            print(f"hrmonitor memory run ({shape}): {mem['delivered']:.0f} of {args.memory} "
                  f"delivered in {mem['seconds']:.2f} s = {mem['rate']:.0f} msg/s; "
                  f"peak RSS {_mb(mem_rss)}", flush=True)  # fmt: skip


def _mb(values: list[float]) -> str:
    return " + ".join(f"{v:.0f} MB" for v in values)


if __name__ == "__main__":
    main()
