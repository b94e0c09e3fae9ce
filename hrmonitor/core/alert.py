"""Alert values: what hrmonitor tells people, as data (the alerts adapter renders and sends them).

An :class:`Alert` is one fact worth telling: a listing, a retirement, an
exhausted pool. Its ``key`` names the *condition*, not the occurrence, so the
alerts adapter deduplicates by key (re-sending only after its repeat
interval) and sends a resolution when an alert with the same key arrives
with ``resolved=True``. Keys are built by :func:`alert_key` so every producer
spells them the same way: ``kind:pool:ip:scope`` with empty parts left out.

``details`` carries the evidence and a link-worthy reason (zone, codes, TXT,
lookup URL) as JSON-able values; :meth:`Alert.as_dict` is the webhook body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from hrmonitor.core.model import Severity


class AlertKind(StrEnum):
    """The alert kinds hrmonitor raises (README "Alerts")."""

    LISTING = "listing"
    DELISTING = "delisting"
    ZONE_HEALTH = "zone-health"
    RETIREMENT = "retirement"
    PROMOTION = "promotion"
    RESTORATION = "restoration"
    SUSPENSION = "suspension"
    POOL_BELOW_MIN = "pool-below-min"
    POOL_EXHAUSTED = "pool-exhausted"
    NORMAL_IP_LISTED = "normal-ip-listed"
    SENDING_LIMIT = "sending-limit"
    DSN_SURGE = "dsn-surge"
    # An operator took an IP out of rotation or put it back (disable / enable).
    OPERATOR_ACTION = "operator-action"


def alert_key(kind: AlertKind, pool: str | None = None, ip: str | None = None, *rest: str) -> str:
    """The dedupe key of a condition: ``kind:pool:ip:rest...`` without empty parts."""
    parts = [str(kind), pool or "", ip or "", *rest]
    return ":".join(part for part in parts if part)


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert or, with ``resolved=True``, the resolution of the alert with the same key."""

    kind: AlertKind
    severity: Severity
    key: str
    summary: str
    at: datetime
    details: Mapping[str, object] = field(default_factory=dict)
    pool: str | None = None
    ip: str | None = None
    resolved: bool = False
    node: str | None = None  # the daemon that raised it, where several share one store

    def as_dict(self) -> dict[str, object]:
        """A JSON-able rendering (the webhook body; datetimes as ISO 8601)."""
        return {
            "kind": str(self.kind),
            "severity": str(self.severity),
            "key": self.key,
            "summary": self.summary,
            "at": self.at.isoformat(),
            "details": _jsonable(self.details),
            "pool": self.pool,
            "ip": self.ip,
            "resolved": self.resolved,
            "node": self.node,
        }


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
