"""The rotation controller against the real store (SQLite, and PostgreSQL when it is there)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hrmonitor.adapters.rule_files import load_feedback_files
from hrmonitor.adapters.store import Store, open_store
from hrmonitor.core.alert import Alert
from hrmonitor.core.dnsbl.answers import SweepResult
from hrmonitor.core.feedback.replies import BlocklistMention, ProviderPause, RemoteReply
from hrmonitor.core.model import (
    Answer,
    Clean,
    IPState,
    Listed,
    Pool,
    PoolPolicy,
    RiskClass,
    Severity,
    Unknown,
    WarmupStage,
    WhenExhausted,
    ZoneHealth,
)
from hrmonitor.core.rotation.decide import OperatorAction, Verb
from hrmonitor.core.rotation.selection import NoEligibleIp, Selection, choose_source_ip
from hrmonitor.errors import OperatorError
from hrmonitor.services.rotation.controller import Controller, RotationStore

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
ZONES = ("zen", "spamcop")
RULES = Path(__file__).resolve().parents[2] / "rules" / "feedback.toml"


def pools(
    cooldown: timedelta = 3 * HOUR, warmup: tuple[WarmupStage, ...] = (), min_active: int = 2
) -> list[Pool]:
    return [
        Pool(
            "normal",
            RiskClass.NORMAL,
            ("127.0.1.1", "127.0.1.2"),
            (),
            PoolPolicy(when_exhausted=WhenExhausted.USE_LISTED),
            timedelta(minutes=30),
        ),
        Pool(
            "high-risk",
            RiskClass.HIGH,
            ("127.0.2.1", "127.0.2.2"),
            ("127.0.2.3",),
            PoolPolicy(cooldown=cooldown, warmup=warmup, min_active=min_active),
            timedelta(minutes=15),
        ),
    ]


class Alerts:
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    async def emit(self, alert: Alert) -> None:
        self.sent.append(alert)

    def kinds(self) -> set[str]:
        return {str(a.kind) for a in self.sent if not a.resolved}


@pytest.fixture
def configured(store: Store) -> Store:
    assert store.sync_pools(pools(), T0 - timedelta(days=1)) == []
    return store


def make(store: RotationStore, alerts: Alerts | None = None, **kw: object) -> Controller:
    return Controller(store, pools(**kw), ZONES, alerts or Alerts())  # type: ignore[arg-type]


def sweep(
    store: Store,
    now: datetime,
    listed: Sequence[str] = (),
    health: dict[str, ZoneHealth] | None = None,
) -> SweepResult:
    """Answers for every pool IP on every zone, stored the way the monitor stores them."""
    answers: list[Answer] = []
    for pool in pools():
        for ip in pool.all_ips:
            for zone in ZONES:
                if ip in listed and zone == "zen":
                    answers.append(
                        Listed(
                            ip,
                            zone,
                            ("127.0.0.2",),
                            ("SBL",),
                            Severity.CRITICAL,
                            "https://check.spamhaus.org/",
                        )
                    )
                else:
                    answers.append(Clean(ip, zone))
    zone_health = {z: ZoneHealth.OK for z in ZONES} | (health or {})
    store.record_sweep(answers, zone_health, now)
    return SweepResult(tuple(answers), zone_health)


def states(store: Store) -> dict[str, IPState]:
    return {r.ip: r.state for r in store.ip_records()}


async def test_listing_retires_promotes_and_the_picker_sees_it(configured: Store) -> None:
    """A stored critical listing retires the high IP and promotes the standby, audited."""
    alerts = Alerts()
    controller = make(configured, alerts)
    await controller.load(T0)
    await controller.on_sweep(sweep(configured, T0, ["127.0.2.1"]), T0)
    assert states(configured) == {
        "127.0.1.1": IPState.ACTIVE,
        "127.0.1.2": IPState.ACTIVE,
        "127.0.2.1": IPState.RETIRED,
        "127.0.2.2": IPState.ACTIVE,
        "127.0.2.3": IPState.ACTIVE,
    }
    trail = configured.audit_trail("127.0.2.1")
    assert [(e.from_state, e.to_state, e.actor) for e in trail if e.kind == "state"] == [
        ("active", "retired", "rotation.retire")
    ]
    assert trail[-1].evidence["zone"] == "zen"
    eligible = {c.ip for c in controller.candidates_now("high-risk", T0) if c.state.in_rotation}
    assert eligible == {"127.0.2.2", "127.0.2.3"}
    assert {c.ip for c in controller.candidates_now("normal", T0)} == {"127.0.1.1", "127.0.1.2"}
    assert controller.listing_counts("high-risk") == {
        "127.0.2.1": 1,
        "127.0.2.2": 0,
        "127.0.2.3": 0,
    }
    # One alert for the event: the listing, carrying the retirement and the replacement
    # (the monitor adds the lookup link when it drives the controller).
    assert alerts.kinds() == {"listing"}
    (listing,) = [a for a in alerts.sent if a.ip == "127.0.2.1"]
    assert listing.details["action"] == "retired"
    assert listing.handled


async def test_untrusted_sweep_changes_nothing_in_the_store(configured: Store) -> None:
    """Listings from a dead zone and timeouts leave every state as it was."""
    controller = make(configured)
    await controller.load(T0)
    answers: tuple[Answer, ...] = (
        Listed("127.0.2.1", "zen", ("127.0.0.2",), (), Severity.CRITICAL),
        Unknown("127.0.2.2", "spamcop", "timeout"),
    )
    result = SweepResult(answers, {"zen": ZoneHealth.LISTS_EVERYTHING, "spamcop": ZoneHealth.OK})
    await controller.on_sweep(result, T0)
    assert set(states(configured).values()) == {IPState.ACTIVE, IPState.STANDBY}


async def test_two_controllers_racing_apply_each_transition_once(configured: Store) -> None:
    """Two daemons deciding on the same sweep at once: one retirement, one promotion."""
    first, second = make(configured), make(configured)
    await asyncio.gather(first.load(T0), second.load(T0))
    result = sweep(configured, T0, ["127.0.2.1"])
    await asyncio.gather(first.on_sweep(result, T0), second.on_sweep(result, T0))
    events = [
        e
        for ip in ("127.0.2.1", "127.0.2.3")
        for e in configured.audit_trail(ip)
        if e.kind == "state"
    ]
    assert sorted((e.ip, e.to_state) for e in events) == [
        ("127.0.2.1", "retired"),
        ("127.0.2.3", "active"),
    ]
    seen = [{c.ip: c.state for c in c_.candidates_now("high-risk", T0)} for c_ in (first, second)]
    assert (
        seen[0]
        == seen[1]
        == {
            "127.0.2.1": IPState.RETIRED,
            "127.0.2.2": IPState.ACTIVE,
            "127.0.2.3": IPState.ACTIVE,
        }
    )


async def test_cooldown_through_the_store_restores_to_standby(configured: Store) -> None:
    """Retired, delisted, clean hourly sweeps: standby after the 3h cool-down, not before."""
    controller = make(configured, min_active=1)
    await controller.load(T0)
    await controller.on_sweep(sweep(configured, T0, ["127.0.2.1"]), T0)
    for hours in (1, 2, 3):
        now = T0 + hours * HOUR
        await controller.on_sweep(sweep(configured, now), now)
        await controller.tick(now)
        assert states(configured)["127.0.2.1"] is IPState.RETIRED, hours
    now = T0 + 4 * HOUR
    await controller.on_sweep(sweep(configured, now), now)
    assert states(configured)["127.0.2.1"] is IPState.STANDBY


async def test_blocklist_5xx_suspends_before_the_next_attempt(configured: Store) -> None:
    """The relay's sync callback suspends (ip x provider) before it returns; stored after."""
    rechecked: list[str] = []

    async def recheck(ip: str) -> None:
        rechecked.append(ip)

    alerts = Alerts()
    controller = Controller(
        configured,
        pools(),
        ZONES,
        alerts,
        recheck=recheck,
        feedback_rules=load_feedback_files([RULES]),
    )
    await controller.load(T0)
    reply = RemoteReply(
        554,
        "5.7.1",
        "Service unavailable; client host blocked using zen.spamhaus.org",
        "127.0.2.1",
        "mx1.mail.yahoo.com",
        T0,
    )
    controller.on_reply(reply)  # synchronous: no await between the reply and the next pick
    offered = controller.candidates_now("high-risk", T0)
    picks = {choose_source_ip(offered, "yahoo", T0, n) for n in range(4)}
    assert all(not isinstance(p, NoEligibleIp) and p.ip != "127.0.2.1" for p in picks)
    assert any(
        not isinstance(p, NoEligibleIp) and p.ip == "127.0.2.1"
        for n in range(4)
        if (p := choose_source_ip(offered, "google", T0, n))
    )
    await controller.drain()
    stored = configured.active_suspensions(T0, "127.0.2.1")
    assert [(s.scope, s.until) for s in stored] == [("yahoo", T0 + 2 * HOUR)]
    assert rechecked == ["127.0.2.1"]
    assert "suspension" in alerts.kinds()


