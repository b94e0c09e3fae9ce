"""The delivery engine end to end at the service level, with real peers on loopback.

swaks (the client, from a chosen loopback address) -> the listener -> the
durable queue (SQLite, WAL, synchronous=FULL) -> the queue runner, routed by
the real Router and rules/routing.toml, MX from the loopback DNS test server
-> aiosmtpd MX on 127.0.0.50 that records which source IP delivered each
message. Pools: normal 127.0.0.10-11, high-risk 127.0.0.20-22.

The relay and the listener are the daemon's own (``app.compose.build_relay``,
``build_listener``), built from a config file; only the rotation side is
scripted (:class:`ScriptedRotation`: each IP's state is what the test says).
The clock is a FakeClock: retries fall due only when a test moves it, so no
test sleeps; waits are on conditions with a bounded timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from hrmonitor.adapters.dns.mail import MailDns
from hrmonitor.adapters.smtp_in import Listener
from hrmonitor.adapters.smtp_out import Connections
from hrmonitor.adapters.store import Store
from hrmonitor.adapters.store.queue.repository import NewMessage, QueueRepository, RecipientStatus
from hrmonitor.app.build import build_router, mail_dns
from hrmonitor.app.compose import build_listener, build_relay
from hrmonitor.app.monitoring import open_configured_store
from hrmonitor.app.smtp_parts import outbound_connections
from hrmonitor.config.loading import Config, load_config
from hrmonitor.core.alert import Alert, AlertKind
from hrmonitor.core.feedback.replies import RemoteReply
from hrmonitor.core.model import IPState, Pool
from hrmonitor.core.rotation.selection import IpCandidate
from hrmonitor.services.relay.routing import Router
from hrmonitor.services.relay.runner import Relay
from tests.fixtures.app_config import make_config
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.peers import FakeClock, require_binary
from tests.fixtures.smtp_sink import DROP_IN_DATA, GARBAGE_IN_DATA, SmtpSink

NORMAL = ("127.0.0.10", "127.0.0.11")
HIGH = ("127.0.0.20", "127.0.0.21", "127.0.0.22")
TENANT_IP = "127.0.0.5"
STRANGER_IP = "127.0.0.99"

POOLS = f"""
[pools.normal]
risk = "normal"
ips = {list(NORMAL)!r}

[pools.high-risk]
risk = "high"
ips = {list(HIGH)!r}
""".replace("'", '"')

TENANTS = """
[[tenants]]
name = "contoso"
networks = ["127.0.0.0/29"]
domains = ["contoso.test"]
"""

ROUTING = """
[routing]
trusted_filters = ["127.0.0.0/8"]
"""


@dataclass
class ScriptedRotation:
    """The rotation side the relay asks (``app.compose.Rotation``), scripted by the test.

    Every IP's state is what ``states`` says; replies and bind failures are
    recorded; a bind failure disables the IP, as the controller's suspension does.
    """

    pools: dict[str, Pool]
    ips: dict[str, tuple[str, ...]]
    states: dict[str, IPState]
    replies: list[RemoteReply] = field(default_factory=list)
    bind_failures: list[str] = field(default_factory=list)

    async def candidates(self, pool: str, now: datetime) -> Sequence[IpCandidate]:
        return [IpCandidate(ip, self.states[ip]) for ip in self.ips[pool]]

    def listing_counts(self, pool: str) -> dict[str, int]:
        return {}

    def take(self, pool: str, ip: str, now: datetime) -> bool:
        return True

    def on_reply(self, reply: RemoteReply) -> None:
        self.replies.append(reply)

    def on_relay_alert(self, alert: Alert) -> bool:
        return False  # every alert goes to the relay's on_alert: the world's list

    def on_bind_failure(self, ip: str, pool: str, error: str, now: datetime) -> None:
        self.bind_failures.append(ip)
        self.states[ip] = IPState.DISABLED


@dataclass
class World:
    """The daemon's relay and listener (``app.compose``) from a config file, on a FakeClock."""

    relay: Relay
    listener: Listener
    sink: SmtpSink
    dns: DnsTestServer
    clock: FakeClock
    queue: QueueRepository
    rotation: ScriptedRotation
    config: Config
    store: Store
    router: Router
    connections: Connections
    mail: MailDns
    alerts: list[Alert] = field(default_factory=list)

    @property
    def states(self) -> dict[str, IPState]:
        return self.rotation.states

    @property
    def pools(self) -> dict[str, tuple[str, ...]]:
        return self.rotation.ips

    @property
    def replies(self) -> list[RemoteReply]:
        return self.rotation.replies

    @property
    def bind_failures(self) -> list[str]:
        return self.rotation.bind_failures

    def build_relay(self) -> Relay:
        """Another relay as the daemon builds it, on this world's store and peers."""
        return build_relay(
            self.config, self.store, self.clock, router=self.router, controller=self.rotation,
            sender=self.connections, mail=self.mail, on_alert=self.alerts.append,
        )  # fmt: skip

    async def swaks(self, *args: str, source: str = TENANT_IP) -> tuple[int, str]:
        swaks = require_binary("swaks")
        process = await asyncio.create_subprocess_exec(
            swaks, "--server", f"127.0.0.1:{self.listener.port}", "--local-interface", source,
            "--helo", "client.test", "--timeout", "20", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), 30)
        return process.returncode or 0, out.decode(errors="replace")

    async def retry_later(self, delta: timedelta = timedelta(minutes=1)) -> None:
        self.clock.advance(delta)
        self.relay.wake()


