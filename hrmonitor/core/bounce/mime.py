"""A tolerant, bounded MIME reader for bounce classification.

Python's ``email`` package is thorough but slow for this job, mis-parses
``message/global-delivery-status`` (RFC 6533) and recurses without bound on
nested multiparts. Bounce classification needs much less: header fields, the
content type of each part, and the decoded text of a few parts. This reader
never raises on any byte sequence; it caps depth, part count and the bytes it
looks at, and it never descends into ``message/rfc822`` parts (a forwarded
bounce is not a bounce), keeping only their header block for Message-ID.

Text is handled as ``latin-1`` strings internally (a lossless byte <-> str
mapping), and decoded with the declared charset only where text is read.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import quopri
import re
from dataclasses import dataclass

MAX_DEPTH = 6
MAX_PARTS = 64
MAX_TEXT = 64 * 1024  # characters of decoded text read from any one part
MAX_FIELDS = 500  # header fields kept per header block
MAX_FIELD = 8 * 1024  # characters kept of one unfolded field value
MAX_HEAD = 64 * 1024  # characters of one header block read; the rest counts as body
MAX_BOUNDARY_LINE = 200  # a delimiter line's characters looked at (RFC 2046 caps boundaries at 70)

_HEADER_NAME = re.compile(r"^([!-9;-~]+)[ \t]*:(.*)$")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_ENCODED_GAP = re.compile(r"(\?=)[ \t]+(=\?)")
_PARAM = re.compile(
    r';\s*([!#-\'*+\-.0-9A-Z^-~]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;\s]*)', re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME entity: its header fields, content type, body and sub-parts.

    The body is a range of the message's one decoded copy (``source``): no part
    copies its body, so nesting costs no memory, and ``body`` slices it only
    when asked.
    """

    fields: tuple[tuple[str, str], ...]  # (lower-cased name, unfolded raw value), in order
    content_type: str  # lower-cased "type/subtype"
    params: tuple[tuple[str, str], ...]  # lower-cased names
    source: str = ""  # latin-1 text of the whole message, shared by all its parts
    start: int = 0  # the still transfer-encoded body is source[start:end]
    end: int = 0
    parts: tuple[Part, ...] = ()
    truncated: bool = False  # a bound (depth, parts, header size) stopped the reading here

    @property
    def body(self) -> str:
        return self.source[self.start : self.end]

    def head(self, limit: int = MAX_HEAD) -> str:
        """The header block at the start of the body (of an attached message), capped."""
        stop = min(self.end, self.start + limit)
        blank = self.source.find("\n\n", self.start, stop)
        return self.source[self.start : stop if blank < 0 else blank]

    def inner(self) -> Part:
        """The body read as a message of its own (a gateway's re-wrapped DSN), bounded alike."""
        return _parse_entity(self.source, self.start, self.end, "text/plain", 0, [MAX_PARTS])

    def field(self, name: str) -> str | None:
        """The first header field called ``name`` (lower case), decoded, or None."""
        for key, value in self.fields:
            if key == name:
                return decode_header(value)
        return None

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None

    def walk(self) -> list[Part]:
        """This part and its descendants, depth first (message/rfc822 bodies are opaque)."""
        found: list[Part] = []
        stack = [self]
        while stack:
            part = stack.pop()
            found.append(part)
            stack.extend(reversed(part.parts))
        return found

    def text(self) -> str:
        """The body decoded from its transfer encoding and charset, capped at MAX_TEXT."""
        # Base64 takes 4 characters per 3 bytes, plus line ends: this is enough for MAX_TEXT.
        body = self.source[self.start : min(self.end, self.start + MAX_TEXT * 8)]
        raw = _transfer_decode(body, (self.field("content-transfer-encoding") or "").lower())
        return decode_bytes(raw[: MAX_TEXT * 4], self.param("charset"))[:MAX_TEXT]


def decode_bytes(raw: bytes, charset: str | None) -> str:
    """Bytes as text in ``charset``; an unknown charset falls back to UTF-8 with replacement."""
    if charset:
        try:
            return raw.decode(charset.strip().strip('"'), "replace")
        except (LookupError, ValueError):
            pass
    return raw.decode("utf-8", "replace")


