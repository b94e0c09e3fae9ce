"""Reaction time of the daemon as run: a listing, and a blocklist-naming 5xx, seen from outside.

Run from the repository root (needs the ``rbldnsd`` binary)::

    .venv/bin/python benchmarks/reaction.py                  # 2 s sweeps, 3 listings, 3 replies
    .venv/bin/python benchmarks/reaction.py --interval 5 --listings 5 --replies 5

The product is the console script a user runs, ``hrmonitor run --config FILE``,
as its own process, with a config a user could write (:func:`daemon_config`):
SQLite, metrics on, the normal INFO log (to a file), the shipped routing,
feedback and bounce rules, sweeps every ``--interval`` seconds, the rotation
controller, its tick and every other setting at its default. Its peers, all on
loopback: rbldnsd serving ``bl.test`` (the only list), a DNS server for the
MX/A records of the destinations (``benchmarks/relay.py``'s), an aiosmtpd MX
on 127.0.5.50 that stamps each RCPT and each arrival with the client address
and the wall-clock time, and an aiosmtplib client feeding a steady stream of
null-sender mail (which the shipped routing rules send high-risk) at
``--rate`` messages a second. Nothing in the daemon is stubbed.

1. **Listing**: at a random point of the sweep cycle an IP that is sending is
   added to ``bl.test`` (its zone file replaced, rbldnsd HUPed). Measured from
   the file's replacement: the last message that arrived at the MX from that
   IP, and its retirement (the ``rotation.retire`` row of ``hrmonitor history
   IP --json``). Bound: one sweep interval + 2 s.
2. **Blocklist-naming 5xx**: for a fresh destination ``dN.test`` (its own MX
   host ``mx.dN.test``, so the reply's scope, the MX's own domain, is that
   destination alone), the MX answers the first
   attempt with ``554 5.7.1 ... Client host [IP] blocked using bl.test`` and
   keeps refusing that IP; others get 250. Measured at the MX: whether the
   next attempt to ``dN.test`` came from another IP, the time between the 554
   and that attempt (the stream sends to ``dN.test`` every ``2/rate`` s, so
   this is mostly the wait for the next message), and how many of the next 20
   attempts to ``dN.test`` (two rounds of the pool: the round-robin alone would
   come back to the IP) still came from the refused IP.

``--decision N`` adds one row measured inside a process, labelled so: after
the daemon stopped, the rotation controller and monitor are built from the same
config by ``hrmonitor.app.compose`` (as the daemon builds them) on the
daemon's database, and ``on_reply`` of N blocklist 5xx replies (each from a
destination of its own, each dated after the previous one's pause and window,
so that none adds up to a suspension everywhere) is timed until the picker's
view no longer offers that IP for that destination.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test peers (tests.fixtures) and benchmarks.relay

from benchmarks.relay import Daemon, free_port  # noqa: E402

NORMAL = ("127.0.5.10", "127.0.5.11")
HIGH = tuple(f"127.0.5.{n}" for n in range(20, 28))  # 8 in rotation
STANDBY = ("127.0.5.28", "127.0.5.29")
SINK_HOST = "127.0.5.50"
STREAM_DOMAIN = "rcpt.test"
ZONE_FILE = "bl4.zone"
ZONE_TEXT = ":127.0.0.2:Listed, see https://bl.test/?ip=$\n127.0.0.2\n"
CATALOGUE = """
[lists.bl]
zone = "bl.test"
families = ["ipv4"]
[lists.bl.codes]
"127.0.0.2" = { tag = "SBL", class = "listed", severity = "critical" }
"""
BLOCKED = "554 5.7.1 Service unavailable; Client host [{ip}] blocked using bl.test"


def quoted(ips: tuple[str, ...]) -> str:
    return ", ".join(f'"{ip}"' for ip in ips)


def daemon_config(workdir: Path, *, port: int, sink_port: int, metrics_port: int,
                  dns: tuple[str, int], rbl: tuple[str, int], interval: int) -> Path:  # fmt: skip
    """What an operator writes: the shipped rules, defaults for everything not about ports."""
    (workdir / "catalogue.toml").write_text(CATALOGUE)
    text = f"""
