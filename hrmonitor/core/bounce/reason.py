"""The bounce reason taxonomy and the rules that pick a reason for one failed recipient.

Reason names and their definitions are Sisimai's (rules/bounce.toml documents
each). The status table is fixed by the RFCs (3463, 5248, 7372, 7505) as
Sisimai reads them; the text patterns are data (rules/bounce.toml). Between
them sit the rules of phase and context: "user unknown" is ``userunknown``
with a 5.1.x code or in reply to RCPT TO, but ``filtered`` after DATA or where
the bounce does not say (a content filter's answer); a refused envelope
sender is ``rejected``; ``onhold`` and ``undefined`` only when nothing better
is known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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

# RFC 3463/5248/7372/7505 status codes -> the reason each names by itself, as
# Sisimai reads them (its smtp/status table). x.0.0 and the codes missing here
# name nothing: the text decides. A few transient codes read differently from
# their permanent twins (a 4.1.1 is a user unknown tried again, 4.2.1 "mailbox
# disabled" a temporary block, 4.7.1 "delivery not authorized" a block, 4.4.5
# congestion a full system).
STATUS_REASONS: dict[str, Reason] = {
    "4.1.1": Reason.USERUNKNOWN, "4.1.6": Reason.HASMOVED, "4.1.7": Reason.REJECTED,
    "4.1.8": Reason.REJECTED, "4.1.9": Reason.SYSTEMERROR, "4.2.1": Reason.BLOCKED,
    "4.2.2": Reason.MAILBOXFULL,
    "4.2.3": Reason.EMAILTOOLARGE, "4.2.4": Reason.FILTERED, "4.3.1": Reason.SYSTEMFULL,
    "4.3.2": Reason.NOTACCEPT, "4.3.3": Reason.SYSTEMERROR, "4.3.5": Reason.SYSTEMERROR,
    "4.4.1": Reason.EXPIRED, "4.4.2": Reason.NETWORKERROR, "4.4.3": Reason.SYSTEMERROR,
    "4.4.4": Reason.NETWORKERROR, "4.4.5": Reason.SYSTEMFULL, "4.4.6": Reason.NETWORKERROR,
    "4.4.7": Reason.EXPIRED, "4.4.8": Reason.NETWORKERROR, "4.5.3": Reason.SYSTEMERROR,
    "4.5.5": Reason.SYSTEMERROR, "4.6.0": Reason.CONTENTERROR, "4.6.2": Reason.CONTENTERROR,
    "4.6.5": Reason.CONTENTERROR, "4.7.1": Reason.BLOCKED, "4.7.2": Reason.BLOCKED,
    "4.7.5": Reason.SECURITYERROR, "4.7.6": Reason.SECURITYERROR, "4.7.7": Reason.SECURITYERROR,
    "4.7.12": Reason.SECURITYERROR, "4.7.15": Reason.SECURITYERROR,
    "4.7.16": Reason.EMAILTOOLARGE, "4.7.24": Reason.AUTHFAILURE, "4.7.25": Reason.REQUIREPTR,
    "4.7.26": Reason.AUTHFAILURE,
    "5.1.0": Reason.USERUNKNOWN, "5.1.1": Reason.USERUNKNOWN, "5.1.2": Reason.HOSTUNKNOWN,
    "5.1.3": Reason.USERUNKNOWN, "5.1.4": Reason.FILTERED, "5.1.6": Reason.HASMOVED,
    "5.1.7": Reason.REJECTED, "5.1.8": Reason.REJECTED, "5.1.9": Reason.SYSTEMERROR,
    "5.1.10": Reason.NOTACCEPT, "5.2.0": Reason.FILTERED, "5.2.1": Reason.FILTERED,
    "5.2.2": Reason.MAILBOXFULL, "5.2.3": Reason.EMAILTOOLARGE, "5.2.4": Reason.FILTERED,
    "5.3.0": Reason.SYSTEMERROR, "5.3.1": Reason.SYSTEMFULL, "5.3.2": Reason.NOTACCEPT,
    "5.3.3": Reason.SYSTEMERROR, "5.3.4": Reason.EMAILTOOLARGE, "5.3.5": Reason.SYSTEMERROR,
    "5.4.0": Reason.NETWORKERROR, "5.4.3": Reason.SYSTEMERROR, "5.4.4": Reason.HOSTUNKNOWN,
    "5.5.2": Reason.SYNTAXERROR, "5.5.3": Reason.RATELIMITED, "5.5.4": Reason.SYSTEMERROR,
    "5.5.5": Reason.SYSTEMERROR, "5.5.6": Reason.SYNTAXERROR, "5.6.0": Reason.CONTENTERROR,
    "5.6.1": Reason.CONTENTERROR, "5.6.2": Reason.CONTENTERROR, "5.6.3": Reason.CONTENTERROR,
    "5.6.5": Reason.CONTENTERROR, "5.6.6": Reason.CONTENTERROR, "5.6.7": Reason.CONTENTERROR,
    "5.6.8": Reason.CONTENTERROR, "5.6.9": Reason.CONTENTERROR,
    **{f"5.7.{n}": Reason.SECURITYERROR for n in (*range(12), 14, 15, 19)},
    "5.7.13": Reason.SUSPEND, "5.7.16": Reason.EMAILTOOLARGE, "5.7.17": Reason.HASMOVED,
    "5.7.18": Reason.HASMOVED, "5.7.20": Reason.AUTHFAILURE, "5.7.21": Reason.AUTHFAILURE,
    "5.7.22": Reason.AUTHFAILURE, "5.7.23": Reason.AUTHFAILURE, "5.7.24": Reason.AUTHFAILURE,
    "5.7.25": Reason.REQUIREPTR, "5.7.26": Reason.AUTHFAILURE, "5.7.27": Reason.NOTACCEPT,
    "5.7.28": Reason.SPAMDETECTED, "5.7.29": Reason.AUTHFAILURE, "5.7.30": Reason.FAILEDSTARTTLS,
}  # fmt: skip

# The rules of phase and context (Sisimai's reason/find.go order). First, with an
# SMTP diagnostic, each of these is probed in turn against the status, the text
# and the SMTP command; the first that holds is the reason.
PROBE_ORDER = (
    Reason.MAILBOXFULL, Reason.EMAILTOOLARGE, Reason.SUSPEND, Reason.HASMOVED,
    Reason.NORELAYING, Reason.AUTHFAILURE, Reason.USERUNKNOWN, Reason.FILTERED,
    Reason.REQUIREPTR, Reason.NOTCOMPLIANTRFC, Reason.BADREPUTATION, Reason.CONTENTERROR,
    Reason.REJECTED, Reason.NOTACCEPT, Reason.HOSTUNKNOWN, Reason.SPAMDETECTED, Reason.RATELIMITED,
    Reason.BLOCKED,
)  # fmt: skip
# Then, when the status names nothing or only a vague reason, the text alone (a
# bounce that says it gave up is expired, whatever the network did before).
TEXT_ORDER = (
    Reason.MAILBOXFULL, Reason.AUTHFAILURE, Reason.BADREPUTATION, Reason.RATELIMITED,
    Reason.SPAMDETECTED, Reason.VIRUSDETECTED, Reason.POLICYVIOLATION, Reason.NORELAYING,
    Reason.SYSTEMERROR, Reason.EXPIRED, Reason.NETWORKERROR, Reason.SUSPEND,
    Reason.CONTENTERROR, Reason.SYSTEMFULL, Reason.NOTACCEPT, Reason.FAILEDSTARTTLS,
    Reason.SECURITYERROR, Reason.SUPPRESSED, Reason.MAILERERROR,
)  # fmt: skip
# Reasons with patterns but in neither order: the last resort before onhold.
_REST = (Reason.SYNTAXERROR, Reason.VACATION, Reason.ONHOLD)
# Reasons a status names that are worth a second look at the text.
VAGUE = frozenset(
    {
        Reason.UNDEFINED, Reason.ONHOLD, Reason.SYSTEMERROR, Reason.SECURITYERROR,
        Reason.EXPIRED, Reason.NETWORKERROR, Reason.HOSTUNKNOWN, Reason.USERUNKNOWN,
    }
)  # fmt: skip
# SMTP commands sent before DATA: a refusal there cannot be about the content.
BEFORE_DATA = frozenset({"CONN", "EHLO", "HELO", "MAIL", "RCPT"})
# With a 5.1.1, text naming one of these says the mailbox exists and something else refused.
NOT_THE_ADDRESS = frozenset(
    {
        Reason.NORELAYING, Reason.BLOCKED, Reason.MAILBOXFULL, Reason.HASMOVED,
        Reason.REJECTED, Reason.NOTACCEPT,
    }
)  # fmt: skip
_STATUS = re.compile(r"(?<![\d.])([245])\.([0-7])\.(\d{1,3})(?![\d.]*\d)")
_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")
# The reply code and status repeated on each line of a multi-line reply ("550-5.7.1 ...").
_CONTINUATION = re.compile(r"(?<=\S)\s+[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}\s+")
_REPLY = re.compile(r"(?<![\d.\-])([245])([0-5])(\d)(?![\d.])")


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Lower-case phrases and regular expressions: a text matches if any one is in it.

    A rule file's plain phrases (most of them) are looked for with ``in``, the
    rest with their own compiled expression each: no regex is compiled for a
    phrase, which is most of a short run's start-up, and an expression with a
    literal start is found by the engine's prefix scan, faster than one
    alternation of them all. Whether a text matches is what one alternation
    of every entry would say.
    """

    phrases: tuple[str, ...] = ()
    regexes: tuple[re.Pattern[str], ...] = ()

    def search(self, text: str) -> bool:
        for phrase in self.phrases:
            if phrase in text:
                return True
        for regex in self.regexes:  # noqa: SIM110 (no generator per call: a hot path)
            if regex.search(text) is not None:
                return True
        return False


