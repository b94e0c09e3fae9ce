"""Bounce classification: what kind of automatic message this is, and who failed why.

``classify_message`` takes the raw bytes of a message and returns a
``BounceReport``: the kind (RFC 3464 DSN, non-standard bounce, MDN, ARF
complaint, auto-reply, none), the recipients with action, status, diagnostic,
reason and hard/soft, and the identifiers the surge watcher matches against
its outbound log to spot backscatter.

Precedence, most specific first: a delivery-status part (DSN); a feedback
report (ARF); a disposition notification (MDN, except a Sieve reject which is
a bounce); mail-daemon bounce structure or text (which wins over
``Auto-Submitted``, since Postfix and Exim set it on their bounces); RFC 3834
auto-replies; none. Attached ``message/rfc822`` parts are never read, so a
forwarded bounce is not a bounce (their headers are read for the original
Message-ID only) -- except the one gateway re-wrap where a mail daemon sends a
message whose only report is a daemon's DSN attached whole.

Any byte sequence gives a report; the work is capped (MAX_BYTES, parts, depth,
text length, recipients).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from hrmonitor.core.bounce import text as bounce_text
from hrmonitor.core.bounce.command import failed_command, remote_mta
from hrmonitor.core.bounce.dsn import parse_delivery_status
from hrmonitor.core.bounce.mime import Part, parse_fields, parse_message
from hrmonitor.core.bounce.reason import (
    NO_PATTERNS,
    BouncePatterns,
    Reason,
    TextMatcher,
)
from hrmonitor.core.bounce.recipient import FailedRecipient, MessageMatcher, recipient

__all__ = ["BounceKind", "BounceReport", "FailedRecipient", "classify", "classify_message"]

# Bytes of a message looked at. A report's text and status parts come first; the
# original copy at the end is never descended into. The parse holds about twice
# this much (the latin-1 text and its LF-only form), so this also caps what
# classifying any message costs in memory: a constant, not a multiple of its size.
MAX_BYTES = 256 * 1024
MAX_CONTEXT = 2000  # characters of a text bounce consulted for a recipient's reason

_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_MDN_TYPES = ("message/disposition-notification", "message/global-disposition-notification")
_ORIGINAL_TYPES = (
    "message/rfc822",
    "message/global",
    "message/global-headers",
    "text/rfc822-headers",
)
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,250}>")
_QUOTED_MESSAGE_ID = re.compile(r"^[ \t>]*message-id:[ \t]*(<[^<>\s]{1,250}>)", re.I | re.M)
_PARCEL = re.compile(r"parcel|package|shipment|tracking (?:number|code)|courier|paket|colis")
_FORWARD_SUBJECT = re.compile(r"\s*(?:fwd?|fw|wg|tr|rv|enc|i)\s*:", re.IGNORECASE)
_AUTOREPLY_SUBJECT = re.compile(
    r"out of (?:the )?office|automatic reply|auto[- ]?reply|auto[- ]?response|autoresponder|"
    r"vacation|away from (?:the|my) office|abwesenheit|absence|r[ée]ponse automatique|"
    r"risposta automatica|respuesta autom[áa]tica|automatisch antwoord|自動応答|自动回复",
    re.IGNORECASE,
)


class BounceKind(StrEnum):
    DSN = "dsn"
    NONSTANDARD_BOUNCE = "nonstandard-bounce"
    MDN = "mdn"
    ARF = "arf"
    AUTOREPLY = "autoreply"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class BounceReport:
    kind: BounceKind
    recipients: tuple[FailedRecipient, ...] = ()
    message_id: str = ""  # of the report itself
    original_message_id: str = ""  # of the message that bounced, where the report shows it
    original_envelope_id: str = ""  # RFC 3461 ENVID echoed in the DSN
    reporting_mta: str = ""

    @property
    def failures(self) -> tuple[FailedRecipient, ...]:
        return tuple(recipient for recipient in self.recipients if recipient.failed)


def classify_message(raw: bytes, *, patterns: BouncePatterns | None = None) -> BounceReport:
    """Classify one message. Never raises: a daemon loop must survive any input.

    ``patterns`` are the diagnostic-text patterns (rules/bounce.toml); without
    them reasons come from status codes alone.
    """
    try:
        return classify(raw, patterns or NO_PATTERNS)
    except (RecursionError, MemoryError):  # pathological input; the parser itself raises nothing
        return BounceReport(kind=BounceKind.NONE)


def classify(raw: bytes, rules: BouncePatterns) -> BounceReport:
    """``classify_message`` without its last-resort guard (the fuzz tests call this)."""
    patterns = MessageMatcher(rules)
    root = parse_message(raw, max_bytes=MAX_BYTES)
    parts = root.walk()
    ids = _Ids(root.field("message-id") or "", tuple(parts))

    status_parts = [part for part in parts if part.content_type in _DSN_TYPES]
    if not status_parts and not root.parts:
        status_parts = _unwrapped_status_parts(root, _is_daemon(root))
    if not status_parts and _is_daemon(root) and bounce_text.BOUNCE_SUBJECT.search(_subject(root)):
        status_parts = _rewrapped_status_parts(parts)
    for part in status_parts:
        report = _from_delivery_status(part, root, ids, patterns)
        if report is not None:
            return report

    report_type = (root.param("report-type") or "").lower()
    if report_type == "feedback-report" or any(
        part.content_type == "message/feedback-report" for part in parts
    ):
        return ids.report(BounceKind.ARF)
    mdn = next((part for part in parts if part.content_type in _MDN_TYPES), None)
    if mdn is not None or report_type == "disposition-notification":
        return _from_mdn(root, mdn, ids, patterns)

    structure = bool(status_parts) or report_type == "delivery-status"
    report = _from_text(root, structure, ids, patterns)
    if report is not None:
        return report
    if _is_autoreply(root):
        return ids.report(BounceKind.AUTOREPLY)
    return ids.report(BounceKind.NONE)


@dataclass(frozen=True, slots=True)
class _Ids:
    """What a report says about identities; the original Message-ID is looked up only
    for reports that refer to an original message."""

    message_id: str
    parts: tuple[Part, ...]
    text: str = ""  # the readable text, where already decoded
    envelope_id: str = ""
    reporting_mta: str = ""

    def report(
        self, kind: BounceKind, recipients: tuple[FailedRecipient, ...] = ()
    ) -> BounceReport:
        refers = kind not in (BounceKind.NONE, BounceKind.AUTOREPLY)
        return BounceReport(
            kind=kind,
            recipients=recipients,
            message_id=_first_id(self.message_id),
            original_message_id=_original_message_id(self.parts, self.text) if refers else "",
            original_envelope_id=self.envelope_id,
            reporting_mta=self.reporting_mta,
        )


def _first_id(value: str) -> str:
    match = _MESSAGE_ID.search(value)
    return match.group(0) if match else value.strip()[:250]


def _original_message_id(parts: tuple[Part, ...], text: str) -> str:
    """The Message-ID of an attached original, else one quoted in the report's text."""
    for part in parts:
        if part.content_type in _ORIGINAL_TYPES:
            head = part.head()
            for name, value in parse_fields(head):
                if name == "message-id":
                    return _first_id(value)
    texts = [text] if text else [p.text() for p in parts if p.content_type == "text/plain"]
    for body in texts:
        match = _QUOTED_MESSAGE_ID.search(body)
        if match is not None:
            return match.group(1)
    return ""


