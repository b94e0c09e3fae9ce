"""Rotation rules 5 and 6: top the pool up to ``min_active`` eligible IPs; alert on a thin pool.

Capacity is counted as *eligible* IPs (``eligibility``), not IPs in rotation:
an active IP suspended whole (a bind failure) or a warming IP whose daily cap
is used up sends nothing, so while fewer than ``min_active`` (at least one)
IPs are eligible, standby IPs without open listings or whole-IP suspensions
are promoted in configured order (to ``warming`` when the warm-up schedule
wants it). A pool with no eligible IP raises the critical ``pool-exhausted``
alert, one with fewer than ``min_active`` ``pool-below-min``; both resolve
once the pool is back. (The controller passes ``pool-exhausted`` through a
latch, ``exhaustion``, so a retry loop cannot flap it.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from hrmonitor.core.alert import Alert, AlertKind, alert_key
from hrmonitor.core.model import IPState, Pool, RiskClass, Severity, WhenExhausted
from hrmonitor.core.rotation.eligibility import blockers, eligible_ips
from hrmonitor.core.rotation.run import Run
from hrmonitor.core.rotation.views import IpView
from hrmonitor.core.rotation.warmup import needs_warmup


def promote(run: Run, why: str) -> None:
    target = max(run.policy.min_active, 1)
    for ip in run.promotable():
        if len(run.eligible()) >= target:
            break  # counted after each promotion: a promoted IP may itself have no capacity
        view = run.views[ip]
        warming = needs_warmup(run.policy, view.last_sent_at, run.now)
        to = IPState.WARMING if warming else IPState.ACTIVE
        reason = f"promoted to keep {why} ({run.policy.min_active}) eligible IPs in rotation"
        evidence: dict[str, object] = {"last_sent_at": view.last_sent_at, "warmup": warming}
        run.move(ip, to, reason, "rotation.promote", evidence)
        run.promoted.append(ip)
        key = alert_key(AlertKind.PROMOTION, run.pool.name, ip, run.now.isoformat())
        summary = f"{ip} promoted to {to} in pool {run.pool.name}"
        run.alert(AlertKind.PROMOTION, Severity.LOW, key, summary, evidence, ip)


def exhaustion_alert(pool: Pool, views: Sequence[IpView], now: datetime, resolved: bool) -> Alert:
    """The pool's ``pool-exhausted`` alert (or its resolution), with why each IP cannot send."""
    policy = pool.policy
    details: dict[str, object] = {
        "eligible": list(eligible_ips(pool, views, now)),
        "not_eligible": blockers(pool, views, now),
        "when_exhausted": str(policy.when_exhausted),
        "states": {view.ip: str(view.state) for view in sorted(views, key=lambda v: v.ip)},
    }
    if resolved:
        summary = f"pool {pool.name} has an IP eligible to send again"
    else:
        if pool.risk is RiskClass.NORMAL and policy.when_exhausted is WhenExhausted.USE_LISTED:
            what = "sending through its least-listed IP"
        else:
            what = "holding its mail"
        summary = f"pool {pool.name} has no IP eligible to send: {what}"
    key = alert_key(AlertKind.POOL_EXHAUSTED, pool.name)
    return Alert(
        AlertKind.POOL_EXHAUSTED, Severity.CRITICAL, key, summary, now, details, pool.name,
        None, resolved,
    )  # fmt: skip


def pool_alerts(run: Run, tick: bool) -> None:
    if not (run.transitions or tick):
        return
    pool, count = run.pool.name, len(run.eligible())
    views = list(run.views.values())
    run.alerts.append(exhaustion_alert(run.pool, views, run.now, resolved=count > 0))
    below = alert_key(AlertKind.POOL_BELOW_MIN, pool)
    details: dict[str, object] = {
        "eligible": count,
        "in_rotation": run.count_in_rotation(),
        "min_active": run.policy.min_active,
        "not_eligible": blockers(run.pool, views, run.now),
    }
    if 0 < count < run.policy.min_active:
        summary = f"pool {pool} has {count} eligible IPs, below min_active"
        run.alert(AlertKind.POOL_BELOW_MIN, Severity.HIGH, below, summary, details)
    elif count >= run.policy.min_active:
        summary = f"pool {pool} is back at min_active"
        run.alert(AlertKind.POOL_BELOW_MIN, Severity.HIGH, below, summary, details, resolved=True)