@pytest.fixture
async def world(
    tmp_path: Path, dns_server: DnsTestServer, smtp_sink: SmtpSink, fake_clock: FakeClock
) -> AsyncIterator[World]:
    dns_server.add("contoso.test", "A", smtp_sink.host)  # an implicit MX: DSNs land in the sink
    dns_server.add("rcpt.test", "MX", "10 mx.rcpt.test.")
    dns_server.add("mx.rcpt.test", "A", smtp_sink.host)
    dns_server.add("nullmx.test", "MX", "0 .")
    path = make_config(
        tmp_path, nameserver=("127.0.0.1", dns_server.port), pools=POOLS, tenants=TENANTS,
        routing=ROUTING, listener="max_message_size = 20000", retry='["1m"]',
        delivery='max_queue_time = "2h"', delivery_port=smtp_sink.port,
    )  # fmt: skip
    config = load_config(path)
    store = open_configured_store(config, fake_clock)
    router = build_router(config)
    connections = outbound_connections(config)
    pools = {p.name: p for p in config.core_pools()}
    ips = {name: p.all_ips for name, p in pools.items()}
    rotation = ScriptedRotation(
        pools, ips, {ip: IPState.ACTIVE for pool_ips in ips.values() for ip in pool_ips}
    )
    alerts: list[Alert] = []
    mail = mail_dns(config)
    relay = build_relay(
        config, store, fake_clock, router=router, controller=rotation, sender=connections,
        mail=mail, on_alert=alerts.append,
    )  # fmt: skip
    listener = build_listener(config, relay, fake_clock)
    w = World(relay, listener, smtp_sink, dns_server, fake_clock, relay.queue, rotation, config,
              store, router, connections, mail, alerts)  # fmt: skip
    await listener.start()
    runner = asyncio.create_task(relay.run())
    try:
        yield w
    finally:
        await listener.stop()
        await relay.stop()
        await runner
        await connections.close()
        await router.close()
        store.close()


async def _only_message(world: World, rcpt: str) -> str:
    (message,) = await world.sink.wait_for(1, where=lambda m: rcpt in m.rcpts)
    return message.peer


async def test_clean_mail_leaves_from_a_normal_ip_only(world: World) -> None:
    for n in range(4):
        code, out = await world.swaks("--from", "a@contoso.test", "--to", f"c{n}@rcpt.test")
        assert code == 0, out
    arrived = await world.sink.wait_for(4)
    assert {m.peer for m in arrived} <= set(NORMAL)
    assert {m.peer for m in arrived} == set(NORMAL)  # both normal IPs take turns


async def test_the_mx_hosts_address_is_looked_up_once_not_per_attempt(world: World) -> None:
    """Three messages to one domain, one after another: one A lookup of its MX host."""
    for n in range(3):
        code, out = await world.swaks("--from", "a@contoso.test", "--to", f"d{n}@rcpt.test")
        assert code == 0, out
        await world.sink.wait_for(n + 1)
    asked = [q for q in world.dns.queries if q[0] == "mx.rcpt.test."]
    assert asked.count(("mx.rcpt.test.", "A")) == 1