async def test_own_deferrals_and_foreign_ips_never_suspend(configured: Store) -> None:
    """An own deferral and a reply about an IP we do not own change nothing."""
    controller = Controller(
        configured, pools(), ZONES, Alerts(), feedback_rules=load_feedback_files([RULES])
    )
    await controller.load(T0)
    text = "blocked using zen.spamhaus.org"
    controller.on_reply(RemoteReply(554, "5.7.1", text, "127.0.2.1", "mx.yahoo.com", T0, own=True))
    controller.on_reply(RemoteReply(554, "5.7.1", text, "192.0.2.9", "mx.yahoo.com", T0))
    await controller.drain()
    assert configured.active_suspensions(T0) == []
    assert all(not c.suspensions for c in controller.candidates_now("high-risk", T0))


async def test_provider_pause_evidence_extends_and_ignores_stale(configured: Store) -> None:
    """ProviderPause evidence: counted from the reply time, extended, stale ignored."""
    controller = make(configured)
    await controller.load(T0)

    def pause(at: datetime) -> ProviderPause:
        return ProviderPause("127.0.2.2", "yahoo", 2 * HOUR, "TS04", at, "yahoo-ts-deferral")

    await controller.on_reply_evidence(pause(T0), T0)
    await controller.on_reply_evidence(pause(T0 + HOUR), T0 + HOUR)
    await controller.on_reply_evidence(pause(T0 + timedelta(minutes=30)), T0 + HOUR)
    [held] = configured.active_suspensions(T0 + HOUR, "127.0.2.2")
    assert held.until == T0 + 3 * HOUR
    [candidate] = [
        c for c in controller.candidates_now("high-risk", T0 + HOUR) if c.ip == "127.0.2.2"
    ]
    assert candidate.suspensions["yahoo"] == T0 + 3 * HOUR


