"""Rotation rules 5 and 6: promote standby IPs up to ``min_active``; alert on a thin pool.

While fewer than ``min_active`` IPs are in rotation, standby IPs without open
listings or whole-IP suspensions are promoted in configured order (to
``warming`` when the warm-up schedule wants it). An empty pool raises the
critical ``pool-exhausted`` alert, one below ``min_active`` ``pool-below-min``;
both resolve once the pool is back.
"""

from __future__ import annotations

from hrmonitor.core.alert import AlertKind, alert_key
from hrmonitor.core.model import IPState, RiskClass, Severity, WhenExhausted
from hrmonitor.core.rotation.run import Run
from hrmonitor.core.rotation.warmup import needs_warmup


def promote(run: Run, why: str) -> None:
    need = max(run.policy.min_active, 1) - run.count_in_rotation()
    for ip in run.promotable()[: max(need, 0)]:
        view = run.views[ip]
        warming = needs_warmup(run.policy, view.last_sent_at, run.now)
        to = IPState.WARMING if warming else IPState.ACTIVE
        reason = f"promoted to keep {why} ({run.policy.min_active}) in rotation"
        evidence: dict[str, object] = {"last_sent_at": view.last_sent_at, "warmup": warming}
        run.move(ip, to, reason, "rotation.promote", evidence)
        key = alert_key(AlertKind.PROMOTION, run.pool.name, ip, run.now.isoformat())
        summary = f"{ip} promoted to {to} in pool {run.pool.name}"
        run.alert(AlertKind.PROMOTION, Severity.LOW, key, summary, evidence, ip)


def pool_alerts(run: Run, tick: bool) -> None:
    if not (run.transitions or tick):
        return
    pool, count = run.pool.name, run.count_in_rotation()
    exhausted = alert_key(AlertKind.POOL_EXHAUSTED, pool)
    below = alert_key(AlertKind.POOL_BELOW_MIN, pool)
    details: dict[str, object] = {
        "in_rotation": count,
        "min_active": run.policy.min_active,
        "when_exhausted": str(run.policy.when_exhausted),
        "states": {ip: str(view.state) for ip, view in sorted(run.views.items())},
    }
    if count == 0:
        if run.pool.risk is RiskClass.NORMAL and (
            run.policy.when_exhausted is WhenExhausted.USE_LISTED
        ):
            what = "sending through its least-listed IP"
        else:
            what = "holding its mail"
        summary = f"pool {pool} has no IP in rotation: {what}"
        run.alert(AlertKind.POOL_EXHAUSTED, Severity.CRITICAL, exhausted, summary, details)
    else:
        summary = f"pool {pool} has IPs in rotation again"
        run.alert(
            AlertKind.POOL_EXHAUSTED,
            Severity.CRITICAL,
            exhausted,
            summary,
            details,
            resolved=True,
        )
    if 0 < count < run.policy.min_active:
        summary = f"pool {pool} has {count} IPs in rotation, below min_active"
        run.alert(AlertKind.POOL_BELOW_MIN, Severity.HIGH, below, summary, details)
    elif count >= run.policy.min_active:
        summary = f"pool {pool} is back at min_active"
        run.alert(AlertKind.POOL_BELOW_MIN, Severity.HIGH, below, summary, details, resolved=True)
