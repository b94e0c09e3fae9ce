"""One rotation decision in progress: the pool's views, updated as transitions are decided.

``rotation.decide`` makes a :class:`Run` and hands it to each rule in turn
(``rotation_sweep``, ``rotation_replies``, ``rotation_operator``,
``rotation_time``, ``rotation_promotion``); every rule records what it decides
here, so the later ones see the states the earlier ones left.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from hrmonitor.core.alert import Alert, AlertKind
from hrmonitor.core.model import IPState, Pool, Severity
from hrmonitor.core.rotation.decision import Action, Refusal, Transition
from hrmonitor.core.rotation.eligibility import eligible_ips
from hrmonitor.core.rotation.suspension import WHOLE_IP, current_for
from hrmonitor.core.rotation.views import IpView
from hrmonitor.core.rotation.warmup import WarmupView


class Run:
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
        self.promoted: list[str] = []  # standby IPs brought in to keep min_active

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
        event: str = "",
    ) -> None:
        self.alerts.append(
            Alert(
                kind,
                severity,
                key,
                summary,
                self.now,
                dict(details),
                self.pool.name,
                ip,
                resolved,
                event=event,
            )
        )

    def count_in_rotation(self) -> int:
        return sum(1 for view in self.views.values() if view.state.in_rotation)

    def eligible(self, exclude: str | None = None) -> tuple[str, ...]:
        """The IPs that may send now (``eligibility``: state, suspensions, warm-up capacity)."""
        views = [view for ip, view in sorted(self.views.items()) if ip != exclude]
        return eligible_ips(self.pool, views, self.now)

    def retire_worthy(self, view: IpView) -> bool:
        at = self.policy.retire_at
        return any(listing.severity.at_least(at) for listing in view.listings)

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
