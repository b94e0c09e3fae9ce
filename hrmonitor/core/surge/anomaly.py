"""The statistics of surge detection: small-count bounds, change detectors, bucketed windows.

- :func:`wilson_bounds`: a ratio of 3 in 5 is not evidence of a 60 % bounce
  rate; the Wilson score interval says how low the true ratio may be.
- :class:`Detector`: an EWMA control chart or a CUSUM over one series (the
  DSN ratio per bucket), with a slowly learned baseline. One-sided: only a
  rise is an anomaly.
- :class:`SlidingCounts`: a ring of per-bucket counters with running sums,
  so adding an event and reading a window total are O(1).

Detectors and windows are small mutable objects on purpose: the watcher
updates one per event on the acceptance path, and a new frozen value per
event would cost an allocation each time. They stay pure: time comes in as
a bucket number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


def wilson_bounds(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of ``successes / trials`` (``(0, 1)`` with no trials)."""
    if trials <= 0:
        return 0.0, 1.0
    k = min(max(successes, 0), trials)
    p = k / trials
    z2 = z * z
    centre = p + z2 / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    denominator = 1 + z2 / trials
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)


class AnomalyMethod(StrEnum):
    EWMA = "ewma"
    CUSUM = "cusum"


@dataclass(frozen=True, slots=True)
class AnomalyParams:
    """Detector settings; the defaults follow the usual SPC choices (lambda 0.2, L 3; k 0.5, h 5).

    ``prior_mean``/``prior_sigma`` describe a key never seen before, so a new
    tenant bouncing half its mail is anomalous from its first buckets.
    ``min_sigma`` keeps a key whose history is all zeros from alarming on
    one stray DSN.
    """

    method: AnomalyMethod = AnomalyMethod.EWMA
    ewma_lambda: float = 0.2
    ewma_limit: float = 3.0
    cusum_k: float = 0.5
    cusum_h: float = 5.0
    baseline_alpha: float = 0.02
    prior_mean: float = 0.02
    prior_sigma: float = 0.05
    min_sigma: float = 0.02

    def __post_init__(self) -> None:
        if not 0 < self.ewma_lambda <= 1:
            raise ValueError(f"ewma lambda {self.ewma_lambda} is not within (0, 1]")
        if not 0 < self.baseline_alpha < 1:
            raise ValueError(f"baseline alpha {self.baseline_alpha} is not within (0, 1)")
        for name in ("ewma_limit", "cusum_h", "prior_sigma", "min_sigma"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.cusum_k < 0:
            raise ValueError("cusum_k must not be negative")


class Detector:
    """One-sided change detector over a series of observations (EWMA chart or CUSUM).

    The baseline mean and variance are exponentially weighted; while the
    series is out of control they learn ten times slower, so a long attack
    does not quickly become the new normal, yet a real lasting change is
    eventually accepted.
    """

    __slots__ = ("_params", "mean", "statistic", "variance")

    def __init__(self, params: AnomalyParams) -> None:
        self._params = params
        self.mean = params.prior_mean
        self.variance = params.prior_sigma**2
        self.statistic = params.prior_mean if params.method is AnomalyMethod.EWMA else 0.0

    @property
    def sigma(self) -> float:
        return max(math.sqrt(self.variance), self._params.min_sigma)

    @property
    def upper_limit(self) -> float:
        """The EWMA chart's upper control limit (asymptotic form), or CUSUM's h."""
        p = self._params
        if p.method is AnomalyMethod.CUSUM:
            return p.cusum_h
        return self.mean + p.ewma_limit * self.sigma * math.sqrt(
            p.ewma_lambda / (2 - p.ewma_lambda)
        )

    @property
    def out_of_control(self) -> bool:
        return self.statistic > self.upper_limit

    def observe(self, value: float) -> bool:
        """Take one observation; True if the series is now out of control."""
        p = self._params
        if p.method is AnomalyMethod.EWMA:
            self.statistic = p.ewma_lambda * value + (1 - p.ewma_lambda) * self.statistic
        else:
            step = (value - self.mean) / self.sigma - p.cusum_k
            # Capped at 2h so the sum forgets an ended surge in a few buckets.
            self.statistic = min(max(0.0, self.statistic + step), 2 * p.cusum_h)
        alarm = self.out_of_control
        alpha = p.baseline_alpha / 10 if alarm else p.baseline_alpha
        diff = value - self.mean
        self.mean += alpha * diff
        self.variance = (1 - alpha) * (self.variance + alpha * diff * diff)
        return alarm


class SlidingCounts:
    """``width`` counters per bucket over the last ``buckets`` buckets, with running sums.

    Buckets are numbered by the caller (``int(timestamp // bucket_seconds)``);
    moving to a later bucket expires the ones that fell out of the window.
    Time never runs backwards here: an event for an older bucket still in the
    window is added to that bucket, one older than the window is dropped.
    """

    __slots__ = ("_counts", "_size", "_width", "current", "sums")

    def __init__(self, buckets: int, width: int, start: int = 0) -> None:
        if buckets < 1 or width < 1:
            raise ValueError("a window needs at least one bucket and one counter")
        self._size = buckets
        self._width = width
        self._counts = [0] * (buckets * width)
        self.sums = [0] * width
        self.current = start

    def advance(self, bucket: int) -> None:
        """Move the window's newest bucket to ``bucket`` (no-op if not later)."""
        if bucket <= self.current:
            return
        size, width, counts, sums = self._size, self._width, self._counts, self.sums
        if bucket - self.current >= size:
            counts[:] = [0] * (size * width)
            sums[:] = [0] * width
        else:
            for stale in range(self.current + 1, bucket + 1):
                base = (stale % size) * width
                for i in range(width):
                    sums[i] -= counts[base + i]
                    counts[base + i] = 0
        self.current = bucket

    def add(self, bucket: int, index: int, amount: int = 1) -> None:
        """Count ``amount`` (non-negative) on counter ``index`` in ``bucket``."""
        if amount < 0:
            raise ValueError("counts only grow; a window forgets by expiring buckets")
        if bucket > self.current:
            self.advance(bucket)
        elif bucket <= self.current - self._size:
            return
        self._counts[(bucket % self._size) * self._width + index] += amount
        self.sums[index] += amount

    def bucket(self, bucket: int) -> tuple[int, ...]:
        """The counters of one bucket still in the window (zeros otherwise)."""
        if not self.current - self._size < bucket <= self.current:
            return (0,) * self._width
        base = (bucket % self._size) * self._width
        return tuple(self._counts[base : base + self._width])