[database]
url = "sqlite:///{workdir / "hrmonitor.db"}"

[dns]
nameservers = ["{dns[0]}"]
port = {dns[1]}

[dnsbl]
nameservers = ["{rbl[0]}"]
port = {rbl[1]}
catalogue = ["catalogue.toml"]
zones = ["bl"]
interval = "{interval}s"

[pools.normal]
risk = "normal"
ips = [{quoted(NORMAL)}]

[pools.high-risk]
risk = "high"
ips = [{quoted(HIGH)}]
standby = [{quoted(STANDBY)}]
min_active = 3

[listener]
bind = "127.0.0.1:{port}"
hostname = "hrmonitor.reaction"

[[tenants]]
name = "lab"
networks = ["127.0.0.0/8"]
domains = ["lab.test"]

[delivery]
port = {sink_port}

[metrics]
bind = "127.0.0.1:{metrics_port}"
"""
    path = workdir / "hrmonitor.toml"
    path.write_text(text)
    return path


@dataclass
class Mx:
    """The MX's view: every RCPT (time, client, recipient, reply) and every arrival."""

    rcpts: list[tuple[float, str, str, str]] = field(default_factory=list)
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    refuse: dict[str, str | None] = field(default_factory=dict)  # domain -> the refused IP

    def reply_to(self, peer: str, address: str) -> str:
        domain = address.rsplit("@", 1)[-1].lower()
        if domain in self.refuse:
            if self.refuse[domain] is None:  # the first attempt to this domain is refused
                self.refuse[domain] = peer
            if self.refuse[domain] == peer:
                return BLOCKED.format(ip=peer)
        return "250 2.1.5 ok"

    def last_from(self, ip: str) -> float | None:
        return max((t for t, peer in self.arrivals if peer == ip), default=None)

    def sending(self, since: float) -> set[str]:
        return {peer for t, peer in self.arrivals if t >= since}


async def start_mx(mx: Mx) -> tuple[Any, int]:
    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                              options: list[str]) -> str:  # fmt: skip
            reply = mx.reply_to(session.peer[0], address)
            mx.rcpts.append((time.time(), session.peer[0], address.lower(), reply))
            if reply.startswith("250"):
                envelope.rcpt_tos.append(address)
            return reply

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mx.arrivals.append((time.time(), session.peer[0]))
            return "250 2.0.0 ok"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(), hostname="mx.reaction.test", loop=loop), host=SINK_HOST, port=0
    )
    return server, int(server.sockets[0].getsockname()[1])


@dataclass
class Stream:
    """A steady stream of null-sender mail, one recipient a message, cycling ``domains``."""

    port: int
    rate: float
    domains: list[str] = field(default_factory=lambda: [STREAM_DOMAIN])
    sent: int = 0
    refused: int = 0
    last_error: str = ""

    async def run(self, stop: asyncio.Event) -> None:
        import aiosmtplib

        gap = 1 / self.rate
        while not stop.is_set():
            try:
                async with aiosmtplib.SMTP(hostname="127.0.0.1", port=self.port,
                                           timeout=30) as smtp:  # fmt: skip
                    while not stop.is_set():
                        began = time.monotonic()
                        self.sent += 1
                        rcpt = f"m{self.sent}@{self.domains[self.sent % len(self.domains)]}"
                        body = f"Subject: reaction {self.sent}\r\n\r\nx\r\n"
                        await smtp.sendmail("", [rcpt], body)  # MAIL FROM:<>
                        await asyncio.sleep(max(0.0, gap - (time.monotonic() - began)))
            except (aiosmtplib.SMTPException, OSError) as error:
                self.refused += 1
                self.last_error = str(error)
                await asyncio.sleep(0.5)


async def history(config: Path, ip: str) -> dict[str, Any]:
    script = Path(sys.executable).parent / "hrmonitor"
    process = await asyncio.create_subprocess_exec(
        str(script), "history", ip, "--json", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"hrmonitor history {ip}: {err.decode()}")
    data: dict[str, Any] = json.loads(out)
    return data


