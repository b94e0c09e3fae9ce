"""The relay's hot statements on PostgreSQL: a group commit and a claim, one round trip each.

What the relay writes per batch (``QueueRepository.write``: new messages, their
bodies and recipients, bounce kinds, attempts and the recipients' new states)
went to PostgreSQL as an ``executemany`` per table in a transaction: psycopg
sends one execution per row, PostgreSQL runs each as a statement of its own,
and the store thread waited for all of them, then for the commit. Under
``benchmarks/relay.py`` that thread was the daemon's bottleneck on PostgreSQL
(84 % busy; waits on those executions 44 % of it, the commit's 6 %).

Here every table gets one statement whose parameters are arrays, one per
column, expanded by ``unnest``: ``INSERT ... SELECT ... FROM unnest(...)`` and
``UPDATE ... FROM unnest(...)``, and a batch's statements go as one statement
of data-modifying CTEs on a connection in autocommit mode: one statement is one
transaction, so the batch costs one round trip, BEGIN and COMMIT included
(:func:`write` says when it takes a transaction of several statements instead).
Its text depends only on which tables the batch touches, never on its size, so
psycopg prepares each shape once per connection.

The claim (:func:`claim`) is one statement too: lock the due recipients, mark
them claimed, return them with their messages, and say when the next one falls
due.

Timestamps pass the check SQLAlchemy's ``UtcDateTime`` makes (``schema.utc``): a
naive datetime is refused, never guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from sqlalchemy.engine import Connection, Engine

from hrmonitor.adapters.store.queue.bodies import LARGE_BODY_BYTES, copy_bodies
from hrmonitor.adapters.store.queue.model import (
    BounceKind,
    DueRecipient,
    NewMessage,
    Outcome,
    RecipientStatus,
)
from hrmonitor.adapters.store.queue.schema import (
    ATTEMPTS,
    BODIES,
    MESSAGES,
    RECIPIENTS,
    waiting_predicate,
)
from hrmonitor.adapters.store.schema import utc as _utc

_INSERT_MESSAGES = f"""
INSERT INTO {MESSAGES.name} (id, tenant, client_ip, mail_from, size, arrived_at, pool, risk,
    reasons, bounce_kind, hold_until, message_id, smtputf8, eight_bit, dsn_of, accepted_by)
SELECT id, tenant, client_ip, mail_from, size, arrived_at, pool, risk,
    reasons::json, bounce_kind, hold_until, message_id, smtputf8, eight_bit, dsn_of, %s
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::int[], %s::timestamptz[],
    %s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::int[],
    %s::int[], %s::text[])
    AS m(id, tenant, client_ip, mail_from, size, arrived_at, pool, risk, reasons, bounce_kind,
        hold_until, message_id, smtputf8, eight_bit, dsn_of)
"""

# %b: the bodies go in binary (as text, bytea doubles in size: hex).
_INSERT_BODIES = f"""
INSERT INTO {BODIES.name} (message_id, body)
SELECT message_id, body FROM unnest(%s::text[], %b::bytea[]) AS b(message_id, body)
"""

_INSERT_RECIPIENTS = f"""
INSERT INTO {RECIPIENTS.name} (message_id, address, domain, status, attempts, next_attempt_at,
    last_code, last_reply, remote_mta, updated_at)
SELECT message_id, address, domain, '{RecipientStatus.QUEUED.value}', 0, next_attempt_at,
    NULL, '', '', updated_at
FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[])
    AS r(message_id, address, domain, next_attempt_at, updated_at)
"""

_SET_KINDS = f"""
UPDATE {MESSAGES.name} AS m SET bounce_kind = k.kind
FROM unnest(%s::text[], %s::text[]) AS k(id, kind)
WHERE m.id = k.id
"""

_INSERT_ATTEMPTS = f"""
INSERT INTO {ATTEMPTS.name} (message_id, recipient_id, pool, source_ip, destination, code,
    reply, duration_ms, at, own)
SELECT * FROM unnest(%s::text[], %s::int[], %s::text[], %s::text[], %s::text[], %s::int[],
    %s::text[], %s::float8[], %s::timestamptz[], %s::int[])
"""

# The same change as ``delivery._RECORD`` (the statement other databases run per outcome).
_RECORD_OUTCOMES = f"""
UPDATE {RECIPIENTS.name} AS r SET
    status = o.status,
    updated_at = o.at,
    last_reply = o.reply,
    attempts = r.attempts + o.increment,
    last_code = coalesce(o.code, r.last_code),
    remote_mta = coalesce(o.destination, r.remote_mta),
    next_attempt_at = coalesce(o.next_at, r.next_attempt_at)
FROM unnest(%s::int[], %s::text[], %s::timestamptz[], %s::text[], %s::int[], %s::int[],
    %s::text[], %s::timestamptz[])
    AS o(rid, status, at, reply, increment, code, destination, next_at)
