"""Warm-up of a promoted IP: daily caps rising in stages, a stage advancing only on good delivery.

A promoted IP that never sent, or has been idle for the pool's
``idle_rewarm`` (30 days by default), starts at stage 0 of the pool's
schedule (SparkPost and SendGrid ramp the same way). Its daily cap is that
stage's ``daily_cap``; surplus mail waits in the same pool's queue and never
spills onto another IP or pool (the picker simply finds no capacity).

A stage lasts at least one UTC day. When a day the stage sent on is over, the
stage advances if that day delivered at least the stage's
``min_delivery_rate``; a day without sends, or without a delivered count, does
not advance it (no evidence of good delivery is no evidence). Passing the last
stage ends the warm-up: the IP becomes ``active``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from hrmonitor.core.model import PoolPolicy


@dataclass(frozen=True, slots=True)
class WarmupView:
    """Where an IP is in its warm-up, and the most recent UTC day's counts."""

    stage: int
    stage_since: datetime
    day: date | None = None  # the day ``sent``/``delivered`` count
    sent: int = 0
    delivered: int | None = None  # None: the delivery engine did not report it


class StageStep(StrEnum):
    STAY = "stay"
    ADVANCE = "advance"
    GRADUATE = "graduate"  # the last stage passed: the IP becomes active


def needs_warmup(policy: PoolPolicy, last_sent_at: datetime | None, now: datetime) -> bool:
    """Whether a promoted IP must warm up: the pool has a schedule and the IP is new or idle."""
    if not policy.warmup:
        return False
    return last_sent_at is None or now - last_sent_at >= policy.idle_rewarm


def daily_cap(policy: PoolPolicy, stage: int) -> int:
    """The cap of ``stage`` (the last stage's cap beyond the schedule's end)."""
    if not policy.warmup:
        raise ValueError("the pool has no warm-up schedule")
    return policy.warmup[min(max(stage, 0), len(policy.warmup) - 1)].daily_cap


def has_capacity(policy: PoolPolicy, view: WarmupView, now: datetime) -> bool:
    """Whether a warming IP may send one more message today."""
    sent_today = view.sent if view.day == now.date() else 0
    return sent_today < daily_cap(policy, view.stage)


def next_step(policy: PoolPolicy, view: WarmupView, now: datetime) -> StageStep:
    """What a day boundary does to this stage (see the module docstring)."""
    if not policy.warmup:
        return StageStep.GRADUATE
    day = view.day
    if day is None or day >= now.date() or day < view.stage_since.date():
        return StageStep.STAY  # the counted day is not over, or belongs to an earlier stage
    if view.sent <= 0 or view.delivered is None:
        return StageStep.STAY
    stage = policy.warmup[min(max(view.stage, 0), len(policy.warmup) - 1)]
    if view.delivered / view.sent < stage.min_delivery_rate:
        return StageStep.STAY
    if view.stage + 1 >= len(policy.warmup):
        return StageStep.GRADUATE
    return StageStep.ADVANCE
