"""The DNSBL query engine: every (ip, list) pair of a sweep answered, classified, trusted or not.

The engine builds the questions (``dnsbl_wire``), hands them to the UDP
transport (``dnsbl_exchange``), asks TXT for listings, runs the zone
self-tests and the confirmation of new listings, and leaves what answers
mean to ``core.dnsbl``. Every (ip, list) pair gets exactly one answer; a bad
query becomes ``Unknown`` and never an exception (ARCHITECTURE rule 1).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType

from hrmonitor.adapters.dns.dnsbl import wire
from hrmonitor.adapters.dns.dnsbl.exchange import UdpExchange
from hrmonitor.core.dnsbl.answers import (
    TEST_POINTS,
    Rcode,
    Reply,
    SweepResult,
    address_family,
    classify,
    confirm,
    lookup_address,
    needs_confirmation,
    zone_health,
)
from hrmonitor.core.dnsbl.catalogue import Catalogue, ZoneList, check_catalogue, load_catalogue
from hrmonitor.core.model import Answer, Clean, Status, ZoneHealth
from hrmonitor.errors import ConfigError, RuleError

# --- catalogue files ----------------------------------------------------------------------


def read_catalogue(paths: Sequence[str | Path]) -> Catalogue:
    """Load and layer catalogue files (first to last). Raises RuleError naming file and key."""
    return load_catalogue([(str(path), _read(path)) for path in paths])


def validate_catalogue_files(paths: Sequence[str | Path]) -> list[str]:
    """Problems in each catalogue file, for ``hrmonitor rules check`` (empty when all valid)."""
    problems: list[str] = []
    for path in paths:
        try:
            problems.extend(check_catalogue([(str(path), _read(path))]))
        except RuleError as exc:
            problems.append(str(exc))
    return problems


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(str(path), "", f"cannot read: {exc}") from exc


class _Plan:
    """The (ip, list) pairs of a lookup as flat indices, with each IP's and zone's wire labels."""

    def __init__(
        self, ips: Sequence[str], lists: Sequence[ZoneList], flats: Sequence[int] | None = None
    ) -> None:
        self.ips = list(ips)
        self.lists = list(lists)
        self.keys = [z.key for z in self.lists]
        addresses = [lookup_address(ip) for ip in self.ips]  # one parse per IP
        self.prefixes = [wire.reversed_address_labels(a) for a in addresses]
        self.zones = [wire.encode_labels(z.zone) for z in self.lists]
        width = len(self.lists)
        if flats is None:
            families = [address_family(a) for a in addresses]
            # The lists covering each family, as column indices; a row is one IP.
            columns = {
                family: [j for j, z in enumerate(self.lists) if family in z.families]
                for family in set(families)
            }
            flats = array("q")
            for i, family in enumerate(families):
                row, covering = i * width, columns[family]
                if len(covering) == width:
                    flats.extend(range(row, row + width))
                else:
                    flats.extend([row + j for j in covering])
        self.flats = flats

    def pair(self, flat: int) -> tuple[str, ZoneList]:
        i, j = divmod(flat, len(self.lists))
        return self.ips[i], self.lists[j]

    def questions(self, rdtype: int, flats: Sequence[int]) -> Iterator[tuple[bytes, str]]:
        width = len(self.lists)
        prefixes, keys = self.prefixes, self.keys
        # Everything after the IP's labels is the same for every question to a zone.
        suffixes = [wire.question(b"", zone, rdtype) for zone in self.zones]
        for flat in flats:
            i, j = divmod(flat, width)
            yield prefixes[i] + suffixes[j], keys[j]


# --- the engine ---------------------------------------------------------------------------


class DnsblEngine:
    """Asks DNS lists about IPs through the configured resolver.

    ``nameservers``: resolver addresses (IPv4/IPv6); empty means the system
    resolver's. ``timeout`` is per try in seconds; ``attempts`` tries per
    query, each retry on another nameserver; a lost answer is retried, never
    read as clean. Nameservers that lost answers are asked last until they
    answer again, so a dead first resolver costs one window of timeouts,
    not one per query. ``rate_per_zone`` (queries/second) spreads each list's
    queries over the sweep with jitter from ``rng``.
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        port: int = 53,
        timeout: float = 2.0,
        attempts: int = 2,
        *,
        max_in_flight: int = 128,
        sockets: int = 4,
        rate_per_zone: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if attempts < 1 or max_in_flight < 1 or sockets < 1 or timeout <= 0:
            raise ValueError("attempts, max_in_flight, sockets and timeout must be positive")
        if rate_per_zone is not None and rate_per_zone <= 0:
            raise ValueError("rate_per_zone must be positive")
        servers = list(nameservers) or _system_nameservers()
        self._exchange = UdpExchange(
            [(str(ipaddress.ip_address(s)), port) for s in servers],
            timeout,
            attempts,
            max_in_flight=max_in_flight,
            sockets=sockets,
            rate_per_zone=rate_per_zone,
            rng=rng or random.Random(),
        )

    @property
    def nameservers(self) -> tuple[tuple[str, int], ...]:
        """The (address, port) pairs queries go to, in the order attempts rotate over them."""
        return self._exchange.servers

    # -- lifecycle

    async def __aenter__(self) -> DnsblEngine:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Bind the UDP sockets (done on first use if not called)."""
        await self._exchange.open()

    async def close(self) -> None:
        """Close the sockets; calls still waiting get Unknown answers."""
        await self._exchange.close()

    # -- public queries

    async def lookup(self, ips: Sequence[str], lists: Sequence[ZoneList]) -> list[Answer]:
        """One answer per (ip, list) the list covers (its families), in ips x lists order.

        TXT is asked only for Listed and Info answers. IPs must be valid
        addresses (config validation sees to it): a malformed one raises
        ValueError before anything is sent; nothing after that raises.
        """
        plan = _Plan(ips, lists)
        return await self._answers(plan, plan.flats, first_server=0)

    async def self_test(self, lists: Sequence[ZoneList]) -> dict[str, ZoneHealth]:
        """Each list's health from its test points (127.0.0.2 listed, 127.0.0.1 not, and v6)."""
        points, questions = _self_test_questions(lists)
        replies = await self._exchange.exchange(len(questions), iter(questions))
        return _health(lists, points, replies)

    async def sweep(
        self,
        ips: Sequence[str],
        lists: Sequence[ZoneList],
        previous: Mapping[tuple[str, str], Status] | None = None,
    ) -> SweepResult:
        """Self-test, lookups and confirmation of every new listing, in one pass.

        ``previous`` maps (ip, list key) to the last known status; a Listed
        answer for a pair not previously LISTED is asked again (from the next
        nameserver) and counts only if the second answer agrees. Answers of
        lists whose health is not ok stay in ``answers``; ``trusted`` turns
        them into Unknown.
        """
        previous = previous or {}
        plan = _Plan(ips, lists)
        health, answers = await asyncio.gather(
            self.self_test(lists), self._answers(plan, plan.flats, first_server=0)
        )
        again = [
            n
            for n, answer in enumerate(answers)
            if answer.status is not Status.CLEAN  # the bulk, and never a new listing
            and health[answer.zone] is ZoneHealth.OK
            and needs_confirmation(previous.get((answer.ip, answer.zone)), answer)
        ]
        if again:
            flats = [plan.flats[n] for n in again]
            second = await self._answers(plan, flats, first_server=1)
            for n, answer in zip(again, second, strict=True):
                first = answers[n]
                answers[n] = confirm(previous.get((first.ip, first.zone)), first, answer)
        return SweepResult(tuple(answers), health)

    # -- from replies to answers

    async def _answers(self, plan: _Plan, flats: Sequence[int], first_server: int) -> list[Answer]:
        replies = await self._exchange.exchange(
            len(flats), plan.questions(wire.TYPE_A, flats), first_server
        )
        answers: list[Answer] = []
        append = answers.append
        wanted: list[int] = []  # Listed and Info answers: their TXT is asked next
        ips, lists, keys, width = plan.ips, plan.lists, plan.keys, len(plan.lists)
        nxdomain = wire.NXDOMAIN
        for flat, reply in zip(flats, replies, strict=True):
            i, j = divmod(flat, width)
            if reply is nxdomain:  # most of a sweep: skip the general classifier
                append(Clean(ips[i], keys[j]))
                continue
            answer = classify(ips[i], lists[j], reply)
            if answer.status in (Status.LISTED, Status.INFO):
                wanted.append(len(answers))
            append(answer)
        if wanted:
            txt_flats = [flats[n] for n in wanted]
            texts = await self._exchange.exchange(
                len(wanted), plan.questions(wire.TYPE_TXT, txt_flats), first_server
            )
            for n, text in zip(wanted, texts, strict=True):
                if text.rcode is Rcode.NOERROR and text.txt:
                    ip, zone_list = plan.pair(flats[n])
                    answers[n] = classify(ip, zone_list, replace(replies[n], txt=text.txt))
        return answers


