"""Which source IP of a pool sends the next delivery attempt.

Chosen per attempt (Postal's lesson: choosing once at queue time keeps
retries on a listed IP). The candidates are exactly one pool's IPs; nothing
here ever reaches outside them, and an empty choice is a value
(:class:`NoEligibleIp`) on which the runner holds the mail and alerts
``pool-exhausted`` - it never borrows another pool's IP (fail closed).

The order is nginx's smooth weighted round-robin, made stateless: for a
given set of eligible (ip, weight) pairs the schedule of one period (sum of
weights picks) is fixed, and an integer cursor indexes into it. Over any
full period each IP is picked exactly ``weight`` times, spread evenly.
The caller keeps the cursor (one per pool) and stores ``Selection.cursor``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from hrmonitor.core.model import IPState, Pool, RiskClass, WhenExhausted

WHOLE_IP = "*"  # the suspension scope that covers every destination (a bind failure)


@dataclass(frozen=True, slots=True)
class IpCandidate:
    """One IP of the pool, as the runner sees it at the moment of the attempt.

    ``daily_cap`` is None for an active IP and the warm-up stage's cap for a
    warming one. ``suspensions`` maps a provider name (or ``"*"`` for the
    whole IP) to the end of its suspension. ``slowed`` maps a provider name to
    the end of a slow-down that provider asked for (Microsoft's reputation
    deferrals): a slowed IP still may send, but only when every other eligible
    IP is slowed for that provider too.
    """

    ip: str
    state: IPState
    weight: int = 1
    daily_cap: int | None = None
    sent_today: int = 0
    suspensions: Mapping[str, datetime] = field(default_factory=dict)
    slowed: Mapping[str, datetime] = field(default_factory=dict)

    def is_slowed(self, provider: str, now: datetime) -> bool:
        until = self.slowed.get(provider)
        return until is not None and now < until


@dataclass(frozen=True, slots=True)
class Selection:
    ip: str
    cursor: int  # store this; pass it to the next call for the same pool


@dataclass(frozen=True, slots=True)
class NoEligibleIp:
    """No IP of the pool may send to this destination now: hold the mail, alert pool-exhausted."""

    provider: str
    reasons: tuple[tuple[str, str], ...]  # (ip, why it is not eligible)

    @property
    def detail(self) -> str:
        if not self.reasons:
            return "the pool has no IPs"
        return "; ".join(f"{ip}: {why}" for ip, why in self.reasons)


def _suspended(candidate: IpCandidate, provider: str, now: datetime) -> str | None:
    for scope in (WHOLE_IP, provider):
        until = candidate.suspensions.get(scope)
        if until is not None and now < until:
            what = "whole IP" if scope == WHOLE_IP else scope
            return f"suspended ({what}) until {until.isoformat()}"
    return None


def ineligibility(candidate: IpCandidate, provider: str, now: datetime) -> str | None:
    """Why ``candidate`` may not send to ``provider`` at ``now``, or None if it may."""
    if not candidate.state.in_rotation:
        return f"state {candidate.state}"
    if candidate.weight <= 0:
        return "weight 0"
    if candidate.state is IPState.WARMING:
        if candidate.daily_cap is None:
            return "warming without a daily cap"  # fail closed: a cap must be known
        if candidate.sent_today >= candidate.daily_cap:
            return f"warm-up cap reached ({candidate.sent_today}/{candidate.daily_cap})"
    return _suspended(candidate, provider, now)


@lru_cache(maxsize=256)
def _schedule(weighted: tuple[tuple[str, int], ...]) -> tuple[str, ...]:
    """One period of smooth weighted round-robin over (ip, weight) pairs."""
    total = sum(w for _, w in weighted)
    current = [0] * len(weighted)
    order: list[str] = []
    for _ in range(total):
        for i, (_, weight) in enumerate(weighted):
            current[i] += weight
        best = max(range(len(weighted)), key=lambda i: (current[i], -i))
        current[best] -= total
        order.append(weighted[best][0])
    return tuple(order)


def choose_source_ip(
    candidates: Sequence[IpCandidate],
    destination_provider: str,
    now: datetime,
    cursor: int,
) -> Selection | NoEligibleIp:
    """The next eligible IP in weighted round-robin order, or why there is none.

    IPs slowed for the provider are passed over while any other IP is eligible:
    the traffic shifts away from them, and is never held because of them.
    """
    eligible: list[tuple[str, int]] = []
    slowed: list[tuple[str, int]] = []
    refused: list[tuple[str, str]] = []
    for candidate in candidates:
        why = ineligibility(candidate, destination_provider, now)
        if why is not None:
            refused.append((candidate.ip, why))
        elif candidate.is_slowed(destination_provider, now):
            slowed.append((candidate.ip, candidate.weight))
        else:
            eligible.append((candidate.ip, candidate.weight))
    eligible = eligible or slowed
    if not eligible:
        return NoEligibleIp(destination_provider, tuple(refused))
    eligible.sort()  # the schedule depends on the set, not on the caller's order
    order = _schedule(tuple(eligible))
    position = cursor % len(order)
    return Selection(order[position], cursor + 1)


_USABLE_WHEN_LISTED = (IPState.ACTIVE, IPState.WARMING, IPState.RETIRED)


def choose_least_listed(
    pool: Pool,
    candidates: Sequence[IpCandidate],
    listing_counts: Mapping[str, int],
    destination_provider: str,
    now: datetime,
) -> Selection | NoEligibleIp:
    """``when_exhausted = "use-listed"``: the least-listed IP when none is eligible.

    Only for a normal pool whose policy says so; for any other pool the answer
    is :class:`NoEligibleIp` (high-risk mail is deferred, never degraded).
    Disabled and standby IPs, IPs suspended for the destination or as a whole
    are never used. Ties go to the IP that sent least today, then the lowest IP.
    ``Selection.cursor`` is 0: this path does not advance the round-robin.
    """
    if (
        pool.risk is not RiskClass.NORMAL
        or pool.policy.when_exhausted is not WhenExhausted.USE_LISTED
    ):
        return NoEligibleIp(destination_provider, ((pool.name, "use-listed not allowed"),))
    members = set(pool.all_ips)
    usable: list[tuple[int, int, str]] = []
    refused: list[tuple[str, str]] = []
    for candidate in candidates:
        if candidate.ip not in members:
            refused.append((candidate.ip, f"not in pool {pool.name}"))
        elif candidate.state not in _USABLE_WHEN_LISTED:
            refused.append((candidate.ip, f"state {candidate.state}"))
        elif (why := _suspended(candidate, destination_provider, now)) is not None:
            refused.append((candidate.ip, why))
        else:
            count = listing_counts.get(candidate.ip, 0)
            usable.append((count, candidate.sent_today, candidate.ip))
    if not usable:
        return NoEligibleIp(destination_provider, tuple(refused))
    return Selection(min(usable)[2], 0)
