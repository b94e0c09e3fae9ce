"""DSN surge scenarios on virtual time: each cause of docs/mail-facts.md is named, and subsides.

Each scenario runs four hours of ordinary traffic (two tenants, 1-2 %
bounces, a diurnal curve) so the detectors learn, then twenty minutes of
one attack, then an hour of ordinary traffic again.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest

from hrmonitor.core.surge import (
    BounceReturned,
    Cause,
    Dimension,
    MessageAccepted,
    SurgeChange,
    SurgeSettings,
    SurgeTracker,
)
from hrmonitor.core.surge.anomaly import AnomalyMethod, AnomalyParams
from hrmonitor.core.surge.verp import BatvVerdict
from tests.core.test_surge_traffic import (
    DOMAINS,
    MINUTE,
    START,
    Event,
    Tenant,
    Traffic,
    failed,
    run,
)

SETTINGS = SurgeSettings(client_learning=timedelta(hours=2))
WARMUP = 240
ATTACK = 20
AFTER = 60
ATTACK_START = START + WARMUP * MINUTE
ATTACK_END = ATTACK_START + ATTACK * MINUTE


CUSUM = dataclasses.replace(SETTINGS, anomaly=AnomalyParams(method=AnomalyMethod.CUSUM))
DETECTORS = pytest.mark.parametrize("settings", [SETTINGS, CUSUM], ids=["ewma", "cusum"])


def _world(settings: SurgeSettings, seed: int = 3) -> tuple[SurgeTracker, Traffic, Tenant]:
    contoso = Tenant("contoso", 20)
    return SurgeTracker(settings), Traffic([contoso, Tenant("fabrikam", 8, 0.01)], seed), contoso


def _scenario(
    attack: Callable[[Traffic, Tenant], Callable[[datetime], Iterator[Event]]],
    settings: SurgeSettings = SETTINGS,
) -> tuple[list[SurgeChange], list[SurgeChange], list[SurgeChange], SurgeTracker]:
    tracker, traffic, contoso = _world(settings)
    before = run(tracker, traffic, START, WARMUP)
    during = run(tracker, traffic, ATTACK_START, ATTACK, attack(traffic, contoso))
    after = run(tracker, traffic, ATTACK_END, AFTER)
    return before, during, after, tracker


def _opened(changes: list[SurgeChange], dimension: Dimension, key: str) -> SurgeChange:
    found = [
        c
        for c in changes
        if not c.resolved and c.surge.dimension is dimension and c.surge.key == key
    ]
    assert len(found) == 1, f"expected one opening on {dimension} {key}, got {found}"
    return found[0]


def _assert_resolves_once_without_flapping(
    during: list[SurgeChange], after: list[SurgeChange]
) -> None:
    """Every surge that opened closes exactly once, after the attack, and nothing reopens."""
    opened = Counter((c.surge.dimension, c.surge.key) for c in during + after if not c.resolved)
    closed = Counter((c.surge.dimension, c.surge.key) for c in during + after if c.resolved)
    assert opened == closed
    assert set(opened.values()) == {1}
    assert all(c.at > ATTACK_END for c in during + after if c.resolved)


def _backscatter(
    batv: BatvVerdict | None,
) -> Callable[[Traffic, Tenant], Callable[[datetime], Iterator[Event]]]:
    def attack(traffic: Traffic, tenant: Tenant) -> Callable[[datetime], Iterator[Event]]:
        rng = traffic.rng

        def minute(at: datetime) -> Iterator[Event]:
            # Spam forging random contoso senders bounces back to contoso from everywhere.
            for _ in range(120):
                yield BounceReturned(
                    at + timedelta(seconds=rng.uniform(0, 59)),
                    f"u{rng.randrange(10**6)}@{tenant.domain}",
                    (failed(f"x{rng.randrange(10**6)}@{rng.choice(DOMAINS)}", "userunknown"),),
                    message_ids=(f"<{rng.random()}@spammer.invalid>",),
                    tenant=tenant.name,
                    batv=batv,
                )

        return minute

    return attack


@DETECTORS
def test_backscatter_is_named_from_unmatched_message_ids_and_subsides(
    settings: SurgeSettings,
) -> None:
    """DSNs about mail we never sent raise a tenant surge named backscatter, then resolve."""
    before, during, after, _ = _scenario(_backscatter(None), settings)
    assert before == []
    change = _opened(during, Dimension.TENANT, "contoso")
    assert change.at <= ATTACK_START + 3 * MINUTE
    assert change.surge.cause is Cause.BACKSCATTER
    assert change.surge.evidence["forged_share"] == 1.0
    assert change.surge.evidence["exact"] is False
    assert (
        _opened(during, Dimension.SENDER_DOMAIN, "contoso.example").surge.cause is Cause.BACKSCATTER
    )
    # Bounces about mail we never sent say nothing about the domains we send to.
    assert not [c for c in during if c.surge.dimension is Dimension.DESTINATION]
    _assert_resolves_once_without_flapping(during, after)


def test_backscatter_with_batv_is_exact() -> None:
    """With BATV on, untagged bounced addresses are exact evidence: the alert says so."""
    _, during, after, _ = _scenario(_backscatter(BatvVerdict.UNTAGGED))
    change = _opened(during, Dimension.TENANT, "contoso")
    assert change.surge.cause is Cause.BACKSCATTER
    assert change.surge.evidence["exact"] is True
    assert change.surge.evidence["batv_bad"] == change.surge.evidence["batv_checked"]
    _assert_resolves_once_without_flapping(during, after)


def _harvest(traffic: Traffic, tenant: Tenant) -> Callable[[datetime], Iterator[Event]]:
    rng = traffic.rng

    def minute(at: datetime) -> Iterator[Event]:
        # Two harvesting senders guess contoso local parts; contoso's server bounces them via us.
        for _ in range(60):
            yield MessageAccepted(
                at + timedelta(seconds=rng.uniform(0, 59)),
                tenant.name,
                "",
                (rng.choice(("a@harvest.example", "b@harvest.example")),),
                message_id=traffic.message_id(),
                client_ip=tenant.client_ip,
                sender_domain=tenant.domain,
                kind="dsn",
                failed=(
                    failed(
                        f"{rng.choice('jkmst')}{rng.randrange(10**5)}@{tenant.domain}",
                        "userunknown",
                    ),
                ),
            )

    return minute


def test_directory_harvest_is_named_with_the_domain_and_its_few_senders() -> None:
    """Many distinct unknown local parts at contoso from two senders: directory harvest."""
    before, during, after, _ = _scenario(_harvest)
    assert before == []
    change = _opened(during, Dimension.TENANT, "contoso")
    assert change.surge.cause is Cause.DIRECTORY_HARVEST
    evidence = change.surge.evidence
    assert evidence["domain"] == "contoso.example"
    assert isinstance(evidence["distinct_unknown_local_parts"], int)
    assert evidence["distinct_unknown_local_parts"] >= 50
    assert evidence["senders"] == 2
    harvester = _opened(during, Dimension.DESTINATION, "harvest.example")
    assert harvester.surge.cause is Cause.DIRECTORY_HARVEST
    _assert_resolves_once_without_flapping(during, after)


def _spam_run(traffic: Traffic, tenant: Tenant) -> Callable[[datetime], Iterator[Event]]:
    rng = traffic.rng

    def minute(at: datetime) -> Iterator[Event]:
        # A compromised account: one sender, high scores, receivers refusing it as spam.
        for _ in range(150):
            yield from traffic.send(
                tenant,
                at + timedelta(seconds=rng.uniform(0, 59)),
                "user3@contoso.example",
                score=rng.uniform(6, 12),
                bounce_rate=0.5,
                reasons=("blocked", "spamdetected"),
                diagnostic="550 5.7.1 message rejected as spam",
                domains=("gmail.example", "outlook.example", rng.choice(DOMAINS)),
            )

    return minute


@DETECTORS
def test_spam_attack_names_the_sender_and_folds_destination_surges(settings: SurgeSettings) -> None:
    """One sender's volume and scores jump with spam refusals: spam attack, one alert per scope."""
    before, during, after, _ = _scenario(_spam_run, settings)
    assert before == []
    change = _opened(during, Dimension.TENANT, "contoso")
    assert change.surge.cause is Cause.SPAM_ATTACK
    evidence = change.surge.evidence
    assert evidence["sender"] == "user3@contoso.example"
    assert isinstance(evidence["spam_share"], float)
    assert evidence["spam_share"] > 0.7
    destinations = [c for c in during if c.surge.dimension is Dimension.DESTINATION]
    assert {c.surge.key for c in destinations} >= {"gmail.example", "outlook.example"}
    assert all(
        c.folded and c.surge.within == "tenant contoso" for c in destinations if not c.resolved
    )
    # Our source IPs bouncing a third of their mail is news of its own: not folded.
    assert any(c.surge.dimension is Dimension.SOURCE_IP and not c.folded for c in during)
    _assert_resolves_once_without_flapping(during, after)


