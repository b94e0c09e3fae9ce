"""DNSBL sweep throughput: hrmonitor's DnsblEngine against pydnsbl, both on the same rbldnsd.

Starts its own rbldnsd on 127.0.0.1 (a free UDP port) with 10 zones, lists a
known share of the swept IPs in each (several codes), then sweeps every IP
against every zone with each client in turn and prints lookups/s, the
ratio, and every answer that disagrees with the zone files. Loopback only.

    .venv/bin/python benchmarks/dnsbl_sweep.py               # 4,096 IPs x 10 zones, both clients
    .venv/bin/python benchmarks/dnsbl_sweep.py --ips 65536   # hrmonitor only, prints peak RSS

Needs the rbldnsd binary (Debian package) and pydnsbl (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import random
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hrmonitor.adapters.dns.dnsbl.engine import DnsblEngine
from hrmonitor.core.dnsbl.catalogue import ZoneList, load_catalogue
from hrmonitor.core.model import Status
from tests.fixtures.rbldnsd import Rbldnsd

ZONES = 10
CODES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.10")


def sweep_ips(count: int) -> list[str]:
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    return [str(ipaddress.IPv4Address(base + n)) for n in range(count)]


def build_zones(ips: list[str], share: float, seed: int) -> tuple[dict[str, dict[str, str]], str]:
    """Per zone: the listed IPs and their code; and the rbldnsd zone file texts."""
    rng = random.Random(seed)
    truth: dict[str, dict[str, str]] = {}
    for z in range(ZONES):
        listed = rng.sample(ips, int(len(ips) * share))
        truth[f"z{z}"] = {ip: rng.choice(CODES) for ip in listed}
    catalogue = '[defaults]\nunknown_code = { class = "listed", severity = "medium" }\n'
    for z in range(ZONES):
        catalogue += f'[lists.z{z}]\nzone = "z{z}.bench.test"\nfamilies = ["ipv4"]\n'
        catalogue += f"[lists.z{z}.codes]\n"
        for code in CODES:
            catalogue += (
                f'"{code}" = {{ tag = "c{code[-2:]}", class = "listed", severity = "high" }}\n'
            )
    return truth, catalogue


def zone_files(truth: dict[str, dict[str, str]]) -> dict[str, str]:
    files = {}
    for key, listed in truth.items():
        lines = [":127.0.0.2:listed $", "127.0.0.2"]
        lines += [f"{ip} :{code}:" for ip, code in listed.items()]
        files[f"{key}.zone"] = "\n".join(lines) + "\n"
    return files


Seen = Iterator[tuple[str, str, Status, tuple[str, ...]]]  # ip, list key, status, codes


async def run_hrmonitor(
    server: Rbldnsd, ips: list[str], lists: list[ZoneList], truth: dict[str, dict[str, str]]
) -> tuple[float, float, dict[str, int]]:
    async with DnsblEngine([server.host], server.port, timeout=2.0, attempts=2) as engine:
        start, cpu = time.perf_counter(), time.process_time()
        answers = await engine.lookup(ips, lists)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    seen = ((a.ip, a.zone, a.status, getattr(a, "codes", ())) for a in answers)
    return elapsed, cpu, disagreements(truth, len(ips), seen, check_codes=True)


async def run_pydnsbl(
    server: Rbldnsd, ips: list[str], lists: list[ZoneList], truth: dict[str, dict[str, str]]
) -> tuple[float, float, dict[str, int]]:
    import aiodns
    from pydnsbl import DNSBLIpChecker
    from pydnsbl.providers import Provider

    providers = [Provider(z.zone) for z in lists]
    # Same timeout, tries and in-flight bound as DnsblEngine's defaults: a fair race.
    checker = DNSBLIpChecker(providers=providers, timeout=2, tries=2, concurrency=128)
    # pydnsbl builds its resolver on the system's nameservers; point it at ours.
    checker._resolver = aiodns.DNSResolver(
        nameservers=[server.host], timeout=2, tries=2, udp_port=server.port, tcp_port=server.port
    )
    key_of = {z.zone: z.key for z in lists}
    start, cpu = time.perf_counter(), time.process_time()
    results = await asyncio.gather(*(checker.check_async(ip) for ip in ips))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu

    def seen() -> Seen:
        for result in results:
            for provider in result.providers:
                key = key_of[provider.host]
                if provider in result.failed_providers:
                    yield result.addr, key, Status.UNKNOWN, ()
                elif provider.host in result.detected_by:
                    yield result.addr, key, Status.LISTED, ()
                else:
                    yield result.addr, key, Status.CLEAN, ()

    return elapsed, cpu, disagreements(truth, len(ips), seen(), check_codes=False)


def disagreements(
    truth: dict[str, dict[str, str]], ip_count: int, seen: Seen, check_codes: bool
) -> dict[str, int]:
    """Answers that contradict the zone files; pairs never answered count as unknown."""
    counts = {"listed read as clean": 0, "clean read as listed": 0, "unknown": 0, "wrong code": 0}
    answered = 0
    for ip, key, status, codes in seen:
        answered += 1
        listed = truth[key]
        if status is Status.UNKNOWN:
            counts["unknown"] += 1
        elif ip in listed and status is Status.CLEAN:
            counts["listed read as clean"] += 1
        elif ip not in listed and status is Status.LISTED:
            counts["clean read as listed"] += 1
        elif check_codes and ip in listed and codes != (listed[ip],):
            counts["wrong code"] += 1
    counts["unknown"] += ip_count * len(truth) - answered
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ips", type=int, default=4096)
    parser.add_argument("--share", type=float, default=0.05, help="share of IPs listed per zone")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per client")
    parser.add_argument(
        "--no-pydnsbl", action="store_true", help="skip the comparison (default with --ips > 4096)"
    )
    args = parser.parse_args()
    ips = sweep_ips(args.ips)
    truth, catalogue_text = build_zones(ips, args.share, args.seed)
    catalogue = load_catalogue([("bench", catalogue_text)])
    lists = list(catalogue.select(sorted(catalogue.lists)))
    server = Rbldnsd(
        {f"z{z}.bench.test": [("ip4set", f"z{z}.zone")] for z in range(ZONES)}, zone_files(truth)
    )
    lookups = len(ips) * len(lists)
    compare = not args.no_pydnsbl and args.ips <= 4096
    try:
        print(
            f"{len(ips)} IPs x {len(lists)} zones = {lookups} lookups, "
            f"{args.share:.0%} listed per zone, rbldnsd on {server.host}:{server.port}, "
            f"{args.rounds} round(s), clients alternating"
        )
        ours_rates: list[float] = []
        theirs_rates: list[float] = []
        ours_cpu: list[float] = []
        theirs_cpu: list[float] = []
        for round_number in range(1, args.rounds + 1):
            ours, cpu, wrong = asyncio.run(run_hrmonitor(server, ips, lists, truth))
            ours_rates.append(lookups / ours)
            ours_cpu.append(cpu / lookups * 1e6)
            print(
                f"round {round_number} hrmonitor: {lookups / ours:,.0f} lookups/s, "
                f"{ours_cpu[-1]:.1f} us CPU/lookup  {wrong}"
            )
            if compare:
                theirs, cpu, wrong = asyncio.run(run_pydnsbl(server, ips, lists, truth))
                theirs_rates.append(lookups / theirs)
                theirs_cpu.append(cpu / lookups * 1e6)
                print(
                    f"round {round_number} pydnsbl:   {lookups / theirs:,.0f} lookups/s, "
                    f"{theirs_cpu[-1]:.1f} us CPU/lookup  {wrong}"
                )
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"hrmonitor DnsblEngine: median {statistics.median(ours_rates):,.0f} lookups/s, "
            f"{statistics.median(ours_cpu):.1f} us CPU/lookup"
        )
        if compare:
            print(
                f"pydnsbl DNSBLIpChecker: median {statistics.median(theirs_rates):,.0f} lookups/s, "
                f"{statistics.median(theirs_cpu):.1f} us CPU/lookup"
            )
            ratios = [a / b for a, b in zip(ours_rates, theirs_rates, strict=True)]
            print(
                f"ratio hrmonitor / pydnsbl: median {statistics.median(ratios):.2f}x "
                f"(per round: {', '.join(f'{r:.2f}' for r in ratios)}); CPU per lookup: "
                f"{statistics.median(theirs_cpu) / statistics.median(ours_cpu):.2f}x less"
            )
        print(f"peak RSS of this process: {rss_mb:.0f} MB")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
