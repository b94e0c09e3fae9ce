"""What DATA sends and how: the message as :class:`Body`, written a piece of whole lines at a time.

aiosmtplib's ``data()`` builds the whole stuffed message before writing it
(line ends, doubled periods, terminator: three copies, 4.67x a 10 MB message
with the transport's buffer). Here the message is cut into pieces of whole
lines (:class:`DataPieces`), each stuffed on its own, and the socket drains
between pieces.

A :class:`Body` need not be in memory: a stored message is read afresh for
each transaction in slices from the queue (``Body.read``), so a delivery holds
a slice and a piece, not the message; MAIL FROM's ``SIZE`` and
``BODY=8BITMIME`` come from what the queue recorded at acceptance. A slice
boundary may fall anywhere: the pieces are cut at line ends whatever the
slices, and the bytes on the wire are ``data()``'s (a Hypothesis test holds
them to aiosmtplib's own functions for any body, slicing and piece size).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import aiosmtplib

# DATA goes out in pieces of whole lines of about this size: a piece and its stuffed
# form are what the send holds beside the slice it came from, and the transport's
# buffer is drained to its high-water mark (64 KiB) between pieces.
DATA_PIECE_BYTES = 64 * 1024
# What aiosmtplib's data() applies to the whole message, applied to each piece.
_LINE_ENDS = re.compile(rb"(?:\r\n|\n|\r(?!\n))")
_LEADING_PERIOD = re.compile(rb"(?m)^\.")


@dataclass(frozen=True, slots=True)
class Body:
    """A message to send: its size and 8-bit-ness (MAIL FROM declares them before DATA),
    and ``read``, which gives its bytes from the start, in slices of any size, each time
    it is called (a transaction may be tried again on another host)."""

    size: int
    eight_bit: bool
    read: Callable[[], AsyncIterator[bytes]]

    @classmethod
    def of(cls, data: bytes) -> Body:
        """A message held in memory: read as one slice."""

        async def whole() -> AsyncIterator[bytes]:
            yield data

        return cls(size=len(data), eight_bit=not data.isascii(), read=whole)


class DataPieces:
    """Cuts a message given in slices of any size into DATA's pieces: every line end CRLF,
    a leading period doubled, CRLF "." CRLF at the end; joined, exactly what aiosmtplib's
    ``data()`` sends for the message joined.

    A piece ends after an LF of the message (a line longer than ``size`` is one piece),
    so each piece begins a line and no CRLF is split, and the rules applied piece by
    piece give what they give applied to the whole. What follows a slice's last LF waits
    for the next slice: the most held is a slice and the longest line.
    """

    def __init__(self, size: int = DATA_PIECE_BYTES) -> None:
        self._size = size
        self._rest = b""  # after the last LF so far
        self._last = b""  # the last byte sent: an empty message is a line end and the end

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The pieces of the lines that ``data`` completes."""
        if self._rest:
            data = self._rest + data
            self._rest = b""
        view = memoryview(data)
        start, length = 0, len(data)
        while start < length:
            end = min(start + self._size, length)
            cut = data.rfind(b"\n", start, end)
            if cut < 0:
                cut = data.find(b"\n", end)
            if cut < 0:
                self._rest = bytes(view[start:])
                return
            yield self._stuffed(view[start : cut + 1])
            start = cut + 1

    def end(self) -> Iterator[bytes]:
        """The last line, if it had no line end, and the terminator."""
        if self._rest:
            yield self._stuffed(memoryview(self._rest))
            self._rest = b""
        yield b".\r\n" if self._last == b"\n" else b"\r\n.\r\n"

    def _stuffed(self, lines: memoryview) -> bytes:
        piece = _LEADING_PERIOD.sub(b"..", _LINE_ENDS.sub(b"\r\n", lines))
        self._last = piece[-1:]
        return piece


def data_pieces(body: bytes, size: int = DATA_PIECE_BYTES) -> Iterator[bytes]:
    """``body`` as DATA sends it, in pieces (see :class:`DataPieces`)."""
    pieces = DataPieces(size)
    yield from pieces.feed(body)
    yield from pieces.end()


async def send_data(smtp: aiosmtplib.SMTP, body: Body) -> aiosmtplib.SMTPResponse:
    """DATA as aiosmtplib's ``data()`` does it (the same bytes, replies and errors), the
    message read and written in pieces instead of stuffed whole first.

    If the message cannot be read to its end (the queue failed, or gave other than
    ``body.size`` bytes), the connection is closed before the terminator, so the MX
    never takes a message cut short, and the error goes to the caller. So it is for
    anything else that stops the write half-way (a deadline, a cancellation).
    """
    response = await smtp.execute_command(b"DATA")
    if response.code != 354:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    protocol = smtp.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    pieces = DataPieces()
    try:
        sent = 0
        async for data in body.read():
            sent += len(data)
            for piece in pieces.feed(data):
                protocol.write(piece)
                # aiosmtplib's flow control (asyncio's StreamWriter.drain pattern): waits
                # while the transport's buffer is above its high-water mark.
                await protocol._drain_helper()
        if sent != body.size:
            raise ValueError(f"the message read was {sent} bytes, not {body.size}")
        for piece in pieces.end():
            protocol.write(piece)
            await protocol._drain_helper()
        response = await protocol.read_response(timeout=smtp.timeout)
    except BaseException:
        smtp.close()
        raise
    if response.code != 250:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response
