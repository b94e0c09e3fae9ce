"""Alert dedupe: one row per condition key, so several nodes send each alert once per interval."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import case, or_, select, update
from sqlalchemy.orm import Session

from hrmonitor.adapters.store.audit import evidence_json
from hrmonitor.adapters.store.records import AlertRecord
from hrmonitor.adapters.store.schema import AlertRow, insert_new
from hrmonitor.core.model import Severity


def claim_alert(
    session: Session,
    key: str,
    kind: str,
    severity: Severity,
    payload: Mapping[str, object],
    now: datetime,
    repeat_after: timedelta,
) -> bool:
    """True if the caller should send this alert now, and the send is then recorded.

    Now means: the key was never seen, or its last alert was resolved since, or the
    last send is ``repeat_after`` or longer ago. The decision is one INSERT or one
    conditional UPDATE, so of two nodes claiming together exactly one gets True.
    """
    stored = evidence_json(payload)
    values = {
        "key": key,
        "kind": kind,
        "severity": Severity(severity).value,
        "first_at": now,
        "last_sent_at": now,
        "resolved_at": None,
        "payload": stored,
    }
    if insert_new(session, AlertRow, values):
        return True
    result = session.execute(
        update(AlertRow)
        .where(
            AlertRow.key == key,
            or_(AlertRow.resolved_at.is_not(None), AlertRow.last_sent_at <= now - repeat_after),
        )
        .values(
            first_at=case((AlertRow.resolved_at.is_not(None), now), else_=AlertRow.first_at),
            kind=kind,
            severity=Severity(severity).value,
            last_sent_at=now,
            resolved_at=None,
            payload=stored,
        )
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


def resolve_alert(session: Session, key: str, now: datetime) -> bool:
    """Mark the condition resolved; True if it was open (so a resolution should be sent)."""
    result = session.execute(
        update(AlertRow)
        .where(AlertRow.key == key, AlertRow.resolved_at.is_(None))
        .values(resolved_at=now)
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


def recent_alerts(session: Session, limit: int) -> list[AlertRecord]:
    """The most recently sent alerts, newest first."""
    rows = session.scalars(
        select(AlertRow).order_by(AlertRow.last_sent_at.desc(), AlertRow.key).limit(limit)
    )
    return [_record(row) for row in rows]


def open_alerts(session: Session) -> list[AlertRecord]:
    """Alerts not resolved yet, oldest first: what a restarted daemon must still resolve."""
    rows = session.scalars(
        select(AlertRow).where(AlertRow.resolved_at.is_(None)).order_by(AlertRow.first_at)
    )
    return [_record(row) for row in rows]


def _record(row: AlertRow) -> AlertRecord:
    return AlertRecord(
        key=row.key,
        kind=row.kind,
        severity=Severity(row.severity),
        first_at=row.first_at,
        last_sent_at=row.last_sent_at,
        resolved_at=row.resolved_at,
        payload=dict(row.payload),
    )
