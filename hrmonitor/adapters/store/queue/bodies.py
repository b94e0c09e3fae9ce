"""Message bodies (``queue_bodies``, migration 0006): written and read whole, once.

On SQLite a large body goes through incremental blob I/O: bound as a query
parameter SQLite copies it to bind it and again to build the record (2x the
message to store it), and a query result is copied twice to read it; with the
body the last column of a table of its own, a zero-filled body is not
materialised, and the bytes go straight between the message and the pages.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, literal_column, select
from sqlalchemy.engine import Connection

from hrmonitor.adapters.store.queue.schema import BODIES, MESSAGES

BLOB_IO_BYTES = 64 * 1024  # SQLite: bodies this big are written and read with blob I/O


def write_body(conn: Connection, message_id: str, body: bytes) -> None:
    """Insert a zero-filled body of the right size (the last column: SQLite does not
    materialise it), then write ``body`` into it in place (SQLite only)."""
    result = conn.execute(
        insert(BODIES).values(message_id=message_id, body=func.zeroblob(len(body)))
    )
    with _driver(conn).blobopen(BODIES.name, "body", result.lastrowid) as blob:
        blob.write(body)


def read_body(conn: Connection, message_id: str) -> bytes | None:
    """A message's body, or None; on SQLite a large one is read with blob I/O (one copy,
    into the bytes returned, where a query result is copied twice)."""
    if conn.dialect.name == "sqlite":
        row = conn.execute(
            select(literal_column(f"{BODIES.name}.rowid"), MESSAGES.c.size)
            .select_from(BODIES.join(MESSAGES, MESSAGES.c.id == BODIES.c.message_id))
            .where(BODIES.c.message_id == message_id)
        ).first()
        if row is None:
            return None
        if row[1] >= BLOB_IO_BYTES:
            with _driver(conn).blobopen(BODIES.name, "body", row[0], readonly=True) as blob:
                return bytes(blob.read())
    elif conn.dialect.name == "postgresql":
        # psycopg reads bytea as hex text by default and decodes it: 5.8x the body in
        # memory at once; in binary format it is the result and the bytes, 2x.
        with _driver(conn).cursor(binary=True) as cursor:
            cursor.execute(
                f"SELECT body FROM {BODIES.name} WHERE message_id = %s",
                (message_id,),
            )
            row = cursor.fetchone()
        return None if row is None else bytes(row[0])
    value = conn.execute(
        select(BODIES.c.body).where(BODIES.c.message_id == message_id)
    ).scalar_one_or_none()
    return None if value is None else bytes(value)


def _driver(conn: Connection) -> Any:
    return conn.connection.driver_connection
