"""DNSBL decisions without I/O: query names, answer classification, zone self-tests,
listing confirmation and the query budget (RFC 5782, docs/dnsbl-facts.md).

The engine in ``hrmonitor.adapters.dns.dnsbl.engine`` turns wire messages into
:class:`Reply` values and asks this module what they mean.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from hrmonitor.core.dnsbl.catalogue import CodeClass, Family, ZoneList
from hrmonitor.core.model import (
    Answer,
    Clean,
    Error,
    Info,
    Listed,
    Severity,
    Status,
    Unknown,
    ZoneHealth,
)

_NEVER_A_LISTING = "127.0.0.1"

# The test points every IP list must honour, as (listed point, clean point).
TEST_POINTS: Mapping[Family, tuple[str, str]] = {
    Family.IPV4: ("127.0.0.2", "127.0.0.1"),
    Family.IPV6: ("::ffff:7f00:2", "::ffff:7f00:1"),
}


class Rcode(StrEnum):
    """How one exchange ended: a DNS rcode, or why there was no usable message."""

    NOERROR = "NOERROR"
    NXDOMAIN = "NXDOMAIN"
    SERVFAIL = "SERVFAIL"
    REFUSED = "REFUSED"
    TIMEOUT = "TIMEOUT"  # no answer after every attempt
    UNREACHABLE = "UNREACHABLE"  # no nameserver could be reached (ENETUNREACH, ECONNREFUSED...)
    TRUNCATED = "TRUNCATED"  # TC bit: a DNSBL answer never needs TCP; untrusted
    GARBAGE = "GARBAGE"  # an answer that did not parse
    OTHER = "OTHER"  # FORMERR, NOTIMP and the rest


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back for one A query (and its TXT follow-up), already decoded."""

    rcode: Rcode
    addresses: tuple[str, ...] = ()  # A records, in answer order
    txt: tuple[str, ...] = ()
    detail: str = ""  # for Unknown reasons: the rcode's name, the parse error


# --- query names ------------------------------------------------------------------------


def lookup_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address a list is asked about: IPv4-mapped IPv6 is looked up as IPv4."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def family_of(ip: str) -> Family:
    return address_family(lookup_address(ip))


