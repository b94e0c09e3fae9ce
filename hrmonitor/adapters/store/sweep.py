"""Recording one DNSBL sweep: the latest answer per (ip, list), listing intervals, zone health.

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
an (ip, list). A Listed, Error or Unknown answer, or a sweep in which the zone is
unhealthy, breaks the run: a gap in the evidence is not evidence of cleanliness.

How it stays cheap (a sweep of 4,096 IPs x 10 lists is 40,960 answers, and a
``hrmonitor check`` pays for storing them before it exits):

- What is stored is read once, and only what a comparison needs: for the
  clean majority, (ip, list, status, whether a clean run is on); the JSON columns
  only for the few answers that are not clean.
- An answer that says what the stored one says only moves ``checked_at``: one
  ``UPDATE ... WHERE list_key = ? AND ip IN (...)`` per list and chunk.
- Changed answers are one executemany per shape; answers for new (ip, list)
  pairs are one executemany upsert; new listings one executemany insert.
- An open listing whose answer did not change only moves ``last_seen``. Its codes,
  tags and text are the answer's: both are written from the same answer in the
  same transaction, so an unchanged answer means an unchanged listing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Table,
    Update,
    and_,
    bindparam,
    case,
    func,
    not_,
    select,
    update,
)
from sqlalchemy.orm import Session

from hrmonitor.adapters.store.listings import listing_record
from hrmonitor.adapters.store.records import ListingChanges, ListingRecord, ZoneHealthChange
from hrmonitor.adapters.store.schema import (
    AnswerRow,
    ListingRow,
    ZoneHealthRow,
    dialect_insert,
    insert_new,
)
from hrmonitor.core.model import Answer, Clean, Error, Info, Listed, Status, Unknown, ZoneHealth

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

# Comfortably under SQLite's 32,766 and PostgreSQL's 65,535 bound parameters per statement.
CHUNK = 4000

_CLEAN = Status.CLEAN.value


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
    distrusted = [
        {"k_ip": a.ip, "k_zone": a.zone} for a in answers if health.get(a.zone) != ZoneHealth.OK
    ]
    if distrusted:
        _execute_many(
            session,
            update(_answers()).where(_key_matches(_answers())).values(clean_since=None),
            distrusted,
        )
    # One read of what is stored for these IPs instead of one per answer: a sweep
    # holds SQLite's write lock, and the relay waits for it to commit mail. Two
    # nodes sweeping the same lists at once take turns: SQLite's BEGIN IMMEDIATE,
    # and on PostgreSQL the zone_health rows ``_record_health`` has just updated
    # stay locked until commit, so the second sweep reads after the first wrote.
    ips = sorted({a.ip for a in trusted})
    stored = _stored_answers(session, ips)
    open_keys = _open_keys(session, ips)
    plan = _Plan(now)
    for answer in trusted:
        key = (answer.ip, answer.zone)
        before = stored.get(key)
        if before is _CLEAN_RUN and type(answer) is Clean and key not in open_keys:
            plan.unchanged.setdefault(answer.ip, []).append(answer.zone)  # the common case
        else:
            plan.add(answer, before, key in open_keys)
    return plan.apply(session, zones)


# --- what is stored ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Stored:
    """The stored latest answer of one (ip, list), as far as a sweep compares it."""

    status: str
    codes: tuple[str, ...]
    tags: tuple[str, ...]
    severity: str | None
    txt: str
    clean_run: bool  # clean_since is set: the (ip, list) is in a run of clean answers

    def same_as(self, answer: Answer) -> bool:
        """The answer says what is stored, and the clean run goes on (or stays broken)."""
        if self.status != answer.status.value or self.clean_run != _clean(answer):
            return False
        if self.status == _CLEAN:
            return True  # a clean answer has no codes, tags or text
        fields = _answer_fields(answer)
        return (
            self.codes == tuple(fields["codes"])
            and self.tags == tuple(fields["tags"])
            and self.severity == fields["severity"]
            and self.txt == fields["txt"]
        )


# The stored clean answer in a clean run: by far the most common row, shared.
_CLEAN_RUN = _Stored(_CLEAN, (), (), None, "", clean_run=True)
_SEPARATOR = " "


def _stored_answers(session: Session, ips: Sequence[str]) -> dict[tuple[str, str], _Stored]:
    """What is stored for these IPs.

    Most answers are clean and in a clean run, and such an answer has no codes,
    tags or text: those come back as one row per IP with its lists joined by
    ``_SEPARATOR`` (a list key holding the separator would not be found, so its
    answer would take the slower path for new pairs, which is just as correct).
    Only the few others are read whole, JSON columns included.
    """
    table = _answers()
    running = and_(table.c.status == _CLEAN, table.c.clean_since.isnot(None))
    connection = session.connection()
    stored: dict[tuple[str, str], _Stored] = {}
    for chunk in _chunks(ips):
        joined = connection.execute(
            select(table.c.ip, func.aggregate_strings(table.c.list_key, _SEPARATOR))
            .where(table.c.ip.in_(chunk), running)
            .group_by(table.c.ip)
        )
        for ip, zones in joined:
            for zone in zones.split(_SEPARATOR):
                stored[(ip, zone)] = _CLEAN_RUN
        others = connection.execute(
            select(
                table.c.ip,
                table.c.list_key,
                table.c.status,
                table.c.codes,
                table.c.tags,
                table.c.severity,
                table.c.txt,
                table.c.clean_since.isnot(None),
            ).where(table.c.ip.in_(chunk), not_(running))
        )
        for ip, zone, status, codes, tags, severity, txt, run in others:
            stored[(ip, zone)] = _Stored(
                status, tuple(codes), tuple(tags), severity, txt, clean_run=bool(run)
            )
    return stored


def _open_keys(session: Session, ips: Sequence[str]) -> set[tuple[str, str]]:
    table = _listings()
    keys: set[tuple[str, str]] = set()
    for chunk in _chunks(ips):
        rows = session.connection().execute(
            select(table.c.ip, table.c.list_key).where(
                table.c.ip.in_(chunk), table.c.cleared_at.is_(None)
            )
        )
        keys.update((ip, zone) for ip, zone in rows)
    return keys


# --- what a sweep writes -----------------------------------------------------------------


class _Plan:
    """The writes one sweep needs, gathered answer by answer, then applied in bulk."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.unchanged: dict[str, list[str]] = {}  # ip -> lists whose answer only gets checked_at
        self.changed: list[dict[str, Any]] = []
        self.new: list[dict[str, Any]] = []
        self.seen_again: dict[str, list[str]] = {}  # ip -> lists whose open listing gets last_seen
        self.relisted: list[dict[str, Any]] = []  # open listings whose fields changed
        self.opening: list[Listed] = []
        self.closing: list[tuple[str, str]] = []

    def add(self, answer: Answer, stored: _Stored | None, listing_open: bool) -> None:
        unchanged = stored is not None and stored.same_as(answer)
        if unchanged:
            self.unchanged.setdefault(answer.ip, []).append(answer.zone)
        else:
            (self.new if stored is None else self.changed).append(_answer_row(answer, self.now))
        if isinstance(answer, Listed):
            if not listing_open:
                self.opening.append(answer)
            elif unchanged:
                self.seen_again.setdefault(answer.ip, []).append(answer.zone)
            else:
                self.relisted.append(_extension(answer, self.now))
        elif listing_open and _clean(answer):
            self.closing.append((answer.ip, answer.zone))

    def apply(self, session: Session, zones: list[ZoneHealthChange]) -> ListingChanges:
        answers, listings = _answers(), _listings()
        for clean in (True, False):
            rows = [r for r in self.changed if (r["v_clean_since"] is not None) is clean]
            if rows:
                _execute_many(session, _update_answer(clean), rows)
        if self.new:
            _execute_many(session, _upsert_answers(session), self.new)
        _touch(session, answers, self.unchanged, {"checked_at": self.now})
        _touch(session, listings, self.seen_again, {"last_seen": self.now}, open_only=True)
        if self.relisted:
            _execute_many(session, _extend_listing(), self.relisted)
        listed = _open_listings(session, self.opening, self.now)
        cleared = [c for ip, zone in self.closing if (c := _close(session, ip, zone, self.now))]
        return ListingChanges(listed=tuple(listed), cleared=tuple(cleared), zones=tuple(zones))


