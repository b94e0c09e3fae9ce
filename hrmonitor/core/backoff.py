"""Retrying a failing dependency: how long to wait, and which failures get a log line.

Every loop that retries something it depends on (the store, a resolver, an
alert channel) waits :meth:`Backoff.delay` after each failure in a row, and
asks a :class:`FailureLog` whether this failure is worth a line: the first of
an outage is (with its traceback), then one line per ``interval`` saying how
many failed since the last line, then one when it works again. A disk-full
store used to get a traceback per try, hundreds a second, onto the same disk.

Pure: the caller passes its monotonic clock reading and its random source.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "FailureLog"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: ``base`` doubled per failure in a row, up to ``cap``."""

    base: float = 0.1  # seconds after the first failure (before jitter)
    cap: float = 30.0

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (1 for the first).

        "Equal jitter": half the step is fixed, so a loop never spins, and half
        random, so loops that failed together (several nodes, several
        channels) do not retry in lockstep.
        """
        step = min(self.cap, self.base * 2.0 ** min(max(failures, 1) - 1, 64))
        return step / 2 + rng.uniform(0.0, step / 2)


class FailureLog:
    """Which failures of one retrying loop to log: the first, then one per ``interval``.

    :meth:`failed` returns ``None`` (stay quiet) or how many failures the
    line to log now stands for (1 for the first of an outage; the count since
    the last line afterwards). :meth:`recovered` returns how many failures
    the outage had in all (0 if there was none) and starts afresh.
    """

    def __init__(self, interval: float = 60.0) -> None:
        self._interval = interval
        self._total = 0
        self._unlogged = 0
        self._last_line: float | None = None

    @property
    def failing(self) -> int:
        """Failures in a row so far (0 when the last try worked)."""
        return self._total

    def failed(self, now: float) -> int | None:
        self._total += 1
        self._unlogged += 1
        if self._last_line is not None and now - self._last_line < self._interval:
            return None
        count, self._unlogged, self._last_line = self._unlogged, 0, now
        return count

    def recovered(self) -> int:
        total = self._total
        self._total = self._unlogged = 0
        self._last_line = None
        return total
