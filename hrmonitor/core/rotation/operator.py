"""Rotation rule 3, operators: retire, restore, disable, enable - or a refusal saying why not.

``retire``/``disable`` take an IP out, ``restore`` brings a retired IP back to
``standby``, ``enable`` brings a disabled IP back to its configured role and
lifts a bind failure (whatever the IP's state). A
reason is required; an action that would leave the pool with no IP eligible
to send (``eligibility``) is refused unless ``force`` is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from hrmonitor.core.alert import AlertKind, alert_key
from hrmonitor.core.model import IPState, Pool, Severity
from hrmonitor.core.rotation.decision import Lift, Refusal
from hrmonitor.core.rotation.evidence import OperatorAction, Verb
from hrmonitor.core.rotation.run import Run
from hrmonitor.core.rotation.suspension import WHOLE_IP, bind_suspension
from hrmonitor.core.rotation.views import IpView
from hrmonitor.core.rotation.warmup import needs_warmup


def on_operator_action(run: Run, action: OperatorAction) -> None:
    if action.ip not in run.views:
        return  # another pool's IP: the controller sends the action to that pool
    problem = _refusal(run, action)
    if problem is not None:
        run.refusals.append(Refusal(action.ip, action.verb, problem))
        return
    view = run.views[action.ip]
    evidence: dict[str, object] = {"verb": str(action.verb), "force": action.force}
    if action.verb is Verb.ENABLE:
        _lift_bind_failure(run, view, action)
        if view.state is not IPState.DISABLED:
            return
    target = operator_target(run.pool, view, action.verb, run.now)
    run.move(action.ip, target, action.reason, action.actor, evidence, action.until)
    # A restore resolves the retirement alert and an enable the disable's, under their
    # kind and severity; ``event`` says which verb it was.
    kind = _OPERATOR_ALERT[action.verb]
    key = alert_key(kind, run.pool.name, action.ip)
    summary = f"{action.actor} {action.verb}d {action.ip} ({run.pool.name}): {action.reason}"
    resolved = action.verb in (Verb.RESTORE, Verb.ENABLE)
    details = {**evidence, "reason": action.reason, "until": action.until}
    event = _OPERATOR_EVENT.get(action.verb, "")
    run.alert(kind, Severity.MEDIUM, key, summary, details, action.ip, resolved, event)


def _lift_bind_failure(run: Run, view: IpView, action: OperatorAction) -> None:
    """``ip enable`` also lifts a bind failure: the operator says the address is there now."""
    held = bind_suspension(view, run.now)
    if held is None:
        return
    run.actions.append(Lift(action.ip, WHOLE_IP, action.reason, action.actor))
    live = tuple(s for s in view.suspensions if s is not held)
    run.views[action.ip] = replace(view, suspensions=live)
    key = alert_key(AlertKind.SUSPENSION, run.pool.name, action.ip, WHOLE_IP)
    summary = f"{action.actor} lifted the bind failure of {action.ip} ({run.pool.name})"
    details = {"reason": action.reason, "was": held.reason}
    run.alert(AlertKind.SUSPENSION, Severity.MEDIUM, key, summary, details, action.ip, True)


def _refusal(run: Run, action: OperatorAction) -> str | None:
    """Why an operator action may not be applied, or None."""
    view = run.views.get(action.ip)
    if view is None:
        return f"{action.ip} is not an IP of pool {run.pool.name}"
    if not action.reason.strip():
        return "a reason is required"
    if action.until is not None and action.until <= run.now:
        return f"--until {action.until.isoformat()} is not in the future"
    allowed = _OPERATOR_FROM[action.verb]
    if action.verb is Verb.ENABLE and bind_suspension(view, run.now) is not None:
        return None  # enable lifts a bind failure whatever the state
    if view.state not in allowed:
        return f"cannot {action.verb} {action.ip}: it is {view.state}"
    if action.force:
        return None
    if action.verb is Verb.RESTORE and run.retire_worthy(view):
        zones = ", ".join(sorted(lst.zone for lst in view.listings))
        return f"{action.ip} is still listed ({zones}); restore it with --force"
    taking_out = action.verb in (Verb.RETIRE, Verb.DISABLE) and action.ip in run.eligible()
    if taking_out and not run.eligible(action.ip) and not run.promotable(action.ip):
        return (
            f"{action.ip} is the last eligible IP of pool {run.pool.name} and no standby"
            " can replace it; repeat with --force to take it out anyway"
        )
    return None


_OPERATOR_FROM: Mapping[Verb, frozenset[IPState]] = {
    Verb.RETIRE: frozenset({IPState.ACTIVE, IPState.WARMING, IPState.STANDBY}),
    Verb.DISABLE: frozenset({IPState.ACTIVE, IPState.WARMING, IPState.STANDBY, IPState.RETIRED}),
    Verb.RESTORE: frozenset({IPState.RETIRED}),
    Verb.ENABLE: frozenset({IPState.DISABLED}),
}

_OPERATOR_ALERT: Mapping[Verb, AlertKind] = {
    Verb.RETIRE: AlertKind.RETIREMENT,
    Verb.RESTORE: AlertKind.RETIREMENT,
    Verb.DISABLE: AlertKind.OPERATOR_ACTION,
    Verb.ENABLE: AlertKind.OPERATOR_ACTION,
}

_OPERATOR_EVENT: Mapping[Verb, str] = {
    Verb.RESTORE: str(AlertKind.RESTORATION),
    Verb.ENABLE: "enable",
}


def operator_target(pool: Pool, view: IpView, verb: Verb, now: datetime) -> IPState:
    """Where an operator verb takes an IP (``enable`` returns it to its configured role)."""
    if verb is Verb.RETIRE:
        return IPState.RETIRED
    if verb is Verb.DISABLE:
        return IPState.DISABLED
    if verb is Verb.ENABLE and view.ip in pool.ips:
        warming = needs_warmup(pool.policy, view.last_sent_at, now)
        return IPState.WARMING if warming else IPState.ACTIVE
    return IPState.STANDBY
