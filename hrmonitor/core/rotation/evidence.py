"""What ``rotation.decide`` is fed: sweeps, remote replies, operator actions, time passing.

A :class:`~hrmonitor.core.rotation.suspension.Pause` (``suspension.py``) is evidence too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from hrmonitor.core.model import Answer, ZoneHealth
from hrmonitor.core.rotation.suspension import Pause


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