@dataclass(frozen=True, slots=True)
class BouncePattern:
    reason: Reason
    match: AnyOf
    exclude: AnyOf | None = None  # text that rules this reason out


GRAM = 3  # characters of an entry's start that the index files it under
INDEXED_TEXT = 4096  # longer texts are matched entry by entry: same answers, less memory
_NOT_PLAIN = frozenset(".^$*+?{}[]\\|()")


def required_start(pattern: str) -> str:
    """Text that every match of the regular expression ``pattern`` starts with.

    Its leading plain characters, less one that a quantifier makes optional;
    "" when the expression has an alternative at its top level (outside every
    group and class), starts with anything but plain text, or is not read to
    its end (an unclosed class: no valid expression has one).
    """
    depth = 0
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "\\":
            position += 2
            continue
        if char == "[":  # a class: "]" right after "[" or "[^" is a member, "\\]" too
            position += 2 if pattern.startswith("[^", position) else 1
            if pattern.startswith("]", position):
                position += 1
            while position < len(pattern) and pattern[position] != "]":
                position += 2 if pattern[position] == "\\" else 1
            if position >= len(pattern):
                return ""
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return ""
        position += 1
    run = 0
    while run < len(pattern) and pattern[run] not in _NOT_PLAIN:
        run += 1
    if run < len(pattern) and pattern[run] in "?*+{":
        run -= 1
    return pattern[: max(run, 0)]


