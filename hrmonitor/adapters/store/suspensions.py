"""Timed suspensions of an IP, for one destination provider or (scope ``*``) for everything.

At most one suspension per (ip, scope) is open (``lifted_at`` NULL), enforced by a
partial unique index; new evidence extends it rather than stacking a second one.
Every start, extension and lift is audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from hrmonitor.adapters.store.audit import add_event, evidence_json, pool_of
from hrmonitor.adapters.store.records import Suspension
from hrmonitor.adapters.store.schema import SuspensionRow, insert_new
from hrmonitor.core.model import AuditEvent

SUSPENDED = "suspended"


def add_suspension(
    session: Session,
    ip: str,
    scope: str,
    reason: str,
    evidence: Mapping[str, object],
    since: datetime,
    until: datetime,
    actor: str,
) -> Suspension:
    """Suspend ``ip`` for ``scope`` until ``until``, or extend its open suspension to it."""
    if until <= since:
        raise ValueError(f"suspension of {ip} for {scope}: until {until} is not after {since}")
    stored = evidence_json(evidence)
    for _ in range(2):  # a second round only if another node inserted between our steps
        row = _open_row(session, ip, scope)
        if row is not None and row.until <= since:
            _lift(session, row, since, actor, "expired before new evidence arrived")
            row = None
        if row is None:
            values = {
                "ip": ip,
                "scope": scope,
                "reason": reason,
                "actor": actor,
                "evidence": stored,
                "since": since,
                "until": until,
                "lifted_at": None,
            }
            if insert_new(session, SuspensionRow, values):
                _audit(session, ip, scope, since, None, reason, actor, stored, until)
                return Suspension(ip, scope, reason, actor, since, until, None, stored)
            continue
        if until <= row.until:
            return _suspension(row)  # already suspended at least that long: nothing to add
        session.execute(
            update(SuspensionRow)
            .where(SuspensionRow.id == row.id)
            .values(
                until=case((SuspensionRow.until < until, until), else_=SuspensionRow.until),
                reason=reason,
                actor=actor,
                evidence=stored,
            )
            .execution_options(synchronize_session=False)
        )
        _audit(session, ip, scope, since, SUSPENDED, f"extended: {reason}", actor, stored, until)
        return Suspension(ip, scope, reason, actor, row.since, until, None, stored)
    raise RuntimeError(f"suspension of {ip} for {scope} kept colliding with another writer")


def active_suspensions(session: Session, now: datetime, ip: str | None) -> list[Suspension]:
    statement = select(SuspensionRow).where(
        SuspensionRow.lifted_at.is_(None), SuspensionRow.until > now
    )
    if ip is not None:
        statement = statement.where(SuspensionRow.ip == ip)
    statement = statement.order_by(SuspensionRow.ip, SuspensionRow.scope)
    return [_suspension(row) for row in session.scalars(statement)]


def lift_expired(session: Session, now: datetime, actor: str) -> list[Suspension]:
    """Lift every open suspension whose ``until`` has passed; the ones this call lifted."""
    rows = session.scalars(
        select(SuspensionRow)
        .where(SuspensionRow.lifted_at.is_(None), SuspensionRow.until <= now)
        .order_by(SuspensionRow.until, SuspensionRow.id)
    ).all()
    return [
        lifted for row in rows if (lifted := _lift(session, row, now, actor, "expired")) is not None
    ]


def lift(session: Session, ip: str, scope: str, now: datetime, actor: str, reason: str) -> bool:
    """Lift the open suspension of ``ip`` for ``scope`` early (an operator's call)."""
    row = _open_row(session, ip, scope)
    return row is not None and _lift(session, row, now, actor, reason) is not None


def _open_row(session: Session, ip: str, scope: str) -> SuspensionRow | None:
    return session.scalar(
        select(SuspensionRow)
        .where(
            SuspensionRow.ip == ip,
            SuspensionRow.scope == scope,
            SuspensionRow.lifted_at.is_(None),
        )
        .execution_options(populate_existing=True)
    )


def _lift(
    session: Session, row: SuspensionRow, now: datetime, actor: str, reason: str
) -> Suspension | None:
    result = session.execute(
        update(SuspensionRow)
        .where(SuspensionRow.id == row.id, SuspensionRow.lifted_at.is_(None))
        .values(lifted_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return None  # another node lifted it first
    evidence = {"since": row.since.isoformat(), "until": row.until.isoformat()}
    _audit(session, row.ip, row.scope, now, SUSPENDED, reason, actor, evidence, None, lifted=True)
    return replace(_suspension(row), lifted_at=now)


def _audit(
    session: Session,
    ip: str,
    scope: str,
    at: datetime,
    from_state: str | None,
    reason: str,
    actor: str,
    evidence: Mapping[str, object],
    until: datetime | None,
    *,
    lifted: bool = False,
) -> None:
    add_event(
        session,
        AuditEvent(
            at=at,
            ip=ip,
            pool=pool_of(session, ip),
            kind="suspension-lifted" if lifted else "suspension",
            from_state=from_state,
            to_state=None if lifted else SUSPENDED,
            reason=reason,
            actor=actor,
            evidence={"scope": scope, **evidence},
            until=until,
        ),
    )


def _suspension(row: SuspensionRow) -> Suspension:
    return Suspension(
        ip=row.ip,
        scope=row.scope,
        reason=row.reason,
        actor=row.actor,
        since=row.since,
        until=row.until,
        lifted_at=row.lifted_at,
        evidence=dict(row.evidence),
    )
