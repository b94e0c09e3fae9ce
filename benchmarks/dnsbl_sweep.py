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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hrmonitor.adapters.dns.dnsbl import DnsblEngine  # noqa: E402
from hrmonitor.core.catalogue import ZoneList, load_catalogue  # noqa: E402
from hrmonitor.core.model import Status  # noqa: E402
from tests.fixtures.rbldnsd import Rbldnsd  # noqa: E402

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
    catalogue = "[defaults]\nunknown_code = { class = \"listed\", severity = \"medium\" }\n"
    for z in range(ZONES):
        catalogue += f'[lists.z{z}]\nzone = "z{z}.bench.test"\nfamilies = ["ipv4"]\n'
        catalogue += f"[lists.z{z}.codes]\n"
        for code in CODES:
            catalogue += f'"{code}" = {{ tag = "c{code[-2:]}", class = "listed", severity = "high" }}\n'
    return truth, catalogue


def zone_files(truth: dict[str, dict[str, str]]) -> dict[str, str]:
    files = {}
    for key, listed in truth.items():
        lines = [":127.0.0.2:listed $", "127.0.0.2"]
        lines += [f"{ip} :{code}:" for ip, code in listed.items()]
        files[f"{key}.zone"] = "\n".join(lines) + "\n"
    return files


async def run_hrmonitor(
    server: Rbldnsd, ips: list[str], lists: list[ZoneList]
) -> tuple[float, dict[tuple[str, str], tuple[Status, tuple[str, ...]]]]:
    async with DnsblEngine([server.host], server.port, timeout=2.0, attempts=2) as engine:
        start = time.perf_counter()
        answers = await engine.lookup(ips, lists)
        elapsed = time.perf_counter() - start
    seen = {(a.ip, a.zone): (a.status, getattr(a, "codes", ())) for a in answers}
    return elapsed, seen


async def run_pydnsbl(
    server: Rbldnsd, ips: list[str], lists: list[ZoneList]
) -> tuple[float, dict[tuple[str, str], tuple[Status, tuple[str, ...]]]]:
    import aiodns
    from pydnsbl import DNSBLIpChecker
    from pydnsbl.providers import Provider

    providers = [Provider(z.zone) for z in lists]
    checker = DNSBLIpChecker(providers=providers, timeout=2, tries=2, concurrency=512)
    # pydnsbl builds its resolver on the system's nameservers; point it at ours.
    checker._resolver = aiodns.DNSResolver(
        nameservers=[server.host], timeout=2, tries=2, udp_port=server.port, tcp_port=server.port
    )
    key_of = {z.zone: z.key for z in lists}
    start = time.perf_counter()
    results = await asyncio.gather(*(checker.check_async(ip) for ip in ips))
    elapsed = time.perf_counter() - start
    seen: dict[tuple[str, str], tuple[Status, tuple[str, ...]]] = {}
    for result in results:
        for provider in result.providers:
            key = key_of[provider.host]
            if provider in result.failed_providers:
                seen[(result.addr, key)] = (Status.UNKNOWN, ())
            elif provider.host in result.detected_by:
                seen[(result.addr, key)] = (Status.LISTED, ())
            else:
                seen[(result.addr, key)] = (Status.CLEAN, ())
    return elapsed, seen


def disagreements(
    truth: dict[str, dict[str, str]],
    ips: list[str],
    seen: dict[tuple[str, str], tuple[Status, tuple[str, ...]]],
    check_codes: bool,
) -> dict[str, int]:
    counts = {"listed read as clean": 0, "clean read as listed": 0, "unknown": 0, "wrong code": 0}
    for key, listed in truth.items():
        for ip in ips:
            status, codes = seen.get((ip, key), (Status.UNKNOWN, ()))
            if status is Status.UNKNOWN:
                counts["unknown"] += 1
            elif ip in listed and status is Status.CLEAN:
                counts["listed read as clean"] += 1
            elif ip not in listed and status is Status.LISTED:
                counts["clean read as listed"] += 1
            elif check_codes and ip in listed and codes != (listed[ip],):
                counts["wrong code"] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ips", type=int, default=4096)
    parser.add_argument("--share", type=float, default=0.05, help="share of IPs listed per zone")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--no-pydnsbl", action="store_true", help="skip the comparison (default with --ips > 4096)"
    )
    args = parser.parse_args()
    ips = sweep_ips(args.ips)
    truth, catalogue_text = build_zones(ips, args.share, args.seed)
    catalogue = load_catalogue([("bench", catalogue_text)])
    lists = list(catalogue.select(sorted(catalogue.lists)))
    server = Rbldnsd({f"z{z}.bench.test": [("ip4set", f"z{z}.zone")] for z in range(ZONES)},
                     zone_files(truth))
    lookups = len(ips) * len(lists)
    try:
        print(f"{len(ips)} IPs x {len(lists)} zones = {lookups} lookups, "
              f"{args.share:.0%} listed per zone, rbldnsd on {server.host}:{server.port}")
        ours, seen = asyncio.run(run_hrmonitor(server, ips, lists))
        ours_rate = lookups / ours
        print(f"hrmonitor DnsblEngine: {ours:.2f} s, {ours_rate:,.0f} lookups/s")
        print(f"  disagreements: {disagreements(truth, ips, seen, check_codes=True)}")
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  peak RSS (this process so far): {rss_mb:.0f} MB")
        if not args.no_pydnsbl and args.ips <= 4096:
            theirs, seen_theirs = asyncio.run(run_pydnsbl(server, ips, lists))
            theirs_rate = lookups / theirs
            print(f"pydnsbl DNSBLIpChecker: {theirs:.2f} s, {theirs_rate:,.0f} lookups/s")
            print(f"  disagreements: {disagreements(truth, ips, seen_theirs, check_codes=False)}")
            print(f"ratio hrmonitor / pydnsbl: {ours_rate / theirs_rate:.2f}x")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
