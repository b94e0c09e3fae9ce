"""Reading the DNSBL state: the latest answers, listing intervals, zone health, clean runs.

What a sweep writes, and the rules for it, are in :mod:`hrmonitor.adapters.store.sweep.record`.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from hrmonitor.adapters.store.records import (
    AnswerRecord,
    CleanRun,
    ListingRecord,
    ZoneHealthRecord,
)
from hrmonitor.adapters.store.schema import AnswerRow, ListingRow, ZoneHealthRow
from hrmonitor.core.model import (
    Severity,
    Status,
    ZoneHealth,
)


def listing_record(row: ListingRow) -> ListingRecord:
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
    return [listing_record(row) for row in session.scalars(statement)]


def listing_history(session: Session, ip: str) -> list[ListingRecord]:
    statement = (
        select(ListingRow).where(ListingRow.ip == ip).order_by(ListingRow.first_seen, ListingRow.id)
    )
    return [listing_record(row) for row in session.scalars(statement)]


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


def listed_keys(session: Session) -> set[tuple[str, str]]:
    """The (ip, list) pairs whose latest answer is Listed: what a sweep needs to know
    which listings are new (the few listed rows, not the clean majority)."""
    rows = session.execute(
        select(AnswerRow.ip, AnswerRow.list_key).where(AnswerRow.status == Status.LISTED.value)
    )
    return {(ip, zone) for ip, zone in rows}


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


def clean_run(
    session: Session, ip: str, zones: Collection[str], listed_on: Collection[str] | None = None
) -> CleanRun | None:
    """The run of clean answers ``ip`` is in on every one of ``zones``, with no open listing.

    None when there is no such run: an open listing (on any zone, or on one of
    ``listed_on`` when given: the zones still configured), a zone without an
    answer, or a zone whose run is broken. No zones means no evidence, so None too.
    """
    wanted = set(zones)
    if not wanted:
        return None
    where = [ListingRow.ip == ip, ListingRow.cleared_at.is_(None)]
    if listed_on is not None:
        where.append(ListingRow.list_key.in_(set(listed_on)))
    open_listing = session.scalar(select(ListingRow.id).where(*where).limit(1))
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
