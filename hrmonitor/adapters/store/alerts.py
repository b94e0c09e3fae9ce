"""Alert dedupe: one row per condition key, so several nodes send each alert once per interval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Table, case, or_, select, update
from sqlalchemy.orm import Session

from hrmonitor.adapters.store.audit import evidence_json
from hrmonitor.adapters.store.records import AlertRecord
from hrmonitor.adapters.store.schema import AlertRow, dialect_insert, insert_new
from hrmonitor.core.alert import Alert, Claim, Claimed
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
    """For each alert in order, whether to send it (:func:`claim_alerts_detailed`)."""
    return [claim.outcome.sends for claim in claim_alerts_detailed(session, alerts, repeat_after)]


def claim_alerts_detailed(
    session: Session, alerts: Sequence[Alert], repeat_after: timedelta
) -> list[Claim]:
    """For each alert in order, what ``claim_alert`` or (resolved) ``resolve_alert`` says.

    The answers are those of the single calls made one after another, so a key that
    comes twice in a batch is deduplicated against itself. The cost is one SELECT of
    the batch's known keys (what each was raised as, and whether it is resolved, so
    a claim says new, re-fire or repeat, and a resolution carries its alert's kind
    and severity, and when it was last sent), one multi-row INSERT for the keys the
    store has never seen (a first sweep: every listing new), then one statement for
    each alert left that is not plainly held back (open and sent within
    ``repeat_after``: every sweep re-raises each open listing).
    """
    first: dict[str, int] = {}
    for index, alert in enumerate(alerts):
        first.setdefault(alert.key, index)
    known = _known(session, list(first))
    # Only a key whose first occurrence is a raise can be inserted up front: before
    # it nothing in the batch touched the key, and a resolution first must see no row.
    # (A key the SELECT found has a row: no INSERT to try.)
    fresh = [alerts[i] for i in first.values() if not alerts[i].resolved]
    inserted = _insert_new_rows(session, [a for a in fresh if a.key not in known])
    answers: list[Claim] = []
    for index, alert in enumerate(alerts):
        before = known.get(alert.key)
        if alert.resolved:
            if resolve_alert(session, alert.key, alert.at) and before is not None:
                answers.append(Claim(Claimed.RESOLVED, before.kind, before.severity))
                known[alert.key] = replace(before, resolved_at=alert.at)
            else:
                answers.append(Claim(Claimed.HELD))
            continue
        if before is not None and _held(before, alert.at, repeat_after):
            # Open and not due: the UPDATE below could only fail. A sweep re-raises
            # every open listing, so this skips one statement per open alert per sweep.
            sent = False
        elif index == first[alert.key]:  # inserted just now, or the key had a row
            sent = alert.key in inserted or _reclaim(
                session,
                alert.key,
                str(alert.kind),
                alert.severity,
                alert.as_dict(),
                alert.at,
                repeat_after,
            )
        else:
            sent = claim_alert(
                session,
                alert.key,
                str(alert.kind),
                alert.severity,
                alert.as_dict(),
                alert.at,
                repeat_after,
            )
        if not sent:
            answers.append(Claim(Claimed.HELD))
            continue
        answers.append(Claim(_outcome(before, alert.at, repeat_after)))
        known[alert.key] = _Known(str(alert.kind), Severity(alert.severity), None, alert.at)
    return answers


@dataclass(frozen=True, slots=True)
class _Known:
    kind: str
    severity: Severity
    resolved_at: datetime | None
    last_sent_at: datetime


def _held(before: _Known, now: datetime, repeat_after: timedelta) -> bool:
    """Open and sent less than ``repeat_after`` ago: dedupe holds it back."""
    if before.resolved_at is not None:
        return False
    return _naive(now) - _naive(before.last_sent_at) < repeat_after


def _outcome(before: _Known | None, now: datetime, repeat_after: timedelta) -> Claimed:
    """A claim that sends: a new condition, a flapping re-fire, or a repeat of an open one."""
    if before is None:
        return Claimed.NEW
    if before.resolved_at is None:
        return Claimed.REPEAT
    if _naive(now) - _naive(before.resolved_at) < repeat_after:
        return Claimed.REFIRE
    return Claimed.NEW


def _naive(at: datetime) -> datetime:
    """The store keeps UTC; SQLite hands it back without its offset."""
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def _known(session: Session, keys: Sequence[str]) -> dict[str, _Known]:
    found: dict[str, _Known] = {}
    for start in range(0, len(keys), _SELECT_CHUNK):
        chunk = keys[start : start + _SELECT_CHUNK]
        rows = session.execute(
            select(
                AlertRow.key,
                AlertRow.kind,
                AlertRow.severity,
                AlertRow.resolved_at,
                AlertRow.last_sent_at,
            ).where(AlertRow.key.in_(chunk))
        )
        for key, kind, severity, resolved_at, last_sent_at in rows:
            found[key] = _Known(kind, Severity(severity), resolved_at, last_sent_at)
    return found


_SELECT_CHUNK = 500  # keys per SELECT ... IN: well under SQLite's bound-parameter limit


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