def _original_recipients(
    parts: tuple[Part, ...], own: frozenset[str]
) -> tuple[bounce_text.TextFailure, ...]:
    """The one To: address of the attached original's headers, if it has exactly one.

    A message to several people says nothing about which of them failed; a
    mailing list's To: is the list, not the member (a known miss).
    """
    for part in parts:
        if part.content_type in _ORIGINAL_TYPES:
            head = part.head()
            found = [
                address
                for name, value in parse_fields(head)
                if name == "to"
                for address in bounce_text.addresses_in(value)
            ]
            if len(found) == 1 and found[0].lower() not in own:
                return (bounce_text.TextFailure(found[0], ""),)
            return ()
    return ()


def _returns_recipients_mail(root: Part, parts: tuple[Part, ...]) -> bool:
    """Whether the attached original was sent by this message's recipient: returned mail.

    A forwarded message carries someone else's mail, or goes to someone else.
    """
    recipients = {address.lower() for address in bounce_text.addresses_in(root.field("to") or "")}
    for part in parts:
        if part.content_type in _ORIGINAL_TYPES:
            head = part.head()
            senders = {
                address.lower()
                for name, value in parse_fields(head)
                if name in ("from", "return-path", "sender")
                for address in bounce_text.addresses_in(value)
            }
            return bool(recipients & senders)
    return False


def _subject(root: Part) -> str:
    return root.field("subject") or ""