WHERE r.id = o.rid
"""

T = TypeVar("T")

# One table's statement and its parameters: alone, or as one CTE of a bigger statement.
_Part = tuple[str, tuple[Any, ...]]


def write(
    engine: Engine,
    messages: Sequence[NewMessage],
    kinds: Sequence[BounceKind],
    outcomes: Sequence[Outcome],
    node: str | None,
) -> None:
    """Write one group commit's rows with ``engine`` (the durable engine or its relaxed
    sibling: the caller chooses).

    The parts (each table's statement) go as one statement of data-modifying CTEs on
    a connection in autocommit mode, which PostgreSQL runs as one transaction: the
    store waits for one round trip, and the commit is the statement's own (durable
    or not by the session's ``synchronous_commit``). Foreign keys are checked at the
    end of the statement, so recipients and bodies may name messages inserted beside
    them.

    Two cases need a transaction of several statements: a large body, whose ``COPY``
    is a statement of its own, and a row that two items of the batch change (two
    outcomes of one recipient): the parts of one statement see one snapshot and
    cannot change the same row twice, so such items go in rounds in which each row
    appears once, in the order given.

    Statements go through SQLAlchemy (``exec_driver_sql``: the SQL as written, no
    compilation), so its handling of errors holds: a connection the server dropped
    invalidates the pool's older connections, as for every other statement.
    """
    small = [m for m in messages if len(m.body) < LARGE_BODY_BYTES]
    large = [(m.id, m.body) for m in messages if len(m.body) >= LARGE_BODY_BYTES]
    kind_rounds = _once_each(kinds, key=lambda k: k.message_id)
    outcome_rounds = _once_each(outcomes, key=lambda o: o.recipient_id)
    parts: list[_Part] = []
    if messages:
        parts.append((_INSERT_MESSAGES, _message_arrays(messages, node)))
        recipients = _recipient_arrays(messages)
        if recipients[0]:
            parts.append((_INSERT_RECIPIENTS, recipients))
    if small:
        parts.append((_INSERT_BODIES, ([m.id for m in small], [m.body for m in small])))
    for same in kind_rounds:
        parts.append((_SET_KINDS, ([k.message_id for k in same], [k.kind for k in same])))
    if outcomes:
        parts.append((_INSERT_ATTEMPTS, _attempt_arrays(outcomes)))
    for distinct in outcome_rounds:
        parts.append((_RECORD_OUTCOMES, _outcome_arrays(distinct)))
    if not parts:
        return
    if not large and len(kind_rounds) <= 1 and len(outcome_rounds) <= 1:
        with _autocommit(engine) as conn:
            conn.exec_driver_sql(*_one_statement(parts))
        return
    with engine.begin() as conn:
        for statement, params in parts:
            conn.exec_driver_sql(statement, params)
        if large:
            driver = conn.connection.driver_connection
            assert isinstance(driver, psycopg.Connection)
            copy_bodies(driver, large)


@contextmanager
def _autocommit(engine: Engine) -> Iterator[Connection]:
    """A connection of ``engine`` in autocommit mode: each statement its own transaction
    (SQLAlchemy sets the mode back when the connection returns to the pool)."""
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


def _one_statement(parts: Sequence[_Part]) -> _Part:
    """``parts`` as one statement: each a data-modifying CTE (their placeholders are
    positional, so their parameters follow one another in the same order)."""
    if len(parts) == 1:
        return parts[0]
    ctes = ",\n".join(f"p{index} AS ({statement})" for index, (statement, _) in enumerate(parts))
    return f"WITH {ctes}\nSELECT 1", tuple(value for _, params in parts for value in params)


def _once_each(items: Sequence[T], key: Callable[[T], Hashable]) -> list[list[T]]:
    """``items`` in rounds in which no key repeats, each item in the first round that
    has no item of its key yet, so that a key's items keep their order."""
    rounds: list[list[T]] = []
    seen: list[set[Hashable]] = []
    for item in items:
        k = key(item)
        for index, keys in enumerate(seen):
            if k not in keys:
                keys.add(k)
                rounds[index].append(item)
                break
        else:
            seen.append({k})
            rounds.append([item])
    return rounds


def _message_arrays(messages: Sequence[NewMessage], node: str | None) -> tuple[Any, ...]:
    return (
        node,
        [m.id for m in messages],
        [m.tenant for m in messages],
        [m.client_ip for m in messages],
        [m.mail_from for m in messages],
        [len(m.body) for m in messages],
        [_utc(m.arrived_at) for m in messages],
        [m.pool for m in messages],
        [m.risk for m in messages],
        [json.dumps([dict(r) for r in m.reasons]) for m in messages],
        [m.bounce_kind for m in messages],
        [_utc(m.hold_until) for m in messages],
        [m.message_id for m in messages],
        [int(m.smtputf8) for m in messages],
        [int(not m.body.isascii()) for m in messages],
        [m.dsn_of for m in messages],
    )


def _recipient_arrays(messages: Sequence[NewMessage]) -> tuple[list[Any], ...]:
    ids: list[str] = []
    addresses: list[str] = []
    domains: list[str] = []
    due: list[datetime | None] = []
    updated: list[datetime | None] = []
    for m in messages:
        first = _utc(m.due_at or m.hold_until or m.arrived_at)
        arrived = _utc(m.arrived_at)
        for address in m.recipients:
            ids.append(m.id)
            addresses.append(address)
            domains.append(address.rpartition("@")[2].lower())
            due.append(first)
            updated.append(arrived)
    return ids, addresses, domains, due, updated


def _attempt_arrays(outcomes: Sequence[Outcome]) -> tuple[list[Any], ...]:
    return (
        [o.message_id for o in outcomes],
        [o.recipient_id for o in outcomes],
        [o.pool for o in outcomes],
        [o.source_ip for o in outcomes],
        [o.destination for o in outcomes],
        [o.code for o in outcomes],
        [o.reply for o in outcomes],
        [float(o.duration_ms) for o in outcomes],
        [_utc(o.at) for o in outcomes],
        [int(o.own) for o in outcomes],
    )


def _outcome_arrays(outcomes: Sequence[Outcome]) -> tuple[list[Any], ...]:
    return (
        [o.recipient_id for o in outcomes],
        [o.status.value for o in outcomes],
        [_utc(o.at) for o in outcomes],
        [o.reply for o in outcomes],
        [1 if o.counts_as_attempt else 0 for o in outcomes],
        [o.code for o in outcomes],
        [o.destination or None for o in outcomes],
        [_utc(o.next_attempt_at) for o in outcomes],
    )


# The claim in one statement: lock the oldest due recipients (walking the partial index
# of waiting ones, skipping rows another node holds), mark them ours, and return them
# with their messages and small bodies, and when the next waiting recipient that this
# claim did not take falls due (the claim's own snapshot still shows the ones it took
# as waiting). ``queue.delivery``'s claim runs these steps as three statements. The
# LEFT JOIN from ``next_due`` gives one row even when nothing was due.
_CLAIM = f"""
WITH picked AS (
    SELECT id FROM {RECIPIENTS.name}
    WHERE {waiting_predicate("postgresql")} AND next_attempt_at <= %(now)s
    ORDER BY next_attempt_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE {RECIPIENTS.name} AS r
    SET status = '{RecipientStatus.DELIVERING.value}', updated_at = %(now)s,
        claimed_by = %(node)s
    FROM picked WHERE r.id = picked.id
    RETURNING r.id, r.message_id, r.address, r.domain, r.attempts, r.next_attempt_at
), next_due AS (
    SELECT min(next_attempt_at) AS at FROM {RECIPIENTS.name}
    WHERE {waiting_predicate("postgresql")} AND id NOT IN (SELECT id FROM picked)
)
SELECT next_due.at, c.id, c.message_id, c.address, c.domain, c.attempts, m.mail_from,
    m.pool, m.risk, m.arrived_at, m.size, m.smtputf8, m.eight_bit, m.tenant, m.hold_until,
    m.client_ip, CASE WHEN m.size <= %(inline)s THEN b.body END
FROM next_due LEFT JOIN (
    claimed AS c
    JOIN {MESSAGES.name} AS m ON m.id = c.message_id
    JOIN {BODIES.name} AS b ON b.message_id = c.message_id
) ON true
ORDER BY c.next_attempt_at, c.id
"""


def claim(
    engine: Engine, now: datetime, limit: int, inline_body: int, node: str | None
) -> tuple[list[DueRecipient], datetime | None]:
    """Claim up to ``limit`` due recipients, in one statement on a connection of
    ``engine`` in autocommit mode (the claim is its own transaction), and say when
    the next waiting one falls due."""
    params = {"now": _utc(now), "limit": limit, "inline": inline_body, "node": node}
    with _autocommit(engine) as conn:
        rows = conn.exec_driver_sql(_CLAIM, params).all()
    recipients = [
        DueRecipient(
            recipient_id=r[1],
            message_id=r[2],
            address=r[3],
            domain=r[4],
            attempts=r[5],
            mail_from=r[6],
            pool=r[7],
            risk=r[8],
            arrived_at=r[9].astimezone(UTC),
            size=r[10],
            smtputf8=bool(r[11]),
            eight_bit=None if r[12] is None else bool(r[12]),
            tenant=r[13],
            hold_until=None if r[14] is None else r[14].astimezone(UTC),
            client_ip=r[15],
            body=None if r[16] is None else bytes(r[16]),
        )
        for r in rows
        if r[1] is not None
    ]
    first = rows[0][0]
    return recipients, None if first is None else first.astimezone(UTC)