class _Index:
    """Every entry of numbered AnyOfs, filed under the first GRAM characters that any
    text it matches contains (a phrase's own start, a regex's required start).

    ``hits`` finds the AnyOfs that match a text by trying only the entries filed
    under the text's own GRAM-character pieces (and those too short to file):
    the answer of searching each AnyOf, for a fraction of the searches.
    """

    __slots__ = ("always", "by_gram")

    def __init__(self, sets: tuple[AnyOf | None, ...]) -> None:
        self.by_gram: dict[str, list[tuple[int, str | re.Pattern[str]]]] = {}
        self.always: list[tuple[int, str | re.Pattern[str]]] = []
        for number, any_of in enumerate(sets):
            if any_of is None:
                continue
            entries: list[tuple[str, str | re.Pattern[str]]] = [
                (phrase, phrase) for phrase in any_of.phrases
            ]
            entries += [(required_start(regex.pattern), regex) for regex in any_of.regexes]
            for start, entry in entries:
                if len(start) >= GRAM:
                    self.by_gram.setdefault(start[:GRAM], []).append((number, entry))
                else:
                    self.always.append((number, entry))

    def hits(self, text: str) -> set[int]:
        hit: set[int] = set()
        grams = {text[i : i + GRAM] for i in range(len(text) - GRAM + 1)}
        for gram in grams.intersection(self.by_gram):
            for number, entry in self.by_gram[gram]:
                if number not in hit and _found(entry, text):
                    hit.add(number)
        for number, entry in self.always:
            if number not in hit and _found(entry, text):
                hit.add(number)
        return hit


def _found(entry: str | re.Pattern[str], text: str) -> bool:
    if isinstance(entry, str):
        return entry in text
    return entry.search(text) is not None


