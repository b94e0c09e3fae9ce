"""Alert dedupe: one row per condition key, so several nodes send each alert once per interval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Table, case, or_, select, update
from sqlalchemy.orm import Session

from hrmonitor.adapters.store.audit import evidence_json
from hrmonitor.adapters.store.records import AlertRecord
from hrmonitor.adapters.store.schema import AlertRow, dialect_insert, insert_new
from hrmonitor.core.alert import Alert
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
    if insert_new(session, AlertRow, _row(key, kind, severity, payload, now)):
        return True
    return _reclaim(session, key, kind, severity, payload, now, repeat_after)


def claim_alerts(session: Session, alerts: Sequence[Alert], repeat_after: timedelta) -> list[bool]:
    """For each alert in order, what ``claim_alert`` or (resolved) ``resolve_alert`` says.

    The answers are those of the single calls made one after another, so a key that
    comes twice in a batch is deduplicated against itself. The cost is one multi-row
    INSERT for the keys the store has never seen (a first sweep: every listing new),
    then one statement for each alert left: its key was known, or came earlier.
    """
    first: dict[str, int] = {}
    for index, alert in enumerate(alerts):
        first.setdefault(alert.key, index)
    # Only a key whose first occurrence is a raise can be inserted up front: before
    # it nothing in the batch touched the key, and a resolution first must see no row.
    fresh = [alerts[i] for i in first.values() if not alerts[i].resolved]
    inserted = _insert_new_rows(session, fresh)
    answers: list[bool] = []
    for index, alert in enumerate(alerts):
        if alert.resolved:
            answers.append(resolve_alert(session, alert.key, alert.at))
        elif index == first[alert.key]:  # inserted just now, or the key had a row
            answers.append(
                alert.key in inserted
                or _reclaim(
                    session,
                    alert.key,
                    str(alert.kind),
                    alert.severity,
                    alert.as_dict(),
                    alert.at,
                    repeat_after,
                )
            )
        else:
            answers.append(
                claim_alert(
                    session,
                    alert.key,
                    str(alert.kind),
                    alert.severity,
                    alert.as_dict(),
                    alert.at,
                    repeat_after,
                )
            )
    return answers


def _row(
    key: str, kind: str, severity: Severity, payload: Mapping[str, object], now: datetime
) -> dict[str, object]:
    return {
        "key": key,
        "kind": kind,
        "severity": Severity(severity).value,
        "first_at": now,
        "last_sent_at": now,
        "resolved_at": None,
        "payload": evidence_json(payload),
    }


def _insert_new_rows(session: Session, alerts: Sequence[Alert]) -> set[str]:
    """INSERT the alerts' rows, skipping keys already there; the keys inserted.

    As ``insert_new`` for many rows: the database settles a race with another node,
    and RETURNING (not rowcount) says which rows went in. One statement executed
    for many parameter sets: SQLAlchemy sends them as multi-row INSERTs
    ("insertmanyvalues"), compiled once.
    """
    if not alerts:
        return set()
    table = AlertRow.__table__
    assert isinstance(table, Table)
    statement = dialect_insert(session, table).on_conflict_do_nothing().returning(table.c.key)
    rows = [_row(a.key, str(a.kind), a.severity, a.as_dict(), a.at) for a in alerts]
    return set(session.scalars(statement, rows))


def _reclaim(
    session: Session,
    key: str,
    kind: str,
    severity: Severity,
    payload: Mapping[str, object],
    now: datetime,
    repeat_after: timedelta,
) -> bool:
    """Claim a key that has a row: only if it was resolved since, or is due again."""
    stored = evidence_json(payload)
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