def _rogue(traffic: Traffic, tenant: Tenant) -> Callable[[datetime], Iterator[Event]]:
    rng = traffic.rng

    def minute(at: datetime) -> Iterator[Event]:
        # A server at an address contoso never used floods mail from many made-up senders.
        for _ in range(80):
            yield from traffic.send(
                tenant,
                at + timedelta(seconds=rng.uniform(0, 59)),
                f"x{rng.randrange(1000)}@{tenant.domain}",
                client_ip="192.0.2.99",
                bounce_rate=0.6,
                reasons=("rejected",),
                diagnostic="550 5.7.1 sender address rejected",
            )

    return minute


def test_rogue_server_names_the_new_client_and_the_identical_diagnostics() -> None:
    """Traffic from a never-seen client of the tenant with one repeated diagnostic: rogue server."""
    before, during, after, _ = _scenario(_rogue)
    assert before == []
    change = _opened(during, Dimension.TENANT, "contoso")
    assert change.surge.cause is Cause.ROGUE_SERVER
    evidence = change.surge.evidence
    assert evidence["new_clients"] == ["192.0.2.99"]
    assert evidence["top_diagnostic"] == "550 5.7.1 sender address rejected"
    assert isinstance(evidence["identical_diagnostic_share"], float)
    assert evidence["identical_diagnostic_share"] > 0.9
    _assert_resolves_once_without_flapping(during, after)


