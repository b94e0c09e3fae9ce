"""The DNSBL query engine: many A/TXT queries over a few UDP sockets, with dnspython messages.

Why not ``dns.asyncresolver``: a sweep is tens of thousands of tiny
queries; one coroutine, socket and ``wait_for`` per query costs more than
the query. Here a handful of UDP sockets carry every query, responses are
matched by (id, question), one timer per query handles loss, and at most
``max_in_flight`` queries are outstanding. Every (ip, list) pair gets
exactly one answer; a bad query becomes ``Unknown`` and never an exception
(ARCHITECTURE rule 1). What answers mean is decided in ``core.dnsbl``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from hrmonitor.core.catalogue import Catalogue, ZoneList, check_catalogue, load_catalogue
from hrmonitor.core.dnsbl import (
    Rcode,
    Reply,
    SweepResult,
    classify,
    confirm,
    covers,
    needs_confirmation,
    query_name,
    self_test_names,
    send_offsets,
    zone_health,
)
from hrmonitor.core.model import Answer, Status, ZoneHealth
from hrmonitor.errors import ConfigError, RuleError

log = logging.getLogger(__name__)

A = dns.rdatatype.A
TXT = dns.rdatatype.TXT

_RCODES = {
    dns.rcode.NOERROR: Rcode.NOERROR,
    dns.rcode.NXDOMAIN: Rcode.NXDOMAIN,
    dns.rcode.SERVFAIL: Rcode.SERVFAIL,
    dns.rcode.REFUSED: Rcode.REFUSED,
}


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


# --- the wire -----------------------------------------------------------------------------


class _Query:
    """One question in flight: its wire form, where it goes, and what to call when done."""

    __slots__ = (
        "attempts_left",
        "cancelled",
        "done",
        "first_server",
        "handle",
        "key",
        "name",
        "rdtype",
        "server",
        "tries",
    )

    def __init__(
        self,
        name: str,
        rdtype: dns.rdatatype.RdataType,
        attempts: int,
        first_server: int,
        done: Callable[[Reply], None],
    ) -> None:
        self.name = name
        self.rdtype = rdtype
        self.attempts_left = attempts
        self.first_server = first_server
        self.cancelled = False
        self.tries = 0
        self.done = done
        self.handle: asyncio.TimerHandle | None = None
        self.key: tuple[int, bytes] | None = None
        self.server: tuple[str, int] = ("", 0)


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, engine: DnsblEngine) -> None:
        self._engine = engine

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._engine._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable and kin: the query's timer turns it into a retry.
        log.debug("DNSBL socket error: %s", exc)


def _question_key(wire: bytes) -> tuple[int, bytes] | None:
    """(id, lowercased question section) of a message, or None if it is too broken to match."""
    if len(wire) < 12:
        return None
    pos = 12
    while True:
        if pos >= len(wire):
            return None
        length = wire[pos]
        if length == 0:
            break
        if length & 0xC0:
            return None  # a question name is never compressed
        pos += 1 + length
    end = pos + 5
    if end > len(wire):
        return None
    return int.from_bytes(wire[:2], "big"), wire[12:end].lower()


def _decode(wire: bytes) -> Reply:
    try:
        message = dns.message.from_wire(wire)
    except (dns.exception.DNSException, ValueError) as exc:
        return Reply(Rcode.GARBAGE, detail=str(exc) or type(exc).__name__)
    if message.flags & dns.flags.TC:
        return Reply(Rcode.TRUNCATED)
    rcode = _RCODES.get(message.rcode(), Rcode.OTHER)
    if rcode is not Rcode.NOERROR:
        return Reply(
            rcode, detail=dns.rcode.to_text(message.rcode()) if rcode is Rcode.OTHER else ""
        )
    addresses: list[str] = []
    texts: list[str] = []
    for rrset in message.answer:
        if rrset.rdtype == A:
            addresses.extend(rdata.address for rdata in rrset)
        elif rrset.rdtype == TXT:
            texts.extend(
                b"".join(rdata.strings).decode("utf-8", errors="replace") for rdata in rrset
            )
    return Reply(Rcode.NOERROR, tuple(addresses), tuple(texts))


# --- the engine ---------------------------------------------------------------------------


class DnsblEngine:
    """Asks DNS lists about IPs through the configured resolver.

    ``nameservers``: resolver addresses (IPv4/IPv6); empty means the system
    resolver's. ``timeout`` is per try in seconds; ``attempts`` tries per
    query, rotating over the nameservers. ``rate_per_zone`` (queries/second)
    spreads each list's queries over the sweep with jitter from ``rng``.
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        port: int = 53,
        timeout: float = 2.0,
        attempts: int = 2,
        *,
        max_in_flight: int = 512,
        sockets: int = 4,
        rate_per_zone: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if attempts < 1 or max_in_flight < 1 or sockets < 1 or timeout <= 0:
            raise ValueError("attempts, max_in_flight, sockets and timeout must be positive")
        if rate_per_zone is not None and rate_per_zone <= 0:
            raise ValueError("rate_per_zone must be positive")
        servers = list(nameservers) or _system_nameservers()
        self._servers = [(str(ipaddress.ip_address(s)), port) for s in servers]
        self._timeout = timeout
        self._attempts = attempts
        self._max_in_flight = max_in_flight
        self._socket_count = sockets
        self._rate = rate_per_zone
        self._rng = rng or random.Random()
        self._ids = random.Random()  # query ids: unpredictable, not the jitter stream
        self._transports: dict[int, list[asyncio.DatagramTransport]] = {}
        self._pending: dict[tuple[int, bytes], _Query] = {}
        self._ready: deque[_Query] = deque()
        self._in_flight = 0
        self._sent = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def nameservers(self) -> tuple[tuple[str, int], ...]:
        """The (address, port) pairs queries go to, in the order attempts rotate over them."""
        return tuple(self._servers)

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
        if self._transports:
            return
        self._loop = asyncio.get_running_loop()
        versions = {ipaddress.ip_address(host).version for host, _ in self._servers}
        for version in sorted(versions):
            local = ("0.0.0.0", 0) if version == 4 else ("::", 0)
            transports = []
            for _ in range(self._socket_count):
                transport, _protocol = await self._loop.create_datagram_endpoint(
                    lambda: _Receiver(self), local_addr=local
                )
                transports.append(transport)
            self._transports[version] = transports

    async def close(self) -> None:
        for query in list(self._pending.values()):
            if query.handle is not None:
                query.handle.cancel()
        self._pending.clear()
        self._ready.clear()
        for transports in self._transports.values():
            for transport in transports:
                transport.close()
        self._transports.clear()
        await asyncio.sleep(0)  # let the transports finish closing

    # -- public queries

    async def lookup(self, ips: Sequence[str], lists: Sequence[ZoneList]) -> list[Answer]:
        """One answer per (ip, list) the list covers (its families), in ips x lists order.

        TXT is asked only for Listed and Info answers.
        """
        pairs = [(ip, z) for ip in ips for z in lists if covers(z, ip)]
        return await self._answers(pairs, first_server=0)

    async def self_test(self, lists: Sequence[ZoneList]) -> dict[str, ZoneHealth]:
        """Each list's health from its test points (127.0.0.2 listed, 127.0.0.1 not, and v6)."""
        points = _points(lists)
        replies = await self._exchange([(name, A, z.key) for _, name, z in points])
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
        points = _points(lists)
        pairs = [(ip, z) for ip in ips for z in lists if covers(z, ip)]
        questions = [(name, A, z.key) for _, name, z in points]
        questions += [(query_name(ip, z.zone), A, z.key) for ip, z in pairs]
        replies = await self._exchange(questions)
        health = _health(lists, points, replies[: len(points)])
        answers = await self._with_txt(pairs, replies[len(points) :])
        to_confirm = [
            i
            for i, (pair, answer) in enumerate(zip(pairs, answers, strict=True))
            if health[pair[1].key] is ZoneHealth.OK
            and needs_confirmation(previous.get((pair[0], pair[1].key)), answer)
        ]
        if to_confirm:
            again = await self._answers([pairs[i] for i in to_confirm], first_server=1)
            for i, second in zip(to_confirm, again, strict=True):
                ip, zone_list = pairs[i]
                answers[i] = confirm(previous.get((ip, zone_list.key)), answers[i], second)
        return SweepResult(tuple(answers), health)

    # -- internals

    async def _answers(
        self, pairs: Sequence[tuple[str, ZoneList]], first_server: int
    ) -> list[Answer]:
        questions = [(query_name(ip, z.zone), A, z.key) for ip, z in pairs]
        replies = await self._exchange(questions, first_server)
        return await self._with_txt(pairs, replies)

    async def _with_txt(
        self, pairs: Sequence[tuple[str, ZoneList]], replies: Sequence[Reply]
    ) -> list[Answer]:
        answers = [classify(ip, z, r) for (ip, z), r in zip(pairs, replies, strict=True)]
        wanted = [i for i, a in enumerate(answers) if a.status in (Status.LISTED, Status.INFO)]
        if not wanted:
            return answers
        txt_questions = [(query_name(pairs[i][0], pairs[i][1].zone), TXT, "") for i in wanted]
        txt_replies = await self._exchange(txt_questions)
        for i, txt in zip(wanted, txt_replies, strict=True):
            if txt.rcode is Rcode.NOERROR and txt.txt:
                ip, zone_list = pairs[i]
                answers[i] = classify(ip, zone_list, replace(replies[i], txt=txt.txt))
        return answers

    async def _exchange(
        self, questions: Sequence[tuple[str, dns.rdatatype.RdataType, str]], first_server: int = 0
    ) -> list[Reply]:
        """Send every (name, rdtype, zone key) question; replies in the same order."""
        if not questions:
            return []
        await self.open()
        loop = asyncio.get_running_loop()
        results: list[Reply | None] = [None] * len(questions)
        finished = loop.create_future()
        remaining = len(questions)

        def done_at(index: int) -> Callable[[Reply], None]:
            def done(reply: Reply) -> None:
                nonlocal remaining
                results[index] = reply
                remaining -= 1
                if remaining == 0 and not finished.done():
                    finished.set_result(None)

            return done

        queries = [
            _Query(name, rdtype, self._attempts, first_server, done_at(i))
            for i, (name, rdtype, _zone) in enumerate(questions)
        ]
        if self._rate is None:
            self._ready.extend(queries)
            self._pump()
        else:
            self._schedule_by_zone(loop, queries, [zone for _, _, zone in questions])
        try:
            await finished
        except asyncio.CancelledError:
            for query in queries:
                self._forget(query)
            raise
        return [r if r is not None else Reply(Rcode.TIMEOUT) for r in results]

    def _schedule_by_zone(
        self, loop: asyncio.AbstractEventLoop, queries: Sequence[_Query], zones: Sequence[str]
    ) -> None:
        assert self._rate is not None
        by_zone: dict[str, list[_Query]] = {}
        for query, zone in zip(queries, zones, strict=True):
            by_zone.setdefault(zone, []).append(query)
        start = loop.time()
        for zone_queries in by_zone.values():
            window = len(zone_queries) / self._rate
            for query, offset in zip(
                zone_queries, send_offsets(len(zone_queries), window, self._rng), strict=True
            ):
                loop.call_at(start + offset, self._release, query)

    def _release(self, query: _Query) -> None:
        self._ready.append(query)
        self._pump()

    def _pump(self) -> None:
        while self._ready and self._in_flight < self._max_in_flight:
            query = self._ready.popleft()
            if query.cancelled:
                continue
            self._in_flight += 1
            self._send(query)

    def _send(self, query: _Query) -> None:
        loop = self._loop
        assert loop is not None
        server = self._servers[(query.first_server + query.tries) % len(self._servers)]
        version = 4 if ":" not in server[0] else 6
        while True:
            qid = self._ids.getrandbits(16)
            wire = dns.message.make_query(query.name, query.rdtype, id=qid).to_wire()
            key = (qid, wire[12:].lower())
            if key not in self._pending:
                break
        query.key = key
        query.server = server
        query.tries += 1
        query.attempts_left -= 1
        self._pending[key] = query
        transports = self._transports[version]
        self._sent += 1
        transports[self._sent % len(transports)].sendto(wire, server)
        query.handle = loop.call_later(self._timeout, self._expired, query)

    def _received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        key = _question_key(data)
        if key is None:
            return
        query = self._pending.get(key)
        if query is None or (_canonical(addr[0]), addr[1]) != query.server:
            return  # late, unknown or spoofed: the query's own timer decides
        if not data[2] & 0x80:
            return  # QR not set: not a response
        reply = _decode(data)
        if reply.rcode is Rcode.SERVFAIL and query.attempts_left > 0 and len(self._servers) > 1:
            self._retry(query)
            return
        self._finish(query, reply)

    def _expired(self, query: _Query) -> None:
        if query.attempts_left > 0:
            log.debug("DNSBL query %s lost; retrying", query.name)
            self._retry(query)
        else:
            self._finish(query, Reply(Rcode.TIMEOUT, detail=f"{query.tries} tries"))

    def _retry(self, query: _Query) -> None:
        self._unregister(query)
        self._send(query)

    def _finish(self, query: _Query, reply: Reply) -> None:
        self._unregister(query)
        self._in_flight -= 1
        query.done(reply)
        self._pump()

    def _unregister(self, query: _Query) -> None:
        if query.handle is not None:
            query.handle.cancel()
            query.handle = None
        if query.key is not None:
            self._pending.pop(query.key, None)
            query.key = None

    def _forget(self, query: _Query) -> None:
        """Drop a query whose sweep was cancelled, freeing its in-flight slot."""
        query.cancelled = True
        if query.key is not None:
            self._unregister(query)
            self._in_flight -= 1


def _canonical(host: str | int) -> str:
    try:
        return str(ipaddress.ip_address(str(host).split("%")[0]))
    except ValueError:
        return str(host)


def _points(lists: Sequence[ZoneList]) -> list[tuple[str, str, ZoneList]]:
    return [(point, name, z) for z in lists for point, name in self_test_names(z)]


def _health(
    lists: Sequence[ZoneList],
    points: Sequence[tuple[str, str, ZoneList]],
    replies: Sequence[Reply],
) -> dict[str, ZoneHealth]:
    by_list: dict[str, dict[str, Reply]] = {z.key: {} for z in lists}
    for (point, _name, zone_list), reply in zip(points, replies, strict=True):
        by_list[zone_list.key][point] = reply
    return {z.key: zone_health(z, by_list[z.key]) for z in lists}


def _system_nameservers() -> list[str]:
    try:
        servers = dns.resolver.get_default_resolver().nameservers
    except dns.resolver.NoResolverConfiguration as exc:
        raise ConfigError("/etc/resolv.conf", "nameserver", f"no system resolver: {exc}") from exc
    return [str(s) for s in servers]