@dataclass(frozen=True, slots=True)
class BouncePatterns:
    """Diagnostic-text patterns, one or more per reason (rules/bounce.toml).

    Patterns are written in lower case and matched against lower-cased text:
    case-insensitive matching in ``re`` is several times slower.
    """

    patterns: tuple[BouncePattern, ...]
    commands: tuple[tuple[str, AnyOf], ...] = ()  # phase evidence: (command, text)
    # pattern i's match is AnyOf 2i of the index, its exclude 2i + 1
    _index: _Index = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sets = tuple(any_of for p in self.patterns for any_of in (p.match, p.exclude))
        object.__setattr__(self, "_index", _Index(sets))

    def command(self, text: str) -> str:
        """The SMTP command a reply can only have answered ("RCPT", ...), or ""."""
        if not self.commands or not text:
            return ""
        text = text.lower()
        return next((name for name, replies in self.commands if replies.search(text)), "")

    def reasons(self, text: str) -> frozenset[Reason]:
        """Every reason whose patterns match ``text`` (and whose exclusions do not).

        The text is lower-cased and its e-mail addresses blanked first, so that
        ``quota@example.com`` or ``spam-reports@...`` name no cause.
        """
        if not self.patterns or not text:
            return frozenset()
        text = _prepared(text)
        if len(text) > INDEXED_TEXT:
            return self._searched(text)
        hit = self._index.hits(text)
        return frozenset(
            pattern.reason
            for number, pattern in enumerate(self.patterns)
            if 2 * number in hit and 2 * number + 1 not in hit
        )

    def searched(self, text: str) -> frozenset[Reason]:
        """``reasons`` without the index: each pattern searched in turn (the tests' reference)."""
        if not self.patterns or not text:
            return frozenset()
        return self._searched(_prepared(text))

    def _searched(self, text: str) -> frozenset[Reason]:
        return frozenset(
            pattern.reason
            for pattern in self.patterns
            if pattern.match.search(text)
            and (pattern.exclude is None or not pattern.exclude.search(text))
        )

    def match(self, text: str) -> Reason | None:
        """The reason the text alone names, by the fallback order; None if none."""
        return _first(self.reasons(text), (*PROBE_ORDER, *TEXT_ORDER, *_REST))


NO_PATTERNS = BouncePatterns(())


def _prepared(text: str) -> str:
    """Lower-cased, addresses blanked, a multi-line reply's repeated codes dropped."""
    text = text.lower()
    if "@" in text:  # (_ADDRESS_LIKE backtracks through every word of a text without one)
        text = _ADDRESS_LIKE.sub(" ", text)
    return _CONTINUATION.sub(" ", text)


class TextMatcher(Protocol):
    """Anything that names the reasons a text gives: BouncePatterns, or a memo over it."""

    def reasons(self, text: str) -> frozenset[Reason]: ...

    def command(self, text: str) -> str: ...


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


def status_reason(status: str) -> Reason | None:
    """The reason a status code names by itself (None for x.0.0 and the unnamed ones)."""
    if status.startswith("2."):
        return Reason.DELIVERED
    return STATUS_REASONS.get(status)


def reason_for(
    status: str,
    diagnostic: str,
    patterns: TextMatcher,
    context: frozenset[Reason] = frozenset(),
    action: str = "",
    command: str = "",
    diagnostic_type: str = "",
) -> Reason:
    """The reason for one failed recipient, by the rules of phase and context.

    ``status`` is its RFC 3463 code, ``diagnostic`` the remote reply or the text
    about it, ``context`` what the patterns found in the text around a
    non-standard bounce's recipient (used when the diagnostic itself names
    nothing), ``command`` the SMTP command the reply answered (``RCPT``,
    ``DATA``, ... or "" when the bounce does not say), ``diagnostic_type`` the
    DSN's type (``smtp``, ``x-unix``, ``x-postfix``, ...).
    """
    if status.startswith("2."):
        return Reason.DELIVERED
    command = command or patterns.command(diagnostic)
    named = status_reason(status)
    found = patterns.reasons(diagnostic) or context
    if diagnostic_type in ("", "smtp"):
        for reason in PROBE_ORDER:
            if _probe(reason, named, found, command, status):
                return reason
    if named is None or named in VAGUE or diagnostic_type not in ("", "smtp"):
        if command in ("CONN", "EHLO") and find_reply_class(diagnostic) is not None:
            return Reason.BLOCKED  # the server refused the client itself, before any envelope
        by_text = _first(found, TEXT_ORDER)
        if by_text is None and diagnostic_type not in ("", "smtp"):
            by_text = _first(found, PROBE_ORDER)  # no SMTP reply: what the text says
        if by_text is not None:
            return by_text
        if named is not None:
            return named
        if status[1:4] in (".6.", ".7."):  # x.6.x media, x.7.x security or policy
            return Reason.CONTENTERROR if status[2] == "6" else Reason.SECURITYERROR
        if diagnostic_type.startswith("x-unix"):
            return Reason.MAILERERROR
        if Reason.SYNTAXERROR in found or status[1:4] == ".5.":
            return Reason.SYNTAXERROR
        if action in ("delayed", "expired"):
            return Reason.EXPIRED
        if command in ("EHLO", "HELO"):
            return Reason.BLOCKED
        return _last_resort(found, diagnostic)
    return named


