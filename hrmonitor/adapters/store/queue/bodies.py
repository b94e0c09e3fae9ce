"""Message bodies (``queue_bodies``, migration 0006): written once, read whole or in slices.

A large body (``LARGE_BODY_BYTES`` or more) never passes through the database
driver in one piece, on either store:

- SQLite: incremental blob I/O. Bound as a query parameter SQLite copies it to
  bind it and again to build the record (2x the message to store it), and a
  query result is copied twice to read it; with the body the last column of a
  table of its own, a zero-filled body is not materialised, and the bytes go
  straight between the message and the pages.
- PostgreSQL: written with one binary ``COPY`` per batch, the body sent in
  ``CHUNK_BYTES`` slices of the message (libpq keeps its output buffer at the
  largest message it sent: a bound 10 MB INSERT left it at 10 MB), and read in
  ``substring`` slices of ``CHUNK_BYTES`` into one buffer that becomes the bytes
  returned (a whole-body SELECT peaked at 2.96x: libpq's input buffer, the
  result and the bytes). ``COPY`` is in the caller's transaction, so the batch
  still commits once; appending slices with ``UPDATE ... body || slice`` instead
  rewrites the body each time (22x the body in WAL for 10 MB, 20x slower).

The queue runner does not read a large body whole: it sends it a slice at a
time as DATA goes out (:func:`read_body_slice`, one short transaction a slice).

SQLite's page cache (2 MB a connection by default) would keep a large body's
pages after any of these: the first 1 MB message stored cost 0.85 MB more
resident than the next one, and reads on the pool's connections, which take
turns, fill every connection's cache. Large body I/O runs with the
connection's cache cut to ``BODY_CACHE_KIB`` (which drops its pages; a write
spills its dirty pages to the WAL as it goes: 4.8 ms instead of 3.7 ms for
1 MB), restored afterwards.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import func, insert, literal_column, select
from sqlalchemy.engine import Connection

from hrmonitor.adapters.store.queue.schema import BODIES, MESSAGES

LARGE_BODY_BYTES = 64 * 1024  # bodies this big are written and read in place / in slices
# PostgreSQL's slice. A slice read is in memory up to three times at once (libpq's input
# buffer, its result, the bytes), and libpq keeps its buffers at the largest slice: 64 KiB
# holds that under 0.2 MB, a tenth of a 1 MB message (256 KiB: 1.6x the body to read 1 MB,
# 64 KiB: 1.08x), and 10 MB is 153 round trips on loopback (34 ms; 28 ms in 256 KiB slices).
CHUNK_BYTES = 64 * 1024
# SQLite: a connection's page cache while it moves a large body (16 pages of 4 KiB).
BODY_CACHE_KIB = 64

# PostgreSQL's binary COPY format: signature, flags, header extension length; trailer.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)


def insert_bodies(conn: Connection, bodies: Sequence[tuple[str, bytes]]) -> None:
    """Insert ``(message_id, body)`` pairs in ``conn``'s transaction (after their messages)."""
    streams = conn.dialect.name in ("sqlite", "postgresql")
    large = [streams and len(body) >= LARGE_BODY_BYTES for _, body in bodies]
    bound = [
        {"message_id": message_id, "body": body}
        for (message_id, body), big in zip(bodies, large, strict=True)
        if not big
    ]
    if bound:
        conn.execute(insert(BODIES), bound)
    streamed = [pair for pair, big in zip(bodies, large, strict=True) if big]
    if not streamed:
        return
    if conn.dialect.name == "sqlite":
        with _small_page_cache(conn):
            for message_id, body in streamed:
                _write_blob(conn, message_id, body)
    else:
        copy_bodies(_driver(conn), streamed)


def _write_blob(conn: Connection, message_id: str, body: bytes) -> None:
    """SQLite: insert a zero-filled body of the right size (the last column: SQLite does
    not materialise it), then write ``body`` into it in place."""
    result = conn.execute(
        insert(BODIES).values(message_id=message_id, body=func.zeroblob(len(body)))
    )
    with _driver(conn).blobopen(BODIES.name, "body", result.lastrowid) as blob:
        blob.write(body)


def copy_bodies(driver: psycopg.Connection[Any], bodies: Sequence[tuple[str, bytes]]) -> None:
    """PostgreSQL: one binary COPY of the rows on ``driver`` (in its transaction), each
    body sent in slices of the message (memoryview: no slice is copied before libpq's
    buffer)."""
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY {BODIES.name} (message_id, body) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.write(_COPY_HEADER)
        for message_id, body in bodies:
            key = message_id.encode()
            copy.write(struct.pack("!hi", 2, len(key)) + key + struct.pack("!i", len(body)))
            view = memoryview(body)
            for offset in range(0, len(body), CHUNK_BYTES):
                copy.write(view[offset : offset + CHUNK_BYTES])
        copy.write(_COPY_TRAILER)


