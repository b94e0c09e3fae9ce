"""Sending limits per envelope sender: recipients per hour and per day.

A sender far over its usual volume is what a compromised account looks like
(EOP routes such mail to the high-risk pool and alerts). The service keeps
one :class:`RecipientWindow`; time is always passed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SendingLimits:
    """``None`` switches a limit off."""

    recipients_per_hour: int | None = 1000
    recipients_per_day: int | None = 10000


@dataclass(frozen=True, slots=True)
class LimitStatus:
    over: bool
    last_hour: int
    last_day: int
    detail: str = ""


def check_limits(last_hour: int, last_day: int, limits: SendingLimits) -> LimitStatus:
    """Over when a count (including the message being routed) exceeds its limit."""
    problems = []
    if limits.recipients_per_hour is not None and last_hour > limits.recipients_per_hour:
        problems.append(f"{last_hour} recipients in the last hour > {limits.recipients_per_hour}")
    if limits.recipients_per_day is not None and last_day > limits.recipients_per_day:
        problems.append(f"{last_day} recipients in the last day > {limits.recipients_per_day}")
    return LimitStatus(bool(problems), last_hour, last_day, "; ".join(problems))


def sender_key(mail_from: str) -> str:
    """Senders are counted case-insensitively by address."""
    return mail_from.strip().lower()


class RecipientWindow:
    """Recipients per sender over sliding windows of one hour and one day (in memory).

    Entries older than a day are dropped as the sender sends again and by
    :meth:`prune`, so memory stays bounded by one day's traffic.
    """

    def __init__(self) -> None:
        self._events: dict[str, deque[tuple[datetime, int]]] = {}

    def record(self, mail_from: str, recipients: int, at: datetime) -> None:
        if not mail_from or recipients <= 0:
            return  # the null sender has no account to limit
        events = self._events.setdefault(sender_key(mail_from), deque())
        events.append((at, recipients))
        self._expire(events, at)

    def counts(self, mail_from: str, now: datetime) -> tuple[int, int]:
        """(recipients in the hour before ``now``, in the day before ``now``)."""
        events = self._events.get(sender_key(mail_from))
        if not events:
            return 0, 0
        hour = sum(n for at, n in events if now - HOUR < at <= now)
        day = sum(n for at, n in events if now - DAY < at <= now)
        return hour, day

    def prune(self, now: datetime) -> None:
        for key in list(self._events):
            events = self._events[key]
            self._expire(events, now)
            if not events:
                del self._events[key]

    @staticmethod
    def _expire(events: deque[tuple[datetime, int]], now: datetime) -> None:
        while events and events[0][0] <= now - DAY:
            events.popleft()
