"""What the store hands back: small frozen values, never ORM rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from hrmonitor.core.model import IPState, RiskClass, Severity, Status, ZoneHealth
from hrmonitor.core.rotation.suspension import Suspension as CoreSuspension


@dataclass(frozen=True, slots=True)
class IpRecord:
    ip: str
    pool: str
    state: IPState
    state_since: datetime
    state_until: datetime | None  # an operator's "until" for the current state
    state_actor: str  # the rule or operator that made the current state ("config" at first)
    warmup_stage: int | None  # None unless warming
    warmup_since: datetime | None  # when the current stage began
    sent_today: int  # counted on ``sent_day``; use :meth:`sent_on` for "today"
    delivered_today: int  # counted on ``sent_day`` too; use :meth:`delivered_on`
    sent_day: date | None
    last_sent_at: datetime | None

    def sent_on(self, day: date) -> int:
        """Messages counted on ``day`` (0 when the stored count belongs to an earlier day)."""
        return self.sent_today if self.sent_day == day else 0

    def delivered_on(self, day: date) -> int:
        return self.delivered_today if self.sent_day == day else 0


@dataclass(frozen=True, slots=True)
class VolumeCount:
    """What one node adds to an IP's counts of one UTC day (``Store.record_volumes``)."""

    ip: str
    day: date
    sent: int = 0
    delivered: int = 0
    last_sent_at: datetime | None = None  # the latest send counted here
    released: int = 0  # warm-up reservation handed back unused (a node stopping)


@dataclass(frozen=True, slots=True)
class PoolHistoryRecord:
    ip: str
    pool: str
    risk: RiskClass
    first_seen: datetime


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    """The latest answer for (ip, zone) from a healthy zone."""

    ip: str
    zone: str
    status: Status
    codes: tuple[str, ...]
    tags: tuple[str, ...]
    severity: Severity | None
    txt: str  # the TXT reason, or why the answer was Error/Unknown
    checked_at: datetime
    clean_since: datetime | None  # start of the unbroken run of clean/info answers


@dataclass(frozen=True, slots=True)
class ListingRecord:
    ip: str
    zone: str
    codes: tuple[str, ...]
    tags: tuple[str, ...]
    severity: Severity
    txt: str
    first_seen: datetime
    last_seen: datetime
    cleared_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None


@dataclass(frozen=True, slots=True)
class CleanRun:
    """An IP clean on every zone asked about, with no open listing."""

    since: datetime  # the latest start among the zones' unbroken clean runs
    checked_at: datetime  # the oldest of the zones' latest clean answers: all were clean then


@dataclass(frozen=True, slots=True)
class ZoneHealthRecord:
    zone: str
    health: ZoneHealth
    detail: str
    checked_at: datetime
    changed_at: datetime


@dataclass(frozen=True, slots=True)
class ZoneHealthChange:
    zone: str
    before: ZoneHealth | None  # None: first time this zone was seen (only reported if not ok)
    after: ZoneHealth
    detail: str


@dataclass(frozen=True, slots=True)
class ListingChanges:
    """What one sweep changed: the things worth an alert."""

    listed: tuple[ListingRecord, ...] = ()
    cleared: tuple[ListingRecord, ...] = ()
    zones: tuple[ZoneHealthChange, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.listed or self.cleared or self.zones)


@dataclass(frozen=True, slots=True)
class Suspension:
    ip: str
    scope: str  # a destination provider, or "*" for the whole IP
    reason: str
    actor: str
    since: datetime
    until: datetime
    lifted_at: datetime | None = None
    evidence: Mapping[str, object] = field(default_factory=dict)

    def active_at(self, now: datetime) -> bool:
        return self.lifted_at is None and now < self.until

    def as_core(self) -> CoreSuspension:
        """The rotation core's value (it has no notion of a lifted suspension)."""
        return CoreSuspension(
            ip=self.ip,
            scope=self.scope,
            since=self.since,
            until=self.until if self.lifted_at is None else min(self.until, self.lifted_at),
            reason=self.reason,
            actor=self.actor,
            evidence=self.evidence,
        )


@dataclass(frozen=True, slots=True)
class AlertRecord:
    key: str
    kind: str
    severity: Severity
    first_at: datetime
    last_sent_at: datetime
    resolved_at: datetime | None
    payload: Mapping[str, object] = field(default_factory=dict)
