"""The bounce reason taxonomy: status code first, refined by diagnostic-text patterns.

Reason names follow Sisimai's 2025 taxonomy (docs/mail-facts.md). The status
table below is fixed by the RFCs (3463, 7372, 7505); the text patterns are data
(rules/bounce.toml), parsed here from plain dicts and validated with errors
that name the file and key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Reason(StrEnum):
    USERUNKNOWN = "userunknown"
    HOSTUNKNOWN = "hostunknown"
    HASMOVED = "hasmoved"
    NOTACCEPT = "notaccept"
    MAILBOXFULL = "mailboxfull"
    SUSPEND = "suspend"
    SYSTEMFULL = "systemfull"
    EMAILTOOLARGE = "emailtoolarge"
    BLOCKED = "blocked"
    BADREPUTATION = "badreputation"
    REQUIREPTR = "requireptr"
    REJECTED = "rejected"
    NORELAYING = "norelaying"
    AUTHFAILURE = "authfailure"
    SECURITYERROR = "securityerror"
    FAILEDSTARTTLS = "failedstarttls"
    SUPPRESSED = "suppressed"
    SPAMDETECTED = "spamdetected"
    VIRUSDETECTED = "virusdetected"
    POLICYVIOLATION = "policyviolation"
    FILTERED = "filtered"
    CONTENTERROR = "contenterror"
    NOTCOMPLIANTRFC = "notcompliantrfc"
    RATELIMITED = "ratelimited"
    EXPIRED = "expired"
    NETWORKERROR = "networkerror"
    SYSTEMERROR = "systemerror"
    MAILERERROR = "mailererror"
    SYNTAXERROR = "syntaxerror"
    ONHOLD = "onhold"
    UNDEFINED = "undefined"
    DELIVERED = "delivered"
    FEEDBACK = "feedback"
    VACATION = "vacation"


# Reasons that say the address itself is bad: with a permanent (5.x.x) status
# they are hard bounces; everything else is soft (Sisimai's and SES's reading).
HARD_REASONS = frozenset(
    {Reason.USERUNKNOWN, Reason.HOSTUNKNOWN, Reason.HASMOVED, Reason.NOTACCEPT}
)

# Status code (class stripped: "1.1" for x.1.1) -> reason. A "firm" code says
# what happened; a weak one (x.0.0, x.7.1, ...) is a default the text overrides.
_FIRM: dict[str, Reason] = {
    "1.1": Reason.USERUNKNOWN,
    "1.2": Reason.HOSTUNKNOWN,
    "1.3": Reason.USERUNKNOWN,
    "1.6": Reason.HASMOVED,
    "1.7": Reason.REJECTED,
    "1.8": Reason.REJECTED,
    "2.2": Reason.MAILBOXFULL,
    "2.3": Reason.EMAILTOOLARGE,
    "3.1": Reason.SYSTEMFULL,
    "3.4": Reason.EMAILTOOLARGE,
    "4.4": Reason.HOSTUNKNOWN,
    "4.7": Reason.EXPIRED,
    "5.3": Reason.RATELIMITED,
    "7.13": Reason.SUSPEND,
    "7.16": Reason.EMAILTOOLARGE,
    "7.17": Reason.HASMOVED,
    "7.18": Reason.HASMOVED,
    "7.20": Reason.AUTHFAILURE,
    "7.21": Reason.AUTHFAILURE,
    "7.22": Reason.AUTHFAILURE,
    "7.23": Reason.AUTHFAILURE,
    "7.24": Reason.AUTHFAILURE,
    "7.25": Reason.REQUIREPTR,
    "7.26": Reason.AUTHFAILURE,
    "7.27": Reason.NOTACCEPT,
    "7.28": Reason.SPAMDETECTED,
    "7.29": Reason.AUTHFAILURE,
    "7.30": Reason.FAILEDSTARTTLS,
}
_WEAK: dict[str, Reason] = {
    "1.0": Reason.USERUNKNOWN,
    "1.4": Reason.FILTERED,
    "1.9": Reason.SYSTEMERROR,
    "1.10": Reason.NOTACCEPT,  # RFC 7505 null MX; Exchange Online reuses it for unknown users
    "2.0": Reason.FILTERED,
    "2.1": Reason.SUSPEND,
    "2.4": Reason.FILTERED,
    "3.0": Reason.SYSTEMERROR,
    "3.2": Reason.NOTACCEPT,
    "3.3": Reason.SYSTEMERROR,
    "3.5": Reason.SYSTEMERROR,
    "4.0": Reason.NETWORKERROR,
    "4.1": Reason.NETWORKERROR,
    "4.2": Reason.NETWORKERROR,
    "4.3": Reason.NETWORKERROR,
    "4.5": Reason.SYSTEMFULL,
    "4.6": Reason.NETWORKERROR,
    "5.1": Reason.SYNTAXERROR,
    "5.2": Reason.SYNTAXERROR,
    "5.4": Reason.SYSTEMERROR,
    "5.5": Reason.SYSTEMERROR,
    "6.0": Reason.CONTENTERROR,
    "7.0": Reason.SECURITYERROR,
    "7.1": Reason.SECURITYERROR,
    "7.2": Reason.SECURITYERROR,
    "7.7": Reason.SECURITYERROR,
    "7.8": Reason.SECURITYERROR,
    "7.9": Reason.SECURITYERROR,
    "7.10": Reason.SECURITYERROR,
    "7.11": Reason.SECURITYERROR,
}
# Text that overrides a 5.1.1: the mailbox exists, something else refused.
_NOT_THE_ADDRESS = frozenset(
    {Reason.MAILBOXFULL, Reason.BLOCKED, Reason.HASMOVED, Reason.REJECTED, Reason.NOTACCEPT}
)
# Where a transient code means something else than its permanent twin (the
# practitioners' reading: 4.4.1 "no answer from host" ends as an expiry).
_CLASS_FIRM: dict[str, Reason] = {"4.4.1": Reason.EXPIRED, "4.4.4": Reason.NETWORKERROR}
_CLASS_WEAK: dict[str, Reason] = {"4.7.1": Reason.BLOCKED}
_STATUS = re.compile(r"(?<![\d.])([245])\.([0-7])\.(\d{1,3})(?![\d.]*\d)")
_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")
_REPLY = re.compile(r"(?<![\d.\-])([245])([0-5])(\d)(?![\d.])")


@dataclass(frozen=True, slots=True)
class BouncePattern:
    reason: Reason
    regex: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class BouncePatterns:
    """Diagnostic-text patterns, tried in order; the first match names the reason.

    Patterns are written in lower case and matched against lower-cased text:
    case-insensitive matching in ``re`` is several times slower.
    """

    patterns: tuple[BouncePattern, ...]

    def match(self, text: str) -> Reason | None:
        """The first pattern's reason that matches ``text``, or None.

        The text is lower-cased and its e-mail addresses blanked first, so that
        ``quota@example.com`` or ``spam-reports@...`` name no cause.
        """
        if not self.patterns:
            return None
        text = _ADDRESS_LIKE.sub(" ", text.lower())
        for pattern in self.patterns:
            if pattern.regex.search(text) is not None:
                return pattern.reason
        return None


NO_PATTERNS = BouncePatterns(())


class TextMatcher(Protocol):
    """Anything that names the reason a text gives: BouncePatterns, or a memo over it."""

    def match(self, text: str) -> Reason | None: ...


def find_status(text: str, classes: str = "245") -> str | None:
    """The first RFC 3463 enhanced status code in ``text`` ("5.1.1") of one of ``classes``."""
    for match in _STATUS.finditer(text):
        if match.group(1) in classes:
            return ".".join(match.groups())
    return None


def find_reply_class(text: str, classes: str = "245") -> str | None:
    """The class ("4" or "5") of the first SMTP reply code (421, 550, ...) in ``text``."""
    for match in _REPLY.finditer(text):
        if match.group(1) in classes:
            return match.group(1)
    return None


def reason_for(
    status: str,
    diagnostic: str,
    patterns: TextMatcher,
    context: Reason | None = None,
    action: str = "",
) -> Reason:
    """The reason for a failure with ``status`` ("5.1.1") and its diagnostic text.

    A firm status code wins (but a 5.1.1 yields to text naming a cause that is
    not the address: a full mailbox, a block, a move); otherwise a pattern
    matching the diagnostic, then ``context`` (what the patterns found in the
    text around a non-standard bounce's recipient, matched once per message);
    otherwise the weak default for the code. Nothing at all: ``expired`` for a
    delay, ``onhold`` when there was a diagnostic to read, else ``undefined``
    (the practitioners' fallbacks).
    """
    klass, _, detail = status.partition(".")
    if klass == "2":
        return Reason.DELIVERED
    firm = _CLASS_FIRM.get(status) or _FIRM.get(detail)
    if firm is not None and firm is not Reason.USERUNKNOWN:
        return firm
    by_text = (patterns.match(diagnostic) if diagnostic else None) or context
    if firm is not None:
        return by_text if by_text in _NOT_THE_ADDRESS else firm
    if by_text is not None:
        return by_text
    weak = _CLASS_WEAK.get(status) or _WEAK.get(detail)
    if weak is not None:
        return weak
    if action == "delayed":
        return Reason.EXPIRED
    return Reason.ONHOLD if diagnostic else Reason.UNDEFINED


def is_hard(status: str, reason: Reason) -> bool:
    """A hard bounce: a permanent status and a reason that says the address itself is bad."""
    return status.startswith("5") and reason in HARD_REASONS