def _update_answer(clean: bool) -> Update:
    """Rewrite a changed answer; a clean one keeps its clean run or starts one now."""
    table = _answers()
    now = bindparam("v_clean_since", type_=table.c.clean_since.type)
    since = func.coalesce(table.c.clean_since, now) if clean else None
    return update(table).where(_key_matches(table)).values({**_field_binds(), "clean_since": since})


def _upsert_answers(session: Session) -> sqlite.Insert | postgresql.Insert:
    """Insert answers for new (ip, list) pairs; one another node stored meanwhile is updated."""
    table = _answers()
    statement = dialect_insert(session, table).values(
        ip=bindparam("k_ip"), list_key=bindparam("k_zone"), **_field_binds(),
        clean_since=bindparam("v_clean_since"),
    )  # fmt: skip
    excluded = statement.excluded
    keep_run = case(
        (excluded.clean_since.is_(None), None),
        else_=func.coalesce(table.c.clean_since, excluded.clean_since),
    )
    return statement.on_conflict_do_update(
        index_elements=[table.c.ip, table.c.list_key],
        set_={**{name: excluded[name] for name in _FIELDS}, "clean_since": keep_run},
    )


def _touch(
    session: Session,
    table: Table,
    zones_by_ip: Mapping[str, Sequence[str]],
    values: Mapping[str, datetime],
    open_only: bool = False,
) -> None:
    """Set ``values`` on the rows of these (ip, list) pairs.

    IPs are grouped by their set of lists (normally one group: every IP answered
    clean on every list), so each statement names an IP once, not once per list.
    """
    statement = update(table).where(
        table.c.ip.in_(bindparam("ips", expanding=True)),
        table.c.list_key.in_(bindparam("zones", expanding=True)),
    )
    if open_only:
        statement = statement.where(table.c.cleared_at.is_(None))
    statement = statement.values({name: bindparam(f"v_{name}") for name in values})
    groups: dict[tuple[str, ...], list[str]] = {}
    for ip, zones in zones_by_ip.items():
        groups.setdefault(tuple(sorted(zones)), []).append(ip)
    binds = {f"v_{name}": value for name, value in values.items()}
    for zones, ips in groups.items():
        for chunk in _chunks(ips):
            session.connection().execute(statement, {"ips": chunk, "zones": zones, **binds})


