"""Suspensions: one open per (ip, scope), extended by new evidence, lifted on expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hrmonitor.adapters.store import Store, Suspension
from hrmonitor.core.model import Pool, PoolPolicy, RiskClass

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
IP = "203.0.113.20"
HOUR = timedelta(hours=1)


@pytest.fixture
def pooled(store: Store) -> Store:
    pool = Pool("high-risk", RiskClass.HIGH, (IP,), (), PoolPolicy(), timedelta(minutes=15))
    assert store.sync_pools([pool], T0) == []
    return store


def suspend(
    store: Store, scope: str, since: datetime, until: datetime, reason: str = "421 RP-001"
) -> Suspension:
    return store.add_suspension(
        IP, scope, reason, {"reply": reason, "at": since}, since, until, "feedback.provider-pause"
    )


def test_a_suspension_is_active_until_its_end_and_audited(pooled: Store) -> None:
    added = suspend(pooled, "outlook.com", T0, T0 + HOUR)
    assert added.active_at(T0)
    (active,) = pooled.active_suspensions(T0 + timedelta(minutes=59))
    assert (active.ip, active.scope, active.until) == (IP, "outlook.com", T0 + HOUR)
    assert pooled.active_suspensions(T0 + HOUR) == []
    (audit,) = pooled.audit_trail(IP)
    assert (audit.kind, audit.pool, audit.to_state, audit.until) == (
        "suspension",
        "high-risk",
        "suspended",
        T0 + HOUR,
    )
    assert audit.evidence["scope"] == "outlook.com"
    assert audit.evidence["at"] == T0.isoformat()


def test_new_evidence_extends_the_open_suspension_instead_of_adding_one(pooled: Store) -> None:
    suspend(pooled, "outlook.com", T0, T0 + HOUR)
    extended = suspend(
        pooled, "outlook.com", T0 + 30 * timedelta(minutes=1), T0 + 2 * HOUR, "421 again"
    )
    assert (extended.since, extended.until, extended.reason) == (T0, T0 + 2 * HOUR, "421 again")
    (only,) = pooled.active_suspensions(T0 + 90 * timedelta(minutes=1))
    assert only.until == T0 + 2 * HOUR
    assert [e.reason for e in pooled.audit_trail(IP)] == ["421 RP-001", "extended: 421 again"]


def test_shorter_evidence_never_shortens_a_suspension(pooled: Store) -> None:
    suspend(pooled, "gmail.com", T0, T0 + 2 * HOUR)
    kept = suspend(pooled, "gmail.com", T0 + HOUR / 2, T0 + HOUR)
    assert kept.until == T0 + 2 * HOUR
    assert len(pooled.audit_trail(IP)) == 1


def test_scopes_are_independent(pooled: Store) -> None:
    suspend(pooled, "outlook.com", T0, T0 + HOUR)
    suspend(pooled, "*", T0, T0 + 2 * HOUR, "bind failed: EADDRNOTAVAIL")
    scopes = [s.scope for s in pooled.active_suspensions(T0)]
    assert scopes == ["*", "outlook.com"]
    assert [s.scope for s in pooled.active_suspensions(T0, ip="203.0.113.99")] == []


def test_lift_expired_lifts_once_and_audits_it(pooled: Store) -> None:
    suspend(pooled, "outlook.com", T0, T0 + HOUR)
    suspend(pooled, "gmail.com", T0, T0 + 3 * HOUR)
    assert pooled.lift_expired(T0 + HOUR / 2) == []
    (lifted,) = pooled.lift_expired(T0 + 2 * HOUR)
    assert (lifted.scope, lifted.lifted_at) == ("outlook.com", T0 + 2 * HOUR)
    assert pooled.lift_expired(T0 + 2 * HOUR) == []
    kinds = [(e.kind, e.actor) for e in pooled.audit_trail(IP)]
    assert kinds[-1] == ("suspension-lifted", "suspension.expiry")
    assert [s.scope for s in pooled.active_suspensions(T0 + 2 * HOUR)] == ["gmail.com"]


def test_evidence_after_expiry_starts_a_new_suspension(pooled: Store) -> None:
    suspend(pooled, "outlook.com", T0, T0 + HOUR)
    again = suspend(pooled, "outlook.com", T0 + 2 * HOUR, T0 + 3 * HOUR)
    assert again.since == T0 + 2 * HOUR
    (active,) = pooled.active_suspensions(T0 + 2 * HOUR)
    assert active.since == T0 + 2 * HOUR
    kinds = [e.kind for e in pooled.audit_trail(IP)]
    assert kinds == ["suspension", "suspension-lifted", "suspension"]


def test_an_operator_can_lift_a_suspension_early(pooled: Store) -> None:
    suspend(pooled, "outlook.com", T0, T0 + HOUR)
    assert pooled.lift_suspension(IP, "outlook.com", T0, "operator:alice", "delisted by hand")
    assert not pooled.lift_suspension(IP, "outlook.com", T0, "operator:alice", "again")
    assert pooled.active_suspensions(T0) == []
    assert pooled.audit_trail(IP)[-1].actor == "operator:alice"


def test_a_suspension_must_end_after_it_starts(pooled: Store) -> None:
    with pytest.raises(ValueError, match="is not after"):
        suspend(pooled, "outlook.com", T0, T0)


def test_a_stored_suspension_converts_to_the_rotation_core_value(pooled: Store) -> None:
    suspend(pooled, "outlook.com", T0, T0 + HOUR)
    (active,) = pooled.active_suspensions(T0)
    core = active.as_core()
    assert (core.ip, core.scope, core.since, core.until) == (IP, "outlook.com", T0, T0 + HOUR)
    assert core.active(T0)
    assert core.covers("outlook.com")
    assert not core.covers("gmail.com")
    pooled.lift_suspension(IP, "outlook.com", T0 + HOUR / 4, "operator:alice", "done")
    lifted = pooled.lift_expired(T0 + 2 * HOUR)
    assert lifted == []  # already lifted by the operator: nothing left to expire
