"""The audit tail logs each new event once, at its level; the applier levels its decisions."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from hrmonitor.core.alert import Alert, AlertKind
from hrmonitor.core.model import AuditEvent, Severity
from hrmonitor.core.rotation.decide import Decision
from hrmonitor.services.audit_log import PAGE, AuditTail
from hrmonitor.services.rotation.apply import attention

T0 = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)


def event(kind: str, actor: str, ip: str = "192.0.2.1", **evidence: object) -> AuditEvent:
    return AuditEvent(T0, ip, "high-risk", kind, "active", "retired", "why", actor, evidence)


class Trail:
    """The store's audit table, in memory: ids may arrive out of order (late commits)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, str | None, AuditEvent]] = []

    def last_audit_id(self) -> int:
        return max((r[0] for r in self.rows), default=0)

    def audit_events_after(
        self, after_id: int, limit: int = PAGE
    ) -> list[tuple[int, str | None, AuditEvent]]:
        return sorted(r for r in self.rows if r[0] > after_id)[:limit]


def audit_records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "hrmonitor.services.audit_log"
    ]


async def test_each_event_is_logged_once_and_history_not_at_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    trail = Trail()
    trail.rows.append((1, None, event("state", "operator:old")))  # before the daemon started
    tail = AuditTail(trail, "a")
    await tail.start()
    trail.rows += [
        (2, None, event("state", "operator:alice")),
        (3, "a", event("state", "rotation.retire")),  # logged by this node's applier
        (4, "b", event("state", "rotation.retire")),  # node b logs its own
        (5, "a", event("suspension", "rotation.bind", scope="*")),
        (7, "a", event("suspension", "feedback.reply", scope="gmail.com")),
    ]
    assert await tail.poll() == 3
    trail.rows.append((6, None, event("queue-hold", "operator:bob", ip="", queue_id="q1")))
    assert await tail.poll() == 1  # committed late, below the highest id seen: still logged
    assert await tail.poll() == 0
    logged = audit_records(caplog)
    assert [level for level, _ in logged] == [
        logging.INFO, logging.WARNING, logging.INFO, logging.INFO
    ]  # fmt: skip
    assert [msg.split(" actor=")[1].split()[0] for _, msg in logged] == [
        "operator:alice", "rotation.bind", "feedback.reply", "operator:bob"
    ]  # fmt: skip
    assert logged[0][1] == (
        "audit: kind=state ip=192.0.2.1 pool=high-risk from=active to=retired"
        ' actor=operator:alice origin=command reason="why" id=2'
    )
    assert "kind=queue-hold queue_id=q1 pool=high-risk " in logged[3][1]


def test_a_decision_is_a_warning_only_when_it_leaves_its_pool_short() -> None:
    def alert(kind: AlertKind, resolved: bool = False) -> Alert:
        return Alert(kind, Severity.HIGH, str(kind), "s", T0, resolved=resolved)

    assert not attention(Decision("p", alerts=(alert(AlertKind.RETIREMENT),)))
    assert not attention(Decision("p", alerts=(alert(AlertKind.POOL_BELOW_MIN, True),)))
    assert attention(Decision("p", alerts=(alert(AlertKind.POOL_BELOW_MIN),)))
    assert attention(Decision("p", alerts=(alert(AlertKind.POOL_EXHAUSTED),)))
