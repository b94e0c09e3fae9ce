"""Rotation rule 4, time: cool-downs end retirements, ``until`` ends disables, warm-up advances.

Applied on every decision. A retired IP returns to ``standby`` (never straight
to ``active``) once its observed clean run covers the cool-down; an operator's
``until`` ends a disable or an operator retirement; warming IPs advance a
stage or graduate at day boundaries (``warmup.next_step``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from hrmonitor.core.alert import AlertKind, alert_key
from hrmonitor.core.model import IPState, PoolPolicy, Severity
from hrmonitor.core.rotation.decision import SetWarmupStage
from hrmonitor.core.rotation.run import Run
from hrmonitor.core.rotation.views import IpView
from hrmonitor.core.rotation.warmup import StageStep, WarmupView, next_step


def time_passes(run: Run) -> None:
    for ip in sorted(run.views):
        view = run.views[ip]
        if view.state is IPState.RETIRED:
            _maybe_restore(run, view)
        elif view.state is IPState.DISABLED:
            if view.state_until is not None and run.now >= view.state_until:
                evidence = {"until": view.state_until}
                run.move(ip, IPState.STANDBY, "disable expired", "rotation.until", evidence)
                key = alert_key(AlertKind.OPERATOR_ACTION, run.pool.name, ip)
                summary = f"{ip} ({run.pool.name}): disable expired, now standby"
                run.alert(AlertKind.OPERATOR_ACTION, Severity.MEDIUM, key, summary, evidence, ip,
                          True, event="disable-expired")  # fmt: skip
        elif view.state is IPState.WARMING and view.warmup is not None:
            _warm(run, view, view.warmup)


def _maybe_restore(run: Run, view: IpView) -> None:
    ip = view.ip
    evidence: dict[str, object]
    if view.state_until is not None and run.now < view.state_until:
        return
    clean_all_along = (
        view.clean_since is not None and not view.listings and view.clean_since <= view.state_since
    )
    if view.state_until is not None and clean_all_along:
        evidence = {"until": view.state_until}
        reason = "operator retirement ended"
    elif view.state_until is None and view.state_actor.startswith("operator:"):
        return  # an operator retirement without --until ends by `ip restore` only
    else:
        # A listing retirement, or an operator's whose IP got listed meanwhile: the
        # cool-down decides.
        if view.listings or view.clean_since is None or view.clean_checked_at is None:
            return
        clean_from = max(view.clean_since, view.state_since)
        clean_for = view.clean_checked_at - clean_from
        if clean_for < run.policy.cooldown:
            return
        evidence = {
            "clean_since": clean_from,
            "clean_checked_at": view.clean_checked_at,
            "cooldown": str(run.policy.cooldown),
        }
        reason = f"clean on every zone for the cool-down ({run.policy.cooldown})"
    run.move(ip, IPState.STANDBY, reason, "rotation.restore", evidence)
    summary = f"{ip} ({run.pool.name}) restored to standby: {reason}"
    # A retirement alert open under the IP's key (an operator's, or one told apart
    # from its listing) is resolved, keeping its kind and severity (the alerting takes
    # them from the store; it sends nothing when none is open).
    key = alert_key(AlertKind.RETIREMENT, run.pool.name, ip)
    run.alert(AlertKind.RETIREMENT, Severity.MEDIUM, key, summary, evidence, ip, True,
              event="restoration")  # fmt: skip
    if not view.state_actor.startswith("operator:"):
        # A listing retirement was told by its listing alert, resolved at the delisting:
        # the return, a cool-down later, is an event of its own.
        key = alert_key(AlertKind.RESTORATION, run.pool.name, ip, run.now.isoformat())
        run.alert(AlertKind.RESTORATION, Severity.LOW, key, summary, evidence, ip)


def _warm(run: Run, view: IpView, warmup: WarmupView) -> None:
    step = next_step(run.policy, warmup, run.now)
    evidence = {
        "stage": warmup.stage,
        "day": warmup.day,
        "sent": warmup.sent,
        "delivered": warmup.delivered,
    }
    if step is StageStep.ADVANCE:
        stage = warmup.stage + 1
        run.actions.append(
            SetWarmupStage(view.ip, stage, run.now, f"stage {warmup.stage} delivered well")
        )
        run.views[view.ip] = replace(view, warmup=replace(warmup, stage=stage, stage_since=run.now))
    elif step is StageStep.GRADUATE:
        reason = "warm-up schedule completed"
        run.move(view.ip, IPState.ACTIVE, reason, "rotation.warmup", evidence)
        key = alert_key(AlertKind.PROMOTION, run.pool.name, view.ip, run.now.isoformat())
        run.alert(
            AlertKind.PROMOTION,
            Severity.LOW,
            key,
            f"{view.ip} ({run.pool.name}) finished warm-up, now active",
            evidence,
            view.ip,
        )


class ReturnClock(StrEnum):
    """What a retired IP waits on before it returns to ``standby``."""

    COOLDOWN = "cooldown"  # clean on every healthy configured zone for the pool's cool-down
    DELISTING = "delisting"  # still listed: the cool-down starts when the listing clears
    NO_EVIDENCE = "no-evidence"  # no healthy zone answers clean: the clock is stopped
    OPERATOR_UNTIL = "operator-until"  # an operator retirement with --until
    OPERATOR_RESTORE = "operator-restore"  # an operator retirement without --until


@dataclass(frozen=True, slots=True)
class ReturnOutlook:
    """Why a retired IP is still out, which clock it waits on, and its earliest return."""

    waits_on: ReturnClock
    detail: str
    earliest: datetime | None  # None: not while the clock is stopped or an operator decides


def return_outlook(view: IpView, policy: PoolPolicy) -> ReturnOutlook:
    """The same rules as the restore above (``_maybe_restore``), told rather than applied.

    ``view.clean_since``/``clean_checked_at`` must come from the zones the
    cool-down counts (healthy and configured), as for ``decide``.
    """
    cooldown = policy.cooldown
    clean_all_along = (
        view.clean_since is not None and not view.listings and view.clean_since <= view.state_since
    )
    if view.state_until is not None and clean_all_along:
        detail = f"retired by {view.state_actor} until {view.state_until.isoformat()}"
        return ReturnOutlook(ReturnClock.OPERATOR_UNTIL, detail, view.state_until)
    if view.state_actor.startswith("operator:") and view.state_until is None:
        detail = "an operator retired it without --until: it returns by `hrmonitor ip restore`"
        return ReturnOutlook(ReturnClock.OPERATOR_RESTORE, detail, None)
    if view.listings:
        zones = ", ".join(sorted({listing.zone for listing in view.listings}))
        detail = f"listed on {zones}; the {cooldown} cool-down starts when the listing clears"
        return ReturnOutlook(ReturnClock.DELISTING, detail, None)
    if view.clean_since is None:
        detail = (
            "no clean run on the healthy configured zones yet (a zone without an answer, or"
            " none healthy): the cool-down clock is stopped"
        )
        return ReturnOutlook(ReturnClock.NO_EVIDENCE, detail, None)
    clean_from = max(view.clean_since, view.state_since)
    earliest = clean_from + cooldown
    if view.state_until is not None:
        earliest = max(earliest, view.state_until)
    detail = f"clean since {clean_from.isoformat()}; needs {cooldown} clean (the pool's cool-down)"
    return ReturnOutlook(ReturnClock.COOLDOWN, detail, earliest)
