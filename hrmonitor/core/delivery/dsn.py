"""RFC 3464 delivery status notifications for mail the relay could not deliver.

The DSN is built by hand as bytes rather than through ``email.mime``: the
attached original headers must go out byte for byte (they may hold 8-bit or
malformed text the sender wrote), and every line must end in CRLF. A DSN
is sent with the null reverse-path, so it never causes a DSN of its own
(RFC 5321 section 4.5.5), and routing sends it through the high-risk pool.
When an address or the original headers are not ASCII, the RFC 6533 types
(``message/global-delivery-status``, ``message/global-headers``) are used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    address: str
    status: str  # RFC 3463, e.g. "5.1.1"
    diagnostic: str = ""  # the remote reply, "550 5.1.1 no such user"
    remote_mta: str = ""  # the MX host that answered, if one did
    last_attempt: datetime | None = None
    action: str = "failed"


def _one_line(text: str) -> str:
    return " ".join(text.replace("\0", " ").split())


def original_headers(message: bytes) -> bytes:
    """The header block of ``message``, lines ending in CRLF, without the blank line."""
    end = len(message)
    for sep in (b"\r\n\r\n", b"\n\n"):
        found = message.find(sep)
        if found >= 0:
            end = min(end, found)
    block = message[:end]
    lines = block.replace(b"\r\n", b"\n").split(b"\n")
    return b"".join(line.rstrip(b"\r") + b"\r\n" for line in lines if line)


def header_value(message: bytes, name: str) -> str:
    """The first value of header ``name`` in ``message`` (unfolded), or ``""``."""
    wanted = name.lower().encode("ascii") + b":"
    lines = original_headers(message).split(b"\r\n")
    for i, line in enumerate(lines):
        if line.lower().startswith(wanted):
            value = line[len(wanted) :]
            for cont in lines[i + 1 :]:
                if cont[:1] not in (b" ", b"\t"):
                    break
                value += b" " + cont.strip()
            return _one_line(value.decode("utf-8", errors="replace"))
    return ""


def build_dsn(
    *,
    original: bytes,
    sender: str,
    recipients: Sequence[FailedRecipient],
    reporting_mta: str,
    arrived_at: datetime,
    now: datetime,
    message_id: str,
) -> bytes:
    """A complete ``multipart/report; report-type=delivery-status`` message for ``sender``.

    ``message_id`` is the new message's Message-ID without angle brackets
    (the caller makes it unique; the core draws no random numbers).
    """
    if not recipients:
        raise ValueError("a DSN needs at least one recipient")
    headers = original_headers(original)
    utf8 = (
        not sender.isascii()
        or not headers.isascii()
        or any(not r.address.isascii() for r in recipients)
    )
    boundary = "=_dsn_" + hashlib.sha256(message_id.encode("utf-8")).hexdigest()[:24]
    addr_type = "utf-8" if utf8 else "rfc822"
    status_type = "message/global-delivery-status" if utf8 else "message/delivery-status"
    headers_type = "message/global-headers" if utf8 else "text/rfc822-headers"

    listing = "\r\n".join(
        f"<{r.address}>: {_one_line(r.diagnostic) or r.status}" for r in recipients
    )
    human = (
        f"This is the mail system at host {reporting_mta}.\r\n\r\n"
        "Your message could not be delivered to one or more recipients.\r\n"
        "The delivery status report below says why.\r\n\r\n"
        f"{listing}\r\n"
    )
    per_message = (
        f"Reporting-MTA: dns; {reporting_mta}\r\nArrival-Date: {format_datetime(arrived_at)}\r\n"
    )
    blocks = []
    for r in recipients:
        block = (
            f"Final-Recipient: {addr_type}; {r.address}\r\n"
            f"Action: {r.action}\r\n"
            f"Status: {r.status}\r\n"
        )
        if r.remote_mta:
            block += f"Remote-MTA: dns; {_one_line(r.remote_mta)}\r\n"
        if r.diagnostic:
            block += f"Diagnostic-Code: smtp; {_one_line(r.diagnostic)}\r\n"
        if r.last_attempt is not None:
            block += f"Last-Attempt-Date: {format_datetime(r.last_attempt)}\r\n"
        blocks.append(block)
    status_body = per_message + "\r\n" + "\r\n".join(blocks)

    head = (
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n"
        f"To: <{sender}>\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {format_datetime(now)}\r\n"
        f"Message-ID: <{message_id}>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        f'\tboundary="{boundary}"\r\n'
        "\r\n"
        "This is a MIME-encapsulated message.\r\n\r\n"
    )
    parts = [
        head.encode("utf-8"),
        f"--{boundary}\r\nContent-Description: Notification\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{human}\r\n".encode(),
        f"--{boundary}\r\nContent-Description: Delivery report\r\n"
        f"Content-Type: {status_type}\r\n\r\n{status_body}\r\n".encode(),
        f"--{boundary}\r\nContent-Description: Undelivered Message Headers\r\n"
        f"Content-Type: {headers_type}\r\n\r\n".encode(),
        headers,
        f"\r\n--{boundary}--\r\n".encode("ascii"),
    ]
    return b"".join(parts)
