"""Pools and IPs in the store: registration, the one-pool-for-life rule, compare-and-set states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hrmonitor.adapters.store import Store, open_store
from hrmonitor.core.model import AuditEvent, IPState, Pool, PoolPolicy, RiskClass
from hrmonitor.errors import OperatorError

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def pool(name: str, risk: RiskClass, ips: tuple[str, ...], standby: tuple[str, ...] = ()) -> Pool:
    return Pool(name, risk, ips, standby, PoolPolicy(), timedelta(minutes=30))


NORMAL = pool("normal", RiskClass.NORMAL, ("198.51.100.10",))
HIGH = pool("high-risk", RiskClass.HIGH, ("203.0.113.20", "203.0.113.21"), ("203.0.113.22",))


def event(ip: str, to: IPState, frm: IPState, at: datetime = T0, actor: str = "test") -> AuditEvent:
    return AuditEvent(
        at=at,
        ip=ip,
        pool="high-risk",
        kind="state",
        from_state=frm.value,
        to_state=to.value,
        reason="listed on spamhaus-zen",
        actor=actor,
        evidence={"zone": "spamhaus-zen", "codes": ("127.0.0.2",), "seen": T0},
    )


def test_new_ips_start_active_or_standby_as_configured(store: Store) -> None:
    assert store.sync_pools([NORMAL, HIGH], T0) == []
    states = {r.ip: (r.pool, r.state, r.state_since) for r in store.ip_records()}
    assert states == {
        "198.51.100.10": ("normal", IPState.ACTIVE, T0),
        "203.0.113.20": ("high-risk", IPState.ACTIVE, T0),
        "203.0.113.21": ("high-risk", IPState.ACTIVE, T0),
        "203.0.113.22": ("high-risk", IPState.STANDBY, T0),
    }
    assert [r.ip for r in store.ip_records("normal")] == ["198.51.100.10"]


def test_known_ips_keep_their_stored_state_on_the_next_sync(store: Store) -> None:
    store.sync_pools([NORMAL, HIGH], T0)
    assert store.transition_ip(
        "203.0.113.20",
        IPState.ACTIVE,
        IPState.RETIRED,
        event("203.0.113.20", IPState.RETIRED, IPState.ACTIVE),
    )
    assert store.sync_pools([NORMAL, HIGH], T0 + timedelta(hours=1)) == []
    record = store.ip_record("203.0.113.20")
    assert record is not None
    assert record.state is IPState.RETIRED


def test_ipv6_addresses_are_stored_in_canonical_form(store: Store) -> None:
    v6 = pool("high-risk", RiskClass.HIGH, ("2001:DB8:0:0::1",))
    assert store.sync_pools([v6], T0) == []
    assert [r.ip for r in store.ip_records()] == ["2001:db8::1"]
    assert store.ip_record("2001:0db8::0001") is not None


def test_an_ip_that_served_high_risk_is_refused_in_a_normal_pool(store: Store) -> None:
    store.sync_pools([NORMAL, HIGH], T0)
    moved = pool("normal", RiskClass.NORMAL, ("198.51.100.10", "203.0.113.21"))
    high = pool("high-risk", RiskClass.HIGH, ("203.0.113.20",), ("203.0.113.22",))
    problems = store.sync_pools([moved, high], T0 + timedelta(days=1))
    assert len(problems) == 1
    assert problems[0].startswith("pools.normal.ips[1]: 203.0.113.21 sent for high-risk pool")
    assert "never joins normal pool" in problems[0]
    record = store.ip_record("203.0.113.21")
    assert record is not None
    assert record.pool == "high-risk"  # nothing applied


def test_an_ip_never_moves_between_pools(store: Store) -> None:
    relay = pool("relay", RiskClass.RELAY, ("192.0.2.5",))
    store.sync_pools([NORMAL, HIGH, relay], T0)
    moved = pool("high-risk", RiskClass.HIGH, ("203.0.113.20", "192.0.2.5"))
    problems = store.sync_pools([NORMAL, moved], T0)
    assert problems == [
        "pools.high-risk.ips[1]: 192.0.2.5 belongs to pool 'relay' (since 2026-11-28); "
        "an IP never moves to another pool, such as 'high-risk'"
    ]


def test_a_pool_turned_from_high_to_normal_is_refused_for_its_old_ips(store: Store) -> None:
    store.sync_pools([HIGH], T0)
    softened = pool("high-risk", RiskClass.NORMAL, ("203.0.113.20",))
    problems = store.sync_pools([softened], T0)
    assert len(problems) == 1
    assert "sent for high-risk pool 'high-risk'" in problems[0]


def test_refusal_keeps_every_pool_unchanged_even_the_valid_ones(store: Store) -> None:
    store.sync_pools([HIGH], T0)
    new_normal = pool("normal", RiskClass.NORMAL, ("198.51.100.10", "203.0.113.20"))
    assert store.sync_pools([new_normal, HIGH], T0) != []
    assert store.ip_record("198.51.100.10") is None


def test_an_ip_configured_twice_is_a_problem(store: Store) -> None:
    twice = pool("high-risk", RiskClass.HIGH, ("203.0.113.20",), ("203.0.113.20",))
    assert store.sync_pools([twice], T0) == [
        "pools.high-risk.standby[0]: 203.0.113.20 is already configured as pools.high-risk.ips[0]"
    ]


def test_pool_history_remembers_each_pool_and_risk_an_ip_served(store: Store) -> None:
    store.sync_pools([HIGH], T0)
    relay_now = pool("high-risk", RiskClass.RELAY, ("203.0.113.20",))
    store.sync_pools([relay_now], T0 + timedelta(days=2))
    history = store.pool_history("203.0.113.20")
    assert [(h.pool, h.risk, h.first_seen) for h in history] == [
        ("high-risk", RiskClass.HIGH, T0),
        ("high-risk", RiskClass.RELAY, T0 + timedelta(days=2)),
    ]


def test_transition_is_compare_and_set_and_audited(store: Store) -> None:
    store.sync_pools([HIGH], T0)
    ip = "203.0.113.20"
    at = T0 + timedelta(minutes=5)
    retire = event(ip, IPState.RETIRED, IPState.ACTIVE, at=at)
    assert store.transition_ip(ip, IPState.ACTIVE, IPState.RETIRED, retire) is True
    assert store.transition_ip(ip, IPState.ACTIVE, IPState.RETIRED, retire) is False
    record = store.ip_record(ip)
    assert record is not None
    assert (record.state, record.state_since) == (IPState.RETIRED, at)
    trail = store.audit_trail(ip)
    assert len(trail) == 1
    assert trail[0].to_state == "retired"
    assert trail[0].evidence == {
        "zone": "spamhaus-zen",
        "codes": ["127.0.0.2"],
        "seen": T0.isoformat(),
    }
    assert trail[0].at == at


def test_two_stores_on_one_database_apply_a_transition_once(store: Store, store_url: str) -> None:
    """Two daemons racing to retire the same IP: exactly one wins, one audit event."""
    store.sync_pools([HIGH], T0)
    ip = "203.0.113.21"
    other = open_store(store_url)
    try:
        first = store.transition_ip(
            ip,
            IPState.ACTIVE,
            IPState.RETIRED,
            event(ip, IPState.RETIRED, IPState.ACTIVE, actor="node-a"),
        )
        second = other.transition_ip(
            ip,
            IPState.ACTIVE,
            IPState.RETIRED,
            event(ip, IPState.RETIRED, IPState.ACTIVE, actor="node-b"),
        )
    finally:
        other.close()
    assert (first, second) == (True, False)
    assert [e.actor for e in store.audit_trail(ip)] == ["node-a"]


def test_transition_of_an_unknown_ip_changes_nothing(store: Store) -> None:
    ip = "192.0.2.99"
    assert not store.transition_ip(
        ip, IPState.ACTIVE, IPState.RETIRED, event(ip, IPState.RETIRED, IPState.ACTIVE)
    )
    assert store.audit_trail(ip) == []


def test_entering_warming_starts_stage_zero_and_stage_moves_by_compare_and_set(
    store: Store,
) -> None:
    store.sync_pools([HIGH], T0)
    ip = "203.0.113.22"
    assert store.transition_ip(
        ip, IPState.STANDBY, IPState.WARMING, event(ip, IPState.WARMING, IPState.STANDBY)
    )
    record = store.ip_record(ip)
    assert record is not None
    assert record.warmup_stage == 0
    advance = event(ip, IPState.WARMING, IPState.WARMING)
    assert store.set_warmup_stage(ip, 0, 1, advance) is True
    assert store.set_warmup_stage(ip, 0, 1, advance) is False
    record = store.ip_record(ip)
    assert record is not None
    assert record.warmup_stage == 1
    assert store.transition_ip(
        ip, IPState.WARMING, IPState.ACTIVE, event(ip, IPState.ACTIVE, IPState.WARMING)
    )
    record = store.ip_record(ip)
    assert record is not None
    assert record.warmup_stage is None
    assert len(store.audit_trail(ip)) == 3


def test_record_sent_counts_per_utc_day_and_restarts_the_next_day(store: Store) -> None:
    store.sync_pools([HIGH], T0)
    ip = "203.0.113.20"
    assert store.record_sent(ip, T0) == 1
    assert store.record_sent(ip, T0 + timedelta(hours=1), count=4) == 5
    tomorrow = T0 + timedelta(hours=12)
    assert store.record_sent(ip, tomorrow) == 1
    record = store.ip_record(ip)
    assert record is not None
    assert record.last_sent_at == tomorrow
    assert record.sent_on(tomorrow.date()) == 1
    assert record.sent_on(T0.date()) == 0


def test_record_sent_from_two_stores_loses_no_count(store: Store, store_url: str) -> None:
    store.sync_pools([HIGH], T0)
    other = open_store(store_url)
    try:
        for _ in range(3):
            store.record_sent("203.0.113.20", T0)
            other.record_sent("203.0.113.20", T0)
    finally:
        other.close()
    record = store.ip_record("203.0.113.20")
    assert record is not None
    assert record.sent_on(T0.date()) == 6


def test_record_sent_for_an_unknown_ip_counts_nothing(store: Store) -> None:
    assert store.record_sent("192.0.2.1", T0) == 0


def test_a_transition_keeps_who_made_it_and_until_when(store: Store) -> None:
    store.sync_pools([HIGH], T0)
    ip = "203.0.113.20"
    record = store.ip_record(ip)
    assert record is not None
    assert (record.state_actor, record.state_until) == ("config", None)
    until = T0 + timedelta(days=2)
    disable = AuditEvent(
        T0,
        ip,
        "high-risk",
        "state",
        "active",
        "disabled",
        "maintenance",
        "operator:alice",
        {},
        until,
    )
    assert store.transition_ip(ip, IPState.ACTIVE, IPState.DISABLED, disable)
    record = store.ip_record(ip)
    assert record is not None
    assert (record.state, record.state_actor, record.state_until) == (
        IPState.DISABLED,
        "operator:alice",
        until,
    )
    assert store.audit_trail(ip)[-1].until == until


def test_warmup_stage_remembers_when_it_began(store: Store) -> None:
    store.sync_pools([HIGH], T0)
    ip = "203.0.113.22"
    store.transition_ip(
        ip, IPState.STANDBY, IPState.WARMING, event(ip, IPState.WARMING, IPState.STANDBY)
    )
    advanced_at = T0 + timedelta(days=1)
    store.set_warmup_stage(ip, 0, 1, event(ip, IPState.WARMING, IPState.WARMING, at=advanced_at))
    record = store.ip_record(ip)
    assert record is not None
    assert (record.warmup_stage, record.warmup_since) == (1, advanced_at)


def test_delivered_counts_share_the_day_with_sent_counts(store: Store) -> None:
    store.sync_pools([HIGH], T0)
    ip = "203.0.113.20"
    store.record_sent(ip, T0, count=10)
    store.record_delivered(ip, T0, count=9)
    record = store.ip_record(ip)
    assert record is not None
    assert (record.sent_on(T0.date()), record.delivered_on(T0.date())) == (10, 9)
    tomorrow = T0 + timedelta(days=1)
    store.record_delivered(ip, tomorrow)
    record = store.ip_record(ip)
    assert record is not None
    assert (record.sent_on(tomorrow.date()), record.delivered_on(tomorrow.date())) == (0, 1)
    assert record.last_sent_at == T0  # a delivery report is not a send


def test_a_transition_with_another_ips_audit_event_is_refused(store: Store) -> None:
    store.sync_pools([HIGH], T0)
    wrong = event("203.0.113.21", IPState.RETIRED, IPState.ACTIVE)
    with pytest.raises(OperatorError, match=r"audit event about 203\.0\.113\.21"):
        store.transition_ip("203.0.113.20", IPState.ACTIVE, IPState.RETIRED, wrong)
    record = store.ip_record("203.0.113.20")
    assert record is not None
    assert record.state is IPState.ACTIVE


def test_the_audit_trail_is_read_after_an_id_with_the_node_that_acted(store: Store) -> None:
    """What the daemon's audit tail reads (``services.audit_log``), on SQLite and PostgreSQL."""
    store.sync_pools([HIGH], T0)
    start = store.last_audit_id()
    store.record_event(event("203.0.113.20", IPState.RETIRED, IPState.ACTIVE, actor="operator:x"))
    store.node = "n1"
    store.record_event(event("203.0.113.21", IPState.RETIRED, IPState.ACTIVE))
    rows = store.audit_events_after(start)
    assert [(node, e.ip, e.actor) for _, node, e in rows] == [
        (None, "203.0.113.20", "operator:x"),
        ("n1", "203.0.113.21", "test"),
    ]
    assert [i for i, _, _ in rows] == sorted(i for i, _, _ in rows)
    assert store.last_audit_id() == rows[-1][0]
    assert store.audit_events_after(rows[0][0]) == rows[1:]
    assert len(store.audit_events_after(start, limit=1)) == 1