def _loop(traffic: Traffic, tenant: Tenant) -> Callable[[datetime], Iterator[Event]]:
    rng = traffic.rng

    def minute(at: datetime) -> Iterator[Event]:
        # A mail loop: the same bounce comes round again and again with a growing Received chain.
        for i in range(60):
            yield MessageAccepted(
                at + timedelta(seconds=i),
                tenant.name,
                "",
                ("postmaster@loop.example",),
                message_id="<looping@contoso.example>",
                client_ip=tenant.client_ip,
                sender_domain=tenant.domain,
                kind="dsn",
                failed=(
                    failed("postmaster@loop.example", "systemerror", "554 5.4.6 too many hops"),
                ),
                hops=rng.randrange(30, 60),
            )

    return minute


def test_mail_loop_is_attributed_to_a_rogue_server() -> None:
    """The same message again and again with deep Received chains: a loop, so rogue server."""
    _, during, after, _ = _scenario(_loop)
    change = _opened(during, Dimension.TENANT, "contoso")
    assert change.surge.cause is Cause.ROGUE_SERVER
    assert isinstance(change.surge.evidence["loops"], int)
    assert change.surge.evidence["loops"] >= 60
    _assert_resolves_once_without_flapping(during, after)


@pytest.mark.parametrize(("seed", "days"), [(11, 3), pytest.param(12, 14, marks=pytest.mark.slow)])
def test_quiet_days_with_realistic_noise_raise_nothing(seed: int, days: int) -> None:
    """Days of diurnal traffic, 1-3 % bounces, newsletters, small bursts: no surge at all."""
    tenants = [Tenant("contoso", 6, 0.03), Tenant("fabrikam", 4, 0.01), Tenant("tailspin", 2, 0.02)]
    traffic = Traffic(tenants, seed)
    tracker = SurgeTracker(SurgeSettings())
    rng = traffic.rng

    def noise(at: datetime) -> Iterator[Event]:
        roll = rng.random()
        tenant = rng.choice(tenants)
        if roll < 0.004:  # a newsletter: 200-400 recipients at once, ordinary bounce rate
            yield from traffic.send(
                tenant,
                at,
                "news@" + tenant.domain,
                recipients=rng.randrange(200, 400),
                bounce_rate=0.03,
            )
        elif roll < 0.01:  # a small burst of stale-address bounces
            for _ in range(rng.randrange(3, 9)):
                yield from traffic.send(tenant, at, rng.choice(tenant.senders), bounce_rate=1.0)
        elif roll < 0.03:  # a stray returned bounce about mail we never sent
            yield BounceReturned(
                at, f"old@{tenant.domain}", (failed("x@dest1.example", "userunknown"),)
            )

    changes = run(tracker, traffic, START, days * 24 * 60, noise)
    assert changes == []
    assert tracker.open_surges() == ()
    # The quiet was not for lack of traffic: a day's volume with its ordinary bounce rates.
    rows = {row.tenant: row for row in tracker.rates(START + timedelta(days=days))}
    assert rows["contoso"].sent > 4000
    assert 0.02 < rows["contoso"].hard_bounce_rate < 0.05
    assert 0.005 < rows["fabrikam"].hard_bounce_rate < 0.03
