"""The detectors: each key's window, anomaly chart and evidence, and when its surge opens or closes.

A surge opens only when three tests agree:

1. volume: at least ``min_messages`` recipients and ``min_dsns`` bounces in the window;
2. ratio: the Wilson lower bound of bounces / recipients is at least ``ratio``;
3. anomaly: the EWMA chart or CUSUM of the per-bucket ratio is out of control.

It closes after ``clear_after`` evaluations in a row with the raw ratio under
``ratio * clear_factor``, the volume under ``min_messages * clear_factor``, or
the detector back in control: the gap between the opening and the closing
tests is the hysteresis that stops flapping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime

from hrmonitor.core.surge.anomaly import Detector, SlidingCounts, wilson_bounds
from hrmonitor.core.surge.cause import Cause, attribute
from hrmonitor.core.surge.changes import Dimension, Surge, SurgeChange
from hrmonitor.core.surge.evidence import Evidence, summarise
from hrmonitor.core.surge.settings import SurgeSettings

# The columns of a track's window.
RCPTS, DSNS = 0, 1


class Track:
    """One key's window, detector, evidence and surge state."""

    __slots__ = (
        "calm",
        "detector",
        "evaluated",
        "evidence",
        "generation",
        "previous",
        "surge",
        "window",
    )

    def __init__(self, settings: SurgeSettings, bucket: int) -> None:
        self.window = SlidingCounts(settings.buckets, 2, bucket)
        self.detector = Detector(settings.anomaly)
        self.evidence = Evidence()
        self.previous: Evidence | None = None
        self.generation = bucket
        self.evaluated = bucket - 1
        self.surge: Surge | None = None
        self.calm = 0

    def evidence_at(self, bucket: int, length: int) -> Evidence:
        """The current evidence generation; generations turn over once per window length."""
        if bucket >= self.generation + length:
            recent = bucket < self.generation + 2 * length
            self.previous = self.evidence if recent else None
            self.evidence = Evidence()
            self.generation = bucket
        return self.evidence


def evaluate(
    tracks: Mapping[tuple[Dimension, str], Track],
    bucket: int,
    now: datetime,
    settings: SurgeSettings,
) -> list[SurgeChange]:
    """Roll every window to ``bucket``, feed the detectors, open and close surges."""
    size = settings.buckets
    changes: list[SurgeChange] = []
    for (dimension, value), track in tracks.items():
        window = track.window
        if track.surge is None and not any(window.sums):
            continue  # nothing to observe, nothing that could open: idle keys cost nothing
        window.advance(bucket)
        for closed in range(max(track.evaluated + 1, bucket - size + 1), bucket):
            rcpts, dsns = window.bucket(closed)
            if rcpts or dsns:
                track.detector.observe(min(dsns, rcpts) / rcpts if rcpts else 1.0)
        track.evaluated = max(track.evaluated, bucket - 1)
        rcpts, dsns = window.sums
        messages = max(rcpts, dsns)
        ratio = dsns / messages if messages else 0.0
        if track.surge is None:
            if messages < settings.min_messages or dsns < settings.min_dsns:
                continue
            lower = wilson_bounds(dsns, messages, settings.confidence_z)[0]
            if lower < settings.ratio or not track.detector.out_of_control:
                continue
            cause, evidence = attribute(summarise(track.evidence, track.previous), settings)
            track.surge = Surge(
                dimension, value, now, cause, evidence, messages, dsns, ratio, lower,
                track.detector.mean, ratio,
            )  # fmt: skip
            track.calm = 0
            changes.append(SurgeChange(track.surge, now, resolved=False))
            continue
        surge = track.surge
        lower = wilson_bounds(dsns, messages, settings.confidence_z)[0]
        track.surge = surge = Surge(
            dimension, value, surge.opened_at, surge.cause, surge.evidence, messages, dsns,
            ratio, lower, track.detector.mean, max(surge.peak_ratio, ratio), surge.within,
        )  # fmt: skip
        # Both limits sit below the opening ones, so a surge hovering there does not flap.
        factor = settings.clear_factor
        subsided = messages < settings.min_messages * factor or ratio < settings.ratio * factor
        # A level the detector has learnt is no longer a surge, even if it stays high.
        learnt = not track.detector.out_of_control
        track.calm = track.calm + 1 if subsided or learnt else 0
        if track.calm >= settings.clear_after:
            track.surge = None
            track.calm = 0
            changes.append(SurgeChange(surge, now, resolved=True))
    return changes


def fold(
    tracks: Mapping[tuple[Dimension, str], Track], changes: list[SurgeChange]
) -> tuple[SurgeChange, ...]:
    """Fold new destination surges into an open tenant/sender-domain surge of the same cause.

    A spam run to 40 domains is one incident, not 41 alerts; the folded
    surges stay visible in the report with ``within`` naming the parent.
    """
    if not any(c.surge.dimension is Dimension.DESTINATION and not c.resolved for c in changes):
        return tuple(changes)
    parents: dict[Cause, str] = {}
    for dimension in (Dimension.TENANT, Dimension.SENDER_DOMAIN):  # tenants name it best
        for track in tracks.values():
            open_ = track.surge
            if open_ and open_.dimension is dimension and open_.cause is not Cause.UNKNOWN:
                parents.setdefault(open_.cause, f"{dimension} {open_.key}")
    result = []
    for change in changes:
        surge = change.surge
        parent = parents.get(surge.cause)
        if not change.resolved and surge.dimension is Dimension.DESTINATION and parent is not None:
            surge = dataclasses.replace(surge, within=parent)
            tracks[(surge.dimension, surge.key)].surge = surge
            result.append(SurgeChange(surge, change.at, change.resolved))
        else:
            result.append(change)
    return tuple(result)
