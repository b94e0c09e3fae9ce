"""The DNSBL query engine against real rbldnsd zones on loopback (tests/fixtures/rbldnsd.py)."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
from collections.abc import Callable, Iterator

import dns.flags
import dns.message
import dns.rcode
import dns.resolver
import pytest

from hrmonitor.adapters.dns.dnsbl.engine import DnsblEngine
from hrmonitor.core.model import Clean, Listed, Severity, Status, Unknown, ZoneHealth
from tests.fixtures.rbldnsd import STANDARD_FILES, LossyProxy, Rbldnsd, RbldnsdFactory

pytestmark = pytest.mark.rbldnsd


def engine_for(
    server: Rbldnsd,
    max_in_flight: int = 512,
    sockets: int = 4,
    rate_per_zone: float | None = None,
    rng: random.Random | None = None,
) -> DnsblEngine:
    return DnsblEngine(
        [server.host],
        server.port,
        timeout=1.0,
        attempts=2,
        max_in_flight=max_in_flight,
        sockets=sockets,
        rate_per_zone=rate_per_zone,
        rng=rng,
    )


# --- answers ------------------------------------------------------------------------------


async def test_a_listed_ipv4_address_comes_back_with_code_tag_severity_and_expanded_txt(
    rbldnsd: Rbldnsd,
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    async with engine_for(rbldnsd) as engine:
        (answer,) = await engine.lookup(["127.0.0.20"], [bl])
    assert answer == Listed(
        "127.0.0.20",
        "bl",
        ("127.0.0.2",),
        ("SBL",),
        Severity.CRITICAL,
        "Listed, see https://bl.test/?ip=127.0.0.20",
    )


async def test_an_address_on_two_sublists_keeps_both_codes_and_the_worst_severity(
    rbldnsd: Rbldnsd,
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    async with engine_for(rbldnsd) as engine:
        (answer,) = await engine.lookup(["127.0.0.21"], [bl])
    assert isinstance(answer, Listed)
    assert answer.codes == ("127.0.0.2", "127.0.0.4")
    assert answer.tags == ("SBL", "XBL")
    assert answer.severity is Severity.CRITICAL
    assert "127.0.0.21" in answer.txt


async def test_a_policy_code_and_an_info_code_are_classified_per_the_catalogue(
    rbldnsd: Rbldnsd,
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    async with engine_for(rbldnsd) as engine:
        pbl, info = await engine.lookup(["127.0.0.22", "127.0.0.23"], [bl])
    assert isinstance(pbl, Listed)
    assert (pbl.tags, pbl.severity) == (("PBL",), Severity.HIGH)
    assert info.status is Status.INFO


async def test_ipv6_and_ipv4_mapped_addresses_are_looked_up_in_their_own_forms(
    rbldnsd: Rbldnsd,
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    async with engine_for(rbldnsd) as engine:
        six, mapped, clean6 = await engine.lookup(
            ["2001:db8:1::5", "::ffff:127.0.0.20", "2001:db8:2::5"], [bl]
        )
    assert isinstance(six, Listed)
    assert (six.codes, six.txt) == (("127.0.0.3",), "six 2001:db8:1::5")
    assert isinstance(mapped, Listed)
    assert mapped.txt.endswith("?ip=127.0.0.20")
    assert clean6 == Clean("2001:db8:2::5", "bl")


async def test_an_unlisted_address_is_clean(rbldnsd: Rbldnsd) -> None:
    bl = rbldnsd.catalogue()["bl"]
    async with engine_for(rbldnsd) as engine:
        assert await engine.lookup(["127.0.0.9"], [bl]) == [Clean("127.0.0.9", "bl")]


async def test_an_ipv4_only_list_gives_no_answer_for_an_ipv6_address(rbldnsd: Rbldnsd) -> None:
    err = rbldnsd.catalogue()["err"]
    async with engine_for(rbldnsd) as engine:
        assert await engine.lookup(["2001:db8:1::5"], [err]) == []


async def test_error_codes_are_errors_never_listings(rbldnsd: Rbldnsd) -> None:
    err = rbldnsd.catalogue()["err"]
    async with engine_for(rbldnsd) as engine:
        (answer,) = await engine.lookup(["127.0.0.20"], [err])
    assert answer.status is Status.ERROR


async def test_a_zone_not_served_is_refusing_and_its_answers_unknown(rbldnsd: Rbldnsd) -> None:
    refused = rbldnsd.catalogue()["refused"]
    async with engine_for(rbldnsd) as engine:
        health = await engine.self_test([refused])
        (answer,) = await engine.lookup(["127.0.0.20"], [refused])
    assert health == {"refused": ZoneHealth.REFUSING}
    assert isinstance(answer, Unknown)
    assert "REFUSED" in answer.reason


# --- self-test ----------------------------------------------------------------------------


async def test_self_test_tells_each_kind_of_broken_zone_apart(rbldnsd: Rbldnsd) -> None:
    lists = rbldnsd.catalogue()
    async with engine_for(rbldnsd) as engine:
        health = await engine.self_test(list(lists.values()))
    assert health == {
        "bl": ZoneHealth.OK,
        "err": ZoneHealth.REFUSING,
        "world": ZoneHealth.LISTS_EVERYTHING,
        "dead": ZoneHealth.DEAD,
        "refused": ZoneHealth.REFUSING,
    }


async def test_a_world_listing_zone_yields_no_trusted_listing(rbldnsd: Rbldnsd) -> None:
    lists = rbldnsd.catalogue()
    async with engine_for(rbldnsd) as engine:
        result = await engine.sweep(["127.0.0.9", "127.0.0.20"], [lists["world"], lists["bl"]])
    assert result.health["world"] is ZoneHealth.LISTS_EVERYTHING
    raw_world = [a for a in result.answers if a.zone == "world"]
    assert {a.status for a in raw_world} == {Status.LISTED}  # what the zone said...
    trusted = [a for a in result.trusted if a.zone == "world"]
    assert {a.status for a in trusted} == {Status.UNKNOWN}  # ...counts for nothing
    assert [a.status for a in result.trusted if a.zone == "bl"] == [Status.CLEAN, Status.LISTED]


async def test_a_nameserver_that_never_answers_is_unreachable_and_unknown(
    rbldnsd: Rbldnsd, blackhole_nameserver: tuple[str, int]
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    host, port = blackhole_nameserver
    async with DnsblEngine([host], port, timeout=0.2, attempts=2) as engine:
        result = await engine.sweep(["127.0.0.20", "127.0.0.9"], [bl])
    assert result.health == {"bl": ZoneHealth.UNREACHABLE}
    assert [a.status for a in result.answers] == [Status.UNKNOWN, Status.UNKNOWN]
    assert all("timeout" in a.reason for a in result.answers if isinstance(a, Unknown))


# --- sweeps, confirmation, listing changes ------------------------------------------------


async def test_listing_and_delisting_mid_test_show_in_the_next_sweep(rbldnsd: Rbldnsd) -> None:
    bl = rbldnsd.catalogue()["bl"]
    async with engine_for(rbldnsd) as engine:
        first = await engine.sweep(["127.0.0.30"], [bl])
        rbldnsd.list_ip("127.0.0.30", "127.0.0.4", "caught $")
        second = await engine.sweep(["127.0.0.30"], [bl], {("127.0.0.30", "bl"): Status.CLEAN})
        rbldnsd.delist_ip("127.0.0.30")
        third = await engine.sweep(["127.0.0.30"], [bl], {("127.0.0.30", "bl"): Status.LISTED})
    assert first.trusted == (Clean("127.0.0.30", "bl"),)
    (listed,) = second.trusted
    assert isinstance(listed, Listed)
    assert (listed.tags, listed.txt) == (("XBL",), "caught 127.0.0.30")
    assert third.trusted == (Clean("127.0.0.30", "bl"),)


async def test_a_listing_the_confirmation_query_denies_does_not_count(
    rbldnsd_factory: RbldnsdFactory,
) -> None:
    # Two resolvers that disagree: the confirmation goes to the second one.
    listing = rbldnsd_factory()
    files = {**STANDARD_FILES, "bl4.zone": ":127.0.0.2:x\n127.0.0.2\n"}
    denying = rbldnsd_factory(files=files, host="127.0.0.2", port=listing.port)
    bl = listing.catalogue()["bl"]
    servers = [listing.host, denying.host]
    async with DnsblEngine(servers, listing.port, timeout=1.0, attempts=2) as engine:
        result = await engine.sweep(["127.0.0.20"], [bl], {("127.0.0.20", "bl"): Status.CLEAN})
        known = await engine.sweep(["127.0.0.20"], [bl], {("127.0.0.20", "bl"): Status.LISTED})
    (answer,) = result.trusted
    assert isinstance(answer, Unknown)
    assert "not confirmed" in answer.reason
    assert known.trusted[0].status is Status.LISTED  # no confirmation for a known listing


async def test_many_queries_through_a_small_in_flight_window_all_answer_correctly(
    rbldnsd: Rbldnsd,
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    ips = [f"10.0.{n // 256}.{n % 256}" for n in range(600)] + ["127.0.0.20"]
    async with engine_for(rbldnsd, max_in_flight=8, sockets=2) as engine:
        answers = await engine.lookup(ips, [bl])
    assert [a.ip for a in answers] == ips
    assert {a.status for a in answers[:-1]} == {Status.CLEAN}
    assert answers[-1].status is Status.LISTED


async def test_a_rate_limited_sweep_still_answers_every_pair(rbldnsd: Rbldnsd) -> None:
    lists = rbldnsd.catalogue()
    ips = [f"10.1.0.{n}" for n in range(40)] + ["127.0.0.20"]
    async with engine_for(rbldnsd, rate_per_zone=2000.0, rng=random.Random(1)) as engine:
        result = await engine.sweep(ips, [lists["bl"], lists["err"]])
    assert len(result.answers) == 2 * len(ips)
    bl_answers = [a for a in result.answers if a.zone == "bl"]
    assert [a.status for a in bl_answers] == [Status.CLEAN] * 40 + [Status.LISTED]


# --- lost and broken answers --------------------------------------------------------------


async def test_a_lost_answer_is_retried_and_never_read_as_clean(
    rbldnsd: Rbldnsd, lossy_proxy: Callable[[tuple[str, int]], LossyProxy]
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    proxy = lossy_proxy(rbldnsd.nameserver)
    host, port = proxy.address
    ips = ["127.0.0.20", "127.0.0.21", "127.0.0.9", "2001:db8:1::7"]
    async with DnsblEngine([host], port, timeout=0.2, attempts=2) as engine:
        answers = await engine.lookup(ips, [bl])
    assert [a.status for a in answers] == [
        Status.LISTED,
        Status.LISTED,
        Status.CLEAN,
        Status.LISTED,
    ]
    assert proxy.dropped >= len(ips)


async def test_with_one_attempt_a_lost_answer_is_unknown_not_clean(
    rbldnsd: Rbldnsd, lossy_proxy: Callable[[tuple[str, int]], LossyProxy]
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    proxy = lossy_proxy(rbldnsd.nameserver)
    host, port = proxy.address
    async with DnsblEngine([host], port, timeout=0.2, attempts=1) as engine:
        answers = await engine.lookup(["127.0.0.9", "127.0.0.20"], [bl])
    assert [a.status for a in answers] == [Status.UNKNOWN, Status.UNKNOWN]


class _MisbehavingServer:
    """Answers every query with a truncated (TC) reply, SERVFAIL, or a body that does not parse;
    or NXDOMAIN with the question in capitals ("shouting"), or for another name ("elsewhere")."""

    def __init__(self, mode: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.mode = mode
        self.received = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, client = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.received += 1
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            if self.mode == "servfail":
                response.set_rcode(dns.rcode.SERVFAIL)
                wire = response.to_wire()
            elif self.mode == "truncated":
                response.flags |= dns.flags.TC
                wire = response.to_wire()
            elif self.mode in ("shouting", "elsewhere"):
                response.set_rcode(dns.rcode.NXDOMAIN)
                wire = response.to_wire()
                end = wire.index(b"\x00", 12)
                if self.mode == "shouting":
                    wire = wire[:12] + wire[12:end].upper() + wire[end:]
                else:  # the same id, another IP's name (the first label's digit changed)
                    other = b"8" if wire[13:14] != b"8" else b"7"
                    wire = wire[:13] + other + wire[14:]
            else:  # claims one answer record, then ends
                broken = bytearray(response.to_wire())
                broken[7] = 1
                wire = bytes(broken) + b"\xc0\x0c\x00"
            self.sock.sendto(wire, client)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(params=["truncated", "garbage"])
def misbehaving(request: pytest.FixtureRequest) -> Iterator[_MisbehavingServer]:
    server = _MisbehavingServer(request.param)
    yield server
    server.close()


async def test_truncated_or_unparseable_answers_are_unknown(
    rbldnsd: Rbldnsd, misbehaving: _MisbehavingServer
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    host, port = misbehaving.sock.getsockname()
    async with DnsblEngine([host], port, timeout=0.5, attempts=1) as engine:
        (answer,) = await engine.lookup(["127.0.0.20"], [bl])
        health = await engine.self_test([bl])
    assert isinstance(answer, Unknown)
    assert ("truncated" if misbehaving.mode == "truncated" else "unparseable") in answer.reason
    assert health["bl"] is not ZoneHealth.OK


async def test_an_answer_echoing_the_question_in_capitals_still_counts(rbldnsd: Rbldnsd) -> None:
    bl = rbldnsd.catalogue()["bl"]
    server = _MisbehavingServer("shouting")
    try:
        host, port = server.sock.getsockname()
        async with DnsblEngine([host], port, timeout=0.5, attempts=1) as engine:
            (answer,) = await engine.lookup(["127.0.0.9"], [bl])
    finally:
        server.close()
    assert isinstance(answer, Clean)


async def test_an_answer_to_another_question_under_our_id_is_never_read_as_clean(
    rbldnsd: Rbldnsd,
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    server = _MisbehavingServer("elsewhere")
    try:
        host, port = server.sock.getsockname()
        async with DnsblEngine([host], port, timeout=0.3, attempts=2) as engine:
            answers = await engine.lookup(["127.0.0.9", "127.0.0.20"], [bl])
    finally:
        server.close()
    assert [a.status for a in answers] == [Status.UNKNOWN, Status.UNKNOWN]
    assert server.received == 4  # every try was answered, never with our question


# --- configuration ------------------------------------------------------------------------


def test_no_nameservers_means_the_system_resolvers() -> None:
    engine = DnsblEngine([], 53)
    system = [str(s) for s in dns.resolver.get_default_resolver().nameservers]
    assert [host for host, _ in engine.nameservers] == system


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        DnsblEngine(["127.0.0.1"], 53, timeout=0, attempts=1)


# --- lifecycle ----------------------------------------------------------------------------


async def test_a_cancelled_lookup_frees_its_in_flight_slots_for_the_next(
    rbldnsd: Rbldnsd,
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    async with engine_for(rbldnsd, max_in_flight=4) as engine:
        stuck = asyncio.create_task(engine.lookup([f"10.2.0.{n}" for n in range(20)], [bl]))
        await asyncio.sleep(0)  # let it send its first window of queries
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        # Leaked slots would leave this one never sent: wait_for turns a hang into a failure.
        answers = await asyncio.wait_for(engine.lookup(["127.0.0.20"], [bl]), timeout=10)
    assert [a.status for a in answers] == [Status.LISTED]


async def test_closing_the_engine_mid_lookup_answers_unknown_for_every_pair(
    rbldnsd: Rbldnsd, blackhole_nameserver: tuple[str, int]
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    host, port = blackhole_nameserver
    engine = DnsblEngine([host], port, timeout=30.0, attempts=2)
    lookup = asyncio.create_task(engine.lookup(["127.0.0.20", "127.0.0.9"], [bl]))
    await asyncio.sleep(0)
    await engine.close()
    answers = await asyncio.wait_for(lookup, timeout=10)
    assert [a.status for a in answers] == [Status.UNKNOWN, Status.UNKNOWN]


async def test_an_ipv6_nameserver_is_queried_over_ipv6(rbldnsd_factory: RbldnsdFactory) -> None:
    try:
        server = rbldnsd_factory(host="::1")
    except RuntimeError as exc:  # pragma: no cover - a host without IPv6 loopback
        pytest.skip(f"no IPv6 loopback: {exc}")
    bl = server.catalogue()["bl"]
    async with DnsblEngine(["::1"], server.port, timeout=1.0, attempts=2) as engine:
        answers = await engine.lookup(["127.0.0.20", "127.0.0.9"], [bl])
    assert [a.status for a in answers] == [Status.LISTED, Status.CLEAN]


class _CountingBlackhole:
    """A nameserver address that reads queries, counts them and never answers."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.05)
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                self.sock.recv(4096)
            except TimeoutError:
                continue
            self.received += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


