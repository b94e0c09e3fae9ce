"""Many small DNS questions over a few UDP sockets: the transport under the DNSBL engine.

It knows nothing of blocklists: it sends question wires (``dnsbl_wire``) and
returns one :class:`Reply` per question, in order, TIMEOUT after every
attempt failed. Why not ``dns.asyncresolver``: a sweep is tens of thousands
of tiny queries, and a coroutine, a socket and a ``wait_for`` per query cost
more than the query. Here:

- a few non-blocking UDP sockets per nameserver, connected (the kernel
  drops datagrams from anyone else), each readable event draining every
  waiting datagram (an asyncio DatagramProtocol reads one per loop turn,
  which capped throughput), then refilling the window in one burst of
  sends: on loopback a send() runs the server's receive path and wakes
  it, once per burst rather than once per answer;
- responses matched by (id, question) and by the nameserver asked: ids are
  unique among waiting queries, so the id finds the query and the echoed
  question is compared in place (the common NXDOMAIN needs no parsing);
- one timer walking a deadline queue for lost answers (every try has the
  same timeout, so deadlines are in send order); a retry goes to another
  nameserver, and nameservers that lost answers are asked last until they
  answer again;
- an in-flight window that adapts like TCP's (AIMD) up to
  ``max_in_flight``: a burst of 512 overflows a small server socket buffer
  (rbldnsd's, or an unbound without ``so-rcvbuf``), and every lost answer
  costs a whole timeout;
- with ``rate_per_zone``, each zone's queries are released one per
  ``1/rate`` slot, jittered, the rate holding across concurrent calls.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import logging
import math
import random
import socket
from collections import deque
from collections.abc import Iterator, Sequence

from hrmonitor.adapters.dns.dnsbl import wire
from hrmonitor.core.dnsbl.answers import Rcode, Reply, zone_slots

log = logging.getLogger(__name__)

_RECEIVE_BUFFER = 4 * 1024 * 1024
_TIMEOUT_SLACK = 0.001  # asyncio may run a timer this much early
_START_WINDOW = 64
_MIN_WINDOW = 8
# Errors that say the nameserver cannot be reached at all: a try fails now, not on timeout.
_NETWORK_ERRORS = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED, errno.ENETDOWN, errno.EHOSTDOWN}
)


class _Batch:
    """One call's questions: replies land in ``results`` by index; ``future`` ends it."""

    __slots__ = (
        "cancelled",
        "first_server",
        "future",
        "next_index",
        "remaining",
        "results",
        "source",
    )

    def __init__(
        self,
        count: int,
        future: asyncio.Future[None],
        first_server: int,
        source: Iterator[tuple[bytes, str]] | None,
    ) -> None:
        self.results: list[Reply | None] = [None] * count
        self.remaining = count
        self.future = future
        self.first_server = first_server
        self.source = source  # questions not yet sent (unlimited rate); the next is next_index
        self.next_index = 0
        self.cancelled = False


class _Query:
    __slots__ = (
        "attempts_left",
        "batch",
        "body",
        "burst",
        "index",
        "qid",
        "question",
        "server",
        "tries",
    )

    def __init__(self, batch: _Batch, index: int, question: bytes, attempts: int) -> None:
        self.batch = batch
        self.index = index
        self.question = question
        self.body = wire.query_body(question)  # the message but its id: built once, not per try
        self.attempts_left = attempts
        self.tries = 0
        self.qid = -1  # the id it waits under in _pending; -1 when not waiting
        self.server: tuple[str, int] = ("", 0)
        self.burst = 0  # the burst of sends its latest try went out in (they share a deadline)