def _extend_listing() -> Update:
    table = _listings()
    return (
        update(table)
        .where(_key_matches(table), table.c.cleared_at.is_(None))
        .values(
            codes=bindparam("v_codes"),
            tags=bindparam("v_tags"),
            severity=bindparam("v_severity"),
            txt=bindparam("v_txt"),
            last_seen=bindparam("v_now"),
        )
    )


def _extension(answer: Listed, now: datetime) -> dict[str, Any]:
    """Executemany parameters of :func:`_extend_listing` for one answer."""
    fields = _answer_fields(answer)
    return {
        "k_ip": answer.ip,
        "k_zone": answer.zone,
        **{f"v_{name}": value for name, value in fields.items()},
        "v_now": now,
    }


def _open_listings(
    session: Session, opening: Sequence[Listed], now: datetime
) -> list[ListingRecord]:
    """Open a listing for each answer; where another node opened it first, extend that one."""
    if not opening:
        return []
    table = _listings()
    rows = [
        {"ip": a.ip, "list_key": a.zone, **_answer_fields(a), "first_seen": now, "last_seen": now}
        for a in opening
    ]
    statement = dialect_insert(session, table).on_conflict_do_nothing()
    inserted = {
        (ip, zone)
        for ip, zone in session.connection().execute(
            statement.returning(table.c.ip, table.c.list_key), rows
        )
    }
    raced = [_extension(a, now) for a in opening if (a.ip, a.zone) not in inserted]
    if raced:
        _execute_many(session, _extend_listing(), raced)
    return [
        ListingRecord(
            ip=a.ip,
            zone=a.zone,
            codes=a.codes,
            tags=a.tags,
            severity=a.severity,
            txt=a.txt,
            first_seen=now,
            last_seen=now,
            cleared_at=None,
        )
        for a in opening
        if (a.ip, a.zone) in inserted
    ]


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
    return replace(listing_record(row), cleared_at=now)


# --- zone health -------------------------------------------------------------------------


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


# --- answers as rows ---------------------------------------------------------------------

_FIELDS = ("status", "codes", "tags", "severity", "txt", "checked_at")


def _field_binds() -> dict[str, Any]:
    """SET column = :v_column for an answer's fields (a bind may not share a column's name)."""
    return {name: bindparam(f"v_{name}") for name in _FIELDS}


def _clean(answer: Answer) -> bool:
    return isinstance(answer, Clean | Info)


def _answer_fields(answer: Answer) -> dict[str, Any]:
    match answer:
        case Listed():
            return {
                "codes": list(answer.codes),
                "tags": list(answer.tags),
                "severity": answer.severity.value,
                "txt": answer.txt,
            }
        case Info():
            return {"codes": list(answer.codes), "tags": list(answer.tags), "severity": None,
                    "txt": answer.txt}  # fmt: skip
        case Error():
            return {"codes": list(answer.codes), "tags": [], "severity": None, "txt": answer.reason}
        case Unknown():
            return {"codes": [], "tags": [], "severity": None, "txt": answer.reason}
        case Clean():
            return _CLEAN_FIELDS
    raise TypeError(f"not an answer: {answer!r}")


_CLEAN_FIELDS: dict[str, Any] = {"codes": [], "tags": [], "severity": None, "txt": ""}


def _answer_row(answer: Answer, now: datetime) -> dict[str, Any]:
    """Executemany parameters for one answer's row, keyed for the statements here."""
    fields = _answer_fields(answer)
    return {
        "k_ip": answer.ip,
        "k_zone": answer.zone,
        "v_status": answer.status.value,
        "v_codes": fields["codes"],
        "v_tags": fields["tags"],
        "v_severity": fields["severity"],
        "v_txt": fields["txt"],
        "v_checked_at": now,
        "v_clean_since": now if _clean(answer) else None,
    }


# --- statements --------------------------------------------------------------------------


def _answers() -> Table:
    table = AnswerRow.__table__
    assert isinstance(table, Table)
    return table


def _listings() -> Table:
    table = ListingRow.__table__
    assert isinstance(table, Table)
    return table


def _key_matches(table: Table) -> ColumnElement[bool]:
    return and_(table.c.ip == bindparam("k_ip"), table.c.list_key == bindparam("k_zone"))


def _execute_many(session: Session, statement: Any, params: list[dict[str, Any]]) -> None:
    session.connection().execute(statement, params)


def _chunks(items: Sequence[str], size: int = CHUNK) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
