"""The relay's hot statements on PostgreSQL: the group commit and the claim, pipelined.

What the relay writes per batch (``QueueRepository.write``: new messages, their
bodies and recipients, bounce kinds, attempts and the recipients' new states)
went to PostgreSQL as an ``executemany`` per table: psycopg sends one execution
per row, PostgreSQL runs each as a statement of its own, and the store thread
waited for all of them. Under ``benchmarks/relay.py`` that thread was the
daemon's bottleneck on PostgreSQL (84 % busy; waits on those executions 44 % of
it, the commit's fsync 6 %).

Here every table gets one statement whose parameters are arrays, one per
column, expanded by ``unnest``: ``INSERT ... SELECT ... FROM unnest(...)`` and
``UPDATE ... FROM unnest(...)``. The statements' text never changes with the
batch size, so psycopg prepares each once per connection. They are sent in
psycopg's pipeline mode: BEGIN and every statement go out together and the
store waits once; the commit is the transaction's second round trip.

The claim (:func:`claim`) is one statement too: lock the due recipients, mark
them claimed and return them with their messages, pipelined with the query for
the next due time.

Large bodies still go by binary ``COPY`` (``bodies.copy_bodies``), after the
pipeline (``COPY`` cannot run in one), in the same transaction.

Timestamps pass the check SQLAlchemy's ``UtcDateTime`` makes (``schema.utc``): a
naive datetime is refused, never guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

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


def write(
    conn: Connection,
    messages: Sequence[NewMessage],
    kinds: Sequence[BounceKind],
    outcomes: Sequence[Outcome],
    node: str | None,
) -> None:
    """Write one group commit's rows in ``conn``'s transaction (PostgreSQL only).

    Raises psycopg's errors as they come (the caller turns them into ``StoreError``).
    """
    driver = conn.connection.driver_connection
    assert driver is not None
    large = [(m.id, m.body) for m in messages if len(m.body) >= LARGE_BODY_BYTES]
    with driver.pipeline(), driver.cursor() as cursor:
        if messages:
            cursor.execute(_INSERT_MESSAGES, _message_arrays(messages, node))
            small = [m for m in messages if len(m.body) < LARGE_BODY_BYTES]
            if small:
                cursor.execute(_INSERT_BODIES, ([m.id for m in small], [m.body for m in small]))
            recipients = _recipient_arrays(messages)
            if recipients[0]:
                cursor.execute(_INSERT_RECIPIENTS, recipients)
        for round_ in _once_each(kinds, key=lambda k: k.message_id):
            cursor.execute(_SET_KINDS, ([k.message_id for k in round_], [k.kind for k in round_]))
        if outcomes:
            cursor.execute(_INSERT_ATTEMPTS, _attempt_arrays(outcomes))
        # Two outcomes of one recipient in one UPDATE ... FROM would apply only one of
        # them: each round holds a recipient at most once, in the order they came.
        for distinct in _once_each(outcomes, key=lambda o: o.recipient_id):
            cursor.execute(_RECORD_OUTCOMES, _outcome_arrays(distinct))
    if large:
        copy_bodies(conn, large)


def _once_each(items: Sequence[T], key: Any) -> Iterator[list[T]]:
    """``items`` in rounds in which no key repeats, each item in the first round that
    has no item of its key yet, so that a key's items keep their order."""
    rounds: list[list[T]] = []
    seen: list[set[Any]] = []
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
    return iter(rounds)


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
# with their messages and small bodies. ``queue.delivery``'s claim runs the same steps as
# a SELECT ... FOR UPDATE and an UPDATE, each a round trip.
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
)
SELECT c.id, c.message_id, c.address, c.domain, c.attempts, m.mail_from, m.pool, m.risk,
    m.arrived_at, m.size, m.smtputf8, m.eight_bit, m.tenant, m.hold_until, m.client_ip,
    CASE WHEN m.size <= %(inline)s THEN b.body END
FROM claimed AS c
JOIN {MESSAGES.name} AS m ON m.id = c.message_id
JOIN {BODIES.name} AS b ON b.message_id = c.message_id
ORDER BY c.next_attempt_at, c.id
"""

_NEXT_DUE = (
    f"SELECT min(next_attempt_at) FROM {RECIPIENTS.name} WHERE {waiting_predicate('postgresql')}"
)


def claim(
    conn: Connection, now: datetime, limit: int, inline_body: int, node: str | None
) -> tuple[list[DueRecipient], datetime | None]:
    """Claim up to ``limit`` due recipients in ``conn``'s transaction (PostgreSQL only),
    and read when the next waiting one falls due, both in one round trip.

    Results come in binary: a bytea body as text is hex, twice its size to read and decode.
    """
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor(binary=True) as claimed, driver.cursor(binary=True) as due:
        with driver.pipeline():
            claimed.execute(
                _CLAIM, {"now": _utc(now), "limit": limit, "inline": inline_body, "node": node}
            )
            due.execute(_NEXT_DUE)
        rows = claimed.fetchall()
        next_due = due.fetchone()
    recipients = [
        DueRecipient(
            recipient_id=r[0],
            message_id=r[1],
            address=r[2],
            domain=r[3],
            attempts=r[4],
            mail_from=r[5],
            pool=r[6],
            risk=r[7],
            arrived_at=r[8].astimezone(UTC),
            size=r[9],
            smtputf8=bool(r[10]),
            eight_bit=None if r[11] is None else bool(r[11]),
            tenant=r[12],
            hold_until=None if r[13] is None else r[13].astimezone(UTC),
            client_ip=r[14],
            body=None if r[15] is None else bytes(r[15]),
        )
        for r in rows
    ]
    first = None if next_due is None or next_due[0] is None else next_due[0].astimezone(UTC)
    return recipients, first
