"""Reply feedback is scoped to what the reply proves (issue 13, item 2), with the real store.

A blocklist-naming 5xx from one MX suspends the sending IP for that
destination only (the MX's domain, or its provider when the provider is
known) and asks for a DNSBL re-check; such replies from several independent
destinations within the window suspend it for every destination.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hrmonitor.adapters.rule_files import load_feedback_files
from hrmonitor.adapters.store import Store
from hrmonitor.core.feedback.replies import RemoteReply
from hrmonitor.core.model import Pool, PoolPolicy, RiskClass
from hrmonitor.core.rotation.selection import NoEligibleIp, choose_source_ip
from hrmonitor.services.rotation.controller import Controller
from tests.services.test_controller import RULES, Alerts

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
NORMAL = ("127.0.1.1", "127.0.1.2")
BLOCKED = "554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org"


@pytest.fixture
def configured(store: Store) -> Store:
    pool = Pool("normal", RiskClass.NORMAL, NORMAL, (), PoolPolicy(), timedelta(minutes=30))
    assert store.sync_pools([pool], T0 - timedelta(days=1)) == []
    return store


async def controller_for(store: Store, rechecked: list[str]) -> Controller:
    async def recheck(ip: str) -> None:
        rechecked.append(ip)

    pool = Pool("normal", RiskClass.NORMAL, NORMAL, (), PoolPolicy(), timedelta(minutes=30))
    controller = Controller(
        store,
        [pool],
        ("zen",),
        Alerts(),
        recheck=recheck,
        feedback_rules=load_feedback_files([RULES]),
        blocklist_destinations=3,
        blocklist_window=timedelta(hours=1),
    )
    await controller.load(T0)
    return controller


def blocked(ip: str, mx: str, at: datetime = T0) -> RemoteReply:
    return RemoteReply(554, "5.7.1", BLOCKED[10:], ip, mx, at)


def sends_to(controller: Controller, scope: str, at: datetime = T0) -> set[str]:
    offered = controller.candidates_now("normal", at)
    picks = [choose_source_ip(offered, scope, at, n) for n in range(4)]
    return {p.ip for p in picks if not isinstance(p, NoEligibleIp)}


async def test_one_mx_naming_a_blocklist_suspends_the_ip_for_its_own_domain_only(
    configured: Store,
) -> None:
    rechecked: list[str] = []
    controller = await controller_for(configured, rechecked)
    for ip in NORMAL:  # the same MX blocks both IPs of the pool
        controller.on_reply(blocked(ip, "mx1.hostile.test"))
    assert sends_to(controller, "hostile.test") == set()  # that destination: held
    assert sends_to(controller, "other.test") == set(NORMAL)  # every other one: untouched
    assert sends_to(controller, "generic") == set(NORMAL)
    await controller.drain()
    stored = configured.active_suspensions(T0)
    assert {(s.ip, s.scope) for s in stored} == {(ip, "hostile.test") for ip in NORMAL}
    assert sorted(rechecked) == sorted(NORMAL)  # the DNSBLs decide the rest


async def test_a_known_providers_mx_suspends_the_ip_for_that_provider(configured: Store) -> None:
    controller = await controller_for(configured, [])
    controller.on_reply(blocked(NORMAL[0], "gmail-smtp-in.l.google.com"))
    assert sends_to(controller, "google") == {NORMAL[1]}
    assert sends_to(controller, "example.net") == set(NORMAL)


async def test_many_mx_hosts_of_one_organisation_are_one_destination(configured: Store) -> None:
    controller = await controller_for(configured, [])
    for n in range(10):
        controller.on_reply(blocked(NORMAL[0], f"mx{n}.hostile.test", T0 + timedelta(minutes=n)))
    assert sends_to(controller, "other.test") == set(NORMAL)


async def test_blocklist_replies_from_three_independent_destinations_take_the_ip_out_everywhere(
    configured: Store,
) -> None:
    controller = await controller_for(configured, [])
    ip = NORMAL[0]
    controller.on_reply(blocked(ip, "mx.one.test"))
    controller.on_reply(blocked(ip, "mx.two.test", T0 + timedelta(minutes=20)))
    assert sends_to(controller, "three.test", T0 + timedelta(minutes=20)) == set(NORMAL)
    now = T0 + timedelta(minutes=40)
    controller.on_reply(blocked(ip, "gmail-smtp-in.l.google.com", now))
    assert sends_to(controller, "elsewhere.test", now) == {NORMAL[1]}
    await controller.drain()
    scopes = {s.scope for s in configured.active_suspensions(now, ip)}
    assert scopes == {"one.test", "two.test", "google", "*"}
