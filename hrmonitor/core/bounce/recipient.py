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

    @property
    def failed(self) -> bool:
        return self.action not in SUCCESS_ACTIONS


class MessageMatcher:
    """Pattern matching memoised for one message: its recipients often share a diagnostic,
    and a text bounce's recipients share their context."""

    __slots__ = ("_rules", "_seen")

    def __init__(self, rules: BouncePatterns) -> None:
        self._rules = rules
        self._seen: dict[str, Reason | None] = {}

    def match(self, text: str) -> Reason | None:
        if text not in self._seen:
            self._seen[text] = self._rules.match(text)
        return self._seen[text]


def recipient(
    address: str,
    action: str,
    status_field: str,
    remote_mta: str,
    diagnostic: str,
    patterns: TextMatcher,
    context: str = "",
    context_reason: Reason | None = None,
) -> FailedRecipient:
    """One recipient. ``context`` is the text around a non-standard bounce's recipient,
    consulted for a status code when the diagnostic has none; ``context_reason`` is what
    the patterns found in it (matched once per message)."""
    status = status_of(status_field, diagnostic, action)
    if status is None and context:
        status = status_of("", context, action)
    if status is None:
        status = {"delayed": "4", "delivered": "2", "relayed": "2", "expanded": "2"}.get(
            action, "5"
        ) + ".0.0"
    if not action:
        action = {"2": "delivered", "4": "delayed"}.get(status[:1], "failed")
    reason = reason_for(status, diagnostic, patterns, context_reason, action)
    if action in SUCCESS_ACTIONS:
        reason = Reason.DELIVERED
    elif reason is Reason.DELIVERED:  # a failure that carries a 2.x.x code: trust the action
        reason = reason_for("5.0.0", diagnostic, patterns, context_reason, action)
    return FailedRecipient(
        address=address,
        action=action,
        status=status,
        remote_mta=remote_mta,
        diagnostic=diagnostic,
        reason=reason,
        hard=action == "failed" and is_hard(status, reason),
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
    if status is None or (
        status.endswith(".0.0") and detailed is not None and detailed[0] == status[0]
    ):
        status = detailed or status
    if status is not None:
        return status
    klass = find_reply_class(diagnostic, classes)
    return None if klass is None else f"{klass}.0.0"
