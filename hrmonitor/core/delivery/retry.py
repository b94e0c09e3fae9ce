"""What a delivery attempt's outcome means for its recipient: delivered, retry when, or bounce.

The schedule is ``[delivery] retry`` (``["1m", "5m", "15m", "1h", "4h"]``),
its last step repeated; the queue lifetime is ``[delivery] max_queue_time``.
A retry that would fall after the end of the lifetime is not scheduled: the
recipient bounces with 4.4.7 when its lifetime is over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_SCHEDULE = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=4),
)


@dataclass(frozen=True, slots=True)
class Delivered:
    pass


@dataclass(frozen=True, slots=True)
class Retry:
    at: datetime


@dataclass(frozen=True, slots=True)
class Bounce:
    """A permanent failure: the recipient gets a DSN entry with this status."""

    status: str  # RFC 3463, e.g. "5.1.1"
    reason: str


Verdict = Delivered | Retry | Bounce


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    schedule: tuple[timedelta, ...] = DEFAULT_SCHEDULE
    max_queue_time: timedelta = timedelta(days=5)

    def __post_init__(self) -> None:
        if not self.schedule:
            raise ValueError("the retry schedule needs at least one step")
        if any(step <= timedelta(0) for step in self.schedule):
            raise ValueError("retry steps must be positive")

    @classmethod
    def of(cls, schedule: Sequence[timedelta], max_queue_time: timedelta) -> RetryPolicy:
        return cls(tuple(schedule), max_queue_time)

    def delay(self, failures: int) -> timedelta:
        """The wait after the ``failures``-th failed attempt (1-based); the last step repeats."""
        index = min(max(failures, 1), len(self.schedule)) - 1
        return self.schedule[index]

    def expired(self, arrived_at: datetime, now: datetime) -> bool:
        return now >= arrived_at + self.max_queue_time

    def after_failure(
        self, *, failures: int, arrived_at: datetime, now: datetime, reason: str
    ) -> Retry | Bounce:
        """A temporary failure (4xx, connection error, no eligible IP): retry, or expire."""
        if self.expired(arrived_at, now):
            return Bounce("4.4.7", f"queue lifetime exceeded; last error: {reason}")
        at = now + self.delay(failures)
        deadline = arrived_at + self.max_queue_time
        return Retry(min(at, deadline))


def reply_status(code: int, text: str) -> str:
    """The RFC 3463 status of a reply: its enhanced code if it has one, else its class's."""
    first = text.split(" ", 1)[0] if text else ""
    parts = first.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts) and first[0] in "245":
        return first
    return f"{code // 100}.0.0" if code // 100 in (2, 4, 5) else "4.0.0"


def judge_reply(
    policy: RetryPolicy, *, code: int, text: str, failures: int, arrived_at: datetime, now: datetime
) -> Verdict:
    """The verdict for one recipient after a remote reply ``code text``.

    ``failures`` counts this failure too (1 after the first failed attempt).
    """
    if 200 <= code < 300:
        return Delivered()
    if 500 <= code < 600:
        return Bounce(reply_status(code, text), f"{code} {text}".strip())
    return policy.after_failure(
        failures=failures, arrived_at=arrived_at, now=now, reason=f"{code} {text}".strip()
    )
