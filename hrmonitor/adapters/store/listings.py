"""DNSBL sweeps: the latest answer per (ip, zone), listing intervals, zone health.

Only a trustworthy answer moves anything (house rule 1): a Listed opens or extends
a listing interval; a Clean or an Info closes it. Error and Unknown answers, and
every answer from a zone whose health in that sweep is not ``ok``, leave listings
alone.

Info closes a listing because it is the list saying "not listed, here is a
reputation level": Mailspike answers 127.0.0.10-12 for its listed levels and
127.0.0.13-20 for the others, so an IP that improves from L3 to L4 gets an Info,
never an NXDOMAIN; were Info ignored, that listing would stay open for good and
the IP could never come back from retirement.

``answers.clean_since`` is the start of the unbroken run of Clean/Info answers for
an (ip, zone). A Listed, Error or Unknown answer, or a sweep in which the zone is
unhealthy, breaks the run: a gap in the evidence is not evidence of cleanliness.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import ColumnElement, Table, Update, and_, bindparam, case, select, update
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
    # A zone missing from ``health`` counts as unhealthy: fail closed.
    trusted = [a for a in answers if health.get(a.zone) == ZoneHealth.OK]
    distrusted = [a for a in answers if health.get(a.zone) != ZoneHealth.OK]
    if distrusted:
        _bulk(
            session,
            update(_table(AnswerRow)).where(_key_matches(AnswerRow)).values(clean_since=None),
            [{"k_ip": a.ip, "k_zone": a.zone} for a in distrusted],
        )
    # One read of what is stored for these IPs instead of one per answer: a sweep
    # holds SQLite's write lock, and the relay waits for it to commit mail.
    ips = sorted({a.ip for a in trusted})
    stored = _stored_answers(session, ips)
    runs = {key: row.clean_since for key, row in stored.items()}
    open_keys = _open_keys(session, ips)
    answer_updates: list[dict[str, object]] = []
    # Answers that say what the stored one says only get their checked_at moved,
    # one statement per list and chunk instead of one row update each.
    unchanged: dict[str, list[str]] = {}
    extended: list[dict[str, object]] = []
    listed: list[ListingRecord] = []
    cleared: list[ListingRecord] = []
    for answer in trusted:
        key = (answer.ip, answer.zone)
        fields = _answer_row(answer, now)
        clean = isinstance(answer, Clean | Info)
        if key in runs:
            since = (runs[key] or now) if clean else None
            if stored[key].same_as(fields, since):
                unchanged.setdefault(answer.zone, []).append(answer.ip)
            else:
                answer_updates.append(_params(key, {**fields, "clean_since": since}))
            runs[key] = since
        else:
            _record_answer(session, answer, now)  # new (ip, zone): insert, or lose a race
            runs[key] = now if clean else None
        if isinstance(answer, Listed):
            if key in open_keys:
                extended.append(_params(key, {**_answer_fields(answer), "last_seen": now}))
            else:
                opened = _open_or_extend(session, answer, now)
                if opened is not None:
                    listed.append(opened)
                open_keys.add(key)
        elif isinstance(answer, Clean | Info) and key in open_keys:
            closed = _close(session, answer.ip, answer.zone, now)
            if closed is not None:
                cleared.append(closed)
            open_keys.discard(key)
    if answer_updates:
        _bulk(session, _update_by_key(AnswerRow, answer_updates[0]), answer_updates)
    for zone, zone_ips in unchanged.items():
        for chunk in _chunks(zone_ips):
            session.execute(
                update(AnswerRow)
                .where(AnswerRow.list_key == zone, AnswerRow.ip.in_(chunk))
                .values(checked_at=now)
            )
    if extended:
        _bulk(session, _update_by_key(ListingRow, extended[0], open_only=True), extended)
    return ListingChanges(listed=tuple(listed), cleared=tuple(cleared), zones=tuple(zones))


def _table(model: type[AnswerRow] | type[ListingRow]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _key_matches(model: type[AnswerRow] | type[ListingRow]) -> ColumnElement[bool]:
    table = _table(model)
    return and_(table.c.ip == bindparam("k_ip"), table.c.list_key == bindparam("k_zone"))


def _params(key: tuple[str, str], values: Mapping[str, object]) -> dict[str, object]:
    return {"k_ip": key[0], "k_zone": key[1], **{f"v_{k}": v for k, v in values.items()}}


def _update_by_key(
    model: type[AnswerRow] | type[ListingRow], sample: Mapping[str, object], open_only: bool = False
) -> Update:
    """UPDATE ... SET col = :v_col ... WHERE ip = :k_ip AND list_key = :k_zone, for executemany."""
    columns = [name[2:] for name in sample if name.startswith("v_")]
    statement = update(_table(model)).where(_key_matches(model))
    if open_only:
        statement = statement.where(_table(model).c.cleared_at.is_(None))
    return statement.values({name: bindparam(f"v_{name}") for name in columns})


def _bulk(session: Session, statement: Update, params: list[dict[str, object]]) -> None:
    session.connection().execute(statement, params)


@dataclass(frozen=True, slots=True)
class _Stored:
    """The stored latest answer of one (ip, list), as far as a sweep compares it."""

    status: str
    codes: tuple[str, ...]
    tags: tuple[str, ...]
    severity: str | None
    txt: str
    clean_since: datetime | None

    def same_as(self, fields: Mapping[str, object], clean_since: datetime | None) -> bool:
        return (
            self.status == fields["status"]
            and list(self.codes) == fields["codes"]
            and list(self.tags) == fields["tags"]
            and self.severity == fields["severity"]
            and self.txt == fields["txt"]
            and self.clean_since == clean_since
        )


def _stored_answers(session: Session, ips: Sequence[str]) -> dict[tuple[str, str], _Stored]:
    """What is stored for these IPs. Most answers are clean, and a clean answer has no
    codes, tags or text: only the others' JSON columns are read (decoding them was
    most of a large sweep's store time)."""
    stored: dict[tuple[str, str], _Stored] = {}
    not_clean: list[str] = []
    for chunk in _chunks(ips):
        rows = session.execute(
            select(AnswerRow.ip, AnswerRow.list_key, AnswerRow.status, AnswerRow.clean_since)
            .where(AnswerRow.ip.in_(chunk))
            .with_for_update()  # PostgreSQL: a second node's sweep waits; SQLite ignores it
        )
        for ip, zone, status, since in rows:
            if status == Status.CLEAN.value:
                stored[(ip, zone)] = _Stored(status, (), (), None, "", since)
            else:
                not_clean.append(ip)
    for chunk in _chunks(sorted(set(not_clean))):
        full = session.execute(
            select(
                AnswerRow.ip,
                AnswerRow.list_key,
                AnswerRow.status,
                AnswerRow.codes,
                AnswerRow.tags,
                AnswerRow.severity,
                AnswerRow.txt,
                AnswerRow.clean_since,
            ).where(AnswerRow.ip.in_(chunk), AnswerRow.status != Status.CLEAN.value)
        )
        for ip, zone, status, codes, tags, severity, txt, since in full:
            stored[(ip, zone)] = _Stored(status, tuple(codes), tuple(tags), severity, txt, since)
    return stored


def _open_keys(session: Session, ips: Sequence[str]) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for chunk in _chunks(ips):
        rows = session.execute(
            select(ListingRow.ip, ListingRow.list_key).where(
                ListingRow.ip.in_(chunk), ListingRow.cleared_at.is_(None)
            )
        )
        keys.update((ip, zone) for ip, zone in rows)
    return keys


def _chunks(items: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _answer_row(answer: Answer, now: datetime) -> dict[str, object]:
    return {
        "severity": None,
        **_answer_fields(answer),
        "status": answer.status.value,
        "checked_at": now,
    }


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
    fields = _answer_row(answer, now)
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


def latest_statuses(session: Session) -> dict[tuple[str, str], Status]:
    """(ip, list) -> the latest status: what a sweep needs to know which listings are new."""
    rows = session.execute(select(AnswerRow.ip, AnswerRow.list_key, AnswerRow.status))
    return {(ip, zone): Status(status) for ip, zone, status in rows}


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