def read_body(conn: Connection, message_id: str) -> bytes | None:
    """A message's body, or None; a large one is read with blob I/O on SQLite (one copy,
    into the bytes returned, where a query result is copied twice) and in slices on
    PostgreSQL."""
    if conn.dialect.name == "sqlite":
        row = conn.execute(
            select(literal_column(f"{BODIES.name}.rowid"), MESSAGES.c.size)
            .select_from(BODIES.join(MESSAGES, MESSAGES.c.id == BODIES.c.message_id))
            .where(BODIES.c.message_id == message_id)
        ).first()
        if row is None:
            return None
        if row[1] >= LARGE_BODY_BYTES:
            with (
                _small_page_cache(conn),
                _driver(conn).blobopen(BODIES.name, "body", row[0], readonly=True) as blob,
            ):
                return bytes(blob.read())
    elif conn.dialect.name == "postgresql":
        return _read_slices(conn, message_id)
    value = conn.execute(
        select(BODIES.c.body).where(BODIES.c.message_id == message_id)
    ).scalar_one_or_none()
    return None if value is None else bytes(value)


def read_body_slice(conn: Connection, message_id: str, offset: int, length: int) -> bytes | None:
    """``length`` bytes of a message's body from ``offset`` (fewer at its end), or None if
    the message is gone: blob I/O on SQLite, ``substring`` on PostgreSQL, so no more than
    the slice is read (a query of the whole column materialises the whole body)."""
    if conn.dialect.name == "sqlite":
        rowid = conn.execute(
            select(literal_column(f"{BODIES.name}.rowid")).where(BODIES.c.message_id == message_id)
        ).scalar_one_or_none()
        if rowid is None:
            return None
        with (
            _small_page_cache(conn),
            _driver(conn).blobopen(BODIES.name, "body", rowid, readonly=True) as blob,
        ):
            blob.seek(offset)
            return bytes(blob.read(length))
    if conn.dialect.name == "postgresql":
        with _driver(conn).cursor(binary=True) as cursor:
            cursor.execute(
                f"SELECT substring(body FROM %s FOR %s) FROM {BODIES.name} WHERE message_id = %s",
                (offset + 1, length, message_id),
            )
            row = cursor.fetchone()
        return None if row is None else bytes(row[0])
    value = conn.execute(
        select(func.substr(BODIES.c.body, offset + 1, length)).where(
            BODIES.c.message_id == message_id
        )
    ).scalar_one_or_none()
    return None if value is None else bytes(value)


def _read_slices(conn: Connection, message_id: str) -> bytes | None:
    """PostgreSQL: the body in ``CHUNK_BYTES`` slices, in binary format (psycopg reads
    bytea as hex text by default and decodes it: 5.8x the body at once).

    The slices go into a BytesIO sized once to the body, whose buffer becomes the bytes
    returned without a copy (``getvalue``). A body is never changed once stored, so the
    slices need no common snapshot; if the message is purged meanwhile, it is gone (None).
    """
    query = f"SELECT substring(body FROM %s FOR %s) FROM {BODIES.name} WHERE message_id = %s"
    with _driver(conn).cursor(binary=True) as cursor:
        cursor.execute(
            f"SELECT octet_length(body), substring(body FROM 1 FOR %s)"
            f" FROM {BODIES.name} WHERE message_id = %s",
            (CHUNK_BYTES, message_id),
        )
        row = cursor.fetchone()
        if row is None:
            return None
        size, first = row[0], row[1]
        if size <= CHUNK_BYTES:
            return bytes(first)
        buffer = io.BytesIO()
        buffer.seek(size - 1)
        buffer.write(b"\0")  # one allocation of the body's size, filled in place below
        buffer.seek(0)
        buffer.write(first)
        del first, row
        for offset in range(CHUNK_BYTES, size, CHUNK_BYTES):
            cursor.execute(query, (offset + 1, CHUNK_BYTES, message_id))
            piece = cursor.fetchone()
            if piece is None:
                return None
            buffer.write(piece[0])
        if buffer.tell() != size:
            return None  # cannot happen while bodies are written once; never hand out a torn one
        return buffer.getvalue()


@contextmanager
def _small_page_cache(conn: Connection) -> Iterator[None]:
    """SQLite: the connection's page cache cut to ``BODY_CACHE_KIB`` meanwhile (see the
    module docstring), then restored to what it was."""
    driver = _driver(conn)
    (size,) = driver.execute("PRAGMA cache_size").fetchone()
    driver.execute(f"PRAGMA cache_size = -{BODY_CACHE_KIB}")
    try:
        yield
    finally:
        driver.execute(f"PRAGMA cache_size = {int(size)}")


def _driver(conn: Connection) -> Any:
    return conn.connection.driver_connection
