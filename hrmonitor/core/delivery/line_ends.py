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
"""

from __future__ import annotations

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
