"""A pool's health, judged on its own IPs only (the normal pool is never averaged with others).

- ``exhausted``: no IP can send (none in rotation, or all suspended whole-IP);
- ``critical``: fewer IPs in rotation than ``min_active``, or a normal-pool IP
  in rotation is listed (the normal pool's reputation is the thing protected);
- ``degraded``: a listing, a retirement or a suspension somewhere in the pool;
- ``healthy``: everything in rotation is clean.

The score is the share of the pool's usable IPs (all but disabled) that are in
rotation and clean, 0-100.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from hrmonitor.core.model import IPState, RiskClass


class PoolHealth(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"
    EXHAUSTED = "exhausted"


@dataclass(frozen=True, slots=True)
class IpCondition:
    ip: str
    state: IPState
    listings: int  # open confirmed listings
    suspended_whole: bool  # a whole-IP suspension is active
    suspended_any: bool  # any suspension (a provider or whole) is active


@dataclass(frozen=True, slots=True)
class HealthSummary:
    health: PoolHealth
    score: int
    in_rotation: int
    clean: int
    listed: int
    standby: int
    retired: int
    disabled: int

    def as_dict(self) -> dict[str, object]:
        return {
            "health": str(self.health),
            "score": self.score,
            "in_rotation": self.in_rotation,
            "clean": self.clean,
            "listed": self.listed,
            "standby": self.standby,
            "retired": self.retired,
            "disabled": self.disabled,
        }


def pool_health(risk: RiskClass, min_active: int, ips: Sequence[IpCondition]) -> HealthSummary:
    sending = [c for c in ips if c.state.in_rotation and not c.suspended_whole]
    listed = [c for c in ips if c.listings]
    usable = [c for c in ips if c.state is not IPState.DISABLED]
    clean_sending = [c for c in sending if not c.listings]
    count = {state: sum(1 for c in ips if c.state is state) for state in IPState}
    if not sending:
        health = PoolHealth.EXHAUSTED
    elif len(sending) < min_active or (
        risk is RiskClass.NORMAL and any(c.listings for c in sending)
    ):
        health = PoolHealth.CRITICAL
    elif listed or count[IPState.RETIRED] or any(c.suspended_any for c in ips):
        health = PoolHealth.DEGRADED
    else:
        health = PoolHealth.HEALTHY
    score = round(100 * len(clean_sending) / len(usable)) if usable else 0
    return HealthSummary(
        health=health,
        score=score,
        in_rotation=len(sending),
        clean=sum(1 for c in ips if not c.listings),
        listed=len(listed),
        standby=count[IPState.STANDBY],
        retired=count[IPState.RETIRED],
        disabled=count[IPState.DISABLED],
    )