async def test_blocklist_mention_evidence_without_provider_only_rechecks(
    configured: Store,
) -> None:
    """A mention with no provider re-checks the IP and suspends nothing."""
    rechecked: list[str] = []

    async def recheck(ip: str) -> None:
        rechecked.append(ip)

    controller = Controller(configured, pools(), ZONES, Alerts(), recheck=recheck)
    await controller.load(T0)
    await controller.on_reply_evidence(BlocklistMention("127.0.2.1", "listed", T0, "bl"), T0)
    assert rechecked == ["127.0.2.1"]
    assert configured.active_suspensions(T0) == []


async def test_operator_actions_are_audited_refused_or_applied(configured: Store) -> None:
    """Unknown IP raises; impossible or last-IP actions are refused; a valid one is applied."""
    controller = make(configured, min_active=1)
    await controller.load(T0)
    with pytest.raises(OperatorError, match="not an IP of any configured pool"):
        await controller.operator(OperatorAction("192.0.2.1", Verb.RETIRE, "x", "operator:a", T0))
    refused = await controller.operator(
        OperatorAction("127.0.2.1", Verb.RESTORE, "x", "operator:a", T0)
    )
    assert refused.refused is not None
    assert "it is active" in refused.refused
    done = await controller.operator(
        OperatorAction("127.0.1.1", Verb.DISABLE, "maintenance", "operator:alice", T0)
    )
    assert done.applied
    assert states(configured)["127.0.1.1"] is IPState.DISABLED
    last = await controller.operator(
        OperatorAction("127.0.1.2", Verb.DISABLE, "maintenance", "operator:alice", T0)
    )
    assert last.refused is not None
    assert "last eligible" in last.refused
    assert states(configured)["127.0.1.2"] is IPState.ACTIVE
    [event] = [e for e in configured.audit_trail("127.0.1.1") if e.kind == "state"]
    assert (event.actor, event.reason, event.to_state) == (
        "operator:alice",
        "maintenance",
        "disabled",
    )


