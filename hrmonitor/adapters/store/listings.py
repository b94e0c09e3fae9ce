"""DNSBL sweeps: the latest answer per (ip, zone), listing intervals, zone health.

Only a trustworthy answer moves anything (house rule 1): a Listed opens or extends
a listing interval, a Clean closes it; Info, Error and Unknown answers, and every
answer from a zone whose health in that sweep is not ``ok``, leave listings alone.

``answers.clean_since`` is the start of the unbroken run of Clean/Info answers for
an (ip, zone). Info counts as not listed (Mailspike answers a reputation level for
most IPs it knows; were it not clean, such an IP could never come back). A Listed,
Error or Unknown answer, or a sweep in which the zone is unhealthy, breaks the run:
a gap in the evidence is not evidence of cleanliness.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from hrmonitor.adapters.store.records import (
    AnswerRecord,
    CleanRun,
    ListingChanges,
    ListingRecord,
    ZoneHealthChange,
    ZoneHealthRecord,
)
from hrmonitor.adapters.store.schema import AnswerRow, ListingRow, ZoneHealthRow, insert_new
from hrmonitor.core.model import (
    Answer,
    Clean,
    Error,
    Info,
    Listed,
    Severity,
    Status,
    Unknown,
    ZoneHealth,
)


def record_sweep(
    session: Session,
    answers: Sequence[Answer],
    health: Mapping[str, ZoneHealth],
    now: datetime,
    details: Mapping[str, str],
) -> ListingChanges:
    zones = _record_health(session, health, details, now)
    listed: list[ListingRecord] = []
    cleared: list[ListingRecord] = []
    for answer in answers:
        if health.get(answer.zone) != ZoneHealth.OK:
            # A zone missing from ``health`` counts as unhealthy: fail closed.
            _break_clean_run(session, answer.ip, answer.zone)
            continue
        _record_answer(session, answer, now)
        if isinstance(answer, Listed):
            opened = _open_or_extend(session, answer, now)
            if opened is not None:
                listed.append(opened)
        elif isinstance(answer, Clean):
            closed = _close(session, answer.ip, answer.zone, now)
            if closed is not None:
                cleared.append(closed)
    return ListingChanges(listed=tuple(listed), cleared=tuple(cleared), zones=tuple(zones))


def _record_health(
    session: Session, health: Mapping[str, ZoneHealth], details: Mapping[str, str], now: datetime
) -> list[ZoneHealthChange]:
    changes: list[ZoneHealthChange] = []
    for zone, reported in sorted(health.items()):
        state = ZoneHealth(reported)
        detail = details.get(zone, "")
        before = session.scalar(select(ZoneHealthRow.health).where(ZoneHealthRow.list_key == zone))
        if before is None:
            values = {
                "list_key": zone,
                "health": state.value,
                "detail": detail,
                "checked_at": now,
                "changed_at": now,
            }
            if insert_new(session, ZoneHealthRow, values) and state is not ZoneHealth.OK:
                changes.append(ZoneHealthChange(zone, None, state, detail))
        else:
            changed = before != state.value
            values_update: dict[str, object] = {
                "health": state.value,
                "detail": detail,
                "checked_at": now,
            }
            if changed:
                values_update["changed_at"] = now
            session.execute(
                update(ZoneHealthRow).where(ZoneHealthRow.list_key == zone).values(values_update)
            )
            if changed:
                changes.append(ZoneHealthChange(zone, ZoneHealth(before), state, detail))
        if state is not ZoneHealth.OK:
            session.execute(
                update(AnswerRow).where(AnswerRow.list_key == zone).values(clean_since=None)
            )
    return changes


def _break_clean_run(session: Session, ip: str, zone: str) -> None:
    session.execute(
        update(AnswerRow)
        .where(AnswerRow.ip == ip, AnswerRow.list_key == zone)
        .values(clean_since=None)
    )


def _answer_fields(answer: Answer) -> dict[str, object]:
    match answer:
        case Listed():
            return {
                "codes": list(answer.codes),
                "tags": list(answer.tags),
                "severity": answer.severity.value,
                "txt": answer.txt,
            }
        case Info():
            return {"codes": list(answer.codes), "tags": list(answer.tags), "txt": answer.txt}
        case Error():
            return {"codes": list(answer.codes), "tags": [], "txt": answer.reason}
        case Unknown():
            return {"codes": [], "tags": [], "txt": answer.reason}
        case Clean():
            return {"codes": [], "tags": [], "txt": ""}


def _record_answer(session: Session, answer: Answer, now: datetime) -> None:
    fields: dict[str, object] = {"severity": None, **_answer_fields(answer)}
    fields["status"] = answer.status.value
    fields["checked_at"] = now
    clean = isinstance(answer, Clean | Info)
    key = {"ip": answer.ip, "list_key": answer.zone}
    if insert_new(session, AnswerRow, {**key, **fields, "clean_since": now if clean else None}):
        return
    clean_since = case((AnswerRow.clean_since.is_(None), now), else_=AnswerRow.clean_since)
    session.execute(
        update(AnswerRow)
        .where(AnswerRow.ip == answer.ip, AnswerRow.list_key == answer.zone)
        .values(**fields, clean_since=clean_since if clean else None)
    )


def _open_or_extend(session: Session, answer: Listed, now: datetime) -> ListingRecord | None:
    """The new listing if this answer opened one; None if it extended an open one."""
    fields = _answer_fields(answer)
    values = {"ip": answer.ip, "list_key": answer.zone, **fields, "last_seen": now}
    if insert_new(session, ListingRow, {**values, "first_seen": now, "cleared_at": None}):
        return ListingRecord(
            ip=answer.ip,
            zone=answer.zone,
            codes=answer.codes,
            tags=answer.tags,
            severity=answer.severity,
            txt=answer.txt,
            first_seen=now,
            last_seen=now,
            cleared_at=None,
        )
    session.execute(
        update(ListingRow)
        .where(
            ListingRow.ip == answer.ip,
            ListingRow.list_key == answer.zone,
            ListingRow.cleared_at.is_(None),
        )
        .values(**fields, last_seen=now)
    )
    return None


def _close(session: Session, ip: str, zone: str, now: datetime) -> ListingRecord | None:
    row = session.scalar(
        select(ListingRow).where(
            ListingRow.ip == ip, ListingRow.list_key == zone, ListingRow.cleared_at.is_(None)
        )
    )
    if row is None:
        return None
    result = session.execute(
        update(ListingRow)
        .where(ListingRow.id == row.id, ListingRow.cleared_at.is_(None))
        .values(cleared_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return None  # another node closed it first
    return replace(_listing_record(row), cleared_at=now)


def _listing_record(row: ListingRow) -> ListingRecord:
    return ListingRecord(
        ip=row.ip,
        zone=row.list_key,
        codes=tuple(row.codes),
        tags=tuple(row.tags),
        severity=Severity(row.severity),
        txt=row.txt,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        cleared_at=row.cleared_at,
    )


def current_listings(session: Session, ip: str | None) -> list[ListingRecord]:
    statement = select(ListingRow).where(ListingRow.cleared_at.is_(None))
    if ip is not None:
        statement = statement.where(ListingRow.ip == ip)
    statement = statement.order_by(ListingRow.ip, ListingRow.list_key)
    return [_listing_record(row) for row in session.scalars(statement)]


def listing_history(session: Session, ip: str) -> list[ListingRecord]:
    statement = (
        select(ListingRow).where(ListingRow.ip == ip).order_by(ListingRow.first_seen, ListingRow.id)
    )
    return [_listing_record(row) for row in session.scalars(statement)]


def latest_answers(session: Session, ip: str | None) -> list[AnswerRecord]:
    statement = select(AnswerRow).order_by(AnswerRow.ip, AnswerRow.list_key)
    if ip is not None:
        statement = statement.where(AnswerRow.ip == ip)
    return [
        AnswerRecord(
            ip=row.ip,
            zone=row.list_key,
            status=Status(row.status),
            codes=tuple(row.codes),
            tags=tuple(row.tags),
            severity=None if row.severity is None else Severity(row.severity),
            txt=row.txt,
            checked_at=row.checked_at,
            clean_since=row.clean_since,
        )
        for row in session.scalars(statement)
    ]


def zone_health(session: Session) -> dict[str, ZoneHealthRecord]:
    return {
        row.list_key: ZoneHealthRecord(
            zone=row.list_key,
            health=ZoneHealth(row.health),
            detail=row.detail,
            checked_at=row.checked_at,
            changed_at=row.changed_at,
        )
        for row in session.scalars(select(ZoneHealthRow).order_by(ZoneHealthRow.list_key))
    }


def clean_run(session: Session, ip: str, zones: Collection[str]) -> CleanRun | None:
    """The run of clean answers ``ip`` is in on every one of ``zones``, with no open listing.

    None when there is no such run: an open listing (on any zone), a zone without
    an answer, or a zone whose run is broken. No zones means no evidence, so None too.
    """
    wanted = set(zones)
    if not wanted:
        return None
    open_listing = session.scalar(
        select(ListingRow.id).where(ListingRow.ip == ip, ListingRow.cleared_at.is_(None)).limit(1)
    )
    if open_listing is not None:
        return None
    rows = session.execute(
        select(AnswerRow.list_key, AnswerRow.clean_since, AnswerRow.checked_at).where(
            AnswerRow.ip == ip, AnswerRow.list_key.in_(wanted)
        )
    ).all()
    starts = [since for _zone, since, _checked in rows if since is not None]
    if {zone for zone, _since, _checked in rows} != wanted or len(starts) != len(wanted):
        return None
    return CleanRun(since=max(starts), checked_at=min(checked for _z, _s, checked in rows))
