"""What surge detection reports: a surge on one key, its opening or subsiding, and its alert."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from hrmonitor.core.alert import Alert, AlertKind, alert_key
from hrmonitor.core.model import Severity
from hrmonitor.core.surge.cause import Cause


class Dimension(StrEnum):
    TENANT = "tenant"
    SENDER_DOMAIN = "sender-domain"
    DESTINATION = "destination-domain"
    SOURCE_IP = "source-ip"


@dataclass(frozen=True, slots=True)
class Surge:
    """An open (or just closed) DSN surge on one key, with its likely cause and evidence."""

    dimension: Dimension
    key: str
    opened_at: datetime
    cause: Cause
    evidence: Mapping[str, object]
    messages: int
    dsns: int
    ratio: float
    lower_bound: float
    baseline: float
    peak_ratio: float
    within: str = ""  # "tenant contoso": a destination surge folded into that one

    def as_dict(self) -> dict[str, object]:
        return {
            "within": self.within,
            "dimension": str(self.dimension),
            "key": self.key,
            "opened_at": self.opened_at.isoformat(),
            "cause": str(self.cause),
            "evidence": dict(self.evidence),
            "messages": self.messages,
            "dsns": self.dsns,
            "ratio": round(self.ratio, 4),
            "lower_bound": round(self.lower_bound, 4),
            "baseline": round(self.baseline, 4),
            "peak_ratio": round(self.peak_ratio, 4),
        }


@dataclass(frozen=True, slots=True)
class SurgeChange:
    """A surge opened (``resolved=False``) or subsided (``resolved=True``) at ``at``."""

    surge: Surge
    at: datetime
    resolved: bool

    @property
    def folded(self) -> bool:
        """Part of a tenant or sender-domain surge with the same cause: reported, not alerted."""
        return bool(self.surge.within)


def surge_alert(change: SurgeChange) -> Alert:
    """The ``dsn-surge`` alert (or its resolution); one dedupe key per dimension and key."""
    surge = change.surge
    ip = surge.key if surge.dimension is Dimension.SOURCE_IP else None
    scope = str(surge.dimension) if ip else f"{surge.dimension}={surge.key}"
    where = f"{surge.dimension} {surge.key}"
    if change.resolved:
        summary = f"DSN surge on {where} subsided (peak {surge.peak_ratio:.0%})"
    else:
        summary = (
            f"DSN surge on {where}: {surge.dsns} of {surge.messages} recipients bounced "
            f"({surge.ratio:.0%}, at least {surge.lower_bound:.0%}); likely cause: {surge.cause}"
        )
    return Alert(
        kind=AlertKind.DSN_SURGE,
        severity=Severity.HIGH,
        key=alert_key(AlertKind.DSN_SURGE, None, ip, scope),
        summary=summary,
        at=change.at,
        details=surge.as_dict(),
        ip=ip,
        resolved=change.resolved,
    )
