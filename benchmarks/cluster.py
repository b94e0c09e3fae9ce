"""Several nodes: the same load through one and through two ``hrmonitor run`` on one PostgreSQL.

Run from the repository root (PostgreSQL on 127.0.0.1:5432, Postfix's
smtp-source and smtp-sink installed)::

    .venv/bin/python benchmarks/cluster.py                  # 4,000 x 2 KB, 3 rounds
    .venv/bin/python benchmarks/cluster.py --messages 2000 --rounds 1

Each round runs one node, then two nodes, each on a fresh PostgreSQL schema,
the daemons exactly as operators run them (``python -m hrmonitor run --config``,
logging at INFO to a file). The load is two smtp-source processes, each sending
half the messages over half the sessions: both to the one node, or one to each
of the two. Everything stays on loopback: the nodes deliver from their normal
pool (127.0.0.10-11) to smtp-sink on 127.0.0.60; a DNS test server on 127.0.0.1
answers the sender's and the recipient's domains.

"Delivered messages/s" = messages counted by smtp-sink / seconds from the start
of the load until smtp-sink counted the last one. "Duplicates" = recipients with
more than one 2xx attempt in the shared queue (each message has one recipient),
plus smtp-sink's count beyond the messages sent.

Transactions: ``pg_stat_database``'s commits and rollbacks in the database over the
run (to one second after the last message; every client of the database counts,
the daemons' heartbeats included), per delivered message.

CPU: the kernel's user+system time of each process over the run (``/proc/PID/stat``),
as milliseconds of CPU per delivered message: the daemons (each with its worker
processes, ``[listener]`` and ``[delivery] processes``), PostgreSQL (every
``postgres`` process on the machine, so other users of the server count too: the
figure is an upper bound), and the load (smtp-source, smtp-sink). CPU per message
does not depend on how busy the machine is the way msg/s does, so it gives a
ceiling: with N cores, no number of nodes delivers more than
N / (CPU seconds per message of the whole pipeline) msg/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.relay import SINK_HOST, Sink, binary, free_port  # noqa: E402
from tests.fixtures.dns_server import DnsTestServer  # noqa: E402
from tests.fixtures.processes import children  # noqa: E402

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

CONFIG = """
[database]
url = "{url}"

[node]
name = "{name}"

[dns]
nameservers = ["127.0.0.1"]
port = {dns_port}
timeout = "2s"

[dnsbl]
nameservers = ["127.0.0.1"]
port = {dns_port}
catalogue = ["{root}/rules/dnsbl.toml"]
zones = ["spamhaus-zen"]
interval = "1h"

[pools.normal]
risk = "normal"
ips = ["127.0.0.10", "127.0.0.11"]
when_exhausted = "use-listed"

[pools.high-risk]
risk = "high"
ips = ["127.0.0.20"]

[listener]
bind = "127.0.0.1:{port}"
hostname = "relay.bench"
{processes}

[[tenants]]
name = "bench"
networks = ["127.0.0.0/8"]
domains = ["bench.test"]

[routing]
rules = ["{root}/rules/routing.toml"]

[limits]
recipients_per_hour = 1000000000
recipients_per_day = 1000000000

[bounces]
patterns = "{root}/rules/bounce.toml"

[delivery]
port = {sink_port}
feedback = ["{root}/rules/feedback.toml"]
per_destination_concurrency = 40
concurrency = 100
{processes}

[metrics]
bind = ""
"""


def schema_url() -> tuple[str, str]:
    schema = f"bench_cluster_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = make_url(POSTGRES).update_query_dict({"options": f"-csearch_path={schema}"})
    return schema, url.render_as_string(hide_password=False)


def drop_schema(schema: str) -> None:
    admin = create_engine(POSTGRES)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def start_node(
    workdir: Path, name: str, url: str, dns_port: int, sink_port: int, processes: int | None
) -> tuple[subprocess.Popen[bytes], int]:
    """``processes``: ``[listener]`` and ``[delivery] processes`` (None: the default, 1)."""
    port = free_port("127.0.0.1")
    config = workdir / f"{name}.toml"
    config.write_text(
        CONFIG.format(
            url=url,
            name=name,
            dns_port=dns_port,
            port=port,
            sink_port=sink_port,
            root=ROOT,
            processes="" if processes is None else f"processes = {processes}",
        )
    )
    log = (workdir / f"{name}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "hrmonitor", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while b"hrmonitor running" not in (workdir / f"{name}.log").read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((workdir / f"{name}.log").read_text()[-2000:])
        time.sleep(0.1)
    return process, port


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def node_cpu_seconds(pid: int) -> float:
    """A node's CPU so far: the daemon's and its live worker processes' (its children)."""
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in children(pid))


def machine_busy() -> float:
    """CPU seconds the whole machine has spent not idle (all cores, every process)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / TICKS


def postgres_cpu() -> float:
    """CPU so far of every process named ``postgres`` (the server and its backends)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm == "postgres":
                total += cpu_seconds(int(entry.name))
    return total