def retired_at(data: dict[str, Any]) -> float | None:
    """When the audit trail says the IP went to retired (epoch seconds), if it did."""
    from datetime import datetime

    for event in data.get("audit", []):
        if event.get("kind") == "state" and event.get("to") == "retired":
            return datetime.fromisoformat(event["at"]).timestamp()
    return None


async def listing_trial(rng: random.Random, mx: Mx, stream: Stream, rbl: Any, config: Path,
                        interval: int, listed: set[str]) -> dict[str, Any]:  # fmt: skip
    """List an IP that is sending; when it stopped arriving, and when it was retired."""
    give_up = time.monotonic() + 60
    while True:  # an IP of the high-risk pool that delivered in the last 2 s
        sending = sorted((mx.sending(time.time() - 2) & set(HIGH + STANDBY)) - listed)
        if sending:
            break
        if time.monotonic() > give_up:
            raise RuntimeError(f"no high-risk IP delivered for 60 s; the stream: {stream}")
        await asyncio.sleep(0.2)
    victim = rng.choice(sending)
    await asyncio.sleep(rng.uniform(0, interval))  # anywhere in the sweep cycle
    changed = time.time()
    await asyncio.to_thread(rbl.list_ip, victim)  # file replaced, HUP, served
    served = time.time()
    listed.add(victim)
    await asyncio.sleep(interval + 5)  # past the bound: anything later is a failure
    retired = retired_at(await history(config, victim))
    last = mx.last_from(victim)
    return {
        "ip": victim,
        "served_s": served - changed,
        "retired_s": None if retired is None else retired - changed,
        "last_message_s": max(0.0, (last or changed) - changed),
        "sent_after_retirement": sum(
            1 for t, peer in mx.arrivals if peer == victim and retired and t > retired
        ),
    }


