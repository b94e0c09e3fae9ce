"""Sending limits per envelope sender: recipients per hour and per day.

A sender far over its usual volume is what a compromised account looks like
(EOP routes such mail to the high-risk pool and alerts). The service keeps
one :class:`RecipientWindow`; time is always passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from hrmonitor.core.alert import Alert, AlertKind, alert_key
from hrmonitor.core.model import Severity

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
    """Senders are counted case-insensitively by address, with or without <brackets>;
    "" for the null sender."""
    return mail_from.strip().strip("<>").strip().lower()


class RecipientWindow:
    """Recipients per sender over sliding windows of one hour and one day (in memory).

    Counts are kept in one-minute buckets per sender with a running day total,
    so a check costs at most 60 additions however much the sender sent (a busy
    sender's messages must not each sum a day of history: that made acceptance
    quadratic). The windows are therefore exact to the minute. Buckets older
    than a day are dropped as the sender sends again and by :meth:`prune`, so
    memory stays bounded by 1,440 buckets per active sender.
    """

    def __init__(self) -> None:
        self._senders: dict[str, _Buckets] = {}

    def record(self, mail_from: str, recipients: int, at: datetime) -> None:
        key = sender_key(mail_from)
        if not key or recipients <= 0:
            return  # the null sender has no account to limit
        buckets = self._senders.setdefault(key, _Buckets())
        buckets.add(_minute(at), recipients)
        buckets.expire(at)

    def counts(self, mail_from: str, now: datetime) -> tuple[int, int]:
        """(recipients in the hour before ``now``, in the day before ``now``)."""
        buckets = self._senders.get(sender_key(mail_from))
        if buckets is None:
            return 0, 0
        buckets.expire(now)
        return buckets.total_since(now - HOUR, now), buckets.total_since(now - DAY, now)

    def prune(self, now: datetime) -> None:
        for key in list(self._senders):
            buckets = self._senders[key]
            buckets.expire(now)
            if not buckets.minutes:
                del self._senders[key]

    def minute_total(self, mail_from: str, minute: datetime) -> int:
        """Recipients counted for the sender in ``minute``'s minute (0 if none or expired)."""
        buckets = self._senders.get(sender_key(mail_from))
        if buckets is None:
            return 0
        start = _minute(minute)
        for bucket in reversed(buckets.minutes):  # the newest minutes are the ones asked for
            if bucket.start == start:
                return bucket.recipients
            if bucket.start < start:
                break
        return 0


class PeerCounts:
    """What the other nodes of a cluster counted per sender, as they last published it.

    Each node publishes its own total per (sender, minute); a total only grows, so
    a value is taken when it is higher than the one already known, and only the
    difference is added. Reading the same publication twice changes nothing.
    """

    def __init__(self) -> None:
        self._window = RecipientWindow()
        self._known: dict[tuple[str, str, datetime], int] = {}

    def merge(self, node: str, mail_from: str, minute: datetime, recipients: int) -> None:
        key = (node, sender_key(mail_from), _minute(minute))
        known = self._known.get(key, 0)
        if recipients > known:
            self._known[key] = recipients
            self._window.record(mail_from, recipients - known, key[2])

    def counts(self, mail_from: str, now: datetime) -> tuple[int, int]:
        return self._window.counts(mail_from, now)

    def prune(self, now: datetime) -> None:
        self._window.prune(now)
        oldest = _minute(now) - DAY
        self._known = {k: v for k, v in self._known.items() if k[2] > oldest}


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


@dataclass(slots=True)
class _Minute:
    start: datetime
    recipients: int