def address_family(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Family:
    """The family of an address as :func:`lookup_address` returns it."""
    return Family.IPV4 if address.version == 4 else Family.IPV6


def covers(zone_list: ZoneList, ip: str) -> bool:
    """Whether ``zone_list`` lists addresses of ``ip``'s family at all."""
    return family_of(ip) in zone_list.families


def reversed_labels(ip: str, *, unmap: bool = True) -> str:
    """``5.2.0.192`` for 192.0.2.5; 32 reversed nibbles for IPv6.

    ``unmap=False`` keeps an IPv4-mapped address in nibble form: the IPv6
    test points (::ffff:7f00:2) are asked that way (RFC 5782 section 5).
    """
    address = lookup_address(ip) if unmap else ipaddress.ip_address(ip)
    if address.version == 4:
        return ".".join(reversed(str(address).split(".")))
    return ".".join(reversed(address.exploded.replace(":", "")))


def query_name(ip: str, zone: str, *, unmap: bool = True) -> str:
    """The A query for ``ip`` in ``zone``, without the trailing dot."""
    return f"{reversed_labels(ip, unmap=unmap)}.{zone.rstrip('.')}"


def self_test_names(zone_list: ZoneList) -> list[tuple[str, str]]:
    """(test point, query name) for every test point of the list's families."""
    return [
        (point, query_name(point, zone_list.zone, unmap=False))
        for family in sorted(zone_list.families)
        for point in TEST_POINTS[family]
    ]


# --- classification ---------------------------------------------------------------------


def classify(ip: str, zone_list: ZoneList, reply: Reply) -> Answer:
    """One (ip, list) answer per the catalogue.

    NXDOMAIN is Clean. A records all inside 127/8 are looked up in the code
    table (codes not in it get the catalogue's ``unknown_code``); 127.0.0.1
    is never a listing. Any error-class code makes the whole answer an Error;
    otherwise any listed code makes it Listed at the highest listed severity;
    otherwise Info. Everything else (timeouts, SERVFAIL, REFUSED, answers
    outside 127/8, empty answers) is Unknown: never Clean, never Listed.
    """
    key = zone_list.key
    if reply.rcode is Rcode.NXDOMAIN:
        return Clean(ip, key)
    if reply.rcode is not Rcode.NOERROR:
        return Unknown(ip, key, _reason(reply))
    if not reply.addresses:
        return Unknown(ip, key, "NOERROR without an address (NODATA)")
    outside = [a for a in reply.addresses if not _in_loopback(a)]
    if outside:
        return Unknown(ip, key, f"answer outside 127.0.0.0/8: {', '.join(outside)}")
    codes = tuple(sorted(set(reply.addresses), key=lambda a: _ipv4_value(a) or 0))
    meaningful = [c for c in codes if c != _NEVER_A_LISTING]
    if not meaningful:
        return Unknown(ip, key, "answer 127.0.0.1, which is never a listing")
    meanings = [(code, zone_list.meaning(code)) for code in meaningful]
    tags = tuple(m.tag for _, m in meanings if m.tag)
    txt = "; ".join(reply.txt)
    errors = [(c, m) for c, m in meanings if m.code_class is CodeClass.ERROR]
    if errors:
        reason = ", ".join(f"{c} {m.tag}".strip() for c, m in errors)
        return Error(ip, key, codes, f"the list refused the query: {reason}")
    severities = [m.severity for _, m in meanings if m.code_class is CodeClass.LISTED]
    if severities:
        worst = max(
            (s for s in severities if s is not None), key=lambda s: s.rank, default=Severity.MEDIUM
        )
        return Listed(ip, key, codes, tags, worst, txt)
    return Info(ip, key, codes, tags, txt)


def _in_loopback(text: str) -> bool:
    value = _ipv4_value(text)
    return value is not None and value >> 24 == 127


@functools.lru_cache(maxsize=1024)
def _ipv4_value(text: str) -> int | None:
    """An A record's address as an integer (None if not IPv4), parsed once per code seen:
    a sweep's listings repeat the same few codes thousands of times."""
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def _reason(reply: Reply) -> str:
    reasons = {
        Rcode.TIMEOUT: "no answer (timeout after every attempt)",
        Rcode.UNREACHABLE: "nameserver unreachable",
        Rcode.SERVFAIL: "SERVFAIL",
        Rcode.REFUSED: "REFUSED",
        Rcode.TRUNCATED: "truncated answer",
        Rcode.GARBAGE: "unparseable answer",
    }
    base = reasons.get(reply.rcode, reply.rcode.value)
    return f"{base}: {reply.detail}" if reply.detail else base


# --- zone self-test ---------------------------------------------------------------------


def zone_health(zone_list: ZoneList, points: Mapping[str, Reply]) -> ZoneHealth:
    """The zone's health this sweep from its test-point replies (keyed by test-point IP).

    Worst first: no answer -> unreachable; REFUSED or an error code ->
    refusing; a clean point listed (or a wildcard outside 127/8) ->
    lists-everything; a listed point not listed -> dead; else ok. A missing
    test-point reply counts as no answer.
    """
    verdicts: list[ZoneHealth] = []
    for family in sorted(zone_list.families):
        listed_point, clean_point = TEST_POINTS[family]
        for point, must_list in ((listed_point, True), (clean_point, False)):
            reply = points.get(point, Reply(Rcode.TIMEOUT))
            verdicts.append(_point_health(zone_list, point, reply, must_list))
    order = (
        ZoneHealth.UNREACHABLE,
        ZoneHealth.REFUSING,
        ZoneHealth.LISTS_EVERYTHING,
        ZoneHealth.DEAD,
    )
    for health in order:
        if health in verdicts:
            return health
    return ZoneHealth.OK


def _point_health(zone_list: ZoneList, point: str, reply: Reply, must_list: bool) -> ZoneHealth:
    if reply.rcode in (Rcode.TIMEOUT, Rcode.UNREACHABLE, Rcode.SERVFAIL):
        return ZoneHealth.UNREACHABLE
    if reply.rcode is Rcode.REFUSED:
        return ZoneHealth.REFUSING
    answer = classify(point, zone_list, reply)
    if answer.status is Status.ERROR:
        return ZoneHealth.REFUSING
    if must_list:
        return ZoneHealth.OK if answer.status in (Status.LISTED, Status.INFO) else ZoneHealth.DEAD
    if answer.status is Status.CLEAN:
        return ZoneHealth.OK
    if reply.rcode is Rcode.NOERROR:
        return ZoneHealth.LISTS_EVERYTHING  # listed, info, or a wildcard outside 127/8
    return ZoneHealth.REFUSING  # truncated, garbage, FORMERR...: no trustworthy answer


def trusted(answer: Answer, health: ZoneHealth) -> Answer:
    """An answer from a zone failing its self-test changes nothing: it becomes Unknown.

    Error and Unknown already change nothing and stay as they are.
    """
    if health is ZoneHealth.OK or answer.status in (Status.UNKNOWN, Status.ERROR):
        return answer
    return Unknown(
        answer.ip, answer.zone, f"zone {health.value} this sweep ({answer.status} ignored)"
    )


# --- confirmation -----------------------------------------------------------------------


def needs_confirmation(previous: Status | None, answer: Answer) -> bool:
    """A Listed answer is new, and needs a second query, unless the IP was already listed."""
    return answer.status is Status.LISTED and previous is not Status.LISTED


def confirm(previous: Status | None, first: Answer, second: Answer) -> Answer:
    """The answer that counts after a confirmation query.

    A new listing counts only when the second query is Listed too (its codes,
    the latest, are kept). Otherwise the result is Unknown, which keeps the
    previous state: a listing seen once is never acted on, and the second
    answer (say Clean) is not trusted either while the two disagree.
    """
    if not needs_confirmation(previous, first):
        return first
    if second.status is Status.LISTED:
        return second
    return Unknown(first.ip, first.zone, f"listing not confirmed (second query: {second.status})")


# --- sweep result -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepResult:
    """Raw answers of one sweep with each list's health; ``trusted`` answers are what counts."""

    answers: tuple[Answer, ...]
    health: Mapping[str, ZoneHealth] = field(default_factory=dict)

    @property
    def trusted(self) -> tuple[Answer, ...]:
        """Answers with those of unhealthy zones turned into Unknown.

        An answer of a healthy zone is kept as it is (the same object), and with
        every zone healthy, the usual case, ``answers`` itself is the result.
        """
        health = self.health
        unhealthy = {
            zone
            for zone in {a.zone for a in self.answers}
            if health.get(zone, ZoneHealth.UNREACHABLE) is not ZoneHealth.OK
        }
        if not unhealthy:
            return self.answers
        return tuple(
            trusted(a, health.get(a.zone, ZoneHealth.UNREACHABLE)) if a.zone in unhealthy else a
            for a in self.answers
        )


# --- query budget -----------------------------------------------------------------------

SECONDS_PER_DAY = 86400


def queries_per_day(ips: int, interval: timedelta, test_points: int = 2) -> int:
    """Queries one zone receives per day: (IPs + test points) x sweeps per day."""
    sweeps = math.ceil(SECONDS_PER_DAY / interval.total_seconds())
    return (ips + test_points) * sweeps


def budget_problems(lists: Sequence[ZoneList], ips: int, interval: timedelta) -> list[str]:
    """One message per list whose ``daily_budget`` the sweep schedule would exceed."""
    problems = []
    for zone_list in lists:
        if zone_list.daily_budget is None:
            continue
        points = 2 * len(zone_list.families)
        needed = queries_per_day(ips, interval, points)
        if needed > zone_list.daily_budget:
            problems.append(
                f"{zone_list.key}: {needed} queries/day ({ips} IPs every "
                f"{interval.total_seconds():g}s) exceeds its budget of {zone_list.daily_budget}"
            )
    return problems


def min_interval(ips: int, daily_budget: int, test_points: int = 2) -> timedelta:
    """The shortest sweep interval that keeps ``ips`` within ``daily_budget`` queries/day."""
    sweeps = max(1, daily_budget // max(1, ips + test_points))
    return timedelta(seconds=math.ceil(SECONDS_PER_DAY / sweeps))


def send_offsets(n: int, window: float, rng: random.Random) -> list[float]:
    """Send times (seconds from the sweep start, ascending) for ``n`` queries in ``window``.

    One query per equal slot at a random point inside it: spread evenly at
    the average rate, no bursts, and never two queries the same instant by
    design.
    """
    if n <= 0:
        return []
    slot = window / n
    return [(i + rng.random()) * slot for i in range(n)]


def zone_slots(
    now: float, free_at: float | None, n: int, rate: float, rng: random.Random
) -> tuple[list[float], float]:
    """Send times for ``n`` queries to one zone at ``rate`` per second, and its next free time.

    The queries take the zone's next ``n`` slots of ``1/rate`` seconds, from
    ``now`` or from where the zone's previous queries left off (``free_at``),
    whichever is later, each at a random point of its slot: the rate holds
    across calls, and the k-th query never goes before the k-th slot starts.
    """
    start = now if free_at is None else max(now, free_at)
    window = n / rate
    return [start + offset for offset in send_offsets(n, window, rng)], start + window
