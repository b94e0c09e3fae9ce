"""The DNSBL query engine: many A/TXT queries over a few UDP sockets.

Why not ``dns.asyncresolver``: a sweep is tens of thousands of tiny
queries; a coroutine, a socket and a ``wait_for`` per query cost more than
the query. Here a handful of non-blocking UDP sockets carry every query;
each readable event drains every waiting datagram (an asyncio
DatagramProtocol reads one per loop turn, which capped throughput);
responses are matched by (id, question) and by the nameserver they were
sent to; one timer walks a deadline queue for lost answers (every try has
the same timeout, so deadlines are in send order); at most
``max_in_flight`` queries are outstanding. Wire encoding and parsing of the
small subset needed live in ``dnsbl_wire`` (dnspython is the fallback and
the reference).

Every (ip, list) pair gets exactly one answer; a bad query becomes
``Unknown`` and never an exception (ARCHITECTURE rule 1). What answers mean
is decided in ``core.dnsbl``.
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import logging
import random
import socket
from array import array
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import dns.resolver

from hrmonitor.adapters.dns import dnsbl_wire as wire
from hrmonitor.core.catalogue import Catalogue, ZoneList, check_catalogue, load_catalogue
from hrmonitor.core.dnsbl import (
    TEST_POINTS,
    Rcode,
    Reply,
    SweepResult,
    classify,
    confirm,
    family_of,
    needs_confirmation,
    zone_health,
    zone_slots,
)
from hrmonitor.core.model import Answer, Clean, Status, ZoneHealth
from hrmonitor.errors import ConfigError, RuleError

log = logging.getLogger(__name__)

_RECEIVE_BUFFER = 4 * 1024 * 1024
_TIMEOUT_SLACK = 0.001  # asyncio may run a timer this much early
# The in-flight window adapts like TCP's (AIMD) up to max_in_flight: a burst of
# 512 queries overflows a small server socket buffer (rbldnsd's default), and
# every lost answer costs a whole timeout.
_START_WINDOW = 64
_MIN_WINDOW = 8

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


# --- what is in flight --------------------------------------------------------------------


class _Batch:
    """One call's questions: replies land in ``results`` by index; ``future`` ends it."""

    __slots__ = ("cancelled", "first_server", "future", "remaining", "results", "source")

    def __init__(
        self,
        count: int,
        future: asyncio.Future[None],
        first_server: int,
        source: Iterator[tuple[int, bytes]] | None,
    ) -> None:
        self.results: list[Reply | None] = [None] * count
        self.remaining = count
        self.future = future
        self.first_server = first_server
        self.source = source
        self.cancelled = False


class _Query:
    __slots__ = ("attempts_left", "batch", "index", "key", "question", "server", "tries")

    def __init__(self, batch: _Batch, index: int, question: bytes, attempts: int) -> None:
        self.batch = batch
        self.index = index
        self.question = question
        self.attempts_left = attempts
        self.tries = 0
        self.key: tuple[int, bytes] | None = None
        self.server: tuple[str, int] = ("", 0)


