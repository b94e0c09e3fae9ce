"""Relay throughput of the product: smtp-source -> ``hrmonitor run`` -> smtp-sink, beside Postfix.

Run as root (Postfix's ``postfix start`` needs it) from the repository root::

    .venv/bin/python benchmarks/relay.py --rounds 3 --postgres   # 5,000 x 2 KB, 20 sessions
    .venv/bin/python benchmarks/relay.py --skip-postfix --scale 100000   # the scale run
    .venv/bin/python benchmarks/relay.py --rounds 5 --postgres --in-process

The daemon runs as shipped: SMTP sessions in one listener process and outbound
transactions in one delivery process beside it (``[listener] processes`` and
``[delivery] processes``, both 1 by default). ``--in-process`` adds a row, labelled
"in-process", with both set to 0 (everything in the daemon's one process): a
comparison of the same code and config, not a figure of the default product.

hrmonitor's side is the console script a user runs, ``hrmonitor run --config
FILE``, as its own process, with a config a user could write
(:func:`daemon_config`): the database SQLite (default) or, with ``--postgres``,
a fresh schema on the local PostgreSQL; sending limits, retry schedule,
concurrency and rotation at their defaults; metrics on; the daemon's normal
INFO log (to a file, as Postfix writes its maillog). The rotation controller,
the surge watcher and the DNSBL sweeps run as shipped: a local rbldnsd serves
the pool's blocklist (swept every minute), a local DNS server answers the
MX/A lookups of the test domains. Nothing is stubbed; the only stand-ins are
the peers themselves (rbldnsd, the test DNS server, smtp-sink), all on
loopback.

Everything runs on loopback: smtp-source connects from 127.0.0.1, hrmonitor
and Postfix listen on 127.0.0.1 (free ports); both deliver from bound source
addresses (hrmonitor's normal pool 127.0.0.10-11, or the high-risk pool
127.0.0.20 for what routing sends there; Postfix's ``smtp_bind_address =
127.0.0.71``) to Postfix's smtp-sink on 127.0.0.60.

"Delivered messages/s" = messages counted by smtp-sink / seconds from the
start of smtp-source until smtp-sink counted the last one. Both sides are
durable before they acknowledge: hrmonitor commits to its database (SQLite
WAL with synchronous=FULL, group commit; or PostgreSQL) before 250; Postfix
fsyncs its queue file (its default). Peak RSS is the kernel's VmHWM of the
daemon's process plus each of its worker processes' (``[listener] processes``
and ``[delivery] processes``, one each by default): the sum of their peaks.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test peers (tests.fixtures) serve the benchmark too
from tests.fixtures.processes import children  # noqa: E402

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


# --- the hrmonitor side: the console script a user runs, with a config a user could write


ZONE = "bench.test"
CATALOGUE = f"""
[lists.bench]
zone = "{ZONE}"
families = ["ipv4"]
[lists.bench.codes]
"127.0.0.2" = {{ tag = "listed", class = "listed", severity = "critical" }}
"""
RBL_FILES = {"bench.zone": "127.0.0.2 :127.0.0.2:\n"}


def daemon_config(workdir: Path, *, database: str, port: int, sink_port: int, metrics_port: int,
                  dns: tuple[str, int], rbl: tuple[str, int], retry: str = "",
                  in_process: bool = False) -> Path:  # fmt: skip
    """What an operator writes: the shipped rules, defaults for everything not about ports.

    ``in_process``: ``processes = 0`` for the listener and delivery (SMTP in and out in the
    daemon's own process, as before worker processes): a labelled comparison row only.
    """
    processes = "processes = 0" if in_process else ""
    (workdir / "catalogue.toml").write_text(CATALOGUE)
    rules = ROOT / "rules"
    normal = ", ".join(f'"{ip}"' for ip in NORMAL_IPS)
    high = ", ".join(f'"{ip}"' for ip in HIGH_IPS)
    text = f"""
[database]
url = "{database}"

[dns]
nameservers = ["{dns[0]}"]
port = {dns[1]}

[dnsbl]
nameservers = ["{rbl[0]}"]
port = {rbl[1]}
catalogue = ["catalogue.toml"]
zones = ["bench"]
interval = "1m"

[pools.normal]
risk = "normal"
ips = [{normal}]

[pools.high-risk]
risk = "high"
ips = [{high}]

[listener]
bind = "127.0.0.1:{port}"
hostname = "hrmonitor.bench"
{processes}

[[tenants]]
name = "bench"
networks = ["127.0.0.0/8"]
domains = ["bench.test"]

[routing]
rules = ["{rules / "routing.toml"}"]

[bounces]
patterns = "{rules / "bounce.toml"}"

[delivery]
port = {sink_port}
feedback = ["{rules / "feedback.toml"}"]
{f"retry = {retry}" if retry else ""}
{processes}

[metrics]
bind = "127.0.0.1:{metrics_port}"
"""
    path = workdir / f"hrmonitor-{port}.toml"
    path.write_text(text)
    return path


class Peers:
    """rbldnsd for the pool's blocklist and a DNS server for MX/A of the test domains."""

    def __init__(self) -> None:
        from tests.fixtures.dns_server import DnsTestServer
        from tests.fixtures.rbldnsd import Rbldnsd

        self.rbl = Rbldnsd({ZONE: [("ip4set", "bench.zone")]}, RBL_FILES)
        self.dns = DnsTestServer()
        for domain in ("sink.test", "bench.test", "source.bench"):
            self.dns.add(domain, "MX", "10 mx.sink.bench.")
            self.dns.add(domain, "A", SINK_HOST)
        self.dns.add("mx.sink.bench", "A", SINK_HOST)
        self.dns.start()

    def stop(self) -> None:
        self.dns.stop()
        self.rbl.stop()


class Postgres:
    """A fresh schema on the local PostgreSQL for one run (dropped after)."""

    SERVER = os.environ.get(
        "HRMONITOR_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )

    def __enter__(self) -> str:
        import uuid

        from sqlalchemy import create_engine, make_url, text

        self.schema = f"hrm_bench_{uuid.uuid4().hex[:12]}"
        self.admin = create_engine(self.SERVER)
        with self.admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        url = make_url(self.SERVER).update_query_dict({"options": f"-csearch_path={self.schema}"})
        return url.render_as_string(hide_password=False)

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import text

        with self.admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
        self.admin.dispose()


_RUNNING = re.compile(rb"hrmonitor running: .* SMTP on [^\s]+:(\d+)(?!\d)")


class Daemon:
    """``hrmonitor run --config FILE`` as its own process; its log (INFO) goes to a file."""

    def __init__(self, config: Path, log: Path) -> None:
        script = Path(sys.executable).parent / "hrmonitor"
        self.log = log
        self._file = log.open("wb")
        self.process = subprocess.Popen(
            [str(script), "run", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=self._file, cwd=config.parent,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not _RUNNING.search(log.read_bytes()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hrmonitor did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._file.close()


def sweeps_in(log: Path) -> int:
    """How many DNSBL sweeps the daemon logged (proof that the monitor ran alongside)."""
    return len(re.findall(rb"sweep", log.read_bytes()))


# --- peers ------------------------------------------------------------------------------


class Sink:
    """Postfix's smtp-sink with its running counter (``-c``) written to a file.

    ``refuse`` answers every RCPT with ``451 4.3.0`` (an MX that defers
    everything); ``dump`` appends every message received to that file, to count
    duplicates by Message-Id.
    """

    def __init__(self, workdir: Path, port: int | None = None, refuse: bool = False,
                 dump: Path | None = None) -> None:  # fmt: skip
        self.port = port or free_port(SINK_HOST)
        self.out = workdir / f"sink-{self.port}-{time.monotonic_ns()}.txt"
        self._file = self.out.open("wb")
        options = ["-r", "RCPT", "-b", "451 4.3.0 Try again later"] if refuse else []
        if dump is not None:
            options += ["-D", str(dump)]
        self.process = subprocess.Popen(
            [binary("smtp-sink"), "-c", "-u", "nobody", *options, f"{SINK_HOST}:{self.port}",
             "256"],
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        _wait_listening(SINK_HOST, self.port)

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
            timeout: float = 1800) -> dict[str, float]:  # fmt: skip
    """Run smtp-source and wait for the sink to count ``messages``; rate and per-tenth rates."""
    started = time.monotonic()
    client = source(host, port, messages, sessions, size)
    accepted_at = None
    tenths: list[float] = []  # when the sink's count passed each tenth of the load
    while True:
        if accepted_at is None and client.poll() is not None:
            accepted_at = time.monotonic()
        count = sink.count()
        while len(tenths) < 10 and count >= messages * (len(tenths) + 1) / 10:
            tenths.append(time.monotonic() - started)
        if count >= messages or time.monotonic() - started > timeout:
            break
        time.sleep(0.05)
    done = time.monotonic()
    if accepted_at is None:
        client.wait(60)
        accepted_at = time.monotonic()
    errors = client.stderr.read().decode(errors="replace") if client.stderr else ""
    result = {
        "delivered": count,
        "seconds": done - started,
        "rate": count / (done - started),
        "accept_seconds": accepted_at - started,
        "source_rc": float(client.returncode or 0),
        "source_errors": float(len(errors.splitlines())),
    }
    if len(tenths) == 10:
        tenth = messages / 10
        result["first_tenth_rate"] = tenth / tenths[0]
        result["last_tenth_rate"] = tenth / (tenths[9] - tenths[8])
        for n, (since, until) in enumerate(zip([0.0, *tenths], tenths, strict=False), 1):
            result[f"tenth_{n}_rate"] = tenth / (until - since)
    return result


class PeakRss(float):
    """MB, summed over the daemon and its workers; ``parts``: the daemon's, then each worker's."""

    parts: tuple[float, ...] = ()


def peak_rss_mb(pid: int) -> PeakRss:
    """The daemon's peak RSS with its worker processes': the sum of each one's VmHWM
    (an upper bound of their peak together)."""
    parts = tuple(_hwm_mb(each) for each in (pid, *children(pid)))
    total = PeakRss(sum(parts))
    total.parts = parts
    return total


def rss_parts(rss: float) -> str:
    """`` (daemon A + workers B + C)`` for a :class:`PeakRss` of several processes."""
    parts: tuple[float, ...] = getattr(rss, "parts", ())
    if len(parts) < 2:
        return ""
    daemon, *workers = parts
    return f" (daemon {daemon:.0f} + workers {' + '.join(f'{w:.0f}' for w in workers)})"


def _hwm_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def metric(port: int, name: str) -> float:
    """The sum of a Prometheus metric's samples on the daemon's /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))  # fmt: skip


def run_hrmonitor(workdir: Path, peers: Peers, messages: int, sessions: int, size: int,
                  database: str | None = None,
                  in_process: bool = False) -> tuple[dict[str, float], float]:  # fmt: skip
    """One measured run of ``hrmonitor run``; the result and the daemon's peak RSS (MB)."""
    sink = Sink(workdir)
    port = free_port("127.0.0.1")
    metrics_port = free_port("127.0.0.1")
    url = database or f"sqlite:///{workdir / f'hrmonitor-{port}.db'}"
    config = daemon_config(workdir, database=url, port=port, sink_port=sink.port,
                           metrics_port=metrics_port, dns=(peers.dns.host, peers.dns.port),
                           rbl=peers.rbl.nameserver, in_process=in_process)  # fmt: skip
    daemon = None
    try:
        daemon = Daemon(config, workdir / f"hrmonitor-{port}.log")
        result = measure(sink, "127.0.0.1", port, messages, sessions, size)
        rss = peak_rss_mb(daemon.process.pid)
        result["sweeps"] = metric(metrics_port, "hrmonitor_sweeps_total")
        result["accepted_metric"] = metric(metrics_port, "hrmonitor_messages_accepted_total")
    finally:
        if daemon is not None:
            daemon.stop()
        sink.stop()
    return result, rss


def run_backlog(workdir: Path, peers: Peers, messages: int, sessions: int, size: int,
                database: str | None = None) -> dict[str, float]:  # fmt: skip
    """One daemon, three phases against one MX port: fresh load, backlog under 451s, drain.

    1. Fresh load: ``messages`` through the daemon to an MX that accepts
       everything: the fresh-load rate the drain is compared with, measured by
       the same daemon in the same invocation (and the backlog then meets a
       store that already holds that history).
    2. Backlog: ``messages`` more accepted while the MX answers 451 to every RCPT.
    3. The MX recovers (a fresh ``smtp-sink`` on the same port): the drain rate is
       messages / seconds from the recovery until the sink counted the last one.

    The config is the benchmark's with one change a postmaster makes for a
    backlog test, ``[delivery] retry = ["30s"]``, so that the whole backlog is due
    within 30 s of the recovery (hrmonitor has no ``postqueue -f``); nothing is
    deferred in phase 1, so it does not touch the fresh-load rate. Both accepting
    MXes dump what they receive: a duplicate is a Message-Id received more than
    once over the whole run (the backlog's, or a fresh message sent again).
    """
    # smtp-sink writes as user nobody: its dumps go to a directory it may write in.
    os.chmod(workdir, 0o755)
    dumps = workdir / f"dumps-{time.monotonic_ns()}"
    dumps.mkdir()
    os.chmod(dumps, 0o777)
    fresh_sink = Sink(workdir, dump=dumps / "fresh")
    mx_port = fresh_sink.port
    port = free_port("127.0.0.1")
    metrics_port = free_port("127.0.0.1")
    url = database or f"sqlite:///{workdir / f'backlog-{port}.db'}"
    config = daemon_config(workdir, database=url, port=port, sink_port=mx_port,
                           metrics_port=metrics_port,
                           dns=(peers.dns.host, peers.dns.port), rbl=peers.rbl.nameserver,
                           retry='["30s"]')  # fmt: skip
    daemon = None
    try:
        daemon = Daemon(config, workdir / f"backlog-{port}.log")
        fresh = measure(fresh_sink, "127.0.0.1", port, messages, sessions, size)
        fresh_sink.stop()
        print(f"backlog run, phase 1 (fresh load): {fresh['delivered']:.0f} delivered in "
              f"{fresh['seconds']:.1f} s = {fresh['rate']:.0f} msg/s (accepted in "
              f"{fresh['accept_seconds']:.1f} s); load {_load()}", flush=True)  # fmt: skip
        refusing = Sink(workdir, port=mx_port, refuse=True)
        try:
            started = time.monotonic()
            client = source("127.0.0.1", port, messages, sessions, size)
            client.wait()
            accepted = time.monotonic() - started
        finally:
            refusing.stop()
        print(f"backlog run, phase 2: {messages} accepted in {accepted:.1f} s while the MX "
              f"answered 451; load {_load()}", flush=True)  # fmt: skip
        recovered_at = time.monotonic()
        sink = Sink(workdir, port=mx_port, dump=dumps / "received")
        try:
            while sink.count() < messages and time.monotonic() - recovered_at < 3600:
                time.sleep(0.1)
            drained = time.monotonic() - recovered_at
            count = sink.count()
            time.sleep(5)  # anything sent twice arrives now, if at all
            count_after = sink.count()
        finally:
            sink.stop()
        rss = peak_rss_mb(daemon.process.pid)
    finally:
        if daemon is not None:
            daemon.stop()
        if fresh_sink.process.poll() is None:
            fresh_sink.stop()
    fresh_ids = _message_ids(dumps / "fresh")
    ids = _message_ids(dumps / "received")
    every = fresh_ids + ids
    return {
        "fresh_rate": fresh["rate"],
        "fresh_seconds": fresh["seconds"],
        "fresh_delivered": fresh["delivered"],
        "accept_seconds": accepted,
        "drained": count,
        "drain_seconds": drained,
        "drain_rate": count / drained,
        "received_total": count_after,
        "distinct_ids": len(set(ids)),
        "duplicates": len(every) - len(set(every)),
        "rss": rss,
    }


def _message_ids(dump: Path) -> list[bytes]:
    if not dump.exists():
        return []
    return re.findall(rb"(?im)^Message-Id: *(<[^>]*>)", dump.read_bytes())


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


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


def scale_run(workdir: Path, peers: Peers, args: argparse.Namespace, backend: str) -> None:
    if backend == "postgresql":
        with Postgres() as url:
            big, rss = run_hrmonitor(workdir, peers, args.scale, args.sessions, args.size, url)
    else:
        big, rss = run_hrmonitor(workdir, peers, args.scale, args.sessions, args.size)
    first, last = big.get("first_tenth_rate", 0.0), big.get("last_tenth_rate", 0.0)
    print(f"scale run ({backend}): {big['delivered']:.0f} of {args.scale} delivered in "
          f"{big['seconds']:.1f} s = {big['rate']:.0f} msg/s; first tenth "
          f"{first:.0f} msg/s, last tenth {last:.0f} msg/s "
          f"({last / first if first else 0:.2f}); peak RSS {rss:.0f} MB{rss_parts(rss)}; "
          f"load {_load()}", flush=True)  # fmt: skip
    if first:  # the middle shows a cost growing with the queue that the ends hide
        each = " / ".join(f"{big[f'tenth_{n}_rate']:.0f}" for n in range(1, 11))
        print(f"scale run ({backend}), msg/s per tenth of the messages: {each}", flush=True)


def backlog_run(workdir: Path, peers: Peers, args: argparse.Namespace, backend: str) -> None:
    if backend == "postgresql":
        with Postgres() as url:
            b = run_backlog(workdir, peers, args.backlog, args.sessions, args.size, url)
    else:
        b = run_backlog(workdir, peers, args.backlog, args.sessions, args.size)
    print(f"backlog run ({backend}): {args.backlog} accepted in {b['accept_seconds']:.1f} s "
          f"while the MX answered 451; after it recovered {b['drained']:.0f} delivered in "
          f"{b['drain_seconds']:.1f} s = {b['drain_rate']:.0f} msg/s; fresh load "
          f"{b['fresh_rate']:.0f} msg/s in the same daemon (drain "
          f"{b['drain_rate'] / b['fresh_rate']:.2f} of it); "
          f"{b['received_total']:.0f} received after the recovery, "
          f"{b['distinct_ids']:.0f} distinct Message-Ids, {b['duplicates']:.0f} "
          f"duplicates over the run; peak RSS {b['rss']:.0f} MB{rss_parts(b['rss'])}; "
          f"load {_load()}",
          flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs of both MTAs")
    parser.add_argument("--skip-postfix", action="store_true")
    parser.add_argument("--postgres", action="store_true",
                        help="also run hrmonitor on PostgreSQL (one node): each round, "
                             "and the scale and backlog runs")  # fmt: skip
    parser.add_argument("--in-process", action="store_true",
                        help="also a labelled row of hrmonitor on SQLite with [listener] and "
                             "[delivery] processes = 0 (no worker processes)")  # fmt: skip
    parser.add_argument("--scale", type=int, default=0,
                        help="also one N-message run: first vs last tenth, peak RSS")  # fmt: skip
    parser.add_argument("--backlog", type=int, default=0,
                        help="also N messages queued under 451s, then drained")  # fmt: skip
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    load = f"{args.messages} x {args.size} B, {args.sessions} sessions"
    peers = Peers()
    try:
        with tempfile.TemporaryDirectory(prefix="hrmonitor-bench-") as tmp:
            workdir = Path(tmp)
            ratios: dict[str, list[float]] = {"sqlite": [], "postgresql": [], "in-process": []}
            for round_no in range(1, args.rounds + 1):
                # Alternate the MTAs round by round: the machine's load drifts, and a ratio
                # of runs made seconds apart is fairer than one of runs made minutes apart.
                rates = {}
                backends = ["sqlite"] + (["postgresql"] if args.postgres else [])
                backends += ["in-process"] if args.in_process else []
                for backend in backends:
                    if backend == "in-process":  # SQLite, processes = 0: a comparison only
                        hr, rss = run_hrmonitor(workdir, peers, args.messages, args.sessions,
                                                args.size, in_process=True)  # fmt: skip
                    elif backend == "postgresql":
                        with Postgres() as url:
                            hr, rss = run_hrmonitor(workdir, peers, args.messages,
                                                    args.sessions, args.size, url)  # fmt: skip
                    else:
                        hr, rss = run_hrmonitor(workdir, peers, args.messages, args.sessions,
                                                args.size)  # fmt: skip
                    rates[backend] = hr["rate"]
                    print(f"[{round_no}] hrmonitor run ({backend}): {load}: "
                          f"{hr['delivered']:.0f} delivered in {hr['seconds']:.2f} s = "
                          f"{hr['rate']:.0f} msg/s (accepted in {hr['accept_seconds']:.2f} s; "
                          f"sweeps {hr['sweeps']:.0f}; peak RSS {rss:.0f} MB{rss_parts(rss)})",
                          flush=True)  # fmt: skip
                if args.skip_postfix:
                    continue
                pf = run_postfix(workdir, args.messages, args.sessions, args.size)
                for backend, rate in rates.items():
                    ratios[backend].append(rate / pf["rate"])
                shown = ", ".join(f"{b} {r / pf['rate']:.2f}x" for b, r in rates.items())
                print(f"[{round_no}] postfix: {load}: {pf['delivered']:.0f} delivered in "
                      f"{pf['seconds']:.2f} s = {pf['rate']:.0f} msg/s (accepted in "
                      f"{pf['accept_seconds']:.2f} s); ratio {shown}", flush=True)  # fmt: skip
            for backend, values in ratios.items():
                if values:
                    print(f"ratio hrmonitor ({backend}) / postfix: median "
                          f"{statistics.median(values):.2f}x (min {min(values):.2f}x, "
                          f"max {max(values):.2f}x, {len(values)} rounds)", flush=True)  # fmt: skip
            # --postgres: the scale and backlog runs again, each on a fresh schema.
            for backend in ["sqlite"] + (["postgresql"] if args.postgres else []):
                if args.scale:
                    scale_run(workdir, peers, args, backend)
                if args.backlog:
                    backlog_run(workdir, peers, args, backend)
    finally:
        peers.stop()
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)


def _mb(values: list[float]) -> str:
    return " + ".join(f"{v:.0f} MB" for v in values)


if __name__ == "__main__":
    main()