def _is_daemon(root: Part) -> bool:
    sender = root.field("from") or ""
    return bool(bounce_text.DAEMON_SENDER.search(sender)) or "@" not in sender


_STATUS_HEADER = re.compile(
    r"^content-type:[ \t]*message/(?:global-)?delivery-status[^\n]{0,200}\n(?:[^\n]+\n){0,5}?\n",
    re.I | re.M,
)


_DSN_FIELDS = re.compile(r"^(?:reporting-mta|final-recipient):[ \t]*\S", re.I | re.M)


def _unwrapped_status_parts(root: Part, daemon: bool) -> list[Part]:
    """A delivery-status part inside a body that lost its MIME structure: a gateway
    dropped the top-level Content-Type (read from the part's own header to the next
    delimiter), or a mail daemon wrote a multipart/report without delimiters (read
    from the DSN fields on)."""
    stop = min(root.end, root.start + MAX_BYTES)
    match = _STATUS_HEADER.search(root.source, root.start, stop)
    start = match.end() if match is not None else -1
    if start < 0 and daemon:
        fields = _DSN_FIELDS.search(root.source, root.start, stop)
        start = fields.start() if fields is not None else -1
    if start < 0:
        return []
    end = root.source.find("\n--", start, root.end)
    end = root.end if end < 0 else end
    return [Part((), "message/delivery-status", (), root.source, start, end)]


def _rewrapped_status_parts(parts: list[Part]) -> list[Part]:
    """Delivery-status parts of a daemon's DSN attached whole by a gateway (one level only)."""
    found: list[Part] = []
    for part in parts:
        if part.content_type == "message/rfc822":
            inner = part.inner()
            if _is_daemon(inner):
                found.extend(p for p in inner.walk() if p.content_type in _DSN_TYPES)
    return found


def _from_delivery_status(
    part: Part, root: Part, ids: _Ids, patterns: TextMatcher
) -> BounceReport | None:
    status = parse_delivery_status(part.text())
    if not status.recipients:
        return None
    text = bounce_text.failure_region(bounce_text.readable_text(root))
    single = len(status.recipients) == 1
    recipients = tuple(
        recipient(
            block.address,
            block.action,
            block.status,
            block.remote_mta
            or remote_mta(block.diagnostic)
            or _told(text, block.address, remote_mta, single),
            block.diagnostic or _about(text, block.address),
            patterns,
            command=failed_command(block.diagnostic)
            or _told(text, block.address, failed_command, single),
            diagnostic_type=block.diagnostic_type,
        )
        for block in status.recipients
    )  # fmt: skip
    ids = replace(ids, envelope_id=status.envelope_id, reporting_mta=status.reporting_mta)
    return ids.report(BounceKind.DSN, recipients)


def _about(text: str, address: str) -> str:
    """The report's human-readable words about ``address`` (a DSN without a Diagnostic-Code):
    the rest of the line naming it and the lines that continue it."""
    at = text.lower().find(address.lower()) if address else -1
    if at < 0:
        return ""
    lines = text[at + len(address) : at + len(address) + MAX_CONTEXT].split("\n")
    kept = [lines[0]]
    for line in lines[1:]:
        if not line[:1].isspace() or not line.strip():
            break
        kept.append(line)
    return " ".join(piece.strip(" :>)") for piece in kept).strip()[:600]


def _told(text: str, address: str, read: Callable[[str], str], single: bool) -> str:
    """What ``read`` finds in the report's text about ``address``: the lines from where
    the address is named; the whole text when the report has one recipient."""
    at = text.lower().find(address.lower()) if address else -1
    if at >= 0:
        found = read(text[at : at + MAX_CONTEXT])
        if found or not single:
            return found
    return read(text[:MAX_CONTEXT]) if single else ""


def _from_mdn(root: Part, mdn: Part | None, ids: _Ids, patterns: TextMatcher) -> BounceReport:
    fields = dict(reversed(parse_fields(mdn.text()))) if mdn is not None else {}
    disposition = fields.get("disposition", "").lower().replace(" ", "")
    if not ("automatic-action" in disposition and "deleted" in disposition.split(";")[-1]):
        return ids.report(BounceKind.MDN)
    # A Sieve reject (RFC 5429): the recipient's filter refused the message.
    address = fields.get("final-recipient", "").partition(";")[2].strip().strip("<>")
    if not address:
        return ids.report(BounceKind.NONSTANDARD_BOUNCE)
    text = bounce_text.readable_text(root)[:600].strip()
    rejected = recipient(address, "failed", "", "", text, patterns)
    if rejected.reason in (Reason.UNDEFINED, Reason.ONHOLD):  # no other cause named
        rejected = replace(rejected, reason=Reason.FILTERED)
    return ids.report(BounceKind.NONSTANDARD_BOUNCE, (rejected,))


