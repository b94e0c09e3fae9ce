"""A sweep's writes: bulk updates and upserts of answers and listings, and zone health."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, Update, bindparam, case, func, select, update
from sqlalchemy.orm import Session

from hrmonitor.adapters.store.listings import listing_record
from hrmonitor.adapters.store.records import ListingRecord, ZoneHealthChange
from hrmonitor.adapters.store.schema import (
    AnswerRow,
    ListingRow,
    ZoneHealthRow,
    dialect_insert,
    insert_new,
)
from hrmonitor.adapters.store.sweep.rows import (
    FIELDS,
    answer_fields,
    answers_table,
    chunks,
    execute_many,
    field_binds,
    key_matches,
    listings_table,
)
from hrmonitor.core.model import Listed, ZoneHealth

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite


def update_answer(clean: bool) -> Update:
    """Rewrite a changed answer; a clean one keeps its clean run or starts one now."""
    table = answers_table()
    now = bindparam("v_clean_since", type_=table.c.clean_since.type)
    since = func.coalesce(table.c.clean_since, now) if clean else None
    return update(table).where(key_matches(table)).values({**field_binds(), "clean_since": since})


def upsert_answers(session: Session) -> sqlite.Insert | postgresql.Insert:
    """Insert answers for new (ip, list) pairs; one another node stored meanwhile is updated."""
    table = answers_table()
    statement = dialect_insert(session, table).values(
        ip=bindparam("k_ip"), list_key=bindparam("k_zone"), **field_binds(),
        clean_since=bindparam("v_clean_since"),
    )  # fmt: skip
    excluded = statement.excluded
    keep_run = case(
        (excluded.clean_since.is_(None), None),
        else_=func.coalesce(table.c.clean_since, excluded.clean_since),
    )
    return statement.on_conflict_do_update(
        index_elements=[table.c.ip, table.c.list_key],
        set_={**{name: excluded[name] for name in FIELDS}, "clean_since": keep_run},
    )


def touch(
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
        for chunk in chunks(ips):
            session.connection().execute(statement, {"ips": chunk, "zones": zones, **binds})


def extend_listing() -> Update:
    table = listings_table()
    return (
        update(table)
        .where(key_matches(table), table.c.cleared_at.is_(None))
        .values(
            codes=bindparam("v_codes"),
            tags=bindparam("v_tags"),
            severity=bindparam("v_severity"),
            txt=bindparam("v_txt"),
            last_seen=bindparam("v_now"),
        )
    )


def extension(answer: Listed, now: datetime) -> dict[str, Any]:
    """Executemany parameters of :func:`extend_listing` for one answer."""
    fields = answer_fields(answer)
    return {
        "k_ip": answer.ip,
        "k_zone": answer.zone,
        **{f"v_{name}": value for name, value in fields.items()},
        "v_now": now,
    }


def open_listings(
    session: Session, opening: Sequence[Listed], now: datetime
) -> list[ListingRecord]:
    """Open a listing for each answer; where another node opened it first, extend that one."""
    if not opening:
        return []
    table = listings_table()
    rows = [
        {"ip": a.ip, "list_key": a.zone, **answer_fields(a), "first_seen": now, "last_seen": now}
        for a in opening
    ]
    statement = dialect_insert(session, table).on_conflict_do_nothing()
    inserted = {
        (ip, zone)
        for ip, zone in session.connection().execute(
            statement.returning(table.c.ip, table.c.list_key), rows
        )
    }
    raced = [extension(a, now) for a in opening if (a.ip, a.zone) not in inserted]
    if raced:
        execute_many(session, extend_listing(), raced)
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


def close_listing(session: Session, ip: str, zone: str, now: datetime) -> ListingRecord | None:
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


def record_health(
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
