"""Audit events: every change of state or suspension, with its evidence (house rule 4)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hrmonitor.adapters.store.schema import AuditEventRow, IpRow
from hrmonitor.core.model import AuditEvent


def jsonable(value: object) -> object:
    """``value`` in a shape JSON can hold: evidence is whatever the rule had at hand."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [jsonable(v) for v in items]
    return str(value)


def evidence_json(evidence: Mapping[str, object]) -> dict[str, object]:
    return {str(k): jsonable(v) for k, v in evidence.items()}


def pool_of(session: Session, ip: str) -> str:
    """The pool an IP is registered in, or "" for an IP the store has never been told about."""
    return session.scalar(select(IpRow.pool).where(IpRow.ip == ip)) or ""


def add_event(session: Session, event: AuditEvent) -> None:
    """Store ``event``; the node that acted comes from the session (``Store.node``)."""
    node = session.info.get("node")
    session.add(
        AuditEventRow(
            at=event.at,
            ip=event.ip,
            pool=event.pool,
            kind=event.kind,
            from_state=event.from_state,
            to_state=event.to_state,
            reason=event.reason,
            actor=event.actor,
            evidence=evidence_json(event.evidence),
            until=event.until,
            node=node if isinstance(node, str) else None,
        )
    )


def trail(session: Session, ip: str) -> list[AuditEvent]:
    """The IP's audit events, oldest first."""
    rows = session.scalars(
        select(AuditEventRow)
        .where(AuditEventRow.ip == ip)
        .order_by(AuditEventRow.at, AuditEventRow.id)
    )
    return [_event(row) for row in rows]


def last_event_id(session: Session) -> int:
    """The highest audit event id so far (0 for none): where a tail starts."""
    return int(session.scalar(select(func.max(AuditEventRow.id))) or 0)


def events_after(
    session: Session, after_id: int, limit: int
) -> list[tuple[int, str | None, AuditEvent]]:
    """Up to ``limit`` events with an id above ``after_id``, by id: (id, node, event)."""
    rows = session.scalars(
        select(AuditEventRow)
        .where(AuditEventRow.id > after_id)
        .order_by(AuditEventRow.id)
        .limit(limit)
    )
    return [(row.id, row.node, _event(row)) for row in rows]


def _event(row: AuditEventRow) -> AuditEvent:
    return AuditEvent(
        at=row.at,
        ip=row.ip,
        pool=row.pool,
        kind=row.kind,
        from_state=row.from_state,
        to_state=row.to_state,
        reason=row.reason,
        actor=row.actor,
        evidence=dict(row.evidence or {}),
        until=row.until,
    )
