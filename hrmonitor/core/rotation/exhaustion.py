"""``pool-exhausted`` with hysteresis: fire once when a pool cannot send, resolve once when it can.

Every rotation decision and every delivery attempt that finds no IP says
whether the pool can send (``eligibility``); the latch turns that stream into
at most one firing and one resolution per outage. It fires at the first
observation that the pool cannot send. It resolves only after the pool has
been able to send for ``settle`` without a break: a retry loop that finds an
IP, loses it again a moment later (a bind that fails again, a cap used up by
the held mail) and so on cannot flap the alert, and an operator reading
"resolved" can trust the pool stayed up for that long.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Change(StrEnum):
    FIRE = "fire"
    RESOLVE = "resolve"


@dataclass(frozen=True, slots=True)
class ExhaustionLatch:
    """One pool's alert state: firing or not, and since when it has been able to send."""

    firing: bool = False
    sendable_since: datetime | None = None

    def observe(
        self, sendable: bool, now: datetime, settle: timedelta
    ) -> tuple[ExhaustionLatch, Change | None]:
        """The latch after observing ``sendable`` at ``now``, and what to tell (or None)."""
        if not sendable:
            latch = ExhaustionLatch(firing=True)
            return latch, None if self.firing else Change.FIRE
        since = self.sendable_since if self.sendable_since is not None else now
        since = min(since, now)  # an observation from the past cannot shorten the run
        if self.firing and now - since >= settle:
            return ExhaustionLatch(firing=False, sendable_since=since), Change.RESOLVE
        return ExhaustionLatch(firing=self.firing, sendable_since=since), None
