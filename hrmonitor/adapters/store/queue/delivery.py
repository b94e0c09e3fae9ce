"""The queue runner's side of the queue: claim due recipients, read bodies, the outcomes' rows.

A recipient moves ``queued``/``deferred`` -> ``delivering`` when the runner
claims it, then to ``delivered``, ``bounced`` or ``deferred``. A claim records
its node (``claimed_by``). A crash leaves claimed recipients ``delivering``: the
node's next start makes its own due again (:meth:`QueueDelivery.recover`), and
while it is down the other nodes take them over once its heartbeat is older than
the lease (``adapters.store.nodes``); nobody releases a live node's claims.
Claims and attempt records are not fsynced on their own (see
:meth:`QueueDelivery._relaxed`). On PostgreSQL claims use ``FOR UPDATE SKIP
LOCKED`` so several nodes can share one queue; on SQLite the write lock taken
by ``BEGIN IMMEDIATE`` serialises claims.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import (
    Integer,
    Text,
    and_,
    bindparam,
    case,
    func,
    insert,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from hrmonitor.adapters.store.engine import relaxed_engine
from hrmonitor.adapters.store.queue import postgresql
from hrmonitor.adapters.store.queue.bodies import read_body, read_body_slice
from hrmonitor.adapters.store.queue.model import Claim, DueRecipient, Outcome, RecipientStatus
from hrmonitor.adapters.store.queue.rows import attempt_rows, due_recipients, outcome_changes
from hrmonitor.adapters.store.queue.schema import (
    ATTEMPTS,
    BODIES,
    MESSAGES,
    RECIPIENTS,
    is_waiting,
)
from hrmonitor.errors import StoreError

# One statement for every outcome shape, so a batch of outcomes is one executemany.
_RECORD = (
    update(RECIPIENTS)
    .where(RECIPIENTS.c.id == bindparam("rid"))
    .values(
        status=bindparam("new_status"),
        updated_at=bindparam("at", type_=RECIPIENTS.c.updated_at.type),
        last_reply=bindparam("reply"),
        attempts=RECIPIENTS.c.attempts + bindparam("increment"),
        last_code=func.coalesce(bindparam("code", type_=Integer), RECIPIENTS.c.last_code),
        remote_mta=func.coalesce(bindparam("destination", type_=Text), RECIPIENTS.c.remote_mta),
        next_attempt_at=func.coalesce(
            bindparam("next_at", type_=RECIPIENTS.c.next_attempt_at.type),
            RECIPIENTS.c.next_attempt_at,
        ),
    )
)


# The claim's statements, built once: constructing them (a join, a CASE, IN lists,
# ORDER BY) took more of the store thread's CPU than SQLite's work for a claim of a
# few recipients, and the runner claims about once per group commit.
# The claim walks the partial index of waiting recipients (``queue.schema.is_waiting``)
# in its ORDER BY and stops at the LIMIT, joining messages and bodies for those rows
# only. With only the (status, next_attempt_at) index SQLite joined every due recipient
# (and copied its inline body) into a sort and then took the first LIMIT: each claim
# cost the whole backlog (79 % of the store thread under benchmarks/relay.py).
# This is the claim on SQLite; PostgreSQL's is one statement (``queue.postgresql.claim``).
_CLAIM = (
    select(
        RECIPIENTS.c.id,
        RECIPIENTS.c.message_id,
        RECIPIENTS.c.address,
        RECIPIENTS.c.domain,
        RECIPIENTS.c.attempts,
        MESSAGES.c.mail_from,
        MESSAGES.c.pool,
        MESSAGES.c.risk,
        MESSAGES.c.arrived_at,
        MESSAGES.c.size,
        MESSAGES.c.smtputf8,
        MESSAGES.c.eight_bit,
        MESSAGES.c.tenant,
        MESSAGES.c.hold_until,
        MESSAGES.c.client_ip,
        case(
            (MESSAGES.c.size <= bindparam("inline_body", type_=Integer), BODIES.c.body),
            else_=null(),
        ).label("small_body"),
    )
    .join(MESSAGES, MESSAGES.c.id == RECIPIENTS.c.message_id)
    .join(BODIES, BODIES.c.message_id == RECIPIENTS.c.message_id)
    .where(
        is_waiting("sqlite"),
        RECIPIENTS.c.next_attempt_at <= bindparam("now", type_=RECIPIENTS.c.next_attempt_at.type),
    )
    .order_by(RECIPIENTS.c.next_attempt_at, RECIPIENTS.c.id)
    .limit(bindparam("limit", type_=Integer))
)
# The first entry of the same index: O(1), however many recipients wait or are done.
_NEXT_DUE = {
    dialect: select(func.min(RECIPIENTS.c.next_attempt_at)).where(is_waiting(dialect))
    for dialect in ("sqlite", "postgresql")
}
_MARK_DELIVERING = (
    update(RECIPIENTS)
    .where(RECIPIENTS.c.id.in_(bindparam("ids", expanding=True)))
    .values(
        status=RecipientStatus.DELIVERING.value,
        updated_at=bindparam("now", type_=RECIPIENTS.c.updated_at.type),
        claimed_by=bindparam("node", type_=RECIPIENTS.c.claimed_by.type),
    )
)


class QueueDelivery:
    """Claims, bodies, attempt records and crash recovery (part of ``QueueRepository``)."""

    _engine: Engine  # set by QueueRepository
    node: str | None  # the node whose claims these are (None: a one-node tool or test)

    @contextmanager
    def _relaxed(self) -> Iterator[Connection]:
        """A transaction whose commit need not reach the disk by itself (claims, attempts).

        Losing one in a crash only repeats a delivery (the recipient is still
        ``delivering`` or due, and :meth:`recover` retries it): at least once holds.
        The next durable commit (an acceptance) flushes it anyway. SQLite: WAL with
        ``synchronous=NORMAL`` for this transaction only; PostgreSQL: a connection
        of the engine's relaxed sibling, whose sessions have ``synchronous_commit =
        off`` (no extra statement per transaction); an engine without one (made
        outside ``create_store_engine``) gets ``SET LOCAL synchronous_commit = off``.
        """
        relaxed = relaxed_engine(self._engine)
        if relaxed is not None:
            with relaxed.begin() as conn:
                yield conn
            return
        with self._engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA synchronous = NORMAL")  # type: ignore[union-attr]
            try:
                with conn.begin():
                    if not sqlite:
                        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                    yield conn
            finally:
                if sqlite:
                    conn.connection.driver_connection.execute("PRAGMA synchronous = FULL")  # type: ignore[union-attr]

    def _hot_engine(self, *, durable: bool) -> Engine:
        """PostgreSQL: the engine for ``queue.postgresql``'s one-statement transactions:
        the engine itself when ``durable``, otherwise its relaxed sibling (see
        :meth:`_relaxed`), or the engine if it has none: never less durable than asked."""
        if durable:
            return self._engine
        return relaxed_engine(self._engine) or self._engine

    def claim_due(
        self, now: datetime, limit: int, inline_body: int = 64 * 1024
    ) -> list[DueRecipient]:
        """Mark up to ``limit`` due recipients ``delivering`` and return them, oldest due first.

        Bodies up to ``inline_body`` bytes come along (one query instead of one per
        message); bigger ones are sent a slice at a time (:meth:`body_slice`).
        """
        return self.claim(now, limit, inline_body).recipients

    def claim(self, now: datetime, limit: int, inline_body: int = 64 * 1024) -> Claim:
        """:meth:`claim_due`, and, when fewer than ``limit`` were due, when the next
        waiting recipient falls due (what :meth:`next_due_at` would say after it), read
        in the same transaction: the runner's idle wait needs no query of its own."""
        try:
            if self._engine.dialect.name == "postgresql":
                recipients, next_due = postgresql.claim(
                    self._hot_engine(durable=False), now, limit, inline_body, self.node
                )
            else:
                with self._relaxed() as conn:
                    rows = conn.execute(
                        _CLAIM, {"now": now, "limit": limit, "inline_body": inline_body}
                    ).all()
                    if rows:
                        conn.execute(
                            _MARK_DELIVERING,
                            {"ids": [r.id for r in rows], "now": now, "node": self.node},
                        )
                    recipients = due_recipients(rows)
                    next_due = None
                    if len(rows) < limit:
                        next_due = conn.execute(_NEXT_DUE[conn.dialect.name]).scalar()
        except (SQLAlchemyError, ValueError) as exc:  # ValueError: a naive now
            raise StoreError(f"could not claim due recipients: {exc}") from exc
        full = len(recipients) >= limit
        return Claim(recipients, full, None if full else next_due)

    def body(self, message_id: str) -> bytes:
        try:
            with self._engine.connect() as conn:
                value = read_body(conn, message_id)
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read message {message_id}: {exc}") from exc
        if value is None:
            raise StoreError(f"message {message_id} is not in the queue")
        return value

    def body_slice(self, message_id: str, offset: int, length: int) -> bytes:
        """``length`` bytes of a body from ``offset`` (a large body is sent this way, a
        slice at a time). Raises StoreError if the message is gone or the body is
        shorter: a slice is never handed out short, so DATA is never cut short."""
        try:
            with self._engine.connect() as conn:
                value = read_body_slice(conn, message_id, offset, length)
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read message {message_id}: {exc}") from exc
        if value is None:
            raise StoreError(f"message {message_id} is not in the queue")
        if len(value) != length:
            raise StoreError(
                f"message {message_id}: {len(value)} bytes at {offset}, {length} expected"
            )
        return value

    def recover(
        self,
        now: datetime,
        claimed_before: datetime | None = None,
        unowned_before: datetime | None = None,
    ) -> int:
        """Make this node's ``delivering`` recipients due now; returns how many.

        Only this node's claims: another node's are its own business while it lives
        (``NodeRegistry.take_over_claims`` handles the dead). At start-up
        (``claimed_before`` None) every one of them: they were mid-delivery when this
        node last stopped. While running, only those claimed before
        ``claimed_before``: a claim that old was lost (a store error in its delivery
        task). Claims that name no node (made before claims had owners, or by a
        one-node tool) count as this node's once older than ``unowned_before``
        (always, when it is None).
        """
        unowned: ColumnElement[bool] = RECIPIENTS.c.claimed_by.is_(None)
        if unowned_before is not None:
            unowned = and_(unowned, RECIPIENTS.c.updated_at < unowned_before)
        owner = unowned if self.node is None else or_(RECIPIENTS.c.claimed_by == self.node, unowned)
        stale = and_(RECIPIENTS.c.status == RecipientStatus.DELIVERING.value, owner)
        if claimed_before is not None:
            stale = and_(stale, RECIPIENTS.c.updated_at < claimed_before)
        try:
            with self._engine.begin() as conn:
                result = conn.execute(
                    update(RECIPIENTS)
                    .where(stale)
                    .values(
                        status=RecipientStatus.DEFERRED.value,
                        next_attempt_at=now,
                        updated_at=now,
                        claimed_by=None,
                    )
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"could not recover the queue: {exc}") from exc
        return int(result.rowcount)

    def next_due_at(self) -> datetime | None:
        """When the earliest waiting recipient falls due (None if nothing waits)."""
        try:
            with self._engine.connect() as conn:
                value = conn.execute(_NEXT_DUE[conn.dialect.name]).scalar_one_or_none()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read the queue: {exc}") from exc
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value


def record_outcomes(conn: Connection, outcomes: Sequence[Outcome]) -> None:
    """Insert the attempts and move the recipients to their new states, in ``conn``'s
    transaction (``QueueRepository.write``)."""
    conn.execute(insert(ATTEMPTS), attempt_rows(outcomes))
    conn.execute(_RECORD, outcome_changes(outcomes))
