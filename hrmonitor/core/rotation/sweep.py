"""Rotation rule 1, sweeps: trusted listings alert and may retire an IP; clearances resolve.

A listing is one alert whatever rotation does about it (one event, one alert):
``listing``, or ``normal-ip-listed`` (critical) for a normal-pool IP, keyed by
the listing (``listing:pool:ip:zone``) so its delisting resolves it. When the
listing retires the IP the same alert carries the action
(``details["action"] == "retired"``; :func:`fold_replacements` adds the
standby IPs promoted in its place), not a second ``retirement`` alert.
"""

from __future__ import annotations

from dataclasses import replace

from hrmonitor.core.alert import Alert, AlertKind, alert_key
from hrmonitor.core.model import IPState, Listed, OnListing, RiskClass, Severity
from hrmonitor.core.rotation.evidence import Sweep
from hrmonitor.core.rotation.run import Run
from hrmonitor.core.rotation.views import OpenListing


def on_sweep(run: Run, sweep: Sweep) -> None:
    for answer in sweep.answers:
        if answer.ip not in run.views or not sweep.trusted(answer.zone):
            continue  # another pool's IP, or an untrustworthy zone: changes nothing
        if isinstance(answer, Listed):
            _listed(run, answer)
    for ip, zone in sweep.cleared:
        if ip in run.views and sweep.trusted(zone):
            key = alert_key(AlertKind.LISTING, run.pool.name, ip, zone)
            summary = f"{ip} ({run.pool.name}) is no longer listed on {zone}"
            details = {"zone": zone, "observed_at": sweep.at}
            kind, severity = _listing_kind(run, Severity.LOW)
            run.alert(kind, severity, key, summary, details, ip, True, event="delisting")
            if kind is AlertKind.NORMAL_IP_LISTED:
                # Before one alert per event the critical alert had a key of its own: one
                # left open by an older version resolves too (sent only if it is open).
                legacy = alert_key(AlertKind.NORMAL_IP_LISTED, run.pool.name, ip, zone)
                run.alert(kind, severity, legacy, summary, details, ip, True, event="delisting")


def _listing_kind(run: Run, severity: Severity) -> tuple[AlertKind, Severity]:
    if run.pool.risk is RiskClass.NORMAL:
        return AlertKind.NORMAL_IP_LISTED, Severity.CRITICAL
    return AlertKind.LISTING, severity


def _listed(run: Run, answer: Listed) -> None:
    ip, pool = answer.ip, run.pool.name
    details: dict[str, object] = {
        "zone": answer.zone,
        "codes": list(answer.codes),
        "tags": list(answer.tags),
        "severity": str(answer.severity),
        "txt": answer.txt,
    }
    key = alert_key(AlertKind.LISTING, pool, ip, answer.zone)
    reason = f"listed on {answer.zone} ({', '.join(answer.codes)}) {answer.txt}".strip()
    kind, severity = _listing_kind(run, answer.severity)
    prefix = "normal-pool IP " if kind is AlertKind.NORMAL_IP_LISTED else ""
    summary = f"{prefix}{ip} ({pool}) is {reason}"
    view = run.views[ip]
    run.views[ip] = replace(
        view,
        listings=(
            *view.listings,
            OpenListing(answer.zone, answer.codes, answer.severity, run.now, answer.tags),
        ),
        clean_since=None,
        clean_checked_at=None,
    )
    if (
        run.policy.on_listing is OnListing.RETIRE
        and answer.severity.at_least(run.policy.retire_at)
        and view.state in (IPState.ACTIVE, IPState.WARMING, IPState.STANDBY)
    ):
        run.move(ip, IPState.RETIRED, reason, "rotation.retire", details)
        details = {**details, "action": "retired", "retired_from": str(view.state)}
        if severity.rank < Severity.HIGH.rank:
            severity = Severity.HIGH  # as the retirement alert it replaces
        summary = f"{summary}: retired from pool {pool}"
    elif view.state is IPState.RETIRED:
        # An open listing of a retired IP (its repeat after repeat_after): say so, as
        # the alert that retired it did.
        summary = f"{summary}: retired from pool {pool}"
        if severity.rank < Severity.HIGH.rank and run.policy.on_listing is OnListing.RETIRE:
            severity = Severity.HIGH
    details["ip_state"] = str(run.views[ip].state)
    run.alert(kind, severity, key, summary, details, ip)


def fold_replacements(run: Run) -> None:
    """Tell the replacements in the alerts of the listings that retired their IPs.

    The standby IPs promoted in the same decision go into those alerts
    (``details["promoted"]``) instead of alerts of their own. A listing alert
    is ``handled`` when its IP is retired and the pool has an IP eligible to
    send afterwards: the daemon dealt with it (the log says WARNING, not ERROR).
    """
    can_send = bool(run.eligible())
    for index, alert in enumerate(run.alerts):
        out = alert.ip is not None and run.views[alert.ip].state is IPState.RETIRED
        listing = alert.kind in (AlertKind.LISTING, AlertKind.NORMAL_IP_LISTED)
        if listing and out and can_send and not alert.resolved:
            run.alerts[index] = replace(alert, handled=True)
    retiring = [i for i, a in enumerate(run.alerts) if a.details.get("action") == "retired"]
    if not retiring:
        return
    promoted = tuple(run.promoted)
    for index in retiring:
        alert = run.alerts[index]
        details = {**alert.details, "promoted": list(promoted), "pool_can_send": can_send}
        if promoted:
            summary = f"{alert.summary}; promoted {', '.join(promoted)}"
        elif can_send:
            summary = f"{alert.summary}; the pool still sends from its other IPs"
        else:
            summary = f"{alert.summary}; no IP left to send from"
        run.alerts[index] = replace(alert, details=details, summary=summary)
    run.alerts[:] = [a for a in run.alerts if not _replacement(a, promoted)]


def _replacement(alert: Alert, promoted: tuple[str, ...]) -> bool:
    return alert.kind is AlertKind.PROMOTION and alert.ip in promoted and "warmup" in alert.details