class _Buckets:
    """One sender's recipients per minute, oldest first, with their running total."""

    __slots__ = ("minutes", "total")

    def __init__(self) -> None:
        self.minutes: deque[_Minute] = deque()
        self.total = 0

    def add(self, minute: datetime, recipients: int) -> None:
        self.total += recipients
        if not self.minutes or self.minutes[-1].start < minute:
            self.minutes.append(_Minute(minute, recipients))
        elif self.minutes[-1].start == minute:
            self.minutes[-1].recipients += recipients
        else:  # an earlier minute (concurrent sessions, or history counted again at start)
            self._insert(minute, recipients)

    def _insert(self, minute: datetime, recipients: int) -> None:
        position = len(self.minutes)
        while position and self.minutes[position - 1].start > minute:
            position -= 1
        if position and self.minutes[position - 1].start == minute:
            self.minutes[position - 1].recipients += recipients
        else:
            self.minutes.insert(position, _Minute(minute, recipients))

    def expire(self, now: datetime) -> None:
        """Drop the minutes a day or more before ``now``'s minute."""
        while self.minutes and self.minutes[0].start <= _minute(now) - DAY:
            self.total -= self.minutes.popleft().recipients

    def total_since(self, start: datetime, now: datetime) -> int:
        """Recipients of the minutes after ``start``'s minute, up to ``now``'s minute."""
        first, last = _minute(start), _minute(now)
        newest = reversed(self.minutes)  # newest first: an hour is at most 60 steps
        if last - first >= DAY:  # everything not expired: the running total, less the future
            return self.total - sum(b.recipients for b in _while_after(newest, last))
        counted = 0
        for bucket in newest:
            if bucket.start <= first:
                break
            if bucket.start <= last:
                counted += bucket.recipients
        return counted


def _while_after(buckets: Iterator[_Minute], moment: datetime) -> Iterator[_Minute]:
    for bucket in buckets:
        if bucket.start <= moment:
            return
        yield bucket


class LimitAlerts:
    """The ``sending-limit`` alert, one per sender: raised when a decision carries it,
    resolved once the sender's counts are back under the limits.

    A routing rule says which decisions raise it (``alert = "sending-limit"`` on
    the shipped ``over-sending-limits`` rule); this keeps which senders have one
    open, so an over-limit sender raises it once, not once per message (the
    store's dedupe would hold the repeats back too, at a transaction each).
    """

    def __init__(self) -> None:
        self._open: dict[str, LimitStatus] = {}

    def decided(
        self, mail_from: str, limit: LimitStatus, kinds: Sequence[str], now: datetime
    ) -> Alert | None:
        """The alert a routed message raises or resolves, if any."""
        key = sender_key(mail_from)
        if not key:
            return None
        if AlertKind.SENDING_LIMIT in kinds and limit.over:
            if key in self._open:
                return None
            self._open[key] = limit
            return _limit_alert(key, limit, now, resolved=False)
        if not limit.over and key in self._open:
            del self._open[key]
            return _limit_alert(key, limit, now, resolved=True)
        return None

    def reopen(self, senders: Iterable[str]) -> None:
        """Senders whose alert a previous run left open (the store says so): they stay
        open here, so that :meth:`back_under` resolves them once their counts (restored
        from the queue) are under the limits, and a new over-limit message does not
        raise them again."""
        for key in senders:
            self._open.setdefault(key, LimitStatus(True, 0, 0, "open before a restart"))

    def back_under(
        self, window: RecipientWindow, limits: SendingLimits, now: datetime
    ) -> list[Alert]:
        """Resolutions for the senders whose counts fell under the limits by ``now``."""
        resolved = []
        for key in list(self._open):
            status = check_limits(*window.counts(key, now), limits)
            if not status.over:
                del self._open[key]
                resolved.append(_limit_alert(key, status, now, resolved=True))
        return resolved


def _limit_alert(sender: str, limit: LimitStatus, now: datetime, *, resolved: bool) -> Alert:
    kind = AlertKind.SENDING_LIMIT
    summary = (
        f"sender {sender} is back under its sending limits"
        if resolved
        else f"sender {sender} is over its sending limits ({limit.detail}): "
        "its mail goes to the high-risk pool"
    )
    return Alert(
        kind,
        Severity.HIGH,
        alert_key(kind, None, None, sender),
        summary,
        now,
        {"sender": sender, "last_hour": limit.last_hour, "last_day": limit.last_day},
        resolved=resolved,
    )
