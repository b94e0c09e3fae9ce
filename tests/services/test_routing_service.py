"""The Router against the real mail DNS adapter and the loopback DNS server, with a fake clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from hrmonitor.core.mx import DomainStatus
from hrmonitor.services.relay.routing import Router
from tests.fixtures.dns_server import DnsTestServer
from tests.fixtures.peers import FakeClock
from tests.fixtures.router import MESSAGE


async def test_tenant_mail_with_a_resolving_domain_goes_normal(
    router: Router, fake_clock: FakeClock
) -> None:
    decision = await router.route(
        mail_from="a@contoso.example",
        rcpts=["b@rcpt.test"],
        client_ip="127.0.0.1",
        message=MESSAGE,
        arrival=fake_clock.now(),
    )
    assert (decision.pool, decision.reasons, decision.hold) == ("normal", (), False)
    assert decision.facts["tenant"] == "contoso"


async def test_sender_domain_without_records_is_resolved_and_goes_high(
    router: Router, fake_clock: FakeClock
) -> None:
    decision = await router.route(
        mail_from="x@ghost.test",
        rcpts=["b@rcpt.test"],
        client_ip="127.0.0.1",
        message=MESSAGE,
        arrival=fake_clock.now(),
    )
    assert decision.pool == "high-risk"
    assert decision.facts["sender_domain_status"] == "no-records"


async def test_servfail_holds_then_routes_high_once_the_hold_is_over(
    router: Router, dns_server: DnsTestServer, fake_clock: FakeClock
) -> None:
    dns_server.servfail("flaky.test")
    arrival = fake_clock.now()
    args: dict[str, Any] = {
        "mail_from": "x@flaky.test",
        "rcpts": ["b@rcpt.test"],
        "client_ip": "127.0.0.1",
        "message": MESSAGE,
        "arrival": arrival,
    }
    first = await router.route(**args)
    assert first.hold
    fake_clock.advance(timedelta(minutes=10))
    later = await router.route(**args, now=fake_clock.now(), count=False)
    assert not later.hold
    assert later.pool == "high-risk"
    assert [r.rule for r in later.reasons] == ["dns-unknown"]


async def test_unknown_is_remembered_briefly_then_a_healed_domain_is_re_resolved(
    router: Router, dns_server: DnsTestServer, fake_clock: FakeClock
) -> None:
    dns_server.servfail("heals.test")
    now = fake_clock.now()
    assert await router.sender_domain_status("heals.test", now) is DomainStatus.UNKNOWN
    asked = len(dns_server.queries)
    dns_server.heal("heals.test")
    dns_server.add("heals.test", "A", "192.0.2.1")
    # Within negative_ttl (30 s by default) the failed answer stands, without a query.
    assert await router.sender_domain_status("heals.test", now) is DomainStatus.UNKNOWN
    assert len(dns_server.queries) == asked
    later = now + timedelta(seconds=31)
    assert await router.sender_domain_status("heals.test", later) is DomainStatus.EXISTS


async def test_no_records_is_remembered_for_negative_ttl_and_exists_for_the_cache_ttl(
    router: Router, dns_server: DnsTestServer, fake_clock: FakeClock
) -> None:
    now = fake_clock.now()
    assert await router.sender_domain_status("new.test", now) is DomainStatus.NO_RECORDS
    dns_server.add("new.test", "MX", "10 mx.new.test.")
    assert await router.sender_domain_status("new.test", now) is DomainStatus.NO_RECORDS
    soon = now + timedelta(seconds=31)
    assert await router.sender_domain_status("new.test", soon) is DomainStatus.EXISTS
    dns_server.remove("new.test")
    assert await router.sender_domain_status("new.test", soon + timedelta(minutes=4)) is (
        DomainStatus.EXISTS
    )


async def test_concurrent_messages_from_one_domain_share_one_lookup_during_an_outage(
    router: Router, dns_server: DnsTestServer, fake_clock: FakeClock
) -> None:
    dns_server.drop("down.test")
    now = fake_clock.now()
    answers = await asyncio.gather(
        *(router.sender_domain_status("down.test", now) for _ in range(20))
    )
    assert set(answers) == {DomainStatus.UNKNOWN}
    asked = [q for q in dns_server.queries if q[0] == "down.test."]
    assert sorted(q[1] for q in asked) == ["A", "AAAA", "MX"]  # attempts=1: one try each


async def test_a_cancelled_lookup_does_not_leave_its_waiters_hanging(
    router: Router, dns_server: DnsTestServer, fake_clock: FakeClock
) -> None:
    dns_server.drop("down.test")
    now = fake_clock.now()
    first = asyncio.ensure_future(router.sender_domain_status("down.test", now))
    await asyncio.sleep(0)  # the first lookup is in flight
    waiter = asyncio.ensure_future(router.sender_domain_status("down.test", now))
    await asyncio.sleep(0)
    first.cancel()
    assert await asyncio.wait_for(waiter, 5) is DomainStatus.UNKNOWN
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_the_message_that_crosses_the_hourly_limit_goes_high_with_an_alert(
    router: Router, fake_clock: FakeClock
) -> None:
    decisions = []
    for _ in range(2):
        decisions.append(
            await router.route(
                mail_from="a@contoso.example",
                rcpts=["b@rcpt.test", "c@rcpt.test"],
                client_ip="127.0.0.1",
                message=MESSAGE,
                arrival=fake_clock.now(),
            )
        )
        fake_clock.advance(timedelta(minutes=1))
    assert [d.pool for d in decisions] == ["normal", "high-risk"]
    assert decisions[1].alerts == ("sending-limit",)


async def test_counts_restored_after_a_restart_still_hold_a_sender_to_its_limits(
    router: Router, fake_clock: FakeClock
) -> None:
    """What the queue kept of a sender's last day (as ``recipients_sent_since`` gives it,
    brackets and case as stored) counts as if the router had seen it."""
    now = fake_clock.now()
    restored = router.restore_counts(
        [
            ("<A@Contoso.example>", now - timedelta(minutes=30), 2),
            ("a@contoso.example", now - timedelta(hours=2), 40),  # counts for the day only
            ("other@contoso.example", now - timedelta(minutes=5), 1),
        ]
    )
    assert restored == 2

    async def route(sender: str, rcpts: int) -> str:
        decision = await router.route(
            mail_from=sender,
            rcpts=[f"r{n}@rcpt.test" for n in range(rcpts)],
            client_ip="127.0.0.1",
            message=MESSAGE,
            arrival=fake_clock.now(),
        )
        return decision.pool

    assert await route("other@contoso.example", 2) == "normal"  # 3 in the hour: at the limit
    assert await route("a@contoso.example", 2) == "high-risk"  # 4 in the hour > 3
    for _ in range(2):
        fake_clock.advance(timedelta(hours=1))
        assert await route("a@contoso.example", 3) == "normal"  # 3 in the hour; 47, then 50
    fake_clock.advance(timedelta(hours=1))
    assert await route("a@contoso.example", 1) == "high-risk"  # 51 in the day > 50


async def test_null_sender_needs_no_dns_and_goes_high(
    router: Router, dns_server: DnsTestServer, fake_clock: FakeClock
) -> None:
    decision = await router.route(
        mail_from="",
        rcpts=["b@rcpt.test"],
        client_ip="127.0.0.1",
        message=MESSAGE,
        arrival=fake_clock.now(),
    )
    assert decision.pool == "high-risk"
    assert dns_server.queries == []


def test_stored_form_strips_scores_from_untrusted_clients(router: Router) -> None:
    message = b"X-Spam-Score: -5\r\nSubject: s\r\n\r\nb"
    assert router.stored_form(message, "127.0.0.1") == message
    assert router.stored_form(message, "192.0.2.1") == b"Subject: s\r\n\r\nb"


async def test_sender_without_a_domain_is_treated_as_having_no_records(
    router: Router, dns_server: DnsTestServer, fake_clock: FakeClock
) -> None:
    decision = await router.route(
        mail_from="postmaster",
        rcpts=["b@rcpt.test"],
        client_ip="127.0.0.1",
        message=MESSAGE,
        arrival=fake_clock.now(),
    )
    assert decision.pool == "high-risk"
    assert decision.facts["sender_domain_status"] == "no-records"
    assert dns_server.queries == []


async def test_what_other_nodes_published_counts_towards_a_senders_limits(
    router: Router, fake_clock: FakeClock
) -> None:
    """Several nodes: a sender's limit holds for the cluster, not per node (issue 11)."""
    now = fake_clock.now()
    minute = now.replace(second=0, microsecond=0)
    router.merge_peer_counts([("b", "a@contoso.example", minute, 2)])
    router.merge_peer_counts([("b", "a@contoso.example", minute, 2)])  # read twice: once
    decision = await router.route(
        mail_from="<A@contoso.example>",
        rcpts=["r1@rcpt.test", "r2@rcpt.test"],
        client_ip="127.0.0.1",
        message=MESSAGE,
        arrival=now,
    )
    assert decision.pool == "high-risk"  # 2 here + 2 on node b > 3
    assert decision.alerts == ("sending-limit",)
    # What this node counted is published once, as its own total for the minute.
    assert router.take_unpublished() == [("a@contoso.example", minute, 2)]
    assert router.take_unpublished() == []
