"""The values every part of hrmonitor speaks in: pools, IP states, DNSBL outcomes, audit events.

IP addresses travel as canonical strings (``ipaddress.ip_address(x).compressed``)
so that they compare, hash and persist the same way everywhere.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol


def canonical_ip(text: str) -> str:
    """The one spelling of an IP address used for comparison and storage.

    Raises ValueError for anything that is not an IPv4 or IPv6 address.
    """
    return ipaddress.ip_address(text.strip()).compressed


class RiskClass(StrEnum):
    NORMAL = "normal"
    HIGH = "high"
    RELAY = "relay"

    @property
    def rank(self) -> int:
        """Riskier classes rank higher; routing picks the riskiest matching pool."""
        return {RiskClass.NORMAL: 0, RiskClass.RELAY: 1, RiskClass.HIGH: 2}[self]


class IPState(StrEnum):
    ACTIVE = "active"
    WARMING = "warming"
    STANDBY = "standby"
    RETIRED = "retired"
    DISABLED = "disabled"

    @property
    def in_rotation(self) -> bool:
        return self in (IPState.ACTIVE, IPState.WARMING)


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Higher is worse: critical=3 ... low=0."""
        return {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}[self]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


class Status(StrEnum):
    """How one DNSBL answer is classified."""

    LISTED = "listed"
    CLEAN = "clean"
    INFO = "info"
    ERROR = "error"
    UNKNOWN = "unknown"


class ZoneHealth(StrEnum):
    OK = "ok"
    DEAD = "dead"
    LISTS_EVERYTHING = "lists-everything"
    REFUSING = "refusing"
    UNREACHABLE = "unreachable"


class OnListing(StrEnum):
    RETIRE = "retire"
    ALERT = "alert"


class WhenExhausted(StrEnum):
    DEFER = "defer"
    USE_LISTED = "use-listed"


# --- DNSBL outcomes: one value per (ip, list) answer ---------------------------------


@dataclass(frozen=True, slots=True)
class Listed:
    ip: str
    zone: str  # the catalogue list key, e.g. "spamhaus-zen"
    codes: tuple[str, ...]
    tags: tuple[str, ...]
    severity: Severity
    txt: str = ""
    status: Status = field(default=Status.LISTED, init=False)


@dataclass(frozen=True, slots=True)
class Clean:
    ip: str
    zone: str
    status: Status = field(default=Status.CLEAN, init=False)


@dataclass(frozen=True, slots=True)
class Info:
    """A reputation level, not a listing (Mailspike's .13-.20)."""

    ip: str
    zone: str
    codes: tuple[str, ...]
    tags: tuple[str, ...]
    txt: str = ""
    status: Status = field(default=Status.INFO, init=False)


@dataclass(frozen=True, slots=True)
class Error:
    """The list refused to answer (127.255.255.x and the like)."""

    ip: str
    zone: str
    codes: tuple[str, ...]
    reason: str
    status: Status = field(default=Status.ERROR, init=False)


@dataclass(frozen=True, slots=True)
class Unknown:
    """No trustworthy answer: timeout, SERVFAIL, REFUSED, an answer outside 127/8."""

    ip: str
    zone: str
    reason: str
    status: Status = field(default=Status.UNKNOWN, init=False)


Answer = Listed | Clean | Info | Error | Unknown


# --- Pools ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WarmupStage:
    daily_cap: int
    min_delivery_rate: float = 0.9  # a stage advances only if it delivered this well


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    on_listing: OnListing = OnListing.RETIRE
    retire_at: Severity = Severity.HIGH
    min_active: int = 1
    cooldown: timedelta = timedelta(hours=24)
    when_exhausted: WhenExhausted = WhenExhausted.DEFER
    warmup: tuple[WarmupStage, ...] = ()
    idle_rewarm: timedelta = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    risk: RiskClass
    ips: tuple[str, ...]  # configured as active
    standby: tuple[str, ...]
    policy: PoolPolicy
    interval: timedelta

    @property
    def all_ips(self) -> tuple[str, ...]:
        return self.ips + self.standby


# --- Audit ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Every change of state or suspension, with its evidence (ARCHITECTURE rule 4)."""

    at: datetime
    ip: str
    pool: str
    kind: str  # "state", "suspension", "listing", "delisting", ...
    from_state: str | None
    to_state: str | None
    reason: str
    actor: str  # a rule name ("rotation.retire") or "operator:<name>"
    evidence: Mapping[str, object] = field(default_factory=dict)
    until: datetime | None = None


class Clock(Protocol):
    """Where time comes from. Only ``adapters.clock.SystemClock`` reads the real clock."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...
