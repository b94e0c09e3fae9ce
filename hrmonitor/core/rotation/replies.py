"""Rotation rule 2, remote replies: a pause suspends (IP x provider); a blocklist re-checks."""

from __future__ import annotations

from dataclasses import replace

from hrmonitor.core.alert import AlertKind, alert_key
from hrmonitor.core.model import Severity
from hrmonitor.core.rotation.decision import RecheckIp, Suspend
from hrmonitor.core.rotation.evidence import BlocklistNamed
from hrmonitor.core.rotation.run import Run
from hrmonitor.core.rotation.suspension import WHOLE_IP, Pause, apply_pause, current_for


def on_pause(run: Run, pause: Pause) -> None:
    if pause.ip not in run.views:
        return
    view = run.views[pause.ip]
    current = current_for(view.suspensions, pause.ip, pause.scope, run.now)
    suspension = apply_pause(current, pause, run.now)
    if suspension is None:
        return
    run.actions.append(Suspend(suspension))
    run.views[pause.ip] = replace(view, suspensions=(*view.suspensions, suspension))
    what = "every provider" if pause.scope == WHOLE_IP else pause.scope
    summary = f"{pause.ip} ({run.pool.name}) suspended for {what} until {suspension.until}"
    key = alert_key(AlertKind.SUSPENSION, run.pool.name, pause.ip, pause.scope)
    details = {
        "scope": pause.scope,
        "until": suspension.until,
        "reason": pause.reason,
        "rule": pause.rule,
        **pause.evidence,
    }
    run.alert(AlertKind.SUSPENSION, Severity.MEDIUM, key, summary, details, pause.ip)


def on_blocklist_named(run: Run, mention: BlocklistNamed) -> None:
    if mention.ip not in run.views:
        return
    run.actions.append(RecheckIp(mention.ip, f"remote reply names a blocklist ({mention.rule})"))
    if mention.provider is not None:
        evidence = {"reply": mention.reply_text}
        on_pause(
            run,
            Pause(
                mention.ip,
                mention.provider,
                mention.pause,
                "remote reply names a blocklist",
                mention.observed_at,
                mention.rule,
                evidence=evidence,
            ),
        )