# --- helpers ------------------------------------------------------------------------------


def _self_test_questions(
    lists: Sequence[ZoneList],
) -> tuple[list[tuple[str, ZoneList]], list[tuple[bytes, str]]]:
    points: list[tuple[str, ZoneList]] = []
    questions: list[tuple[bytes, str]] = []
    for zone_list in lists:
        zone = wire.encode_labels(zone_list.zone)
        for family in sorted(zone_list.families):
            for point in TEST_POINTS[family]:
                prefix = wire.reversed_ip_labels(point, unmap=False)
                points.append((point, zone_list))
                questions.append((wire.question(prefix, zone, wire.TYPE_A), zone_list.key))
    return points, questions


def _health(
    lists: Sequence[ZoneList], points: Sequence[tuple[str, ZoneList]], replies: Sequence[Reply]
) -> dict[str, ZoneHealth]:
    by_list: dict[str, dict[str, Reply]] = {z.key: {} for z in lists}
    for (point, zone_list), reply in zip(points, replies, strict=True):
        by_list[zone_list.key][point] = reply
    return {z.key: zone_health(z, by_list[z.key]) for z in lists}


def _system_nameservers() -> list[str]:
    # dnspython's resolver (~40 ms to import) only reads /etc/resolv.conf here,
    # when no nameservers are configured; a configured check never imports it.
    import dns.resolver  # noqa: PLC0415

    try:
        servers = dns.resolver.get_default_resolver().nameservers
    except dns.resolver.NoResolverConfiguration as exc:
        raise ConfigError("/etc/resolv.conf", "nameserver", f"no system resolver: {exc}") from exc
    return [str(s) for s in servers]
