"""One recipient of a report: its action, RFC 3463 status, reason and hard/soft.

Shared by the DSN and the text-bounce readers in ``bounce``: the status comes
from the report's field, refined by codes in the diagnostic (or, for a text
bounce, the text around it); the reason from the status and the rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from hrmonitor.core.bounce.reason import (
    BouncePatterns,
    Reason,
    TextMatcher,
    find_reply_class,
    find_status,
    is_hard,
    reason_class,
    reason_for,
)

SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded"})


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    """One recipient a report speaks about (a success DSN's recipients have reason delivered)."""

    address: str
    action: str  # failed, delayed, delivered, relayed, expanded
    status: str  # RFC 3463 "5.1.1"; derived from the text where the report gives none
    remote_mta: str
    diagnostic: str
    reason: Reason
    hard: bool
    command: str = ""  # the SMTP command the failure answered (RCPT, DATA, ...), if told

    @property
    def reason_class(self) -> str:
        """The broad class of the reason: recipient, block, transient or none."""
        return reason_class(self.reason)

    @property
    def failed(self) -> bool:
        return self.action not in SUCCESS_ACTIONS


class MessageMatcher:
    """Pattern matching memoised for one message: its recipients often share a diagnostic,
    and a text bounce's recipients share their context."""

    __slots__ = ("_rules", "_seen")

    def __init__(self, rules: BouncePatterns) -> None:
        self._rules = rules
        self._seen: dict[str, frozenset[Reason]] = {}

    def command(self, text: str) -> str:
        return self._rules.command(text)

    def reasons(self, text: str) -> frozenset[Reason]:
        if text not in self._seen:
            self._seen[text] = self._rules.reasons(text)
        return self._seen[text]


def recipient(
    address: str,
    action: str,
    status_field: str,
    remote_mta: str,
    diagnostic: str,
    patterns: TextMatcher,
    context: str = "",
    context_reasons: frozenset[Reason] = frozenset(),
    command: str = "",
    diagnostic_type: str = "",
) -> FailedRecipient:
    """One recipient. ``context`` is the text around a non-standard bounce's recipient,
    consulted for a status code when the diagnostic has none; ``context_reasons`` is what
    the patterns found in it (matched once per message); ``command`` the SMTP command
    the failure answered and ``diagnostic_type`` the DSN's (``smtp``, ``x-unix``, ...)."""
    status = status_of(status_field, diagnostic, action)
    if status is None and context:
        status = status_of("", context, action)
    if status is None:
        status = {"delayed": "4", "delivered": "2", "relayed": "2", "expanded": "2"}.get(
            action, "5"
        ) + ".0.0"
    if not action:
        action = {"2": "delivered", "4": "delayed"}.get(status[:1], "failed")
    if not command and context:
        command = patterns.command(diagnostic) or patterns.command(context)
    facts = (context_reasons, action, command, diagnostic_type)
    reason = reason_for(status, diagnostic, patterns, *facts)
    if action in SUCCESS_ACTIONS:
        reason = Reason.DELIVERED
    elif reason is Reason.DELIVERED:  # a failure that carries a 2.x.x code: trust the action
        reason = reason_for("5.0.0", diagnostic, patterns, *facts)
    return FailedRecipient(
        address=address,
        action=action,
        status=status,
        remote_mta=remote_mta,
        diagnostic=diagnostic,
        reason=reason,
        hard=action == "failed" and is_hard(status, reason),
        command=command,
    )


def status_of(field: str, diagnostic: str, action: str) -> str | None:
    """The best RFC 3463 status: the field's, refined by the diagnostic's where it is generic.

    A failure's text is searched for failure codes only: a 2.x.x there is a
    transcript line or a version number, not the outcome. A bare SMTP reply
    code gives its class ("550" -> "5.0.0"). None: no code at all.
    """
    classes = "245" if action in SUCCESS_ACTIONS else "45"
    status = find_status(field)
    detailed = find_status(diagnostic, classes)
    if status is None or detailed is None:
        status = status or detailed
    else:
        status = _preferred(status, detailed, find_reply_class(diagnostic, classes) or "")
    if status is not None:
        return status
    klass = find_reply_class(diagnostic, classes)
    return None if klass is None else f"{klass}.0.0"


# Status fields that say less than the code in the diagnostic next to them.
_VAGUE_FIELDS = ("4.4.7", "4.7.0")
_VAGUE_DETAILS = (".5.1", ".5.2", ".5.4", ".5.5")


def _preferred(field: str, detailed: str, reply_class: str) -> str:
    """The Status field's code or the diagnostic's, whichever says more.

    Where they differ in class, the one matching the reply code's class; a
    generic field (x.0.0, x.y.0, 4.4.7 expired, 4.7.0, 5.3.x system, x.5.x
    protocol) yields to a specific diagnostic code; a 5.1.1 yields to any
    specific code but a generic or protocol one.
    """
    if field == detailed:
        return field
    if field[0] != detailed[0] and reply_class in (field[0], detailed[0]):
        return field if reply_class == field[0] else detailed
    detail_generic = ".0" in detailed
    if field.endswith(".0.0"):
        return field if detailed.endswith(".0.0") else detailed
    if ".0" in field and not detail_generic:
        return detailed
    if detailed.endswith(".0.0"):
        return field
    if field in _VAGUE_FIELDS or field.startswith("5.3.") or field[1:5] in _VAGUE_DETAILS:
        return detailed
    if field == "5.1.1":
        return field if detail_generic or detailed.startswith("5.5.") else detailed
    if field == "5.1.3" and detailed.startswith("5.7."):
        return detailed
    return field