def _from_text(
    root: Part, report_structure: bool, ids: _Ids, patterns: TextMatcher
) -> BounceReport | None:
    """A bounce read from its text, or None if the message does not look like one.

    Mail-daemon evidence (X-Failed-Recipients, qmail's text, a delivery-status
    report, a daemon sender with bounce wording, MTA-only phrases) is strong;
    a bounce subject with bounce wording is weak evidence, taken only from
    messages that are not replies, forwards or auto-replies.
    """
    failed_header = root.field("x-failed-recipients")
    subject = _subject(root)
    text = bounce_text.readable_text(root)
    region = bounce_text.failure_region(text)
    lowered = region.lower()
    subject_says = bounce_text.BOUNCE_SUBJECT.search(subject) is not None
    daemon = _is_daemon(root)
    if not (failed_header or report_structure or (daemon and subject_says)):
        text_says = bounce_text.FAILURE_TEXT.search(lowered) is not None
        strong = bool(
            bounce_text.QMAIL.search(lowered)
            or (daemon and text_says)
            or ((daemon or subject_says or text_says) and bounce_text.STRONG_TEXT.search(lowered))
            or (
                text_says
                and _returns_recipients_mail(root, ids.parts)
                and not _is_autoreply(root)  # some auto-responders attach the original too
            )
        )
        weak = (
            subject_says
            and text_says
            and root.field("in-reply-to") is None
            and root.field("list-unsubscribe") is None  # newsletters, not mail daemons
            and not _FORWARD_SUBJECT.match(subject)
            and not _PARCEL.search(lowered)  # "your parcel could not be delivered"
            and not _is_autoreply(root)
        )
        if not (strong or weak):
            return None
    delayed = bool(
        bounce_text.DELAY_TEXT.search(lowered, 0, MAX_CONTEXT * 2)
        or bounce_text.DELAY_TEXT.search(subject.lower())
    )
    default_action = "delayed" if delayed else "failed"
    own = bounce_text.own_addresses(root)
    domain = bounce_text.reporting_domain(root.field("from") or "")
    failures = bounce_text.failed_addresses(region, own, domain)
    if not failures and not failed_header:  # a role account can bounce too
        failures = bounce_text.failed_addresses(region, own, domain, roles=True)
    if not failures and not failed_header:
        # Last resorts for a bounce that names no one in its text: the subject
        # ("Delivery failure to x@..."), then the bounced message's own To:.
        failures = bounce_text.failed_addresses(subject, own, "") or _original_recipients(
            ids.parts, own
        )
    if failed_header:
        listed = [address.strip(" <>") for address in failed_header.split(",")]
        named = {failure.address.lower(): failure for failure in failures}
        failures = tuple(
            named.get(address.lower(), bounce_text.TextFailure(address, ""))
            for address in listed
            if "@" in address
        )
    context = region[:MAX_CONTEXT]
    # The context is matched once per message, and only if some diagnostic needs it.
    needs_context = any(not patterns.reasons(failure.diagnostic) for failure in failures)
    context_reasons = patterns.reasons(context) if needs_context else frozenset()
    context_command = failed_command(context)
    context_mta = remote_mta(context)
    recipients = tuple(
        recipient(
            failure.address,
            default_action,
            "",
            remote_mta(failure.diagnostic) or context_mta,
            failure.diagnostic,
            patterns,
            context,
            context_reasons,
            command=failed_command(failure.diagnostic) or context_command,
        )
        for failure in failures
    )
    kind = BounceKind.DSN if report_structure else BounceKind.NONSTANDARD_BOUNCE
    return replace(ids, text=text).report(kind, recipients)


def _is_autoreply(root: Part) -> bool:
    submitted = (root.field("auto-submitted") or "").lower()
    precedence = (root.field("precedence") or "").lower()
    return (
        submitted.startswith("auto-replied")
        or root.field("x-autoreply") is not None
        or root.field("x-autorespond") is not None
        or "auto_reply" in precedence
        or bool(_AUTOREPLY_SUBJECT.search(_subject(root)))
    )
