"""Suspensions: timed bans of a source IP for one destination provider, or for the whole IP.

A remote SMTP reply that says "pause" (Yahoo ``[TS04]``, Microsoft "rate
limited due to IP reputation", a blocklist-naming 5xx) suspends the pair
(source IP x provider) for a duration counted from the *evidence's* time, not
from when we got round to processing it (KumoMTA's rule). Newer evidence
extends a suspension; evidence whose effect the current suspension already
covers is stale and changes nothing, so a replayed or late reply never
shortens or re-opens anything. Our own internal deferrals are never evidence:
a pause whose ``remote`` flag is false is ignored, which is what stops a
suspension from extending itself forever (KumoMTA's real bug).

The scope ``"*"`` (:data:`WHOLE_IP`) suspends the IP for every provider (a bind
failure is an error about that IP).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

WHOLE_IP = "*"
BIND_FAILURE = "bind-failure"  # the actor of a whole-IP suspension for an unbindable address


@dataclass(frozen=True, slots=True)
class Suspension:
    """An IP is not eligible for ``scope`` (a provider, or ``*``) from ``since`` until ``until``."""

    ip: str
    scope: str
    since: datetime
    until: datetime
    reason: str
    actor: str  # the rule that produced it ("feedback.yahoo-ts04") or "operator:<name>"
    evidence: Mapping[str, object] = field(default_factory=dict)

    def active(self, now: datetime) -> bool:
        return self.since <= now < self.until

    def covers(self, provider: str) -> bool:
        return self.scope in (WHOLE_IP, provider)


@dataclass(frozen=True, slots=True)
class Pause:
    """Evidence that ``ip`` should pause for ``provider`` (``None``: every provider).

    ``remote`` is false for anything our own engine made up (an internal
    deferral, a local queue limit); such a pause is never evidence.
    """

    ip: str
    provider: str | None
    duration: timedelta
    reason: str
    observed_at: datetime
    rule: str
    remote: bool = True
    evidence: Mapping[str, object] = field(default_factory=dict)

    @property
    def scope(self) -> str:
        return self.provider or WHOLE_IP


def apply_pause(current: Suspension | None, pause: Pause, now: datetime) -> Suspension | None:
    """The suspension this pause asks for, or ``None`` when it changes nothing.

    ``current`` is the active suspension of the same (ip, scope), if any.
    Evidence from the future (a skewed peer clock) counts from ``now`` so it
    cannot stretch a suspension beyond its duration.
    """
    if not pause.remote or pause.duration <= timedelta(0):
        return None
    if current is not None and (current.ip != pause.ip or current.scope != pause.scope):
        raise ValueError(f"suspension {current.ip}/{current.scope} is not the pause's pair")
    observed = min(pause.observed_at, now)
    until = observed + pause.duration
    if until <= now:
        return None  # its effect is already over
    if current is not None and current.active(now) and current.until >= until:
        return None  # stale: the current suspension already covers it
    since = current.since if current is not None and current.active(now) else observed
    return Suspension(
        ip=pause.ip,
        scope=pause.scope,
        since=since,
        until=until,
        reason=pause.reason,
        actor=pause.rule,
        evidence={**pause.evidence, "observed_at": pause.observed_at},
    )


def suspended(suspensions: Iterable[Suspension], ip: str, provider: str, now: datetime) -> bool:
    """Whether ``ip`` may not send to ``provider`` now."""
    return any(s.ip == ip and s.covers(provider) and s.active(now) for s in suspensions)


def current_for(
    suspensions: Iterable[Suspension], ip: str, scope: str, now: datetime
) -> Suspension | None:
    """The active suspension of (ip, scope) that lasts longest, if any."""
    live = [s for s in suspensions if s.ip == ip and s.scope == scope and s.active(now)]
    return max(live, key=lambda s: s.until, default=None)


def bind_suspension(view: _HasSuspensions, now: datetime) -> Suspension | None:
    """The running whole-IP suspension a bind failure put on the IP, if any."""
    live = [
        s
        for s in view.suspensions
        if s.scope == WHOLE_IP and s.actor == BIND_FAILURE and s.active(now)
    ]
    return max(live, key=lambda s: s.until, default=None)


class _HasSuspensions(Protocol):
    @property
    def suspensions(self) -> tuple[Suspension, ...]: ...
