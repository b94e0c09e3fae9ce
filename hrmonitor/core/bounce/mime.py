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

_HEADER_NAME = re.compile(r"^([!-9;-~]+)[ \t]*:(.*)$")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_ENCODED_GAP = re.compile(r"(\?=)[ \t]+(=\?)")
_PARAM = re.compile(
    r';\s*([!#-\'*+\-.0-9A-Z^-~]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;\s]*)', re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME entity: its header fields, content type, raw body and sub-parts."""

    fields: tuple[tuple[str, str], ...]  # (lower-cased name, unfolded raw value), in order
    content_type: str  # lower-cased "type/subtype"
    params: tuple[tuple[str, str], ...]  # lower-cased names
    body: str  # latin-1 text of the still transfer-encoded body
    parts: tuple[Part, ...] = ()

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
        raw = _transfer_decode(self.body, (self.field("content-transfer-encoding") or "").lower())
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


def _split_head(text: str) -> tuple[str, str]:
    """Split at the blank line ending the header block, or at the first line that is no header."""
    end = text.find("\n\n")
    head = text if end < 0 else text[:end]
    lines = head.split("\n")
    start = 1 if lines and lines[0].startswith("From ") else 0  # an mbox separator
    for index in range(start, len(lines)):
        line = lines[index]
        if line[:1] in (" ", "\t") or _HEADER_NAME.match(line) is not None:
            continue
        consumed = sum(len(item) + 1 for item in lines[:index])
        return text[:consumed], text[consumed:]
    if end < 0:
        return text, ""
    return text[:end], text[end + 2 :]


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
    """Parse a message, looking at no more than ``max_bytes`` of it. Never raises."""
    text = raw[:max_bytes].decode("latin-1")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    budget = [MAX_PARTS]
    return _parse_entity(text, "text/plain", 0, budget)


def _parse_entity(text: str, default_type: str, depth: int, budget: list[int]) -> Part:
    head, body = _split_head(text)
    fields = parse_fields(head)  # decoded on access: most fields are never read
    ctype_value = next((value for name, value in fields if name == "content-type"), None)
    ctype, params = _content_type(ctype_value, default_type)
    part = Part(fields=fields, content_type=ctype, params=params, body=body)
    boundary = part.param("boundary")
    if not ctype.startswith("multipart/") or not boundary or depth >= MAX_DEPTH:
        return part
    child_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
    children = []
    for chunk in _split_multipart(body, boundary):
        if budget[0] <= 0:
            break
        budget[0] -= 1
        children.append(_parse_entity(chunk, child_default, depth + 1, budget))
    return Part(fields=fields, content_type=ctype, params=params, body="", parts=tuple(children))


def _split_multipart(body: str, boundary: str) -> list[str]:
    delimiter = "--" + boundary
    chunks: list[str] = []
    current: list[str] | None = None
    for line in body.split("\n"):
        if line.startswith(delimiter):
            rest = line[len(delimiter) :]
            if current is not None:
                chunks.append("\n".join(current))
            if rest.startswith("--"):
                return chunks
            if rest.strip() == "":
                current = []
                continue
        if current is not None:
            current.append(line)
    if current is not None:
        chunks.append("\n".join(current))
    return chunks
