"""A tiny in-memory world for the rotation core: it keeps IP views the way the store would.

It applies decisions (transitions, suspensions, warm-up stages) and folds
sweeps into listings and clean runs using trustworthy answers only, so the
scenario tables and the Hypothesis properties drive ``decide`` over time
exactly as the controller does. The tests at the bottom pin the world's own
bookkeeping, which the properties rely on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hrmonitor.core.alert import Alert
from hrmonitor.core.model import (
    Answer,
    AuditEvent,
    Clean,
    IPState,
    Listed,
    Pool,
    PoolPolicy,
    RiskClass,
    Severity,
    Unknown,
    WhenExhausted,
    ZoneHealth,
)
from hrmonitor.core.rotation.decide import (
    Decision,
    Evidence,
    IpView,
    Lift,
    OpenListing,
    SetWarmupStage,
    Suspend,
    Sweep,
    Transition,
    decide,
)

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ZONES = ("zen", "spamcop")


def high_pool(
    ips: Sequence[str] = ("10.0.0.1", "10.0.0.2"),
    standby: Sequence[str] = ("10.0.0.3",),
    **policy: Any,
) -> Pool:
    return Pool(
        "high-risk",
        RiskClass.HIGH,
        tuple(ips),
        tuple(standby),
        PoolPolicy(**policy),
        timedelta(minutes=15),
    )


def normal_pool(
    ips: Sequence[str] = ("10.1.0.1", "10.1.0.2"),
    standby: Sequence[str] = (),
    **policy: Any,
) -> Pool:
    defaults: dict[str, Any] = {"when_exhausted": WhenExhausted.USE_LISTED}
    return Pool(
        "normal",
        RiskClass.NORMAL,
        tuple(ips),
        tuple(standby),
        PoolPolicy(**{**defaults, **policy}),
        timedelta(minutes=30),
    )


@dataclass
class World:
    pools: Sequence[Pool]
    now: datetime = T0
    views: dict[str, IpView] = field(default_factory=dict)
    audit: list[AuditEvent] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    stages: list[SetWarmupStage] = field(default_factory=list)
    # per (ip, zone): (clean_since or None when listed, checked_at) from trustworthy answers
    answers: dict[tuple[str, str], tuple[datetime | None, datetime]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for pool in self.pools:
            for ip in pool.ips:
                self.views[ip] = IpView(
                    ip,
                    pool.name,
                    IPState.ACTIVE,
                    self.now,
                    last_sent_at=self.now - timedelta(hours=1),
                )
            for ip in pool.standby:
                self.views[ip] = IpView(ip, pool.name, IPState.STANDBY, self.now)

    def pool(self, name: str) -> Pool:
        return next(p for p in self.pools if p.name == name)

    def pool_views(self, pool: Pool) -> list[IpView]:
        return [self.views[ip] for ip in pool.all_ips]

    def state(self, ip: str) -> IPState:
        return self.views[ip].state

    def sweep(
        self,
        listed: Mapping[str, Severity] | Iterable[str] = (),
        health: Mapping[str, ZoneHealth] | None = None,
        unknown: Iterable[str] = (),
        zone: str = "zen",
    ) -> Sweep:
        """A sweep of every IP on every zone; ``listed`` IPs are listed on ``zone``."""
        listed = (
            dict(listed)
            if isinstance(listed, Mapping)
            else dict.fromkeys(listed, Severity.CRITICAL)
        )
        unknown = set(unknown)
        zone_health = {z: ZoneHealth.OK for z in ZONES} | dict(health or {})
        answers: list[Answer] = []
        cleared: list[tuple[str, str]] = []
        for ip in self.views:
            for z in ZONES:
                answer: Answer
                if ip in unknown:
                    answer = Unknown(ip, z, "timeout")
                elif z == zone and ip in listed:
                    answer = Listed(ip, z, ("127.0.0.2",), ("SBL",), listed[ip], "see lookup")
                else:
                    answer = Clean(ip, z)
                answers.append(answer)
                trusted = zone_health[z] is ZoneHealth.OK and not isinstance(answer, Unknown)
                if trusted and self._fold(answer):
                    cleared.append((ip, z))
        self._refresh_clean()
        return Sweep(self.now, tuple(answers), zone_health, tuple(cleared))

    def _fold(self, answer: Answer) -> bool:
        """Record a trustworthy answer; True when it clears an open listing."""
        key = (answer.ip, answer.zone)
        previous = self.answers.get(key)
        view = self.views[answer.ip]
        if isinstance(answer, Listed):
            self.answers[key] = (None, self.now)
            if not any(lst.zone == answer.zone for lst in view.listings):
                listing = OpenListing(
                    answer.zone, answer.codes, answer.severity, self.now, answer.tags, answer.txt
                )
                self.views[answer.ip] = replace(view, listings=(*view.listings, listing))
            return False
        since = previous[0] if previous is not None and previous[0] is not None else self.now
        self.answers[key] = (since, self.now)
        kept = tuple(lst for lst in view.listings if lst.zone != answer.zone)
        self.views[answer.ip] = replace(view, listings=kept)
        return len(kept) != len(view.listings)

    def _refresh_clean(self) -> None:
        for ip, view in self.views.items():
            runs = [self.answers.get((ip, z)) for z in ZONES]
            if all(r is not None and r[0] is not None for r in runs):
                since = max(r[0] for r in runs if r is not None and r[0] is not None)
                checked = min(r[1] for r in runs if r is not None)
                self.views[ip] = replace(view, clean_since=since, clean_checked_at=checked)
            else:
                self.views[ip] = replace(view, clean_since=None, clean_checked_at=None)

    def decide(self, pool_name: str, evidence: Sequence[Evidence]) -> Decision:
        pool = self.pool(pool_name)
        decision = decide(pool, self.pool_views(pool), evidence, self.now)
        self.apply(decision)
        return decision

    def step(self, evidence: Sequence[Evidence]) -> dict[str, Decision]:
        return {pool.name: self.decide(pool.name, evidence) for pool in self.pools}

    def apply(self, decision: Decision) -> None:
        for t in decision.transitions:
            view = self.views[t.ip]
            assert view.state is t.from_state, f"{t} does not start from {view.state}"
            warmup = view.warmup
            if t.to_state is IPState.WARMING:
                from hrmonitor.core.rotation.warmup import WarmupView

                warmup = WarmupView(0, t.at)
            self.views[t.ip] = replace(
                view,
                state=t.to_state,
                state_since=t.at,
                state_until=t.until,
                state_actor=t.rule,
                warmup=warmup,
            )
            self.audit.append(t.audit())
            self.transitions.append(t)
        for action in decision.actions:
            if isinstance(action, Suspend):
                s = action.suspension
                view = self.views[s.ip]
                others = tuple(x for x in view.suspensions if x.scope != s.scope)
                self.views[s.ip] = replace(view, suspensions=(*others, s))
            elif isinstance(action, Lift):
                view = self.views[action.ip]
                kept = tuple(x for x in view.suspensions if x.scope != action.scope)
                self.views[action.ip] = replace(view, suspensions=kept)
            elif isinstance(action, SetWarmupStage):
                view = self.views[action.ip]
                assert view.warmup is not None
                self.views[action.ip] = replace(
                    view, warmup=replace(view.warmup, stage=action.stage, stage_since=action.at)
                )
                self.stages.append(action)
        self.alerts.extend(decision.alerts)

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def moves(decision: Decision) -> list[tuple[str, IPState, IPState]]:
    return [(t.ip, t.from_state, t.to_state) for t in decision.transitions]


def kinds(decision: Decision, resolved: bool = False) -> set[str]:
    return {str(a.kind) for a in decision.alerts if a.resolved is resolved}


# --- the world's own bookkeeping ---------------------------------------------------------


def test_world_clean_run_ignores_untrusted_zones() -> None:
    """A sweep with an unhealthy zone does not extend the clean run's checked time."""
    world = World([high_pool()])
    world.sweep()
    first = world.views["10.0.0.1"].clean_checked_at
    world.advance(timedelta(hours=1))
    world.sweep(health={"spamcop": ZoneHealth.UNREACHABLE})
    assert world.views["10.0.0.1"].clean_checked_at == first
    world.advance(timedelta(hours=1))
    world.sweep()
    assert world.views["10.0.0.1"].clean_checked_at == world.now


def test_world_listing_breaks_the_clean_run() -> None:
    """A trustworthy listing ends the clean run; the next clean answer starts a new one."""
    world = World([high_pool()])
    world.sweep()
    world.advance(timedelta(hours=1))
    world.sweep(listed=["10.0.0.1"])
    assert world.views["10.0.0.1"].clean_since is None
    world.advance(timedelta(hours=1))
    sweep = world.sweep()
    assert world.views["10.0.0.1"].clean_since == world.now
    assert sweep.cleared == (("10.0.0.1", "zen"),)
