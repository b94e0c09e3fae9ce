"""The IPs of one pool as rotation sees them, and as the picker sees them (``candidates``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from hrmonitor.core.model import IPState, Pool, Severity
from hrmonitor.core.rotation.selection import IpCandidate
from hrmonitor.core.rotation.suspension import Suspension
from hrmonitor.core.rotation.warmup import WarmupView, daily_cap


@dataclass(frozen=True, slots=True)
class OpenListing:
    zone: str
    codes: tuple[str, ...]
    severity: Severity
    since: datetime
    tags: tuple[str, ...] = ()
    txt: str = ""


@dataclass(frozen=True, slots=True)
class IpView:
    """One IP of one pool as the store knows it now."""

    ip: str
    pool: str
    state: IPState
    state_since: datetime
    state_until: datetime | None = None  # an operator's "until" for the current state
    state_actor: str = ""  # the rule or operator that made the current state
    listings: tuple[OpenListing, ...] = ()
    clean_since: datetime | None = None  # start of the clean run on every zone (None: not clean)
    clean_checked_at: datetime | None = None  # the latest trustworthy sweep inside that run
    last_sent_at: datetime | None = None
    sent_today: int = 0  # messages sent on now's UTC day
    warmup: WarmupView | None = None
    suspensions: tuple[Suspension, ...] = ()


def in_rotation_count(ips: Sequence[IpView]) -> int:
    return sum(1 for view in ips if view.state.in_rotation)


def candidates(pool: Pool, ips: Sequence[IpView], now: datetime) -> list[IpCandidate]:
    """The picker's view of one pool's IPs (``selection.choose_source_ip`` judges them)."""
    members = set(pool.all_ips)
    found = []
    for view in ips:
        if view.pool != pool.name or view.ip not in members:
            raise ValueError(f"{view.ip} (pool {view.pool}) is not an IP of pool {pool.name}")
        cap = None
        if view.state is IPState.WARMING and pool.policy.warmup:
            cap = daily_cap(pool.policy, view.warmup.stage if view.warmup else 0)
        suspensions: dict[str, datetime] = {}
        for s in view.suspensions:
            if s.active(now):
                suspensions[s.scope] = max(s.until, suspensions.get(s.scope, s.until))
        found.append(IpCandidate(view.ip, view.state, 1, cap, view.sent_today, suspensions))
    return found
