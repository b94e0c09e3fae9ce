"""Spam scores from the operator's own filter, read from header fields, and their removal.

Which headers are read is configuration (``[routing] spam_headers``). Their
formats:

- SpamAssassin ``X-Spam-Status: Yes, score=7.2 required=5.0 tests=...``
  (``hits=`` in old versions) and ``X-Spam-Score: 7.2``;
- rspamd ``X-Rspamd-Score: 7.2`` (also ``7.20 / 15.00``);
- Microsoft's Spam Confidence Level, any header whose name ends in ``-SCL``
  (``X-MS-Exchange-Organization-SCL: 5``): an integer from -1 to 9. It is
  compared with ``spam_threshold`` as it stands, so the default threshold
  5.0 routes exactly what Exchange calls spam (SCL 5-6) and high-confidence
  spam (7-9) to the high-risk pool; SCL -1 (trusted sender, filtering
  bypassed) and 0-1 (not spam) never do. Set the threshold on the SCL scale
  when SCL is the only score header.
- any other configured header: the first number in its value.

A score counts only when the connecting client is inside
``trusted_filters``; from anywhere else the headers are forged or stale and
are stripped before the message is stored (:func:`strip_header_fields`).
When several score headers are present the highest score wins: a forged
high score can only hurt its forger, a forged low one must not help.

A scanner queried over the network (rspamd's HTTP API, ``[routing]
rspamd_url``) adds its score the same way: the highest of it and a trusted
header's counts (:func:`with_scan`). A scanner that could not score the message
(unreachable, timeout, an error) leaves ``SpamScore.unknown`` saying why; the
shipped rule ``spam-score-unknown`` routes such mail high-risk when no header
score is known either (fail closed).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_SA_STATUS = re.compile(rf"\b(?:score|hits)\s*=\s*({_NUMBER})", re.IGNORECASE)
_FIRST_NUMBER = re.compile(rf"(?<![\w.])({_NUMBER})")
_SCL_MIN, _SCL_MAX = -1, 9
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def parse_score(name: str, value: str) -> float | None:
    """The score a header field carries, or None if it carries none."""
    lowered = name.strip().lower()
    if lowered == "x-spam-status":
        match = _SA_STATUS.search(value)
        return float(match.group(1)) if match else None
    if lowered.endswith("-scl"):
        text = value.strip()
        if re.fullmatch(r"[-+]?\d+", text) is None:
            return None
        level = int(text)
        return float(level) if _SCL_MIN <= level <= _SCL_MAX else None
    match = _FIRST_NUMBER.search(value)
    return float(match.group(1)) if match else None


def client_is_trusted(client_ip: str | None, trusted_filters: Sequence[str]) -> bool:
    """True if ``client_ip`` lies in one of the ``trusted_filters`` networks."""
    if not client_ip:
        return False
    try:
        address = ipaddress.ip_address(client_ip.strip())
    except ValueError:
        return False
    for network in trusted_filters:
        net = _network(network)
        if address.version == net.version and address in net:
            return True
    return False


@functools.lru_cache(maxsize=256)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    # Parsed once: every message asks (twice: the stored form and the score) about the
    # same few configured networks, and parsing one costs more than the membership test.
    return ipaddress.ip_network(text, strict=False)


@dataclass(frozen=True, slots=True)
class SpamScore:
    """The score that counts for routing, or why none does."""

    score: float | None
    header: str | None  # the header field (or "rspamd") the score came from
    trusted: bool  # the client is one of the trusted filters
    ignored: tuple[str, ...] = ()  # score headers present but not counted (untrusted client)
    unknown: str = ""  # why the configured scanner gave no score ("" = it did, or none is set)


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a spam scanner queried over the network said: a score, or why there is none."""

    score: float | None
    problem: str = ""
    source: str = "rspamd"


def with_scan(header: SpamScore, scan: ScanResult) -> SpamScore:
    """The header score and the scanner's together: the higher one counts."""
    if scan.score is None:
        problem = scan.problem or "no score"
        return replace(header, unknown=f"{scan.source}: {problem}")
    if header.score is not None and header.score >= scan.score:
        return header
    return replace(header, score=scan.score, header=scan.source)


def spam_score(
    fields: Iterable[tuple[str, str]],
    spam_headers: Sequence[str],
    client_ip: str | None,
    trusted_filters: Sequence[str],
) -> SpamScore:
    """The highest score among the configured headers, counted only from a trusted filter."""
    wanted = {h.lower() for h in spam_headers}
    trusted = client_is_trusted(client_ip, trusted_filters)
    best: tuple[float, str] | None = None
    present: list[str] = []
    for name, value in fields:
        if name.lower() not in wanted:
            continue
        present.append(name)
        score = parse_score(name, value)
        if score is not None and (best is None or score > best[0]):
            best = (score, name)
    if not trusted:
        return SpamScore(None, None, False, tuple(present))
    if best is None:
        return SpamScore(None, None, True)
    return SpamScore(best[0], best[1], True)


def _header_lines(message: bytes) -> tuple[list[bytes], int]:
    """The header section's lines (with line ends) and the offset where the body starts.

    Only the header section is split: the body (megabytes, perhaps) is never scanned.
    Lines split at LF: the listener has made every bare CR and LF a CRLF before
    (``core.delivery.line_ends``), so no field hides behind a bare CR here.
    """
    lines: list[bytes] = []
    position = 0
    while position < len(message):
        end = message.find(b"\n", position)
        end = len(message) if end < 0 else end + 1
        line = message[position:end]
        if line in (b"\r\n", b"\n"):
            break
        lines.append(line)
        position = end
    return lines, position


def _fields(lines: list[bytes]) -> list[list[bytes]]:
    """Group header lines into fields: a field is a line plus its folded continuations."""
    fields: list[list[bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    return fields


def _field_name(first_line: bytes) -> str:
    name, colon, _ = first_line.partition(b":")
    return name.strip().decode("ascii", "replace").lower() if colon else ""


def strip_header_fields(message: bytes, names: Iterable[str]) -> bytes:
    """``message`` with every header field named in ``names`` removed, all else byte for byte."""
    drop = {n.lower() for n in names}
    lines, offset = _header_lines(message)
    fields = _fields(lines)
    kept = [b"".join(f) for f in fields if _field_name(f[0]) not in drop]
    if len(kept) == len(fields):
        return message  # nothing to strip: the same bytes, no copy of a large body
    # One copy: the body is joined from a view of the message, not sliced out first.
    return b"".join([*kept, memoryview(message)[offset:]])


def header_fields(message: bytes) -> tuple[tuple[str, str], ...]:
    """The header section as (name, unfolded value) pairs, in order; bytes decoded leniently."""
    lines, _ = _header_lines(message)
    result: list[tuple[str, str]] = []
    for field_lines in _fields(lines):
        raw = b"".join(field_lines)
        name, colon, value = raw.partition(b":")
        if not colon:
            continue
        text = value.decode("utf-8", "replace")
        # Lines are split at LF, so only a field of several lines can hold a fold.
        unfolded = (_FOLD.sub("", text) if len(field_lines) > 1 else text).strip()
        result.append((name.strip().decode("ascii", "replace"), unfolded))
    return tuple(result)


def strip_untrusted_scores(
    message: bytes,
    client_ip: str | None,
    spam_headers: Sequence[str],
    trusted_filters: Sequence[str],
) -> bytes:
    """What the listener stores: unchanged from a trusted filter, else without score headers."""
    if client_is_trusted(client_ip, trusted_filters):
        return message
    return strip_header_fields(message, spam_headers)