async def test_promoted_idle_ip_warms_up_under_its_cap(configured: Store) -> None:
    """A never-used standby enters warming; its cap stops the picker once reached."""
    controller = make(configured, warmup=(WarmupStage(2), WarmupStage(10)))
    await controller.load(T0)
    await controller.on_sweep(sweep(configured, T0, ["127.0.2.2"]), T0)
    assert states(configured)["127.0.2.3"] is IPState.WARMING
    [candidate] = [c for c in controller.candidates_now("high-risk", T0) if c.ip == "127.0.2.3"]
    assert candidate.daily_cap == 2
    controller.note_sent("127.0.2.3", T0)
    controller.note_sent("127.0.2.3", T0)
    offered = controller.candidates_now("high-risk", T0)
    chosen = set()
    for n in range(3):
        choice = choose_source_ip(offered, "google", T0, n)
        assert isinstance(choice, Selection)
        chosen.add(choice.ip)
    assert chosen == {"127.0.2.1"}
    await controller.drain()
    record = configured.ip_record("127.0.2.3")
    assert record is not None
    assert record.sent_on(T0.date()) == 2


def test_real_store_satisfies_the_rotation_store_protocol(tmp_path: Path) -> None:
    """mypy checks this assignment; at runtime it proves the methods exist."""
    opened = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        protocol: RotationStore = opened
        for name in ("ip_records", "transition_ip", "add_suspension", "clean_run"):
            assert callable(getattr(protocol, name))
    finally:
        opened.close()


async def test_remote_replies_count_warmup_volume(configured: Store) -> None:
    """Each remote reply counts a send from its source IP, a 2xx one a delivery too."""
    controller = make(configured)
    await controller.load(T0)
    controller.on_reply(RemoteReply(250, "2.0.0", "ok", "127.0.2.1", "mx.example.net", T0))
    controller.on_reply(RemoteReply(450, "4.2.0", "later", "127.0.2.1", "mx.example.net", T0))
    controller.on_reply(
        RemoteReply(451, "4.3.0", "own", "127.0.2.1", "mx.example.net", T0, own=True)
    )
    await controller.drain()
    record = configured.ip_record("127.0.2.1")
    assert record is not None
    assert (record.sent_on(T0.date()), record.delivered_on(T0.date())) == (2, 1)
    [candidate] = [c for c in controller.candidates_now("high-risk", T0) if c.ip == "127.0.2.1"]
    assert candidate.sent_today == 2


async def test_recheck_that_sweeps_back_into_the_controller_does_not_deadlock(
    configured: Store,
) -> None:
    """A re-check whose sweep calls on_sweep again (as the monitor does) completes."""
    from hrmonitor.core.rotation.decide import BlocklistNamed

    swept: list[str] = []
    controller: Controller

    async def recheck(ip: str) -> None:
        swept.append(ip)
        await controller.on_sweep(sweep(configured, T0), T0)

    controller = Controller(configured, pools(), ZONES, Alerts(), recheck=recheck)
    await controller.load(T0)
    await controller._decide_all(  # the decide path (not the fast path) asks for the re-check
        [BlocklistNamed("127.0.2.1", "blocked using zen", T0, "bl")], T0
    )
    await asyncio.wait_for(controller.drain(), 10)
    assert swept == ["127.0.2.1"]


async def test_bind_failure_suspends_the_whole_ip_at_once(configured: Store) -> None:
    """A bind failure makes the IP ineligible for every provider before the call returns."""
    controller = make(configured)
    await controller.load(T0)
    controller.on_bind_failure("127.0.2.1", "high-risk", "EADDRNOTAVAIL", T0)
    controller.on_bind_failure("127.0.1.1", "high-risk", "wrong pool", T0)  # ignored
    offered = controller.candidates_now("high-risk", T0)
    for provider in ("google", "yahoo"):
        picks = set()
        for n in range(4):
            choice = choose_source_ip(offered, provider, T0, n)
            assert isinstance(choice, Selection)
            picks.add(choice.ip)
        assert picks == {"127.0.2.2"}
    await controller.drain()
    [held] = configured.active_suspensions(T0)
    assert (held.ip, held.scope, held.until) == ("127.0.2.1", "*", T0 + timedelta(minutes=10))