def _transfer_decode(body: str, encoding: str) -> bytes:
    raw = body.encode("latin-1", "replace")
    if "base64" in encoding:
        compact = re.sub(rb"[^A-Za-z0-9+/]", b"", raw)
        compact = compact[: len(compact) - len(compact) % 4]
        try:
            return base64.b64decode(compact)
        except (binascii.Error, ValueError):
            return raw
    if "quoted-printable" in encoding:
        try:
            return quopri.decodestring(raw)
        except (binascii.Error, ValueError):
            return raw
    return raw


def decode_header(value: str) -> str:
    """Unfolded field value with RFC 2047 encoded words decoded and 8-bit bytes read as UTF-8."""
    with contextlib.suppress(UnicodeError):  # not UTF-8: keep the latin-1 reading
        value = value.encode("latin-1").decode("utf-8")
    if "=?" not in value:
        return value
    return _ENCODED_WORD.sub(_decode_word, _ENCODED_GAP.sub(r"\1\2", value))


def _decode_word(match: re.Match[str]) -> str:
    charset, encoding, payload = match.group(1), match.group(2).lower(), match.group(3)
    data = payload.encode("latin-1", "replace")
    try:
        if encoding == "b":
            data = base64.b64decode(data + b"=" * (-len(data) % 4))
        else:
            data = quopri.decodestring(data.replace(b"_", b" "), header=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    return decode_bytes(data, charset.split("*", 1)[0])


def parse_fields(block: str) -> tuple[tuple[str, str], ...]:
    """Header-style ``Name: value`` lines with continuation lines unfolded; junk lines skipped.

    At most MAX_FIELDS fields of at most MAX_FIELD characters each are kept:
    real headers are far smaller, and every later look-up scans them.
    """
    fields: list[tuple[str, str]] = []
    name = value = ""
    for line in block.split("\n"):
        if line[:1] in (" ", "\t"):
            if name and len(value) < MAX_FIELD:
                piece = line.strip()
                if piece:
                    value = f"{value} {piece}" if value else piece
            continue
        match = _HEADER_NAME.match(line)
        if match is not None:
            if name:
                fields.append((name, value[:MAX_FIELD]))
            if len(fields) >= MAX_FIELDS:
                return tuple(fields)
            name, value = match.group(1).lower(), match.group(2).strip()
    if name:
        fields.append((name, value[:MAX_FIELD]))
    return tuple(fields)


def _head_end(source: str, start: int, end: int) -> tuple[int, int, bool]:
    """Where the header block at ``start`` ends and the body begins, and whether it was cut.

    The block ends at the blank line, or at the first line that is no header
    field; only MAX_HEAD characters are looked at (a longer block is cut there,
    and the rest is body).
    """
    stop = min(end, start + MAX_HEAD)
    blank = source.find("\n\n", start, stop)
    head_stop = stop if blank < 0 else blank
    position = start
    first = True
    while position < head_stop:
        line_end = source.find("\n", position, head_stop)
        if line_end < 0:
            line_end = head_stop
        line = source[position:line_end]
        if not line:  # an empty header block: the blank line opens the body
            return position, min(end, position + 1), False
        if not (
            (first and line.startswith("From "))  # an mbox separator
            or line[:1] in (" ", "\t")
            or _HEADER_NAME.match(line) is not None
        ):
            return position, position, False
        first = False
        position = line_end + 1
    if blank >= 0:
        return blank, blank + 2, False
    return stop, stop, stop < end


def _content_type(value: str | None, default: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    if not value:
        return default, ()
    main = value.split(";", 1)[0].strip().lower()
    if "/" not in main:
        main = default
    params = []
    for match in _PARAM.finditer(value):
        raw = match.group(2)
        if raw.startswith('"'):
            raw = raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:]
            raw = re.sub(r"\\(.)", r"\1", raw)
        params.append((match.group(1).lower(), raw))
    return main, tuple(params)


def parse_message(raw: bytes, *, max_bytes: int) -> Part:
    """Parse a message, looking at no more than ``max_bytes`` of it. Never raises.

    The cost is linear in the message: one decoded copy shared by all parts,
    each nesting level scanned once for its delimiters, at most MAX_DEPTH
    levels and MAX_PARTS parts; a part past a bound is kept whole and marked
    ``truncated``, never descended into.
    """
    text = str(memoryview(raw)[:max_bytes], "latin-1")  # no copy of raw before decoding it
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _parse_entity(text, 0, len(text), "text/plain", 0, [MAX_PARTS])


def _parse_entity(
    source: str, start: int, end: int, default_type: str, depth: int, budget: list[int]
) -> Part:
    head_end, body_start, cut = _head_end(source, start, end)
    fields = parse_fields(source[start:head_end])  # decoded on access: most are never read
    ctype_value = next((value for name, value in fields if name == "content-type"), None)
    ctype, params = _content_type(ctype_value, default_type)
    part = Part(fields, ctype, params, source, body_start, end, truncated=cut)
    boundary = part.param("boundary")
    if not ctype.startswith("multipart/") or not boundary:
        return part
    if depth >= MAX_DEPTH or budget[0] <= 0:
        return Part(fields, ctype, params, source, body_start, end, truncated=True)
    child_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
    children = []
    ranges, more = _split_multipart(source, body_start, end, boundary, budget[0])
    for chunk_start, chunk_end in ranges:
        budget[0] -= 1
        children.append(
            _parse_entity(source, chunk_start, chunk_end, child_default, depth + 1, budget)
        )
    truncated = cut or more or any(child.truncated for child in children)
    return Part(fields, ctype, params, source, body_start, end, tuple(children), truncated)


def _split_multipart(
    source: str, start: int, end: int, boundary: str, limit: int
) -> tuple[list[tuple[int, int]], bool]:
    """The body ranges between ``--boundary`` delimiter lines (RFC 2046), at most ``limit``.

    ``str.find`` jumps from candidate to candidate; a line that merely starts
    with the delimiter (``--b10`` while looking for ``--b1``) is no delimiter
    and is passed over at the cost of one anchored match. No regex is compiled
    per boundary: boundaries are unique, and compiling is the dearest step.
    The second value says whether parts were left unread for the limit.
    """
    delimiter = "\n--" + boundary[:MAX_BOUNDARY_LINE]
    ranges: list[tuple[int, int]] = []
    opened = -1  # where the current part's body starts
    found = _next_delimiter(source, start - 1, end, delimiter)  # it may open the body
    while found is not None:
        at, stop, closing = found
        if opened >= 0:
            # The line end before a delimiter belongs to the delimiter.
            ranges.append((opened, max(opened, at)))
            if len(ranges) >= limit:
                return ranges, True
        if closing:
            return ranges, False
        opened = min(end, stop + 1)
        found = _next_delimiter(source, stop, end, delimiter)
    if 0 <= opened < end:
        ranges.append((opened, end))
    return ranges, False


_DELIMITER_END = re.compile(r"(--)?[ \t]*(?=\n|\Z)")


def _next_delimiter(
    source: str, position: int, end: int, delimiter: str
) -> tuple[int, int, bool] | None:
    """The next delimiter line from ``position`` (the line end before it): where it
    starts, where it ends, and whether it closes the multipart."""
    if position < 0 or (position < len(source) and source[position] != "\n"):
        # Only the very start of the body can hold a delimiter without a line end before it.
        if source.startswith(delimiter[1:], position + 1):
            rest = _DELIMITER_END.match(source, position + len(delimiter), end)
            if rest is not None:
                return position, rest.end(), rest.group(1) is not None
        position += 1
    while True:
        at = source.find(delimiter, position, end)
        if at < 0:
            return None
        rest = _DELIMITER_END.match(source, at + len(delimiter), end)
        if rest is not None:
            return at, rest.end(), rest.group(1) is not None
        position = at + 1
