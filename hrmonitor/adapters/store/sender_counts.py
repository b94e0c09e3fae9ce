"""Sending-limit counts shared between the nodes of a cluster.

Each node keeps its own acceptances in memory (the router's window) and, every
``[limits] sync``, publishes its total per (sender, minute): one row per sender,
minute and node, written only by that node, so no two nodes ever wait on one
row and no row is updated per message. Every node reads the rows the others
changed since its last read (by ``updated_at``, the server's clock, read back
with a margin: a row written by a transaction that began earlier may commit
later) and adds them to its own counts. Totals only grow, so reading a row twice
changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import String, Table, delete, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from hrmonitor.adapters.store.schema import NAME, Base, UtcDateTime
from hrmonitor.errors import StoreError

# How far back each read reaches past the previous one: longer than any publishing
# transaction lasts between its start (its ``now()``) and its commit.
READ_MARGIN = timedelta(seconds=10)


class SenderCountRow(Base):
    __tablename__ = "sender_counts"

    sender: Mapped[str] = mapped_column(String(320), primary_key=True)
    minute: Mapped[datetime] = mapped_column(primary_key=True)
    node: Mapped[str] = mapped_column(NAME, primary_key=True)
    recipients: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(index=True)


def _table() -> Table:
    table = SenderCountRow.__table__
    assert isinstance(table, Table)
    return table


COUNTS = _table()


def _server_now(conn: Connection) -> ColumnElement[datetime]:
    if conn.dialect.name == "postgresql":
        return func.now()
    return literal(datetime.now(UTC), UtcDateTime())  # SQLite: one machine, one clock


class SenderCounts:
    """One node's side of the shared counts. Synchronous; the daemon calls it in a thread."""

    def __init__(self, engine: Engine, node: str) -> None:
        self._engine = engine
        self.node = node
        self._read_since: datetime | None = None

    def publish(self, totals: Sequence[tuple[str, datetime, int]]) -> None:
        """This node's (sender, minute, recipients) totals, written over the previous ones."""
        if not totals:
            return
        try:
            with self._engine.begin() as conn:
                insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(
                    COUNTS
                )
                now = _server_now(conn)
                statement = insert.on_conflict_do_update(
                    index_elements=["sender", "minute", "node"],
                    set_={"recipients": insert.excluded.recipients, "updated_at": now},
                )
                conn.execute(
                    statement.values(updated_at=now),
                    [
                        {"sender": s, "minute": m, "node": self.node, "recipients": n}
                        for s, m, n in totals
                    ],
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"could not publish the sending-limit counts: {exc}") from exc

    def read_peers(self, since: datetime) -> list[tuple[str, str, datetime, int]]:
        """(node, sender, minute, recipients) the other nodes published about minutes from
        ``since`` on: everything at the first call, then what changed since the last."""
        try:
            with self._engine.connect() as conn:
                server_now = conn.execute(select(_server_now(conn))).scalar_one()
                query = select(COUNTS.c.node, COUNTS.c.sender, COUNTS.c.minute, COUNTS.c.recipients)
                query = query.where(COUNTS.c.node != self.node, COUNTS.c.minute >= since)
                if self._read_since is not None:
                    query = query.where(COUNTS.c.updated_at >= self._read_since)
                rows = conn.execute(query).all()
        except SQLAlchemyError as exc:
            raise StoreError(f"could not read the other nodes' counts: {exc}") from exc
        if server_now.tzinfo is None:
            server_now = server_now.replace(tzinfo=UTC)
        self._read_since = server_now - READ_MARGIN
        return [(r.node, r.sender, r.minute, int(r.recipients)) for r in rows]

    def prune(self, before: datetime) -> int:
        """Forget minutes older than the longest limit window (any node may do it)."""
        try:
            with self._engine.begin() as conn:
                result = conn.execute(delete(COUNTS).where(COUNTS.c.minute < before))
        except SQLAlchemyError as exc:
            raise StoreError(f"could not prune the sending-limit counts: {exc}") from exc
        return int(result.rowcount)
