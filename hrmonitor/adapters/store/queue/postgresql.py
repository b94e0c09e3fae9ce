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
from datetime import datetime
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
from hrmonitor.adapters.store.queue.rows import (
    Row,
    attempt_rows,
    due_recipients,
    message_rows,
    outcome_changes,
    recipient_rows,
)
from hrmonitor.adapters.store.queue.schema import (
    ATTEMPTS,
    BODIES,
    MESSAGES,
    RECIPIENTS,
    waiting_predicate,
)
from hrmonitor.adapters.store.schema import utc as _utc

# A column sent as an array: its name in the rows (``queue.rows``) and the table, and
# PostgreSQL's element type.
_Column = tuple[str, str]

_MESSAGE_COLUMNS: tuple[_Column, ...] = (
    ("id", "text"),
    ("tenant", "text"),
    ("client_ip", "text"),
    ("mail_from", "text"),
    ("size", "int"),
    ("arrived_at", "timestamptz"),
    ("pool", "text"),
    ("risk", "text"),
    ("reasons", "json"),
    ("bounce_kind", "text"),
    ("hold_until", "timestamptz"),
    ("message_id", "text"),
    ("smtputf8", "int"),
    ("eight_bit", "int"),
    ("dsn_of", "text"),
    ("accepted_by", "text"),
)
_RECIPIENT_COLUMNS: tuple[_Column, ...] = (
    ("message_id", "text"),
    ("address", "text"),
    ("domain", "text"),
    ("status", "text"),
    ("attempts", "int"),
    ("next_attempt_at", "timestamptz"),
    ("last_code", "int"),
    ("last_reply", "text"),
    ("remote_mta", "text"),
    ("updated_at", "timestamptz"),
)
_ATTEMPT_COLUMNS: tuple[_Column, ...] = (
    ("message_id", "text"),
    ("recipient_id", "int"),
    ("pool", "text"),
    ("source_ip", "text"),
    ("destination", "text"),
    ("code", "int"),
    ("reply", "text"),
    ("duration_ms", "float8"),
    ("at", "timestamptz"),
    ("own", "int"),
)
_CHANGE_COLUMNS: tuple[_Column, ...] = (
    ("rid", "int"),
    ("new_status", "text"),
    ("at", "timestamptz"),
    ("reply", "text"),
    ("increment", "int"),
    ("code", "int"),
    ("destination", "text"),
    ("next_at", "timestamptz"),
)


def _unnest(columns: Sequence[_Column], alias: str) -> str:
    """``unnest(%s::type[], ...) AS alias(name, ...)``: one array parameter per column."""
    arrays = ", ".join(f"%s::{kind}[]" for _, kind in columns)
    return f"unnest({arrays}) AS {alias}({', '.join(name for name, _ in columns)})"


def _insert(table: str, columns: Sequence[_Column]) -> str:
    names = ", ".join(name for name, _ in columns)
    return f"INSERT INTO {table} ({names}) SELECT {names} FROM {_unnest(columns, 'v')}"


_INSERT_MESSAGES = _insert(MESSAGES.name, _MESSAGE_COLUMNS)
_INSERT_RECIPIENTS = _insert(RECIPIENTS.name, _RECIPIENT_COLUMNS)
_INSERT_ATTEMPTS = _insert(ATTEMPTS.name, _ATTEMPT_COLUMNS)

# %b: the bodies go in binary (as text, bytea doubles in size: hex).
_INSERT_BODIES = f"""
INSERT INTO {BODIES.name} (message_id, body)
SELECT message_id, body FROM unnest(%s::text[], %b::bytea[]) AS b(message_id, body)
"""

_SET_KINDS = f"""
UPDATE {MESSAGES.name} AS m SET bounce_kind = k.kind
FROM unnest(%s::text[], %s::text[]) AS k(id, kind)
WHERE m.id = k.id
"""

# The same change as ``delivery._RECORD`` (the statement other databases run per outcome).
_RECORD_OUTCOMES = f"""
UPDATE {RECIPIENTS.name} AS r SET
    status = o.new_status,
    updated_at = o.at,
    last_reply = o.reply,
    attempts = r.attempts + o.increment,
    last_code = coalesce(o.code, r.last_code),
    remote_mta = coalesce(o.destination, r.remote_mta),
    next_attempt_at = coalesce(o.next_at, r.next_attempt_at)
FROM {_unnest(_CHANGE_COLUMNS, "o")}
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
        parts.append((_INSERT_MESSAGES, _arrays(message_rows(messages, node), _MESSAGE_COLUMNS)))
        recipients = recipient_rows(messages)
        if recipients:
            parts.append((_INSERT_RECIPIENTS, _arrays(recipients, _RECIPIENT_COLUMNS)))
    if small:
        parts.append((_INSERT_BODIES, ([m.id for m in small], [m.body for m in small])))
    for same in kind_rounds:
        parts.append((_SET_KINDS, ([k.message_id for k in same], [k.kind for k in same])))
    if outcomes:
        parts.append((_INSERT_ATTEMPTS, _arrays(attempt_rows(outcomes), _ATTEMPT_COLUMNS)))
    for distinct in outcome_rounds:
        parts.append((_RECORD_OUTCOMES, _arrays(outcome_changes(distinct), _CHANGE_COLUMNS)))
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


def _arrays(rows: Sequence[Row], columns: Sequence[_Column]) -> tuple[list[Any], ...]:
    """``rows``' values as one list per column, in ``columns``' order: a timestamp
    passes ``schema.utc`` (a naive one is refused), JSON goes as its text."""
    arrays: list[list[Any]] = []
    for name, kind in columns:
        values = [row[name] for row in rows]
        if kind == "timestamptz":
            values = [_utc(value) for value in values]
        elif kind == "json":
            values = [json.dumps(value) for value in values]
        arrays.append(values)
    return tuple(arrays)


# The claim in one statement: lock the oldest due recipients (walking the partial index
# of waiting ones, skipping rows another node holds), mark them ours, and return them
# with their messages and small bodies, and when the next waiting recipient that this
# claim did not take falls due (the claim's own snapshot still shows the ones it took
# as waiting). ``queue.delivery``'s claim runs these steps as three statements. The
# LEFT JOIN from ``next_due`` gives one row even when nothing was due. The columns are
# named as SQLite's claim names them, for ``rows.due_recipients``.
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
SELECT next_due.at AS next_due, c.id, c.message_id, c.address, c.domain, c.attempts,
    m.mail_from, m.pool, m.risk, m.arrived_at, m.size, m.smtputf8, m.eight_bit, m.tenant,
    m.hold_until, m.client_ip, CASE WHEN m.size <= %(inline)s THEN b.body END AS small_body
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
    recipients = due_recipients([r for r in rows if r.id is not None])
    return recipients, _utc(rows[0].next_due)