class _Plan:
    """The (ip, list) pairs of a lookup as flat indices, with each IP's and zone's wire labels."""

    def __init__(
        self, ips: Sequence[str], lists: Sequence[ZoneList], flats: Sequence[int] | None = None
    ) -> None:
        self.ips = list(ips)
        self.lists = list(lists)
        self.prefixes = [wire.reversed_ip_labels(ip) for ip in self.ips]
        self.zones = [wire.encode_labels(z.zone) for z in self.lists]
        width = len(self.lists)
        if flats is None:
            families = [family_of(ip) for ip in self.ips]
            flats = array(
                "q",
                (
                    i * width + j
                    for i in range(len(self.ips))
                    for j in range(width)
                    if families[i] in self.lists[j].families
                ),
            )
        self.flats = flats

    def pair(self, flat: int) -> tuple[str, ZoneList]:
        i, j = divmod(flat, len(self.lists))
        return self.ips[i], self.lists[j]

    def questions(self, rdtype: int, flats: Sequence[int]) -> Iterator[tuple[bytes, str]]:
        width = len(self.lists)
        for flat in flats:
            i, j = divmod(flat, width)
            yield wire.question(self.prefixes[i], self.zones[j], rdtype), self.lists[j].key


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
        self._servers = [(str(ipaddress.ip_address(s)), port) for s in servers]
        # Preference order: servers that lost answers lately go last (stable: config order).
        self._order = list(self._servers)
        self._misses = dict.fromkeys(self._servers, 0)
        self._timeout = timeout
        self._attempts = attempts
        self._max_in_flight = max_in_flight
        self._socket_count = sockets
        self._rate = rate_per_zone
        self._rng = rng or random.Random()
        self._ids = random.Random()  # query ids: unpredictable, not the jitter stream
        self._sockets: dict[tuple[str, int], list[socket.socket]] = {}  # connected, per server
        self._window = float(min(max_in_flight, _START_WINDOW))
        self._pending: dict[tuple[int, bytes], _Query] = {}
        self._streams: deque[_Batch] = deque()  # batches still yielding questions
        self._released: deque[_Query] = deque()  # rate-limited queries due to be sent
        self._due: list[tuple[float, int, _Query]] = []  # heap of rate-limited send times
        self._zone_free: dict[str, float] = {}  # when each zone's next send slot starts
        self._release_timer: asyncio.TimerHandle | None = None
        self._sequence = 0
        self._batches: set[_Batch] = set()
        self._deadlines: deque[tuple[float, _Query, int]] = deque()
        self._timer: asyncio.TimerHandle | None = None
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
        if self._sockets:
            return
        self._loop = asyncio.get_running_loop()
        for server in self._servers:
            if server in self._sockets:
                continue
            family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
            opened = []
            for _ in range(self._socket_count):
                # Connected: the kernel drops datagrams from anyone but this server,
                # and send()/recv() skip a route lookup and an address per packet.
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
                sock.connect(server)
                self._loop.add_reader(sock.fileno(), self._drain, sock, server)
                opened.append(sock)
            self._sockets[server] = opened

    async def close(self) -> None:
        """Close the sockets; calls still waiting get TIMEOUT replies."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for query in list(self._pending.values()):
            self._finish(query, Reply(Rcode.TIMEOUT, detail="engine closed"), pump=False)
        for batch in list(self._batches):
            if not batch.future.done():
                batch.future.set_result(None)
        self._streams.clear()
        self._released.clear()
        self._due.clear()
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        self._deadlines.clear()
        for opened in self._sockets.values():
            for sock in opened:
                if self._loop is not None:
                    self._loop.remove_reader(sock.fileno())
                sock.close()
        self._sockets.clear()

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
        replies = await self._exchange(len(questions), iter(questions))
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
            if health[answer.zone] is ZoneHealth.OK
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
        replies = await self._exchange(len(flats), plan.questions(wire.TYPE_A, flats), first_server)
        answers: list[Answer] = []
        ips, lists, width = plan.ips, plan.lists, len(plan.lists)
        nxdomain = wire.NXDOMAIN
        for flat, reply in zip(flats, replies, strict=True):
            i, j = divmod(flat, width)
            if reply is nxdomain:  # most of a sweep: skip the general classifier
                answers.append(Clean(ips[i], lists[j].key))
            else:
                answers.append(classify(ips[i], lists[j], reply))
        wanted = [n for n, a in enumerate(answers) if a.status in (Status.LISTED, Status.INFO)]
        if wanted:
            txt_flats = [flats[n] for n in wanted]
            texts = await self._exchange(
                len(wanted), plan.questions(wire.TYPE_TXT, txt_flats), first_server
            )
            for n, text in zip(wanted, texts, strict=True):
                if text.rcode is Rcode.NOERROR and text.txt:
                    ip, zone_list = plan.pair(flats[n])
                    answers[n] = classify(ip, zone_list, replace(replies[n], txt=text.txt))
        return answers

    # -- the exchange

    async def _exchange(
        self, count: int, questions: Iterator[tuple[bytes, str]], first_server: int = 0
    ) -> list[Reply]:
        """Send ``count`` (question wire, list key) questions; replies in the same order."""
        if count == 0:
            return []
        await self.open()
        loop = asyncio.get_running_loop()
        batch = _Batch(count, loop.create_future(), first_server, None)
        self._batches.add(batch)
        if self._rate is None:
            batch.source = ((index, question) for index, (question, _key) in enumerate(questions))
            self._streams.append(batch)
        else:
            self._schedule(loop, batch, list(questions))
        self._pump()
        try:
            await batch.future
        except asyncio.CancelledError:
            self._cancel(batch)
            raise
        finally:
            self._batches.discard(batch)
        timeout = Reply(Rcode.TIMEOUT)
        return [r if r is not None else timeout for r in batch.results]

    def _schedule(
        self, loop: asyncio.AbstractEventLoop, batch: _Batch, questions: list[tuple[bytes, str]]
    ) -> None:
        """Give each query a send time: per zone, one query per 1/rate slot, jittered.

        A zone's slots continue where its previous batch left off, so the
        rate holds across concurrent calls (self-test, lookups, TXT).
        """
        assert self._rate is not None
        by_zone: dict[str, list[int]] = {}
        for index, (_question, key) in enumerate(questions):
            by_zone.setdefault(key, []).append(index)
        now = loop.time()
        for key, indices in by_zone.items():
            times, self._zone_free[key] = zone_slots(
                now, self._zone_free.get(key), len(indices), self._rate, self._rng
            )
            for index, when in zip(indices, times, strict=True):
                query = _Query(batch, index, questions[index][0], self._attempts)
                self._sequence += 1
                heapq.heappush(self._due, (when, self._sequence, query))
        self._arm_release(loop)

    def _arm_release(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        if self._due:
            self._release_timer = loop.call_at(self._due[0][0], self._release_due)

    def _release_due(self) -> None:
        assert self._loop is not None
        self._release_timer = None
        now = self._loop.time() + _TIMEOUT_SLACK
        while self._due and self._due[0][0] <= now:
            query = heapq.heappop(self._due)[2]
            if not query.batch.cancelled:
                self._released.append(query)
        self._pump()
        self._arm_release(self._loop)

    def _pump(self) -> None:
        while self._in_flight < self._window and self._sockets:
            if self._released:
                query = self._released.popleft()
            elif self._streams:
                batch = self._streams[0]
                assert batch.source is not None
                item = next(batch.source, None)
                if item is None:
                    self._streams.popleft()
                    continue
                query = _Query(batch, item[0], item[1], self._attempts)
            else:
                return
            self._in_flight += 1
            self._send(query)

    def _send(self, query: _Query) -> None:
        assert self._loop is not None
        order = self._order
        turn = query.batch.first_server + query.tries
        server = order[turn % len(order)]
        if server == query.server and len(order) > 1:
            server = order[(turn + 1) % len(order)]  # a retry never goes where it was lost
        qid = self._ids.getrandbits(16)
        while (qid, query.question) in self._pending:
            qid = self._ids.getrandbits(16)
        query.key = (qid, query.question)
        query.server = server
        query.tries += 1
        query.attempts_left -= 1
        self._pending[query.key] = query
        opened = self._sockets[server]
        self._sent += 1
        try:
            opened[self._sent % len(opened)].send(wire.query(qid, query.question))
        except OSError as exc:  # a full buffer or an unreachable network: retried on timeout
            log.debug("DNSBL query to %s not sent: %s", server[0], exc)
        deadline = self._loop.time() + self._timeout
        self._deadlines.append((deadline, query, query.tries))
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._expire_due)

    def _drain(self, sock: socket.socket, server: tuple[str, int]) -> None:
        while True:
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("DNSBL socket error: %s", exc)
                return
            self._received(data, server)

    def _received(self, data: bytes, server: tuple[str, int]) -> None:
        key = wire.response_key(data)
        if key is None:
            return
        qid, question, end = key
        query = self._pending.get((qid, question))
        if query is None or not data[2] & 0x80 or server != query.server:
            return  # late, unknown, not a response or from another server: the timer decides
        if self._misses[server]:
            self._misses[server] = 0
            self._order = sorted(self._servers, key=self._misses.__getitem__)
        reply = wire.parse(data, end)
        if reply.rcode is Rcode.SERVFAIL and query.attempts_left > 0 and len(self._servers) > 1:
            self._retry(query)
            return
        self._finish(query, reply)

    def _expire_due(self) -> None:
        assert self._loop is not None
        self._timer = None
        now = self._loop.time() + _TIMEOUT_SLACK
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _deadline, query, tries = deadlines.popleft()
            if query.key is None or query.tries != tries:
                continue  # answered, or already retried
            # Loss means the path or the server is saturated: halve the window,
            # and prefer the other nameservers until this one answers again.
            self._window = max(_MIN_WINDOW, self._window / 2)
            self._misses[query.server] += 1
            if len(self._servers) > 1:
                self._order = sorted(self._servers, key=self._misses.__getitem__)
            if query.attempts_left > 0:
                log.debug("DNSBL answer lost from %s; retrying", query.server[0])
                self._retry(query)
            else:
                self._finish(query, Reply(Rcode.TIMEOUT, detail=f"{query.tries} tries"))
        # A retry above may have armed a timer for its own, later, deadline.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadlines:
            self._timer = self._loop.call_at(deadlines[0][0], self._expire_due)

    def _retry(self, query: _Query) -> None:
        if query.key is not None:
            del self._pending[query.key]
            query.key = None
        self._send(query)

    def _finish(self, query: _Query, reply: Reply, *, pump: bool = True) -> None:
        if query.key is not None:
            del self._pending[query.key]
            query.key = None
        self._in_flight -= 1
        if self._window < self._max_in_flight:  # additive increase: +1 per window of answers
            self._window = min(self._max_in_flight, self._window + 1 / self._window)
        batch = query.batch
        batch.results[query.index] = reply
        batch.remaining -= 1
        if batch.remaining == 0 and not batch.future.done():
            batch.future.set_result(None)
        if pump and (self._streams or self._released):
            self._pump()

    def _cancel(self, batch: _Batch) -> None:
        """Drop a batch whose caller was cancelled, freeing its in-flight slots."""
        batch.cancelled = True
        if batch in self._streams:
            self._streams.remove(batch)
        for key, query in list(self._pending.items()):
            if query.batch is batch:
                del self._pending[key]
                query.key = None
                self._in_flight -= 1
        self._released = deque(q for q in self._released if q.batch is not batch)
        self._pump()


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
    try:
        servers = dns.resolver.get_default_resolver().nameservers
    except dns.resolver.NoResolverConfiguration as exc:
        raise ConfigError("/etc/resolv.conf", "nameserver", f"no system resolver: {exc}") from exc
    return [str(s) for s in servers]
