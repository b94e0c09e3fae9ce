"""Per-IP volume, one row per (ip, UTC day, node): batched counts and warm-up reservations.

Nodes never update each other's rows, so no row is written by every delivery
of every node; a day's total is the sum over nodes. The relay counts in
memory and writes a whole batch in one transaction (:func:`add_volumes`).

A warming IP's daily cap is shared out in blocks (:func:`reserve`): a node
takes a block under a lock on the IP's row (``BEGIN IMMEDIATE`` on SQLite,
``FOR UPDATE`` on PostgreSQL) only if what every node reserved or sent that
day still leaves room, so the nodes together never pass the cap; a node sends
from a warming IP only out of its own block.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time

from sqlalchemy import Table, bindparam, case, delete, func, select, update
from sqlalchemy.orm import Session

from hrmonitor.adapters.store.records import VolumeCount
from hrmonitor.adapters.store.schema import IpRow, IpVolumeRow, dialect_insert


def _table(model: type[IpRow] | type[IpVolumeRow]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


VOLUME = _table(IpVolumeRow)
IPS = _table(IpRow)

# ``ips.last_sent_at`` (idle re-warm, reports) moves at most once per IP and day:
# only when the stored time is from an earlier day, so it is no hot row either.
_TOUCH_LAST_SENT = (
    update(IPS)
    .where(
        IPS.c.ip == bindparam("t_ip"),
        IPS.c.last_sent_at.is_(None) | (IPS.c.last_sent_at < bindparam("day_start")),
    )
    .values(last_sent_at=bindparam("t_at"))
)
_RELEASE = (
    update(VOLUME)
    .where(
        VOLUME.c.ip == bindparam("r_ip"),
        VOLUME.c.day == bindparam("r_day"),
        VOLUME.c.node == bindparam("r_node"),
    )
    .values(
        reserved=case(
            (VOLUME.c.reserved - bindparam("released") > VOLUME.c.sent,
             VOLUME.c.reserved - bindparam("released")),
            else_=VOLUME.c.sent,
        )
    )
)  # fmt: skip


def add_volumes(session: Session, node: str, counts: Sequence[VolumeCount]) -> None:
    """Add ``counts`` to ``node``'s rows: one upsert for the batch, arithmetic in the database."""
    if not counts:
        return
    known = set(session.scalars(select(IpRow.ip).where(IpRow.ip.in_({c.ip for c in counts}))))
    counts = [c for c in counts if c.ip in known]  # an unknown IP counts nothing
    rows = [
        {
            "ip": c.ip,
            "day": c.day,
            "node": node,
            "sent": c.sent,
            "delivered": c.delivered,
            "reserved": 0,
            "last_sent_at": c.last_sent_at,
        }
        for c in counts
        if c.sent or c.delivered
    ]
    if rows:
        insert = dialect_insert(session, VOLUME)
        new = insert.excluded
        session.execute(
            insert.on_conflict_do_update(
                index_elements=[VOLUME.c.ip, VOLUME.c.day, VOLUME.c.node],
                set_={
                    "sent": VOLUME.c.sent + new.sent,
                    "delivered": VOLUME.c.delivered + new.delivered,
                    "last_sent_at": case(
                        (VOLUME.c.last_sent_at.is_(None), new.last_sent_at),
                        (new.last_sent_at > VOLUME.c.last_sent_at, new.last_sent_at),
                        else_=VOLUME.c.last_sent_at,
                    ),
                },
            ),
            rows,
        )
    touched = [
        {"t_ip": c.ip, "t_at": c.last_sent_at, "day_start": datetime.combine(c.day, time(), UTC)}
        for c in counts
        if c.last_sent_at is not None
    ]
    if touched:
        session.execute(_TOUCH_LAST_SENT, touched)
    released = [
        {"r_ip": c.ip, "r_day": c.day, "r_node": node, "released": c.released}
        for c in counts
        if c.released
    ]
    if released:
        session.execute(_RELEASE, released)


def reserve(session: Session, node: str, ip: str, day: date, want: int, cap: int) -> int:
    """Take up to ``want`` of ``ip``'s cap for ``day`` for ``node``; how many it got (0: none).

    What counts against the cap is, per node, the larger of what it reserved and
    what it sent (a node may have sent from the IP before it was warming).
    """
    locked = select(IpRow.ip).where(IpRow.ip == ip)
    if session.get_bind().dialect.name == "postgresql":
        locked = locked.with_for_update()
    if session.execute(locked).first() is None:
        return 0
    rows = session.execute(
        select(VOLUME.c.sent, VOLUME.c.reserved).where(VOLUME.c.ip == ip, VOLUME.c.day == day)
    ).all()
    taken = sum(max(int(sent), int(reserved)) for sent, reserved in rows)
    grant = max(0, min(want, cap - taken))
    if grant:
        insert = dialect_insert(session, VOLUME)
        session.execute(
            insert.values(
                ip=ip, day=day, node=node, sent=0, delivered=0, reserved=grant, last_sent_at=None
            ).on_conflict_do_update(
                index_elements=[VOLUME.c.ip, VOLUME.c.day, VOLUME.c.node],
                set_={
                    "reserved": case(
                        (VOLUME.c.reserved > VOLUME.c.sent, VOLUME.c.reserved),
                        else_=VOLUME.c.sent,
                    )
                    + grant
                },
            )
        )
    return grant


def day_volumes(
    session: Session, ips: Sequence[str] | None
) -> dict[str, tuple[date, int, int, datetime | None]]:
    """Per IP: its latest day with a count, that day's sent and delivered (all nodes), and
    the latest send of any day still stored."""
    statement = select(
        VOLUME.c.ip,
        VOLUME.c.day,
        func.sum(VOLUME.c.sent),
        func.sum(VOLUME.c.delivered),
        func.max(VOLUME.c.last_sent_at),
    ).group_by(VOLUME.c.ip, VOLUME.c.day)
    if ips is not None:
        statement = statement.where(VOLUME.c.ip.in_(ips))
    found: dict[str, tuple[date, int, int, datetime | None]] = {}
    last: dict[str, datetime] = {}
    for ip, day, sent, delivered, last_sent in session.execute(statement):
        if last_sent is not None and (ip not in last or last_sent > last[ip]):
            last[ip] = last_sent
        if not (sent or delivered):
            continue  # only a reservation: no evidence for the warm-up's day
        if ip not in found or day > found[ip][0]:
            found[ip] = (day, int(sent), int(delivered), None)
    # A send is always counted with its time, so every IP in ``last`` is in ``found``.
    return {ip: (day, s, d, last.get(ip)) for ip, (day, s, d, _) in found.items()}


def prune_volume(session: Session, before: date) -> int:
    """Forget the counts of days before ``before``; how many rows went."""
    result = session.execute(delete(VOLUME).where(VOLUME.c.day < before))
    return int(getattr(result, "rowcount", 0) or 0)
