"""What ``rotation.decide`` says: state transitions (with their audit events), actions, refusals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from hrmonitor.core.alert import Alert
from hrmonitor.core.model import AuditEvent, IPState
from hrmonitor.core.rotation.evidence import Verb
from hrmonitor.core.rotation.suspension import Suspension


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


@dataclass(frozen=True, slots=True)
class Lift:
    """End an IP's running suspension of ``scope`` now (audited: ``reason``, ``actor``)."""

    ip: str
    scope: str
    reason: str
    actor: str


Action = Suspend | RecheckIp | SetWarmupStage | Lift


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
