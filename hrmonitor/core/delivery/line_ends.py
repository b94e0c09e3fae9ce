"""Bare CR and bare LF: SMTP's line end is CRLF, and anything else is refused or made one.

RFC 5321 2.3.8 allows CR and LF only together. Receivers disagree about a
lone one: some treat it as a line end, some as data. That disagreement is
what header injection and SMTP smuggling live on: a bare CR inside a
``Subject:`` is "data" to a filter that splits at LF, and a header of its own
to the next hop once its line ends are normalised (aiosmtplib, like most
senders, turns every bare CR and LF into CRLF on the way out).

So the listener decides once, the way the next hop will: in commands a bare
line end is refused (:func:`command_problem`); in DATA every bare CR and
bare LF becomes CRLF (:func:`normalise`) before anything reads a header.

:class:`DataReader` applies that to DATA as it arrives, a piece at a time,
into the one buffer that becomes the stored message (issue 13: memory for a
message stays under twice its size).
"""

from __future__ import annotations

import io
import re

_ANY_LINE_END = re.compile(rb"\r\n|\r|\n")


def normalise(data: bytes) -> bytes:
    """``data`` with every bare CR and bare LF turned into CRLF (CRLF stays as it is)."""
    crlf = data.count(b"\r\n")
    if data.count(b"\r") == crlf and data.count(b"\n") == crlf:
        return data  # the usual case: nothing to rewrite, no copy made
    return _ANY_LINE_END.sub(b"\r\n", data)


def command_problem(line: bytes) -> str | None:
    """Why a raw command line (as read, with its line end) is refused, or None.

    A command ends with CRLF and holds no other CR, LF or NUL.
    """
    if not line.endswith(b"\r\n"):
        return "bare LF" if line.endswith(b"\n") else None
    body = line[:-2]
    if b"\r" in body or b"\n" in body:
        return "bare CR or LF"
    if b"\0" in body:
        return "NUL"
    return None


class DataReader:
    """SMTP DATA assembled as it arrives into one buffer: the message as stored.

    Fed the bytes read after ``354``; ``feed`` returns None until the line
    ``.`` (after a CRLF, or first) ends the data, then whatever the client sent
    after it (pipelined commands). Each piece of complete lines is, in this
    order, un-dot-stuffed (a dot after CRLF), made CRLF-only (:func:`normalise`)
    and checked for lines longer than ``max_line_length``, then appended to the
    buffer; only a line still incomplete waits (at most ``max_line_length``
    bytes: a longer one is too long already). So the message exists once, in
    the buffer (``message`` hands it over without a copy), plus one piece.

    ``too_big`` (more than ``size_limit`` bytes as sent, 0: no limit) and
    ``too_long`` stop the buffering; the data is still read to its end, and the
    caller answers with the limit instead of storing anything.
    """

    def __init__(self, prefix: bytes, *, size_limit: int, max_line_length: int) -> None:
        self._out: io.BytesIO | None = io.BytesIO()
        self._out.write(prefix)
        self._size_limit = size_limit
        self._max_line = max_line_length
        self._pending = b""  # the start of a line whose end has not arrived
        self._line_start = True  # the next byte starts a line after CRLF (or the data)
        self.size = 0  # bytes of the data as sent, without the final dot line
        self.too_big = False
        self.too_long = False

    def feed(self, chunk: bytes) -> bytes | None:
        """Take the next bytes read: None while the data goes on, else what follows it."""
        block = self._pending + chunk if self._pending else chunk
        self._pending = b""
        if self._line_start and block.startswith(b".\r\n"):
            end = 0
        else:
            found = block.find(b"\r\n.\r\n")
            end = found + 2 if found >= 0 else -1
        if end >= 0:
            self._take(block[:end])
            return block[end + 3 :]
        # Cut after the last line end; a CR at the very end may be half of a CRLF.
        stop = len(block) - 1 if block.endswith(b"\r") else len(block)
        cut = max(block.rfind(b"\n", 0, stop), block.rfind(b"\r", 0, stop)) + 1
        if cut:
            self._take(block[:cut] if cut < len(block) else block)
        rest = block[cut:]
        length = len(rest) - rest.endswith(b"\r") - (self._line_start and rest.startswith(b"."))
        if length > self._max_line:  # the line is too long whatever follows: drop it
            self._failed("too_long")
            self.size += len(rest) - rest.endswith(b"\r")
            rest = b"\r" if rest.endswith(b"\r") else b""
            self._line_start = False
        self._pending = rest
        return None

    def message(self) -> bytes:
        """The message (the prefix, then the data as stored); the reader is spent."""
        if self._out is None:
            raise ValueError("no message: the data was over a limit")
        out, self._out = self._out, None
        return out.getvalue()  # the buffer itself, not a copy

    def _take(self, piece: bytes) -> None:
        """Append a piece of complete lines (it starts where a line starts)."""
        self.size += len(piece)
        line_start, self._line_start = (
            self._line_start,
            piece.endswith(b"\r\n") or (not piece and self._line_start),
        )
        if self._out is None:
            return
        if self._size_limit and self.size > self._size_limit:
            self._failed("too_big")
            return
        if line_start and piece.startswith(b"."):
            piece = piece[1:]
        piece = normalise(piece.replace(b"\r\n.", b"\r\n"))
        if piece and max(map(len, piece.split(b"\r\n"))) > self._max_line:
            self._failed("too_long")
            return
        self._out.write(piece)

    def _failed(self, limit: str) -> None:
        setattr(self, limit, True)
        self._out = None  # nothing of it is stored: free the buffer now