class UdpExchange:
    """Sends question wires to ``servers`` ((address, port) pairs) and collects replies."""

    def __init__(
        self,
        servers: Sequence[tuple[str, int]],
        timeout: float,
        attempts: int,
        *,
        max_in_flight: int,
        sockets: int,
        rate_per_zone: float | None,
        rng: random.Random,
    ) -> None:
        self._servers = list(servers)
        # Preference order: servers that lost answers lately go last (stable: config order).
        self._order = list(self._servers)
        self._misses = dict.fromkeys(self._servers, 0)
        self._timeout = timeout
        self._attempts = attempts
        self._max_in_flight = max_in_flight
        self._socket_count = sockets
        self._rate = rate_per_zone
        self._rng = rng
        self._ids = random.Random()  # query ids: unpredictable, not the jitter stream
        self._sockets: dict[tuple[str, int], list[socket.socket]] = {}  # connected, per server
        self._window = float(min(max_in_flight, _START_WINDOW))
        # Waiting queries by id: ids are unique among them, and an answer must
        # also echo the question and come from the server asked.
        self._pending: dict[int, _Query] = {}
        self._streams: deque[_Batch] = deque()  # batches still yielding questions
        self._released: deque[_Query] = deque()  # rate-limited queries due to be sent
        self._due: list[tuple[float, int, _Query]] = []  # heap of rate-limited send times
        self._zone_free: dict[str, float] = {}  # when each zone's next send slot starts
        self._release_timer: asyncio.TimerHandle | None = None
        self._sequence = 0
        self._batches: set[_Batch] = set()
        # One (deadline, burst number) per burst of sends, in send order. Waiting
        # queries sit in _pending in send order too (a retry is re-added under a
        # new id), so those a deadline expires are a prefix of it.
        self._deadlines: deque[tuple[float, int]] = deque()
        self._bursts = 0
        self._timer: asyncio.TimerHandle | None = None
        self._in_flight = 0
        self._sent = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._down: dict[tuple[str, int], str] = {}  # servers connect() failed for -> why

    @property
    def servers(self) -> tuple[tuple[str, int], ...]:
        return tuple(self._servers)

    async def open(self) -> None:
        """Make the UDP sockets (done on first use; each call retries unreachable servers).

        A nameserver the network cannot reach (``connect`` fails: ENETUNREACH,
        EHOSTUNREACH, ...) gets no sockets: its queries fail at once as
        per-query errors (answers Unknown, zones unreachable), never as an
        exception out of the engine; the next call tries to connect again.
        """
        self._loop = asyncio.get_running_loop()
        for server in self._servers:
            if server not in self._sockets:
                self._connect(server)

    def _connect(self, server: tuple[str, int]) -> None:
        assert self._loop is not None
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        opened: list[socket.socket] = []
        try:
            for _ in range(self._socket_count):
                # Connected: the kernel drops datagrams from anyone but this server,
                # and send()/recv() skip a route lookup and an address per packet.
                sock = socket.socket(family, socket.SOCK_DGRAM)
                opened.append(sock)
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
                sock.connect(server)
        except OSError as exc:
            for sock in opened:
                sock.close()
            self._note_unreachable(server, exc)
            return
        for sock in opened:
            self._loop.add_reader(sock.fileno(), self._drain, sock, server)
        self._sockets[server] = opened
        if self._down.pop(server, None) is not None:
            log.warning("DNSBL nameserver %s:%s is reachable again", *server)

    def _note_unreachable(self, server: tuple[str, int], exc: OSError) -> None:
        # Logged once per outage, not once per query or per call.
        detail = exc.strerror or str(exc)
        if server not in self._down:
            log.warning("DNSBL nameserver %s:%s unreachable: %s", server[0], server[1], detail)
        self._down[server] = detail

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

    async def exchange(
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
            batch.source = questions
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
        """Fill the window: released (rate-limited) queries first, then the streams.

        Sends that fail at once (an unreachable network) free their slots at
        once, so the window is filled again until the questions run out.
        """
        while True:
            room = math.ceil(self._window - self._in_flight)
            if room <= 0 or self._loop is None:
                return
            burst: list[_Query] = []
            released = self._released
            while released and len(burst) < room:
                burst.append(released.popleft())
            attempts = self._attempts
            streams = self._streams
            while streams and len(burst) < room:
                batch = streams[0]
                assert batch.source is not None
                wanted = room - len(burst)
                index = batch.next_index
                for question, _key in itertools.islice(batch.source, wanted):
                    burst.append(_Query(batch, index, question, attempts))
                    index += 1
                if index - batch.next_index < wanted:
                    streams.popleft()  # its questions ran out
                batch.next_index = index
            if not burst:
                return
            self._in_flight += len(burst)
            self._send(burst)

    def _send(self, queries: list[_Query]) -> None:
        """Send each query to its next nameserver under a fresh id, then arm their deadline."""
        assert self._loop is not None
        order = self._order
        servers = len(order)
        pending = self._pending
        new_id = self._ids.getrandbits
        sockets = self._sockets
        count = self._socket_count
        sent = self._sent
        self._bursts += 1
        burst = self._bursts
        refused: dict[tuple[str, int], str] = {}
        for query in queries:
            turn = query.batch.first_server + query.tries
            server = order[turn % servers]
            if server == query.server and servers > 1:
                server = order[(turn + 1) % servers]  # a retry never goes where it was lost
            qid = new_id(16)
            while qid in pending:
                qid = new_id(16)
            pending[qid] = query
            query.qid = qid
            query.server = server
            query.tries += 1
            query.attempts_left -= 1
            query.burst = burst
            opened = sockets.get(server)
            if opened is None:  # connect() failed for it
                refused.setdefault(server, self._down.get(server, "not connected"))
                continue
            sent += 1
            try:
                opened[sent % count].send(qid.to_bytes(2, "big") + query.body)
            except OSError as exc:
                if exc.errno in _NETWORK_ERRORS:
                    refused.setdefault(server, exc.strerror or str(exc))
                else:  # a full buffer: retried on timeout
                    log.debug("DNSBL query to %s not sent: %s", server[0], exc)
        self._sent = sent
        # Read after the burst: no try gets less than the whole timeout.
        deadline = self._loop.time() + self._timeout
        self._deadlines.append((deadline, burst))
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._expire_due)
        for server, why in refused.items():  # after the deadline: retries are a later burst
            self._refused(server, why)

    def _drain(self, sock: socket.socket, server: tuple[str, int]) -> None:
        # Answers first, then one burst of new questions: the server wakes once
        # per burst instead of once per question (each wake-up costs our send()).
        pending = self._pending
        lost = self._misses[server]  # only _expire_due adds to it, never during a drain
        while True:
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("DNSBL socket error from %s: %s", server[0], exc)
                if exc.errno in _NETWORK_ERRORS:
                    self._refused(server, exc.strerror or str(exc))
                break
            if len(data) < 17:
                continue
            query = pending.get((data[0] << 8) | data[1])
            if query is None or not data[2] & 0x80 or server != query.server:
                continue  # late, unknown, not a response or from another server: the timer decides
            question = query.question
            if not data.startswith(question, 12) and (
                data[12 : 12 + len(question)].lower() != question
            ):
                continue  # not the question asked (ours are lowercase; names are not)
            if lost:
                lost = self._misses[server] = 0
                self._order = sorted(self._servers, key=self._misses.__getitem__)
            if data[3] & 0x0F == 3 and not data[2] & 0x02:
                reply = wire.NXDOMAIN  # most of a sweep: NXDOMAIN, not truncated
            else:
                reply = wire.parse(data, 12 + len(question))
                if (
                    reply.rcode is Rcode.SERVFAIL
                    and query.attempts_left > 0
                    and len(self._servers) > 1
                ):
                    self._retry(query)
                    continue
            self._finish(query, reply, pump=False)
        if self._streams or self._released:
            self._pump()

    def _expire_due(self) -> None:
        assert self._loop is not None
        self._timer = None
        now = self._loop.time() + _TIMEOUT_SLACK
        deadlines = self._deadlines
        expired = 0
        while deadlines and deadlines[0][0] <= now:
            expired = deadlines.popleft()[1]
        lost = []
        for query in self._pending.values():
            if query.burst > expired:
                break
            lost.append(query)
        for query in lost:
            self._lost(query)
        # A retry above may have armed a timer for its own, later, deadline.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadlines:
            self._timer = self._loop.call_at(deadlines[0][0], self._expire_due)

    def _lost(self, query: _Query) -> None:
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

    def _refused(self, server: tuple[str, int], why: str) -> None:
        """The network refused ``server`` (no route, ICMP unreachable): its tries end now.

        A connected UDP socket reports an ICMP error on whatever call comes
        next on it, not on the datagram that caused it, so every query
        waiting on that server fails, each to its next try or to an
        UNREACHABLE reply. Not a loss: the window stays (nothing is
        congested); the server is asked last until it answers again.
        """
        waiting = [q for q in self._pending.values() if q.server == server]
        if not waiting:
            return
        for query in waiting:
            del self._pending[query.qid]
            query.qid = -1
        self._misses[server] += 1
        if len(self._servers) > 1:
            self._order = sorted(self._servers, key=self._misses.__getitem__)
        retry = [q for q in waiting if q.attempts_left > 0]
        for query in waiting:
            if query.attempts_left <= 0:
                detail = f"{server[0]}: {why} ({query.tries} tries)"
                self._finish(query, Reply(Rcode.UNREACHABLE, detail=detail), pump=False)
        if retry:
            self._send(retry)  # at most ``attempts`` deep: each try spends one

    def _retry(self, query: _Query) -> None:
        if query.qid >= 0:
            del self._pending[query.qid]
            query.qid = -1
        self._send([query])

    def _finish(self, query: _Query, reply: Reply, *, pump: bool = True) -> None:
        if query.qid >= 0:
            del self._pending[query.qid]
            query.qid = -1
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
        for qid, query in list(self._pending.items()):
            if query.batch is batch:
                del self._pending[qid]
                query.qid = -1
                self._in_flight -= 1
        self._released = deque(q for q in self._released if q.batch is not batch)
        self._pump()
