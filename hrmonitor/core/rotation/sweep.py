"""Rotation rule 1, sweeps: trusted listings alert and may retire an IP; clearances resolve."""

from __future__ import annotations

from dataclasses import replace

from hrmonitor.core.alert import AlertKind, alert_key
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
            run.alert(AlertKind.DELISTING, Severity.LOW, key, summary, details, ip, True)
            if run.pool.risk is RiskClass.NORMAL:
                nkey = alert_key(AlertKind.NORMAL_IP_LISTED, run.pool.name, ip, zone)
                run.alert(
                    AlertKind.NORMAL_IP_LISTED,
                    Severity.CRITICAL,
                    nkey,
                    summary,
                    details,
                    ip,
                    True,
                )


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
    if run.pool.risk is RiskClass.NORMAL:
        # Its own key: the monitor's plain listing alert must not dedupe this one away.
        nkey = alert_key(AlertKind.NORMAL_IP_LISTED, pool, ip, answer.zone)
        summary = f"normal-pool IP {ip} ({pool}) is {reason}"
        run.alert(AlertKind.NORMAL_IP_LISTED, Severity.CRITICAL, nkey, summary, details, ip)
    else:
        summary = f"{ip} ({pool}) is {reason}"
        run.alert(AlertKind.LISTING, answer.severity, key, summary, details, ip)
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
        severity = Severity.CRITICAL if run.pool.risk is RiskClass.NORMAL else Severity.HIGH
        summary = f"{ip} retired from pool {pool}: {reason}"
        rkey = alert_key(AlertKind.RETIREMENT, pool, ip)
        run.alert(AlertKind.RETIREMENT, severity, rkey, summary, details, ip)