async def reply_trial(n: int, mx: Mx, stream: Stream, dns: Any) -> dict[str, Any]:
    """Refuse the first attempt to a fresh destination naming bl.test; what comes next."""
    domain = f"d{n}.test"  # its MX mx.dN.test: the reply's scope is dN.test alone
    dns.add(domain, "MX", f"10 mx.{domain}.")
    dns.add(f"mx.{domain}", "A", SINK_HOST)
    mx.refuse[domain] = None
    stream.domains = [STREAM_DOMAIN, domain]
    attempts: list[tuple[float, str, str, str]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        attempts = [r for r in mx.rcpts if r[2].endswith("@" + domain)]
        # The refused one and two rounds of the pool after it: without the suspension the
        # round-robin would have come back to the refused IP by then.
        if len(attempts) >= 1 + 2 * len(HIGH + STANDBY):
            break
        await asyncio.sleep(0.1)
    stream.domains = [STREAM_DOMAIN]
    if len(attempts) < 2:
        return {"domain": domain, "attempts": len(attempts), "avoided": None}
    refused_ip = mx.refuse[domain]
    (t_reply, _, _, _), (t_next, next_ip, _, _) = attempts[0], attempts[1]
    return {
        "domain": domain,
        "ip": refused_ip,
        "next_ip": next_ip,
        "avoided": next_ip != refused_ip,
        "next_attempt_s": t_next - t_reply,
        "later_from_refused_ip": sum(1 for r in attempts[1:] if r[1] == refused_ip),
        "attempts": len(attempts),
    }


async def decision_row(config_path: Path, trials: int) -> dict[str, Any]:
    """In process, built by hrmonitor.app.compose as the daemon builds them: on_reply -> pick."""
    from collections.abc import Sequence

    from hrmonitor.adapters.clock import SystemClock
    from hrmonitor.app.compose import build_controller, build_monitor
    from hrmonitor.app.monitoring import dnsbl_engine, open_configured_store
    from hrmonitor.config.loading import load_config
    from hrmonitor.core.alert import Alert
    from hrmonitor.core.feedback.replies import RemoteReply, destination_scope
    from hrmonitor.core.model import IPState
    from hrmonitor.core.rotation.selection import NoEligibleIp, choose_source_ip

    class Alerts:
        async def emit(self, alert: Alert) -> None:
            pass

        async def emit_batch(self, batch: Sequence[Alert]) -> None:
            pass

    config = load_config(config_path)
    clock = SystemClock()
    store = open_configured_store(config, clock)
    engine = dnsbl_engine(config)
    await engine.open()
    monitor = build_monitor(config, engine, store, clock, Alerts().emit_batch)
    controller = build_controller(config, store, Alerts(), monitor)
    await controller.load(clock.now())
    micros: list[float] = []
    avoided: list[bool] = []
    # Each reply comes after the previous one's pause and window have passed, so every
    # decision starts from the same state: none adds up to a suspension everywhere.
    step = config.rotation.blocklist_pause + config.rotation.blocklist_window
    start = clock.now()
    try:
        for n in range(trials):
            now = start + n * step
            offered = controller.candidates_now("high-risk", now)
            sending = [c.ip for c in offered if c.state in (IPState.ACTIVE, IPState.WARMING)]
            ip = sending[n % len(sending)]
            host = f"mx.x{n}.test"  # a destination (scope x{n}.test) of its own
            reply = RemoteReply(554, "5.7.1", BLOCKED.format(ip=ip)[10:], ip, host, now)
            started = time.perf_counter()
            controller.on_reply(reply)
            offered = controller.candidates_now("high-risk", now)
            picks = [
                choose_source_ip(offered, destination_scope(host), now, k)
                for k in range(len(offered))
            ]
            micros.append((time.perf_counter() - started) * 1e6)
            avoided.append(all(isinstance(p, NoEligibleIp) or p.ip != ip for p in picks))
            await controller.drain()  # its store write and DNSBL re-check, before the next
    finally:
        await controller.close()
        await engine.close()
        store.close()
    return {
        "trials": trials,
        "median_us": statistics.median(micros),
        "max_us": max(micros),
        "avoided": all(avoided),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.fixtures.dns_server import DnsTestServer
    from tests.fixtures.rbldnsd import Rbldnsd

    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="hrm-reaction-"))
    mx = Mx()
    server, sink_port = await start_mx(mx)
    rbl = Rbldnsd({"bl.test": [("ip4set", ZONE_FILE)]}, {ZONE_FILE: ZONE_TEXT})
    dns = DnsTestServer()
    dns.add(STREAM_DOMAIN, "MX", f"10 mx.{STREAM_DOMAIN}.")
    dns.add(f"mx.{STREAM_DOMAIN}", "A", SINK_HOST)
    dns.start()
    port, metrics_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    config = daemon_config(workdir, port=port, sink_port=sink_port, metrics_port=metrics_port,
                           dns=(dns.host, dns.port), rbl=rbl.nameserver,
                           interval=args.interval)  # fmt: skip
    daemon = await asyncio.to_thread(Daemon, config, workdir / "hrmonitor.log")
    stop = asyncio.Event()
    stream = Stream(port, args.rate)
    feeding = asyncio.create_task(stream.run(stop))
    outcome: dict[str, Any] = {"interval_s": args.interval, "bound_s": args.interval + 2}
    print(f"sweep interval {args.interval} s; bound for a listing {args.interval + 2} s; stream"
          f" {args.rate:g} msg/s", flush=True)  # fmt: skip
    try:
        await asyncio.sleep(2 * args.interval)  # a few sweeps, every IP sending
        listed: set[str] = set()
        outcome["listings"], outcome["replies"] = [], []
        for _ in range(args.listings):
            row = await listing_trial(rng, mx, stream, rbl, config, args.interval, listed)
            outcome["listings"].append(row)
            print(listing_line(row), flush=True)
        for n in range(1, args.replies + 1):
            row = await reply_trial(n, mx, stream, dns)
            outcome["replies"].append(row)
            print(reply_line(row), flush=True)
    finally:
        stop.set()
        await asyncio.gather(feeding, return_exceptions=True)
        await asyncio.to_thread(daemon.stop)
        outcome["daemon_exit"] = daemon.process.returncode
        outcome["messages_sent"], outcome["arrived"] = stream.sent, len(mx.arrivals)
        try:
            if args.decision:
                outcome["decision"] = await decision_row(config, args.decision)
        finally:
            server.close()
            dns.stop()
            rbl.stop()
            if args.keep:
                print(f"kept: {workdir} (config, database, the daemon's log)")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    return outcome


