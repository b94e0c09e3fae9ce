"""``hrmonitor check`` end to end (a process: config, store, sweep, persistence, JSON) vs pydnsbl.

The same rbldnsd, zones and IPs as ``dnsbl_sweep.py`` (4,096 IPs x 10 zones,
5 % listed per zone): a pool of 4,096 IPs in a real config file with a SQLite
store, checked by ``python -m hrmonitor check --pool bench --json`` as a child
process, timed from spawn to exit. The first check also migrates the fresh
database, registers the 4,096 IPs, records every listing and sends (logs) an
alert for each; later checks are the steady state a Nagios probe sees. pydnsbl
checks the same IPs the same way, end to end: a child process (this script in
``pydnsbl`` mode) that imports pydnsbl, checks every IP and prints its results
as JSON; timed from spawn to exit, alternating round by round.

    .venv/bin/python benchmarks/check_e2e.py            # 5 rounds

Loopback only. Needs rbldnsd and pydnsbl (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.dnsbl_sweep import ZONES, build_zones, run_pydnsbl, sweep_ips, zone_files
from hrmonitor.core.dnsbl.catalogue import load_catalogue
from tests.fixtures.rbldnsd import Rbldnsd


def write_config(directory: Path, server: Rbldnsd, ips: list[str], catalogue: str) -> Path:
    (directory / "catalogue.toml").write_text(catalogue)
    pool_ips = ", ".join(f'"{ip}"' for ip in ips)
    zones = ", ".join(f'"z{z}"' for z in range(ZONES))
    config = directory / "config.toml"
    config.write_text(
        f"""
[database]
url = "sqlite:///{directory / "bench.db"}"

[dns]
nameservers = ["{server.host}"]
port = {server.port}
timeout = "2s"
attempts = 2

[dnsbl]
catalogue = ["catalogue.toml"]
zones = [{zones}]
rate_per_zone = 1000000.0
daily_budget = 100000000

[metrics]
bind = ""

[pools.bench]
risk = "normal"
ips = [{pool_ips}]

[pools.high-risk]
risk = "high"
ips = ["127.0.0.20"]
"""
    )
    return config


def run_check(config: Path) -> tuple[float, int, int]:
    """Seconds from spawn to exit, the exit status, and how many results it printed."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hrmonitor", "check", "--config", str(config), "--pool", "bench",
         "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1, 2):
        raise SystemExit(f"check failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, done.returncode, len(json.loads(done.stdout)["results"])


def pydnsbl_process(host: str, port: int, ips: int, seed: int) -> None:
    """The pydnsbl side as a process: check every IP, print the results as JSON."""
    import aiodns
    from pydnsbl import DNSBLIpChecker
    from pydnsbl.providers import Provider

    addresses = sweep_ips(ips)
    providers = [Provider(f"z{z}.bench.test") for z in range(ZONES)]
    checker = DNSBLIpChecker(providers=providers, timeout=2, tries=2, concurrency=128)

    async def check_all() -> list[dict[str, object]]:
        checker._resolver = aiodns.DNSResolver(
            nameservers=[host], timeout=2, tries=2, udp_port=port, tcp_port=port
        )
        results = await asyncio.gather(*(checker.check_async(ip) for ip in addresses))
        return [
            {"ip": r.addr, "zone": p.host, "listed": p.host in r.detected_by}
            for r in results
            for p in r.providers
        ]

    print(json.dumps({"results": asyncio.run(check_all())}))


def run_pydnsbl_process(server: Rbldnsd, ips: int, seed: int) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "pydnsbl", server.host, str(server.port), str(ips), str(seed)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return time.perf_counter() - start, len(json.loads(done.stdout)["results"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "pydnsbl":
        host, port, count, seed = sys.argv[2:6]
        pydnsbl_process(host, int(port), int(count), int(seed))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ips", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    ips = sweep_ips(args.ips)
    truth, catalogue_text = build_zones(ips, 0.05, args.seed)
    lists = list(load_catalogue([("bench", catalogue_text)]).lists.values())
    server = Rbldnsd(
        {f"z{z}.bench.test": [("ip4set", f"z{z}.zone")] for z in range(ZONES)}, zone_files(truth)
    )
    lookups = len(ips) * len(lists)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = write_config(Path(tmp), server, ips, catalogue_text)
            first, code, results = run_check(config)
            print(
                f"first check (fresh database, {lookups} lookups, every listing new): "
                f"{first:.2f} s, exit {code}, {results} results"
            )
            ours: list[float] = []
            theirs: list[float] = []
            in_process: list[float] = []
            for number in range(1, args.rounds + 1):
                elapsed, code, results = run_check(config)
                ours.append(elapsed)
                pyd, pyd_results = run_pydnsbl_process(server, args.ips, args.seed)
                theirs.append(pyd)
                inner, _cpu, wrong = asyncio.run(run_pydnsbl(server, ips, lists, truth))
                in_process.append(inner)
                print(
                    f"round {number}: hrmonitor check {elapsed:.2f} s ({results} results, "
                    f"exit {code}); pydnsbl process {pyd:.2f} s ({pyd_results} results); "
                    f"pydnsbl in-process lookups only {inner:.2f} s {wrong}"
                )
        ratios = [t / o for o, t in zip(ours, theirs, strict=True)]
        print(
            f"hrmonitor check (process, persisted): median {statistics.median(ours):.2f} s = "
            f"{lookups / statistics.median(ours):,.0f} lookups/s"
        )
        print(
            f"pydnsbl (process, no persistence): median {statistics.median(theirs):.2f} s = "
            f"{lookups / statistics.median(theirs):,.0f} lookups/s"
        )
        print(
            f"ratio hrmonitor check / pydnsbl process (lookups/s): median "
            f"{statistics.median(ratios):.2f}x (per round: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
        inner_ratios = [t / o for o, t in zip(ours, in_process, strict=True)]
        print(
            f"ratio hrmonitor check (whole process) / pydnsbl lookups alone (in process): median "
            f"{statistics.median(inner_ratios):.2f}x"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
