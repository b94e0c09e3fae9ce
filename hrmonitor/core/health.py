"""A pool's health, judged on its own IPs only (the normal pool is never averaged with others).

"Can send" is the rotation's one definition of *eligible* (``core.rotation.
eligibility``: in rotation, no whole-IP suspension such as a bind failure,
warm-up capacity left today), the same the picker, promotion and the
``pool-exhausted`` alert use; the report fills ``IpCondition.eligible`` with it.

- ``exhausted``: no IP can send;
- ``critical``: fewer IPs can send than ``min_active``, or a normal-pool IP
  that can send is listed (the normal pool's reputation is the thing protected);
- ``degraded``: a listing, a retirement, a suspension, or an IP in rotation
  that cannot send (a used-up warm-up cap) somewhere in the pool;
- ``healthy``: everything in rotation can send and is clean.

The score (0-100) is the share of the capacity the pool is meant to send
with - its IPs in rotation, and at least ``min_active`` of them - that can
send now and is clean. Standby IPs are reserve, not capacity: a healthy pool
with standbys scores 100; disabled and retired IPs do not count either (a
retirement shows in the health, and lowers the score only while its
replacement is missing).
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
    # Eligible to send now (core.rotation.eligibility); None: in rotation and not
    # suspended whole (for a caller that does not know the warm-up caps).
    eligible: bool | None = None

    @property
    def can_send(self) -> bool:
        if self.eligible is not None:
            return self.eligible
        return self.state.in_rotation and not self.suspended_whole


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
    sending = [c for c in ips if c.can_send]
    listed = [c for c in ips if c.listings]
    rotating = [c for c in ips if c.state.in_rotation]
    clean_sending = [c for c in sending if not c.listings]
    count = {state: sum(1 for c in ips if c.state is state) for state in IPState}
    if not sending:
        health = PoolHealth.EXHAUSTED
    elif len(sending) < min_active or (
        risk is RiskClass.NORMAL and any(c.listings for c in sending)
    ):
        health = PoolHealth.CRITICAL
    elif (
        listed
        or count[IPState.RETIRED]
        or any(c.suspended_any for c in ips)
        or len(sending) < len(rotating)
    ):
        health = PoolHealth.DEGRADED
    else:
        health = PoolHealth.HEALTHY
    capacity = max(len(rotating), min_active, 1)
    score = min(100, round(100 * len(clean_sending) / capacity))
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
