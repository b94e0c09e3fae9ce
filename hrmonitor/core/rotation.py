"""The rotation state machine: evidence + now -> state transitions, actions and alerts, per pool.

``decide(pool, ips, evidence, now)`` sees exactly one pool and the views of
that pool's IPs; it refuses views of any other IP, ignores evidence about any
other IP, and can therefore only ever name that pool's IPs in its decision.
That is the structural reason no decision about one pool moves IPs or
traffic of another: the high-risk pool's troubles cannot reach the normal one.

The rules, in the order ``decide`` applies them:

1. **Sweeps.** Only answers from zones whose health is ``ok`` in that sweep
   count; ``unknown``/``error``/``info`` answers and answers from unhealthy
   zones are dropped before anything looks at them. A (confirmed) ``listed``
   answer alerts (``listing``; ``normal-ip-listed``, critical, for a normal
   pool) and, when the pool's ``on_listing`` is ``retire`` and the severity is
   at least ``retire_at``, retires an active, warming or standby IP at once.
   Standby IPs are retired too, so a listed IP is never promoted.
2. **Replies.** A :class:`~hrmonitor.core.suspension.Pause` suspends the
   (IP x provider) pair (see ``suspension.py``); a :class:`BlocklistNamed`
   reply asks for a DNSBL re-check of the IP and, when it names the provider,
   suspends the pair for ``pause`` too.
3. **Operators.** ``retire``/``disable`` take an IP out, ``restore`` brings a
   retired IP back to ``standby``, ``enable`` brings a disabled IP back to its
   configured role (``ips`` -> in rotation, ``standby`` -> standby). A reason
   is required. An action that would leave the pool with no IP in rotation
   (after promotions) is refused unless ``force`` is set.
4. **Time** (on every decision). A retired IP returns to ``standby`` - never
   straight to ``active`` - once its observed clean run covers the cool-down:
   ``clean_checked_at - max(clean_since, state_since) >= cooldown``, with no
   open listing; ``clean_since``/``clean_checked_at`` come from trustworthy
   sweeps only, so an outage of every zone stops the clock instead of passing
   for a clean day. An operator's ``until`` ends a disable (-> ``standby``)
   or an operator retirement (-> ``standby``, if no listing at ``retire_at``).
   Warming IPs advance or graduate at day boundaries (``warmup.py``).
5. **Promotion.** While fewer than ``min_active`` IPs are in rotation,
   standby IPs without open listings or whole-IP suspensions are promoted in
   configured order: to ``warming`` if the pool has a warm-up schedule and the
   IP never sent or idled for ``idle_rewarm``, else to ``active``.
6. **The last eligible IP.** A listing retirement is never held back to keep
   a pool alive: a listed high-risk IP must stop sending. So when the last IP
   in rotation is retired and no standby can replace it, the retirement still
   happens and a critical ``pool-exhausted`` alert fires, naming the pool's
   ``when_exhausted``: ``defer`` holds the pool's mail (the picker finds
   nobody), ``use-listed`` (normal pools only) lets the picker send through the
   least-listed IP. Never silent, never spilled into another pool. Below
   ``min_active`` (but not empty) a ``pool-below-min`` alert fires. Both
   resolve once the pool is back.

Every :class:`Transition` carries its audit event (:meth:`Transition.audit`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from hrmonitor.core.alert import Alert, AlertKind, alert_key
from hrmonitor.core.model import (
    Answer,
    AuditEvent,
    IPState,
    Listed,
    OnListing,
    Pool,
    RiskClass,
    Severity,
    WhenExhausted,
    ZoneHealth,
)
from hrmonitor.core.selection import IpCandidate
from hrmonitor.core.suspension import WHOLE_IP, Pause, Suspension, apply_pause, current_for
from hrmonitor.core.warmup import StageStep, WarmupView, daily_cap, needs_warmup, next_step

# --- What decide() looks at -------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class Sweep:
    """One stored sweep: the engine's (confirmed) answers and each zone's health in it."""

    at: datetime
    answers: tuple[Answer, ...]
    zone_health: Mapping[str, ZoneHealth]
    cleared: tuple[tuple[str, str], ...] = ()  # (ip, zone) listings this sweep cleared

    def trusted(self, zone: str) -> bool:
        return self.zone_health.get(zone) is ZoneHealth.OK


@dataclass(frozen=True, slots=True)
class BlocklistNamed:
    """A remote reply naming a blocklist: re-check the IP now; pause it for that provider."""

    ip: str
    reply_text: str
    observed_at: datetime
    rule: str
    provider: str | None = None
    pause: timedelta = timedelta(hours=2)


class Verb(StrEnum):
    RETIRE = "retire"
    RESTORE = "restore"
    DISABLE = "disable"
    ENABLE = "enable"


@dataclass(frozen=True, slots=True)
class OperatorAction:
    ip: str
    verb: Verb
    reason: str
    actor: str  # "operator:<name>"
    at: datetime
    until: datetime | None = None
    force: bool = False


@dataclass(frozen=True, slots=True)
class Tick:
    """Only time has passed."""

    at: datetime


Evidence = Sweep | Pause | BlocklistNamed | OperatorAction | Tick

# --- What decide() says -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transition:
    ip: str
    pool: str
    from_state: IPState
    to_state: IPState
    reason: str
    rule: str  # "rotation.retire", ... or "operator:<name>"
    at: datetime
    evidence: Mapping[str, object] = field(default_factory=dict)
    until: datetime | None = None

    def audit(self) -> AuditEvent:
        return AuditEvent(
            at=self.at,
            ip=self.ip,
            pool=self.pool,
            kind="state",
            from_state=str(self.from_state),
            to_state=str(self.to_state),
            reason=self.reason,
            actor=self.rule,
            evidence=dict(self.evidence),
            until=self.until,
        )


@dataclass(frozen=True, slots=True)
class Suspend:
    suspension: Suspension


@dataclass(frozen=True, slots=True)
class RecheckIp:
    ip: str
    reason: str


@dataclass(frozen=True, slots=True)
class SetWarmupStage:
    ip: str
    stage: int
    at: datetime
    reason: str


Action = Suspend | RecheckIp | SetWarmupStage


@dataclass(frozen=True, slots=True)
class Refusal:
    """An operator action that was not applied, and why (the CLI exits 2 with ``reason``)."""

    ip: str
    verb: Verb
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    pool: str
    transitions: tuple[Transition, ...] = ()
    actions: tuple[Action, ...] = ()
    alerts: tuple[Alert, ...] = ()
    refusals: tuple[Refusal, ...] = ()


# --- decide() ---------------------------------------------------------------------------


def decide(
    pool: Pool, ips: Sequence[IpView], evidence: Sequence[Evidence], now: datetime
) -> Decision:
    """Everything that should happen to ``pool`` given ``evidence`` (module docstring)."""
    members = set(pool.all_ips)
    for view in ips:
        if view.pool != pool.name or view.ip not in members:
            raise ValueError(f"{view.ip} (pool {view.pool}) is not an IP of pool {pool.name}")
    run = _Run(pool, {view.ip: view for view in ips}, now)
    for item in evidence:
        match item:
            case Sweep():
                run.sweep(item)
            case Pause():
                run.pause(item)
            case BlocklistNamed():
                run.blocklist(item)
            case OperatorAction():
                run.operator(item)
            case Tick():
                pass
    run.time_passes()
    run.promote("min_active")
    run.pool_alerts(any(isinstance(item, Tick) for item in evidence))
    return Decision(
        pool.name,
        tuple(run.transitions),
        tuple(run.actions),
        tuple(run.alerts),
        tuple(run.refusals),
    )


def in_rotation_count(ips: Sequence[IpView]) -> int:
    return sum(1 for view in ips if view.state.in_rotation)


class _Run:
    """One decision in progress: views updated as transitions are decided."""

    def __init__(self, pool: Pool, views: dict[str, IpView], now: datetime) -> None:
        self.pool = pool
        self.policy = pool.policy
        self.views = views
        self.now = now
        self.transitions: list[Transition] = []
        self.actions: list[Action] = []
        self.alerts: list[Alert] = []
        self.refusals: list[Refusal] = []

    # -- helpers

    def move(
        self,
        ip: str,
        to: IPState,
        reason: str,
        rule: str,
        evidence: Mapping[str, object],
        until: datetime | None = None,
    ) -> Transition:
        view = self.views[ip]
        transition = Transition(
            ip, self.pool.name, view.state, to, reason, rule, self.now, dict(evidence), until
        )
        self.transitions.append(transition)
        warmup = view.warmup
        if to is IPState.WARMING:
            warmup = WarmupView(stage=0, stage_since=self.now)
        self.views[ip] = replace(
            view, state=to, state_since=self.now, state_until=until, warmup=warmup
        )
        return transition

    def alert(
        self,
        kind: AlertKind,
        severity: Severity,
        key: str,
        summary: str,
        details: Mapping[str, object],
        ip: str | None = None,
        resolved: bool = False,
    ) -> None:
        self.alerts.append(
            Alert(
                kind, severity, key, summary, self.now, dict(details), self.pool.name, ip, resolved
            )
        )

    def count_in_rotation(self) -> int:
        return sum(1 for view in self.views.values() if view.state.in_rotation)

    def retire_worthy(self, view: IpView) -> bool:
        at = self.policy.retire_at
        return any(listing.severity.at_least(at) for listing in view.listings)

    # -- evidence

    def sweep(self, sweep: Sweep) -> None:
        for answer in sweep.answers:
            if answer.ip not in self.views or not sweep.trusted(answer.zone):
                continue  # another pool's IP, or an untrustworthy zone: changes nothing
            if isinstance(answer, Listed):
                self.listed(answer)
        for ip, zone in sweep.cleared:
            if ip in self.views and sweep.trusted(zone):
                key = alert_key(AlertKind.LISTING, self.pool.name, ip, zone)
                summary = f"{ip} ({self.pool.name}) is no longer listed on {zone}"
                details = {"zone": zone, "observed_at": sweep.at}
                self.alert(AlertKind.DELISTING, Severity.LOW, key, summary, details, ip, True)
                if self.pool.risk is RiskClass.NORMAL:
                    nkey = alert_key(AlertKind.NORMAL_IP_LISTED, self.pool.name, ip, zone)
                    self.alert(
                        AlertKind.NORMAL_IP_LISTED,
                        Severity.CRITICAL,
                        nkey,
                        summary,
                        details,
                        ip,
                        True,
                    )

    def listed(self, answer: Listed) -> None:
        ip, pool = answer.ip, self.pool.name
        details: dict[str, object] = {
            "zone": answer.zone,
            "codes": list(answer.codes),
            "tags": list(answer.tags),
            "severity": str(answer.severity),
            "txt": answer.txt,
        }
        key = alert_key(AlertKind.LISTING, pool, ip, answer.zone)
        reason = f"listed on {answer.zone} ({', '.join(answer.codes)}) {answer.txt}".strip()
        if self.pool.risk is RiskClass.NORMAL:
            # Its own key: the monitor's plain listing alert must not dedupe this one away.
            nkey = alert_key(AlertKind.NORMAL_IP_LISTED, pool, ip, answer.zone)
            summary = f"normal-pool IP {ip} ({pool}) is {reason}"
            self.alert(AlertKind.NORMAL_IP_LISTED, Severity.CRITICAL, nkey, summary, details, ip)
        else:
            summary = f"{ip} ({pool}) is {reason}"
            self.alert(AlertKind.LISTING, answer.severity, key, summary, details, ip)
        view = self.views[ip]
        self.views[ip] = replace(
            view,
            listings=(
                *view.listings,
                OpenListing(answer.zone, answer.codes, answer.severity, self.now, answer.tags),
            ),
            clean_since=None,
            clean_checked_at=None,
        )
        if (
            self.policy.on_listing is OnListing.RETIRE
            and answer.severity.at_least(self.policy.retire_at)
            and view.state in (IPState.ACTIVE, IPState.WARMING, IPState.STANDBY)
        ):
            self.move(ip, IPState.RETIRED, reason, "rotation.retire", details)
            severity = Severity.CRITICAL if self.pool.risk is RiskClass.NORMAL else Severity.HIGH
            summary = f"{ip} retired from pool {pool}: {reason}"
            rkey = alert_key(AlertKind.RETIREMENT, pool, ip)
            self.alert(AlertKind.RETIREMENT, severity, rkey, summary, details, ip)

    def pause(self, pause: Pause) -> None:
        if pause.ip not in self.views:
            return
        view = self.views[pause.ip]
        current = current_for(view.suspensions, pause.ip, pause.scope, self.now)
        suspension = apply_pause(current, pause, self.now)
        if suspension is None:
            return
        self.actions.append(Suspend(suspension))
        self.views[pause.ip] = replace(view, suspensions=(*view.suspensions, suspension))
        what = "every provider" if pause.scope == WHOLE_IP else pause.scope
        summary = f"{pause.ip} ({self.pool.name}) suspended for {what} until {suspension.until}"
        key = alert_key(AlertKind.SUSPENSION, self.pool.name, pause.ip, pause.scope)
        details = {
            "scope": pause.scope,
            "until": suspension.until,
            "reason": pause.reason,
            "rule": pause.rule,
            **pause.evidence,
        }
        self.alert(AlertKind.SUSPENSION, Severity.MEDIUM, key, summary, details, pause.ip)

    def blocklist(self, mention: BlocklistNamed) -> None:
        if mention.ip not in self.views:
            return
        self.actions.append(
            RecheckIp(mention.ip, f"remote reply names a blocklist ({mention.rule})")
        )
        if mention.provider is not None:
            evidence = {"reply": mention.reply_text}
            self.pause(
                Pause(
                    mention.ip,
                    mention.provider,
                    mention.pause,
                    "remote reply names a blocklist",
                    mention.observed_at,
                    mention.rule,
                    evidence=evidence,
                )
            )

    def operator(self, action: OperatorAction) -> None:
        if action.ip not in self.views:
            return  # another pool's IP: the controller sends the action to that pool
        problem = self.refusal(action)
        if problem is not None:
            self.refusals.append(Refusal(action.ip, action.verb, problem))
            return
        view = self.views[action.ip]
        target = operator_target(self.pool, view, action.verb, self.now)
        evidence: dict[str, object] = {"verb": str(action.verb), "force": action.force}
        self.move(action.ip, target, action.reason, action.actor, evidence, action.until)
        kind = _OPERATOR_ALERT[action.verb]
        key_kind = AlertKind.RETIREMENT if action.verb in (Verb.RETIRE, Verb.RESTORE) else kind
        key = alert_key(key_kind, self.pool.name, action.ip)
        summary = f"{action.actor} {action.verb}d {action.ip} ({self.pool.name}): {action.reason}"
        resolved = action.verb in (Verb.RESTORE, Verb.ENABLE)
        details = {**evidence, "reason": action.reason, "until": action.until}
        self.alert(kind, Severity.MEDIUM, key, summary, details, action.ip, resolved)

    def refusal(self, action: OperatorAction) -> str | None:
        """Why an operator action may not be applied, or None."""
        view = self.views.get(action.ip)
        if view is None:
            return f"{action.ip} is not an IP of pool {self.pool.name}"
        if not action.reason.strip():
            return "a reason is required"
        if action.until is not None and action.until <= self.now:
            return f"--until {action.until.isoformat()} is not in the future"
        allowed = _OPERATOR_FROM[action.verb]
        if view.state not in allowed:
            return f"cannot {action.verb} {action.ip}: it is {view.state}"
        if action.force:
            return None
        if action.verb is Verb.RESTORE and self.retire_worthy(view):
            zones = ", ".join(sorted(lst.zone for lst in view.listings))
            return f"{action.ip} is still listed ({zones}); restore it with --force"
        if action.verb in (Verb.RETIRE, Verb.DISABLE) and view.state.in_rotation:
            others = self.count_in_rotation() - 1
            if others == 0 and not self.promotable(exclude=action.ip):
                return (
                    f"{action.ip} is the last eligible IP of pool {self.pool.name} and no standby"
                    " can replace it; repeat with --force to take it out anyway"
                )
        return None

    # -- time

    def time_passes(self) -> None:
        for ip in sorted(self.views):
            view = self.views[ip]
            if view.state is IPState.RETIRED:
                self.maybe_restore(view)
            elif view.state is IPState.DISABLED:
                if view.state_until is not None and self.now >= view.state_until:
                    evidence = {"until": view.state_until}
                    self.move(ip, IPState.STANDBY, "disable expired", "rotation.until", evidence)
                    key = alert_key(AlertKind.OPERATOR_ACTION, self.pool.name, ip)
                    summary = f"{ip} ({self.pool.name}): disable expired, now standby"
                    self.alert(
                        AlertKind.OPERATOR_ACTION, Severity.LOW, key, summary, evidence, ip, True
                    )
            elif view.state is IPState.WARMING and view.warmup is not None:
                self.warm(view, view.warmup)

    def maybe_restore(self, view: IpView) -> None:
        ip = view.ip
        evidence: dict[str, object]
        if view.state_until is not None and self.now < view.state_until:
            return
        clean_all_along = (
            view.clean_since is not None
            and not view.listings
            and view.clean_since <= view.state_since
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
            if clean_for < self.policy.cooldown:
                return
            evidence = {
                "clean_since": clean_from,
                "clean_checked_at": view.clean_checked_at,
                "cooldown": str(self.policy.cooldown),
            }
            reason = f"clean on every zone for the cool-down ({self.policy.cooldown})"
        self.move(ip, IPState.STANDBY, reason, "rotation.restore", evidence)
        key = alert_key(AlertKind.RETIREMENT, self.pool.name, ip)
        summary = f"{ip} ({self.pool.name}) restored to standby: {reason}"
        self.alert(AlertKind.RESTORATION, Severity.LOW, key, summary, evidence, ip, True)

    def warm(self, view: IpView, warmup: WarmupView) -> None:
        step = next_step(self.policy, warmup, self.now)
        evidence = {
            "stage": warmup.stage,
            "day": warmup.day,
            "sent": warmup.sent,
            "delivered": warmup.delivered,
        }
        if step is StageStep.ADVANCE:
            stage = warmup.stage + 1
            self.actions.append(
                SetWarmupStage(view.ip, stage, self.now, f"stage {warmup.stage} delivered well")
            )
            self.views[view.ip] = replace(
                view, warmup=replace(warmup, stage=stage, stage_since=self.now)
            )
        elif step is StageStep.GRADUATE:
            reason = "warm-up schedule completed"
            self.move(view.ip, IPState.ACTIVE, reason, "rotation.warmup", evidence)
            key = alert_key(AlertKind.PROMOTION, self.pool.name, view.ip, self.now.isoformat())
            self.alert(
                AlertKind.PROMOTION,
                Severity.LOW,
                key,
                f"{view.ip} ({self.pool.name}) finished warm-up, now active",
                evidence,
                view.ip,
            )

    # -- promotion and pool-level alerts

    def promotable(self, exclude: str | None = None) -> list[str]:
        found = []
        for ip in self.pool.all_ips:
            view = self.views.get(ip)
            if view is None or ip == exclude or view.state is not IPState.STANDBY:
                continue
            if view.listings or current_for(view.suspensions, ip, WHOLE_IP, self.now) is not None:
                continue
            found.append(ip)
        return found

    def promote(self, why: str) -> None:
        need = max(self.policy.min_active, 1) - self.count_in_rotation()
        for ip in self.promotable()[: max(need, 0)]:
            view = self.views[ip]
            warming = needs_warmup(self.policy, view.last_sent_at, self.now)
            to = IPState.WARMING if warming else IPState.ACTIVE
            reason = f"promoted to keep {why} ({self.policy.min_active}) in rotation"
            evidence: dict[str, object] = {"last_sent_at": view.last_sent_at, "warmup": warming}
            self.move(ip, to, reason, "rotation.promote", evidence)
            key = alert_key(AlertKind.PROMOTION, self.pool.name, ip, self.now.isoformat())
            summary = f"{ip} promoted to {to} in pool {self.pool.name}"
            self.alert(AlertKind.PROMOTION, Severity.LOW, key, summary, evidence, ip)

    def pool_alerts(self, tick: bool) -> None:
        if not (self.transitions or tick):
            return
        pool, count = self.pool.name, self.count_in_rotation()
        exhausted = alert_key(AlertKind.POOL_EXHAUSTED, pool)
        below = alert_key(AlertKind.POOL_BELOW_MIN, pool)
        details: dict[str, object] = {
            "in_rotation": count,
            "min_active": self.policy.min_active,
            "when_exhausted": str(self.policy.when_exhausted),
            "states": {ip: str(view.state) for ip, view in sorted(self.views.items())},
        }
        if count == 0:
            if self.pool.risk is RiskClass.NORMAL and (
                self.policy.when_exhausted is WhenExhausted.USE_LISTED
            ):
                what = "sending through its least-listed IP"
            else:
                what = "holding its mail"
            summary = f"pool {pool} has no IP in rotation: {what}"
            self.alert(AlertKind.POOL_EXHAUSTED, Severity.CRITICAL, exhausted, summary, details)
        else:
            summary = f"pool {pool} has IPs in rotation again"
            self.alert(
                AlertKind.POOL_EXHAUSTED,
                Severity.CRITICAL,
                exhausted,
                summary,
                details,
                resolved=True,
            )
        if 0 < count < self.policy.min_active:
            summary = f"pool {pool} has {count} IPs in rotation, below min_active"
            self.alert(AlertKind.POOL_BELOW_MIN, Severity.HIGH, below, summary, details)
        elif count >= self.policy.min_active:
            summary = f"pool {pool} is back at min_active"
            self.alert(
                AlertKind.POOL_BELOW_MIN, Severity.HIGH, below, summary, details, resolved=True
            )


_OPERATOR_FROM: Mapping[Verb, frozenset[IPState]] = {
    Verb.RETIRE: frozenset({IPState.ACTIVE, IPState.WARMING, IPState.STANDBY}),
    Verb.DISABLE: frozenset({IPState.ACTIVE, IPState.WARMING, IPState.STANDBY, IPState.RETIRED}),
    Verb.RESTORE: frozenset({IPState.RETIRED}),
    Verb.ENABLE: frozenset({IPState.DISABLED}),
}

_OPERATOR_ALERT: Mapping[Verb, AlertKind] = {
    Verb.RETIRE: AlertKind.RETIREMENT,
    Verb.RESTORE: AlertKind.RESTORATION,
    Verb.DISABLE: AlertKind.OPERATOR_ACTION,
    Verb.ENABLE: AlertKind.OPERATOR_ACTION,
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


# --- What the picker sees ---------------------------------------------------------------


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
