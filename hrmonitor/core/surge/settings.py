"""Surge detection settings; app.py builds them from the ``[surge]`` config table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from hrmonitor.core.surge.anomaly import AnomalyParams
from hrmonitor.core.surge.evidence import LOCALS_CAP, SENDERS_CAP


@dataclass(frozen=True, slots=True)
class SurgeSettings:
    """Surge detection settings; app.py builds them from the ``[surge]`` config table.

    Defaults: 15-minute windows of 1-minute buckets; a surge needs 100
    recipients and 25 bounces in the window and a Wilson lower bound of the
    bounce ratio of at least 10 %, plus the anomaly test.
    """

    window: timedelta = timedelta(minutes=15)
    bucket: timedelta = timedelta(minutes=1)
    min_messages: int = 100
    min_dsns: int = 25
    ratio: float = 0.10
    confidence_z: float = 1.96
    anomaly: AnomalyParams = field(default_factory=AnomalyParams)
    clear_after: int = 5
    clear_factor: float = 0.5
    max_keys: int = 10_000
    outbound_index: int = 100_000
    rates_window: timedelta = timedelta(days=1)
    rates_bucket: timedelta = timedelta(hours=1)
    client_learning: timedelta = timedelta(days=1)
    cause_share: float = 0.5
    dha_min_local_parts: int = 20
    dha_max_senders: int = 5
    spam_threshold: float = 5.0
    spam_share: float = 0.3
    loop_hops: int = 30

    def __post_init__(self) -> None:
        if self.bucket <= timedelta(0) or self.window < self.bucket:
            raise ValueError("surge bucket must be positive and no longer than the window")
        if self.rates_bucket <= timedelta(0) or self.rates_window < self.rates_bucket:
            raise ValueError("surge rates_bucket must be positive and within rates_window")
        if not 0 < self.ratio < 1 or not 0 < self.clear_factor <= 1:
            raise ValueError("surge ratio must be within (0, 1), clear_factor within (0, 1]")
        if min(self.min_messages, self.min_dsns, self.clear_after, self.max_keys) < 1:
            raise ValueError("surge min_messages, min_dsns, clear_after, max_keys must be >= 1")
        if not 1 <= self.dha_min_local_parts <= LOCALS_CAP:
            raise ValueError(f"surge dha_min_local_parts must be within 1..{LOCALS_CAP}")
        if not 0 <= self.dha_max_senders < SENDERS_CAP:
            raise ValueError(f"surge dha_max_senders must be within 0..{SENDERS_CAP - 1}")

    @property
    def buckets(self) -> int:
        return max(1, round(self.window / self.bucket))