def _probe(
    reason: Reason, named: Reason | None, found: frozenset[Reason], command: str, status: str
) -> bool:
    """Whether ``reason`` holds, given the status's reason, the text's and the command."""
    if reason is Reason.USERUNKNOWN:
        if named is Reason.USERUNKNOWN:
            return not (found & NOT_THE_ADDRESS)
        # Without a 5.1.x, "user unknown" counts only in reply to RCPT TO.
        return command == "RCPT" and Reason.USERUNKNOWN in found
    if reason is Reason.FILTERED:
        if named is Reason.SUSPEND:
            return False
        if named is not Reason.FILTERED and command in BEFORE_DATA:
            return False
        # After DATA (or where the bounce does not say), "user unknown" is a filter's answer.
        return bool(found & {Reason.FILTERED, Reason.USERUNKNOWN})
    if reason is Reason.REJECTED:
        if named is Reason.REJECTED:
            return True
        if Reason.REJECTED not in found:
            return False
        if command == "MAIL":
            return True
        if command == "DATA":
            return named is not Reason.USERUNKNOWN
        return named in (None, Reason.ONHOLD, Reason.UNDEFINED) or named in (
            Reason.SECURITYERROR,
            Reason.SYSTEMERROR,
        )
    if reason is Reason.HOSTUNKNOWN:
        if command in ("EHLO", "MAIL"):  # the recipient's domain is judged at RCPT TO
            return False
        if named is Reason.HOSTUNKNOWN:
            return Reason.NETWORKERROR not in found
        return Reason.HOSTUNKNOWN in found
    if reason is Reason.SPAMDETECTED:
        if not status:
            return False
        if named is Reason.SPAMDETECTED:
            return True
        return command not in BEFORE_DATA and Reason.SPAMDETECTED in found
    return named is reason or reason in found


def _last_resort(found: frozenset[Reason], diagnostic: str) -> Reason:
    """Nothing better is known: what the text says of holds, else onhold or undefined."""
    rest = _first(found, _REST)
    if rest is not None:
        return rest
    return Reason.ONHOLD if diagnostic.strip() else Reason.UNDEFINED


def _first(found: frozenset[Reason], order: tuple[Reason, ...]) -> Reason | None:
    if not found:
        return None
    return next((reason for reason in order if reason in found), None)


# Broad classes: what the service needs to know of a failure (the surge watcher's
# causes, the reply feedback). block: the receiver refused this sender or this
# content on purpose; recipient: the address, mailbox or domain is the problem;
# transient: delivery machinery, timing, or nothing better known.
CLASSES: dict[str, frozenset[Reason]] = {
    "recipient": frozenset(
        {
            Reason.USERUNKNOWN, Reason.HOSTUNKNOWN, Reason.HASMOVED, Reason.NOTACCEPT,
            Reason.MAILBOXFULL, Reason.SUSPEND, Reason.SYSTEMFULL, Reason.EMAILTOOLARGE,
        }
    ),
    "block": frozenset(
        {
            Reason.BLOCKED, Reason.BADREPUTATION, Reason.REQUIREPTR, Reason.REJECTED,
            Reason.NORELAYING, Reason.AUTHFAILURE, Reason.SECURITYERROR, Reason.FAILEDSTARTTLS,
            Reason.SUPPRESSED, Reason.SPAMDETECTED, Reason.VIRUSDETECTED,
            Reason.POLICYVIOLATION, Reason.FILTERED, Reason.CONTENTERROR,
            Reason.NOTCOMPLIANTRFC,
        }
    ),
    "none": frozenset({Reason.DELIVERED, Reason.FEEDBACK, Reason.VACATION}),
}  # fmt: skip


def reason_class(reason: Reason) -> str:
    """recipient, block, transient or none."""
    return next((name for name, members in CLASSES.items() if reason in members), "transient")


def is_hard(status: str, reason: Reason) -> bool:
    """A hard bounce: a permanent status and a reason that says the address itself is bad."""
    return status.startswith("5") and reason in HARD_REASONS