def listing_line(row: dict[str, Any]) -> str:
    retired = row["retired_s"]
    return (
        f"listing {row['ip']}: served by rbldnsd {row['served_s']:.2f} s after the zone"
        f" change; retired {'never' if retired is None else f'{retired:.2f} s'} after it;"
        f" last message from it {row['last_message_s']:.2f} s after it;"
        f" arrivals after its retirement: {row['sent_after_retirement']}"
    )


def reply_line(row: dict[str, Any]) -> str:
    if row["avoided"] is None:
        return f"5xx {row['domain']}: only {row['attempts']} attempt(s) seen within 60 s"
    return (
        f"5xx {row['domain']} from {row['ip']}: next attempt from {row['next_ip']}"
        f" {row['next_attempt_s']:.2f} s later"
        f" ({'another IP' if row['avoided'] else 'THE SAME IP'});"
        f" later attempts from the refused IP: {row['later_from_refused_ip']}"
        f" of {row['attempts'] - 1}"
    )


def report(outcome: dict[str, Any]) -> bool:
    """The summary; True when every bound held."""
    bound = outcome["bound_s"]
    last = [r["last_message_s"] for r in outcome["listings"]]
    retired = [r["retired_s"] for r in outcome["listings"]]
    listing_ok = (
        bool(last)
        and max(last) <= bound
        and all(r is not None and r <= bound for r in retired)  # both held to the bound
    )
    if last:
        print(f"worst: last message {max(last):.2f} s, retirement "
              f"{max((r for r in retired if r is not None), default=float('nan')):.2f} s"
              f" (bound {bound:.1f} s)")  # fmt: skip
    replies_ok = bool(outcome["replies"]) and all(
        r["avoided"] and r["later_from_refused_ip"] == 0 for r in outcome["replies"]
    )
    gaps = [r["next_attempt_s"] for r in outcome["replies"] if r["avoided"] is not None]
    if gaps:
        avoided = sum(1 for r in outcome["replies"] if r["avoided"])
        print(f"5xx: the next attempt came from another IP in {avoided} of"
              f" {len(outcome['replies'])}; 5xx -> that attempt median"
              f" {statistics.median(gaps):.2f} s, max {max(gaps):.2f} s")  # fmt: skip
    decision = outcome.get("decision")
    if decision:
        print(
            f"[in-process, built by hrmonitor.app.compose on the daemon's config and database,"
            f" not the daemon] on_reply -> picker's view: median {decision['median_us']:.0f} us,"
            f" max {decision['max_us']:.0f} us over {decision['trials']} replies; IP avoided:"
            f" {decision['avoided']}"
        )
    print(f"messages sent {outcome['messages_sent']}, arrived {outcome['arrived']};"
          f" daemon exit status {outcome['daemon_exit']}")  # fmt: skip
    return listing_ok and replies_ok and outcome["daemon_exit"] == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interval", type=int, default=2, help="sweep interval, seconds")
    parser.add_argument("--listings", type=int, default=3,
                        help=f"listings to measure (at most {len(HIGH) - 2})")  # fmt: skip
    parser.add_argument("--replies", type=int, default=3, help="blocklist 5xx replies to measure")
    parser.add_argument("--rate", type=float, default=10.0, help="messages a second")
    parser.add_argument("--decision", type=int, default=0, metavar="N",
                        help="also time N on_reply decisions in process (app.compose)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="also print the raw outcome")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (config, database, daemon log)")  # fmt: skip
    args = parser.parse_args()
    if not 0 < args.listings <= len(HIGH) - 2:
        parser.error(f"--listings: 1 to {len(HIGH) - 2} (each retires one of {len(HIGH)} IPs)")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    print("product: `hrmonitor run --config FILE` as its own process; measured at its MX and"
          " from its history, outside the process", flush=True)  # fmt: skip
    outcome = asyncio.run(run(args))
    ok = report(outcome)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        print(json.dumps(outcome, indent=2))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