async def test_a_reputation_deferral_slows_an_ip_for_that_provider_without_holding_mail(
    configured: Store,
) -> None:
    """Microsoft's "deferred due to IP reputation": traffic to Microsoft shifts to the
    other IPs of the pool for 90 minutes; nothing is suspended, nothing is held."""
    controller = Controller(
        configured, pools(), ZONES, Alerts(), feedback_rules=load_feedback_files([RULES])
    )
    await controller.load(T0)
    text = "4.7.650 The mail server has been temporarily rate limited due to IP reputation"
    controller.on_reply(
        RemoteReply(451, "4.7.650", text, "127.0.2.1", "mx.outlook.com", T0)
    )  # fmt: skip
    offered = controller.candidates_now("high-risk", T0)
    to_microsoft = [choose_source_ip(offered, "microsoft", T0, n) for n in range(6)]
    assert all(not isinstance(p, NoEligibleIp) and p.ip != "127.0.2.1" for p in to_microsoft)
    to_google = {p.ip for n in range(6) if not isinstance(p := choose_source_ip(
        offered, "google", T0, n), NoEligibleIp)}  # fmt: skip
    assert "127.0.2.1" in to_google  # other providers are not affected
    # Only slowed IPs left for Microsoft: the slowed one still sends, mail is not held.
    alone = [c for c in offered if c.ip == "127.0.2.1"]
    picked = choose_source_ip(alone, "microsoft", T0, 0)
    assert not isinstance(picked, NoEligibleIp)
    assert picked.ip == "127.0.2.1"
    # 90 minutes after the reply the slow-down is over.
    later = T0 + timedelta(minutes=91)
    assert not any(
        c.is_slowed("microsoft", later) for c in controller.candidates_now("high-risk", later)
    )
    await controller.drain()
    assert configured.active_suspensions(T0, "127.0.2.1") == []


async def test_a_zone_a_reload_removed_no_longer_holds_an_ip_out(configured: Store) -> None:
    """Retired on zen; zen removed from the config: its open listing is no longer evidence,
    so the cool-down on the zones still configured (spamcop, clean) brings the IP back."""
    controller = make(configured, cooldown=HOUR)
    await controller.load(T0)
    await controller.on_sweep(sweep(configured, T0, listed=["127.0.2.1"]), T0)
    assert states(configured)["127.0.2.1"] is IPState.RETIRED

    later = T0 + 2 * HOUR
    moved = await controller.reconfigure(pools(cooldown=HOUR), ("spamcop",), later)
    assert moved == []  # the same pools: no IP moved
    clean = [Clean(ip, "spamcop") for pool in pools() for ip in pool.all_ips]
    configured.record_sweep(clean, {"spamcop": ZoneHealth.OK}, later)
    await controller.tick(later)
    assert states(configured)["127.0.2.1"] is IPState.STANDBY


async def test_an_ip_a_reload_removed_returns_when_the_config_has_it_again(
    configured: Store,
) -> None:
    """Removed by a reload (retired by "reload", audited); the config has it again: a later
    reload, or the next start (``readmit``), puts it back in its configured role."""
    controller = make(configured)
    await controller.load(T0)
    fewer = [replace(p, ips=("127.0.1.1",)) if p.name == "normal" else p for p in pools()]
    moved = await controller.reconfigure(fewer, ZONES, T0)
    assert moved == [
        "pool normal: 127.0.1.2 removed from pool normal in the config: active -> retired"
    ]
    assert states(configured)["127.0.1.2"] is IPState.RETIRED
    assert [e.actor for e in configured.audit_trail("127.0.1.2")] == ["reload"]

    restarted = make(configured)  # the next start, with the IP in the config again
    await restarted.load(T0 + HOUR)
    assert await restarted.readmit(T0 + HOUR) == [
        "pool normal: 127.0.1.2 added to pool normal (ips) in the config: retired -> active"
    ]
    assert states(configured)["127.0.1.2"] is IPState.ACTIVE
    assert "127.0.1.2" in {c.ip for c in restarted.candidates_now("normal", T0 + HOUR)}
    assert await restarted.readmit(T0 + HOUR) == []  # once