def transactions() -> int:
    """Transactions committed or rolled back in the benchmark's database so far, by every
    client of it (``pg_stat_database``; each backend reports its counts within a second)."""
    engine = create_engine(POSTGRES)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT xact_commit + xact_rollback FROM pg_stat_database"
                        " WHERE datname = current_database()"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def duplicates(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM (SELECT recipient_id FROM queue_attempts"
                        " WHERE code BETWEEN 200 AND 299 GROUP BY recipient_id"
                        " HAVING count(*) > 1) AS twice"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def run(
    nodes: int,
    messages: int,
    sessions: int,
    size: int,
    dns: DnsTestServer,
    processes: int | None = None,
) -> dict[str, float]:
    schema, url = schema_url()
    with tempfile.TemporaryDirectory(prefix="hrm-cluster-") as tmp:
        workdir = Path(tmp)
        sink = Sink(workdir)
        daemons: list[subprocess.Popen[bytes]] = []
        try:
            ports = []
            for n in range(nodes):
                process, port = start_node(workdir, f"node{n}", url, dns.port, sink.port, processes)
                daemons.append(process)
                ports.append(port)
            time.sleep(2)  # the first sweeps and heartbeats are over
            targets = [ports[i % nodes] for i in range(2)]
            each = [-node_cpu_seconds(p.pid) for p in daemons]
            machine = -machine_busy()
            pg_cpu = -postgres_cpu()
            load_cpu = -cpu_seconds(sink.process.pid)
            xacts = -transactions()
            started = time.monotonic()
            sources = [
                subprocess.Popen(
                    [
                        binary("smtp-source"),
                        "-s",
                        str(sessions // 2),
                        "-m",
                        str(messages // 2),
                        "-l",
                        str(size),
                        "-f",
                        "bench@bench.test",
                        "-t",
                        "rcpt@sink.test",
                        "-M",
                        "source.bench",
                        f"127.0.0.1:{port}",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for port in targets
            ]
            total = (messages // 2) * 2
            while sink.count() < total and time.monotonic() - started < 900:
                time.sleep(0.05)
            seconds = time.monotonic() - started
            count = sink.count()
            each = [
                before + node_cpu_seconds(p.pid) for before, p in zip(each, daemons, strict=True)
            ]
            daemon_cpu = sum(each)
            machine += machine_busy()
            pg_cpu += postgres_cpu()
            load_cpu += cpu_seconds(sink.process.pid)
            load_cpu += sum(cpu_seconds(c.pid) for c in sources)  # done sending by now
            for client in sources:
                client.wait(60)
            time.sleep(1)  # also: the backends have reported their transactions
            xacts += transactions() - 1  # less the reading's own
            extra = max(0, sink.count() - total)
        finally:
            for process in daemons:
                process.terminate()
                process.wait(60)
            sink.stop()
        twice = duplicates(url)
    drop_schema(schema)
    per = 1000 / max(count, 1)
    return {"nodes": nodes, "delivered": count, "seconds": seconds, "rate": count / seconds,
            "duplicates": twice + extra, "daemon_ms": daemon_cpu * per, "pg_ms": pg_cpu * per,
            "load_ms": load_cpu * per, "xacts": xacts / max(count, 1),
            "busiest": max(each) / seconds, "machine": machine / seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=None,
                        help="[listener] and [delivery] processes of every node (default: "
                             "the shipped default, 1 each; 0: each node one process)")  # fmt: skip
    args = parser.parse_args()
    shown = "default (1)" if args.processes is None else str(args.processes)
    print(f"[listener] and [delivery] processes per node: {shown}", flush=True)
    dns = DnsTestServer()
    dns.add("bench.test", "A", "127.0.0.5")
    dns.add("sink.test", "MX", "10 mx.sink.test.")
    dns.add("mx.sink.test", "A", SINK_HOST)
    dns.start()
    rates: dict[int, list[float]] = {1: [], 2: []}
    pipeline: dict[int, list[float]] = {1: [], 2: []}
    duplicated = 0
    try:
        for round_ in range(args.rounds):
            for nodes in (1, 2):
                result = run(nodes, args.messages, args.sessions, args.size, dns, args.processes)
                rates[nodes].append(result["rate"])
                duplicated += int(result["duplicates"])
                cpu = result["daemon_ms"] + result["pg_ms"] + result["load_ms"]
                pipeline[nodes].append(cpu)
                print(
                    f"round {round_ + 1}: {nodes} node(s): {result['delivered']:.0f} delivered in "
                    f"{result['seconds']:.1f} s = {result['rate']:.0f} msg/s, "
                    f"{result['duplicates']:.0f} duplicate(s); CPU per message: daemons "
                    f"{result['daemon_ms']:.2f} ms, postgres {result['pg_ms']:.2f} ms, "
                    f"smtp-source+sink {result['load_ms']:.2f} ms = {cpu:.2f} ms; "
                    f"{result['xacts']:.2f} PostgreSQL transactions per message; busiest "
                    f"daemon {result['busiest']:.2f} of a core; machine {result['machine']:.2f} "
                    f"of {os.cpu_count()} cores busy (everyone's)",
                    flush=True,
                )
    finally:
        dns.stop()
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(
        f"median: 1 node {one:.0f} msg/s, 2 nodes {two:.0f} msg/s = {two / one:.2f}x; "
        f"duplicates {duplicated}"
    )
    cores = os.cpu_count() or 1
    for nodes in (1, 2):
        ms = statistics.median(pipeline[nodes])
        print(
            f"ceiling with {nodes} node(s): {ms:.2f} ms of CPU per message over the whole "
            f"pipeline -> at most {cores * 1000 / ms:.0f} msg/s on {cores} cores "
            f"({cores * 1000 / ms / one:.2f}x the one-node median)"
        )


if __name__ == "__main__":
    main()
