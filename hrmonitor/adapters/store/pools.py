"""Pools and their IPs: registration from config, states by compare-and-set, their records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from hrmonitor.adapters.store import volume
from hrmonitor.adapters.store.audit import add_event
from hrmonitor.adapters.store.records import IpRecord, PoolHistoryRecord
from hrmonitor.adapters.store.schema import IpPoolHistoryRow, IpRow, PoolRow, insert_new
from hrmonitor.core.model import AuditEvent, IPState, Pool, RiskClass, canonical_ip


def sync_pools(session: Session, pools: Sequence[Pool], now: datetime) -> list[str]:
    """Register the configured pools and IPs; the problems found, or [] once applied.

    New IPs start ``active`` (configured in ``ips``) or ``standby`` (in ``standby``);
    known IPs keep their stored state. An IP belongs to one pool for life: one that
    the store saw in another pool is refused, and so, with its own message, is one
    that ever served a high-risk pool and is now configured in a normal pool. When
    there is any problem nothing is written (the caller rolls the session back).
    """
    problems: list[str] = []
    planned: list[tuple[Pool, str, IPState]] = []
    configured: dict[str, str] = {}
    # One read of the whole history: a restart with thousands of known IPs costs
    # one query, not one per IP, and known IPs need no insert at all. Plain rows,
    # not ORM objects: loading 4,096 of those, and the pool UPDATEs below then
    # scanning them all in the identity map, cost ~70 ms of every start.
    history: dict[str, list[_Past]] = {}
    for ip, pool_name, risk, first_seen in session.execute(
        select(
            IpPoolHistoryRow.ip,
            IpPoolHistoryRow.pool,
            IpPoolHistoryRow.risk,
            IpPoolHistoryRow.first_seen,
        ).order_by(IpPoolHistoryRow.first_seen)
    ):
        history.setdefault(ip, []).append(_Past(pool_name, risk, first_seen))
    known = set(session.scalars(select(IpRow.ip)))
    for pool in pools:
        for key, ips, state in (
            ("ips", pool.ips, IPState.ACTIVE),
            ("standby", pool.standby, IPState.STANDBY),
        ):
            for index, text in enumerate(ips):
                where = f"pools.{pool.name}.{key}[{index}]"
                try:
                    ip = canonical_ip(text)
                except ValueError:
                    problems.append(f"{where}: {text!r} is not an IP address")
                    continue
                other = configured.setdefault(ip, where)
                if other != where:
                    problems.append(f"{where}: {ip} is already configured as {other}")
                    continue
                problem = _refusal(history.get(ip, ()), pool, ip)
                if problem:
                    problems.append(f"{where}: {problem}")
                elif ip not in known or (pool.name, pool.risk.value) not in {
                    (h.pool, h.risk) for h in history.get(ip, ())
                }:
                    planned.append((pool, ip, state))
    if problems:
        return problems

    # INSERT ... ON CONFLICT DO NOTHING throughout: two nodes starting together on a
    # fresh database must not fail on each other's rows.
    for pool in pools:
        if not insert_new(session, PoolRow, {"name": pool.name, "risk": pool.risk.value}):
            session.execute(
                update(PoolRow).where(PoolRow.name == pool.name).values(risk=pool.risk.value)
            )
    for pool, ip, state in planned:
        insert_new(
            session,
            IpRow,
            {
                "ip": ip,
                "pool": pool.name,
                "state": state.value,
                "state_since": now,
                "state_actor": "config",
                "updated_at": now,
            },
        )
        insert_new(
            session,
            IpPoolHistoryRow,
            {"ip": ip, "pool": pool.name, "risk": pool.risk.value, "first_seen": now},
        )
    return []


class _Past(NamedTuple):
    """One pool an IP served, as ``ip_pool_history`` remembers it."""

    pool: str
    risk: str
    first_seen: datetime


def _refusal(history: Sequence[_Past], pool: Pool, ip: str) -> str:
    """Why ``ip`` may not serve ``pool``, from what the store remembers; "" if it may."""
    if pool.risk is RiskClass.NORMAL:
        for past in history:
            if past.risk == RiskClass.HIGH.value:
                since = f"{past.first_seen:%Y-%m-%d}"
                return (
                    f"{ip} sent for high-risk pool {past.pool!r} (since {since}); an IP "
                    f"that ever sent high-risk mail never joins normal pool {pool.name!r}"
                )
    for past in history:
        if past.pool != pool.name:
            return (
                f"{ip} belongs to pool {past.pool!r} (since {past.first_seen:%Y-%m-%d}); "
                f"an IP never moves to another pool, such as {pool.name!r}"
            )
    return ""


def ip_records(session: Session, pool: str | None) -> list[IpRecord]:
    statement = select(IpRow).order_by(IpRow.pool, IpRow.ip)
    if pool is not None:
        statement = statement.where(IpRow.pool == pool)
    rows = list(session.scalars(statement))
    counts = volume.day_volumes(session, None if pool is None else [r.ip for r in rows])
    return [_ip_record(row, counts.get(row.ip)) for row in rows]


def ip_record(session: Session, ip: str) -> IpRecord | None:
    row = session.get(IpRow, ip)
    return None if row is None else _ip_record(row, volume.day_volumes(session, [ip]).get(ip))


def _ip_record(row: IpRow, counts: tuple[date, int, int, datetime | None] | None) -> IpRecord:
    # The day's counts live in ``ip_volume`` (a row per node, summed); the old
    # columns of ``ips`` are no longer written.
    day, sent, delivered, last = counts if counts else (None, 0, 0, None)
    last_sent_at = row.last_sent_at
    if last is not None and (last_sent_at is None or last > last_sent_at):
        last_sent_at = last
    return IpRecord(
        ip=row.ip,
        pool=row.pool,
        state=IPState(row.state),
        state_since=row.state_since,
        state_until=row.state_until,
        state_actor=row.state_actor,
        warmup_stage=row.warmup_stage,
        warmup_since=row.warmup_since,
        sent_today=sent,
        delivered_today=delivered,
        sent_day=day,
        last_sent_at=last_sent_at,
    )


def pool_history(session: Session, ip: str) -> list[PoolHistoryRecord]:
    rows = session.scalars(
        select(IpPoolHistoryRow)
        .where(IpPoolHistoryRow.ip == ip)
        .order_by(IpPoolHistoryRow.first_seen)
    )
    return [PoolHistoryRecord(r.ip, r.pool, RiskClass(r.risk), r.first_seen) for r in rows]


def transition_ip(
    session: Session,
    ip: str,
    expected: IPState,
    to: IPState,
    event: AuditEvent,
    warmup_stage: int | None,
) -> bool:
    """Compare-and-set the IP's state; the audit event goes in only if this call won."""
    if to is IPState.WARMING:
        stage: int | None = 0 if warmup_stage is None else warmup_stage
    else:
        stage = warmup_stage
    result = session.execute(
        update(IpRow)
        .where(IpRow.ip == ip, IpRow.state == expected.value)
        .values(
            state=to.value,
            state_since=event.at,
            state_until=event.until,
            state_actor=event.actor,
            updated_at=event.at,
            warmup_stage=stage,
            warmup_since=None if stage is None else event.at,
        )
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        return False
    add_event(session, event)
    return True


def set_warmup_stage(
    session: Session, ip: str, expected: int | None, to: int | None, event: AuditEvent
) -> bool:
    """Compare-and-set the warm-up stage, audited; False if it was not ``expected``."""
    current = IpRow.warmup_stage.is_(None) if expected is None else IpRow.warmup_stage == expected
    result = session.execute(
        update(IpRow)
        .where(IpRow.ip == ip, current)
        .values(
            warmup_stage=to,
            warmup_since=None if to is None else event.at,
            updated_at=event.at,
        )
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        return False
    add_event(session, event)
    return True