async def test_each_message_costs_the_runner_one_claim_not_an_empty_claim_and_a_query_more(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10: each finished delivery woke the runner, which claimed again (finding
    nothing) and asked the store for the next due time; each acceptance did the same
    after its claim. A short claim now says nothing else is due and reads the next due
    time in its own transaction, and a finished delivery wakes the runner only when
    due work waited for a slot."""
    calls: list[str] = []
    queue = world.queue
    for name in ("claim", "next_due_at"):
        method = getattr(queue, name)

        def counted(*args: Any, _name: str = name, _method: Any = method) -> Any:
            calls.append(_name)
            return _method(*args)

        monkeypatch.setattr(queue, name, counted)
    messages = 6
    for n in range(messages):
        code, out = await world.swaks("--from", "a@contoso.test", "--to", f"e{n}@rcpt.test")
        assert code == 0, out
        await world.sink.wait_for(n + 1)
    # one claim per message, and a few more for the runner's poll while the test waits
    # (before: about three claims and two next-due queries per message)
    assert len(calls) <= messages + 4, calls


async def test_while_every_slot_is_taken_the_runner_waits_for_one_without_asking_the_store(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10 (a profile of a PostgreSQL node, session 7): with every delivery slot
    taken, each acceptance woke the runner, which could not claim and asked the store
    for the next due time instead: 19 % of the store thread. Work is due then by
    definition, and a freed slot wakes the runner; the query told it nothing."""
    asked: list[str] = []
    next_due_at = world.queue.next_due_at

    def counted() -> Any:
        asked.append("next_due_at")
        return next_due_at()

    monkeypatch.setattr(world.queue, "next_due_at", counted)
    world.relay.settings = dataclasses.replace(world.relay.settings, concurrency=2)
    world.sink.delay = 0.3  # a slow MX: the slots stay taken while mail arrives
    messages = 8
    sent = await asyncio.gather(
        *(
            world.swaks("--from", "a@contoso.test", "--to", f"w{n}@rcpt.test")
            for n in range(messages)
        )
    )
    assert all(code == 0 for code, _ in sent), sent
    await world.sink.wait_for(messages, timeout=30)
    # More in flight than the two slots: passes found no slot free (a claim takes up to
    # four recipients per free slot), the state in which the query was asked.
    assert world.sink.most_waiting > 2
    assert asked == []


async def test_spam_scored_mail_leaves_from_a_high_risk_ip_only(world: World) -> None:
    code, out = await world.swaks(
        "--from", "a@contoso.test", "--to", "s@rcpt.test", "--header", "X-Spam-Score: 9.5"
    )
    assert code == 0, out
    assert await _only_message(world, "s@rcpt.test") in HIGH
    (mid,) = world.queue.message_ids()
    record = world.queue.message(mid)
    assert record is not None
    assert record.pool == "high-risk"
    assert "spam-score" in [r["rule"] for r in record.reasons]


async def test_null_sender_mail_leaves_from_a_high_risk_ip_only(world: World) -> None:
    code, out = await world.swaks("--from", "<>", "--to", "n@rcpt.test")
    assert code == 0, out
    assert await _only_message(world, "n@rcpt.test") in HIGH


async def test_mail_from_a_domain_without_a_or_mx_leaves_from_a_high_risk_ip(world: World) -> None:
    code, out = await world.swaks("--from", "x@nowhere.test", "--to", "d@rcpt.test")
    assert code == 0, out
    assert await _only_message(world, "d@rcpt.test") in HIGH


async def test_exhausted_high_risk_pool_holds_mail_until_an_ip_is_back(world: World) -> None:
    for ip in HIGH:
        world.states[ip] = IPState.RETIRED
    code, out = await world.swaks(
        "--from", "a@contoso.test", "--to", "h@rcpt.test", "--header", "X-Spam-Score: 20"
    )
    assert code == 0, out
    await _until(lambda: any(a.kind is AlertKind.POOL_EXHAUSTED for a in world.alerts))
    await world.relay.run_until_idle()
    assert world.sink.messages == []  # held: nothing left from a normal IP, or at all
    (mid,) = world.queue.message_ids()
    attempts = world.queue.attempts(mid)
    assert attempts
    assert all(a.own and a.source_ip is None for a in attempts)
    world.states["127.0.0.21"] = IPState.ACTIVE
    await world.retry_later()
    assert await _only_message(world, "h@rcpt.test") == "127.0.0.21"
    assert world.alerts[-1].resolved is True
    assert not any(r.own for r in world.replies)


async def test_a_5xx_bounces_with_a_dsn_that_leaves_from_a_high_risk_ip(world: World) -> None:
    world.sink.script("gone@rcpt.test", "550 5.1.1 no such user")
    code, out = await world.swaks("--from", "a@contoso.test", "--to", "gone@rcpt.test")
    assert code == 0, out
    (dsn,) = await world.sink.wait_for(1, where=lambda m: m.mail_from == "")
    assert dsn.rcpts == ("a@contoso.test",)
    assert dsn.peer in HIGH
    assert b"report-type=delivery-status" in dsn.data
    assert b"Status: 5.1.1" in dsn.data
    original = [m for m in world.queue.message_ids() if world.queue.message(m).dsn_of is None]  # type: ignore[union-attr]
    (attempt,) = world.queue.attempts(original[0])
    assert attempt.source_ip in NORMAL
    assert attempt.code == 550
    assert any(r.code == 550 and r.enhanced == "5.1.1" for r in world.replies)


async def test_a_5xx_for_a_null_sender_message_makes_no_dsn(world: World) -> None:
    world.sink.script("gone@rcpt.test", "550 5.1.1 no such user")
    code, out = await world.swaks("--from", "<>", "--to", "gone@rcpt.test")
    assert code == 0, out
    (mid,) = world.queue.message_ids()
    await _until(lambda: _status(world, mid) == RecipientStatus.BOUNCED)
    await world.relay.run_until_idle()
    assert world.queue.message_ids() == [mid]
    assert world.sink.messages == []


async def test_null_mx_bounces_at_once_with_a_dsn(world: World) -> None:
    code, out = await world.swaks("--from", "a@contoso.test", "--to", "x@nullmx.test")
    assert code == 0, out
    (dsn,) = await world.sink.wait_for(1, where=lambda m: m.mail_from == "")
    assert b"Status: 5.1.10" in dsn.data
    assert dsn.peer in HIGH


@pytest.mark.parametrize("misbehaviour", [DROP_IN_DATA, GARBAGE_IN_DATA])
async def test_a_receiver_that_drops_or_garbles_data_is_retried_not_lost(
    world: World, misbehaviour: str
) -> None:
    world.sink.script("flaky@rcpt.test", misbehaviour, "250 2.0.0 ok")
    code, out = await world.swaks("--from", "a@contoso.test", "--to", "flaky@rcpt.test")
    assert code == 0, out
    (mid,) = world.queue.message_ids()
    await _until(lambda: _status(world, mid) == RecipientStatus.DEFERRED)
    assert world.sink.messages == []
    await world.retry_later()
    assert await _only_message(world, "flaky@rcpt.test") in NORMAL
    assert world.sink.dropped == 1
    await _until(lambda: _status(world, mid) == RecipientStatus.DELIVERED)
    assert len(world.queue.attempts(mid)) == 2


async def test_a_4xx_is_retried_on_the_schedule_from_a_fresh_pick(world: World) -> None:
    world.sink.script("later@rcpt.test", "451 4.7.1 try again later", "250 ok")
    code, out = await world.swaks("--from", "a@contoso.test", "--to", "later@rcpt.test")
    assert code == 0, out
    (mid,) = world.queue.message_ids()
    await _until(lambda: _status(world, mid) == RecipientStatus.DEFERRED)
    await world.retry_later()
    await _only_message(world, "later@rcpt.test")
    await _until(lambda: _status(world, mid) == RecipientStatus.DELIVERED)
    first, second = world.queue.attempts(mid)
    assert (first.code, second.code) == (451, 250)
    assert {first.source_ip, second.source_ip} == set(NORMAL)  # picked again, per attempt


async def test_an_unbindable_ip_is_suspended_and_the_attempt_uses_another_of_its_pool(
    world: World,
) -> None:
    world.pools["high-risk"] = ("10.255.255.1", *HIGH)  # not a local address: EADDRNOTAVAIL
    world.relay.settings.pool_ips["high-risk"] |= {"10.255.255.1"}  # type: ignore[index]
    world.states["10.255.255.1"] = IPState.ACTIVE
    code, out = await world.swaks("--from", "<>", "--to", "b@rcpt.test")
    assert code == 0, out
    assert await _only_message(world, "b@rcpt.test") in HIGH
    assert world.bind_failures == ["10.255.255.1"]


async def test_open_relay_tricks_from_a_stranger_are_refused_and_nothing_is_stored(
    world: World,
) -> None:
    for rcpt in (
        "b@rcpt.test",
        "user%rcpt.test@relay.test",
        '"user@rcpt.test"@relay.test',
        "@relay.test:user@rcpt.test",
        "user@rcpt.test@relay.test",
    ):
        code, out = await world.swaks(
            "--from", "a@contoso.test", "--to", rcpt, "--quit-after", "RCPT", source=STRANGER_IP
        )
        assert code != 0, out
        assert "550 5.7.1 relaying denied" in out
    assert world.queue.message_ids() == []


async def test_oversized_mail_gets_552_and_is_not_stored(world: World) -> None:
    body = "x" * 70 + "\n"
    code, out = await world.swaks(
        "--from", "a@contoso.test", "--to", "b@rcpt.test", "--body", body * 400
    )
    assert code != 0, out
    assert "552 5.3.4" in out
    assert world.queue.message_ids() == []


def _status(world: World, mid: str) -> RecipientStatus | None:
    record = world.queue.message(mid)
    return record.recipients[0].status if record else None


async def _until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait for ``condition()`` with a bounded timeout (polls the event loop, no fixed sleep)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 (the queue's state lives in SQLite: poll it)
            await asyncio.sleep(0.02)


async def test_unknown_sender_dns_holds_mail_and_routes_it_once_dns_answers(world: World) -> None:
    world.dns.servfail("flaky.test")
    code, out = await world.swaks("--from", "a@flaky.test", "--to", "held@rcpt.test")
    assert code == 0, out
    (mid,) = world.queue.message_ids()
    record = world.queue.message(mid)
    assert record is not None
    assert record.hold_until is not None
    await world.retry_later()  # the first re-check: DNS still fails, still held
    await _until(lambda: len(world.queue.attempts(mid)) == 1)
    assert world.sink.messages == []
    assert world.queue.attempts(mid)[0].own is True
    world.dns.heal("flaky.test")
    world.dns.add("flaky.test", "A", "127.0.0.1")
    await world.retry_later()
    assert await _only_message(world, "held@rcpt.test") in NORMAL
    rerouted = world.queue.message(mid)
    assert rerouted is not None
    assert (rerouted.pool, rerouted.hold_until) == ("normal", None)


async def test_sender_dns_unknown_past_the_hold_sends_through_high_risk(world: World) -> None:
    world.dns.servfail("flaky.test")
    code, out = await world.swaks("--from", "a@flaky.test", "--to", "late@rcpt.test")
    assert code == 0, out
    await world.retry_later(timedelta(minutes=10))  # dns_unknown_hold is 10m
    assert await _only_message(world, "late@rcpt.test") in HIGH


async def test_mail_deferred_past_the_queue_lifetime_bounces_with_4_4_7(world: World) -> None:
    world.sink.script("slow@rcpt.test", "451 4.2.1 mailbox busy")
    code, out = await world.swaks("--from", "a@contoso.test", "--to", "slow@rcpt.test")
    assert code == 0, out
    (mid,) = world.queue.message_ids()
    await _until(lambda: _status(world, mid) == RecipientStatus.DEFERRED)
    await world.retry_later(timedelta(hours=2))  # max_queue_time is 2h in this world
    (dsn,) = await world.sink.wait_for(1, where=lambda m: m.mail_from == "")
    assert b"Status: 4.4.7" in dsn.data
    assert b"Action: failed" in dsn.data
    assert b"451 4.2.1 mailbox busy" in dsn.data
    assert dsn.peer in HIGH
    await _until(lambda: _status(world, mid) == RecipientStatus.BOUNCED)


async def test_mail_claimed_by_a_runner_that_died_is_delivered_after_recover(world: World) -> None:
    await world.relay.stop()  # this world's runner is gone, as after kill -9 mid-delivery
    world.queue.enqueue(
        [
            NewMessage(
                id="m-died", tenant="contoso", client_ip=TENANT_IP, mail_from="a@contoso.test",
                recipients=("again@rcpt.test",), body=b"Subject: x\r\n\r\nx\r\n",
                arrived_at=world.clock.now(), pool="normal", risk="normal",
            )
        ]
    )  # fmt: skip
    assert [c.message_id for c in world.queue.claim_due(world.clock.now(), 10)] == ["m-died"]
    survivor = world.build_relay()
    assert await survivor.recover() == 1
    await asyncio.wait_for(survivor.run_until_idle(), 20)
    assert await _only_message(world, "again@rcpt.test") in NORMAL
    await survivor.stop()


async def test_a_large_message_goes_out_in_slices_to_each_domain_byte_for_byte(
    world: World,
) -> None:
    """A body too large for its claim is read from the queue a slice at a time as DATA
    goes out (issue 13, item 1): every transaction (one per recipient domain) reads it
    afresh; MAIL FROM's SIZE and BODY=8BITMIME come from the queue, not from the bytes."""
    body = b"Subject: large\r\n\r\n" + b"".join(
        b"%s line %06d caf\xc3\xa9\r\n" % (b"." * (n % 2), n) for n in range(20_000)
    )
    world.queue.enqueue(
        [
            NewMessage(
                id=f"m-large-{n}", tenant="contoso", client_ip=TENANT_IP,
                mail_from="a@contoso.test", recipients=(f"large{n}@rcpt.test", "back@contoso.test"),
                body=body, arrived_at=world.clock.now(), pool="normal", risk="normal",
            )
            for n in range(2)
        ]
    )  # fmt: skip
    # The second as a message queued before migration 0008: its 8-bit-ness is unknown.
    with world.store.engine.begin() as conn:
        conn.execute(text("UPDATE queue_messages SET eight_bit = NULL WHERE id = 'm-large-1'"))
    world.relay.wake()
    received = await world.sink.wait_for(4, 30)
    assert sorted(m.rcpts for m in received) == [
        ("back@contoso.test",), ("back@contoso.test",), ("large0@rcpt.test",),
        ("large1@rcpt.test",),
    ]  # fmt: skip
    for message in received:
        assert message.data == body
        assert "BODY=8BITMIME" in message.mail_options
        assert f"SIZE={len(body)}" in message.mail_options


async def test_a_large_message_bounced_is_quoted_from_its_header_block_not_read_whole(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DSN quotes the original's header block only: a large message is read in
    slices up to its first empty line (here past the first slice), never whole."""

    def read_whole(message_id: str) -> bytes:
        raise AssertionError(f"{message_id} was read whole")

    monkeypatch.setattr(world.queue, "body", read_whole)
    world.sink.script("gone@rcpt.test", "550 5.1.1 no such user")
    headers = b"".join(b"X-Trace-%04d: %s\r\n" % (n, b"t" * 60) for n in range(1200))
    body = (
        b"Subject: large\r\n"
        + headers
        + b"\r\n"
        + b"".join(b"body line %06d\r\n" % n for n in range(20_000))
    )
    world.queue.enqueue(
        [
            NewMessage(
                id="m-large-bounce", tenant="contoso", client_ip=TENANT_IP,
                mail_from="a@contoso.test", recipients=("gone@rcpt.test",), body=body,
                arrived_at=world.clock.now(), pool="normal", risk="normal",
            )
        ]
    )  # fmt: skip
    world.relay.wake()
    (dsn,) = await world.sink.wait_for(1, 30, where=lambda m: m.mail_from == "")
    assert b"550 5.1.1 no such user" in dsn.data
    assert b"X-Trace-1199: " + b"t" * 60 in dsn.data  # the last header, beyond 64 KiB
    assert b"body line" not in dsn.data


async def test_each_node_of_a_cluster_takes_its_share_of_the_per_destination_cap(
    world: World,
) -> None:
    """Several nodes: per_destination_concurrency holds for the cluster (issue 11)."""
    world.relay.share_destinations(5)  # 10 per destination over five live nodes: 2 here
    world.sink.delay = 0.3
    world.queue.enqueue(
        [
            NewMessage(
                id=f"m-share-{n}", tenant="contoso", client_ip=TENANT_IP,
                mail_from="a@contoso.test", recipients=(f"share{n}@rcpt.test",),
                body=b"Subject: x\r\n\r\nx\r\n", arrived_at=world.clock.now(),
                pool="normal", risk="normal",
            )
            for n in range(6)
        ]
    )  # fmt: skip
    world.relay.wake()
    await world.sink.wait_for(6, 30)
    assert world.sink.most_waiting == 2