async def test_a_dead_first_nameserver_is_skipped_after_its_first_losses(
    rbldnsd: Rbldnsd,
) -> None:
    bl = rbldnsd.catalogue()["bl"]
    dead = _CountingBlackhole("127.0.0.3", rbldnsd.port)  # same port, another address
    ips = [f"10.3.{n // 256}.{n % 256}" for n in range(300)] + ["127.0.0.20"]
    try:
        engine = DnsblEngine(
            ["127.0.0.3", rbldnsd.host], rbldnsd.port, timeout=0.2, attempts=2, max_in_flight=16
        )
        async with engine:
            answers = await engine.lookup(ips, [bl])
    finally:
        dead.close()
    assert [a.status for a in answers] == [Status.CLEAN] * 300 + [Status.LISTED]
    # Only the first window went to the dead server; every later query went to rbldnsd first.
    assert dead.received <= 32


async def test_servfail_from_one_nameserver_is_retried_on_the_next(rbldnsd: Rbldnsd) -> None:
    bl = rbldnsd.catalogue()["bl"]
    failing = _MisbehavingServer("servfail", "127.0.0.4", rbldnsd.port)
    try:
        servers = ["127.0.0.4", rbldnsd.host]
        async with DnsblEngine(servers, rbldnsd.port, timeout=1.0, attempts=2) as engine:
            answers = await engine.lookup(["127.0.0.20", "127.0.0.9"], [bl])
        async with DnsblEngine(["127.0.0.4"], rbldnsd.port, timeout=1.0, attempts=2) as alone:
            (only,) = await alone.lookup(["127.0.0.20"], [bl])
    finally:
        failing.close()
    assert [a.status for a in answers] == [Status.LISTED, Status.CLEAN]
    assert failing.received >= 2  # it was asked first, and its SERVFAIL did not count
    assert isinstance(only, Unknown)
    assert "SERVFAIL" in only.reason
