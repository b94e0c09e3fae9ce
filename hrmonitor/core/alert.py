"""Alert values: what hrmonitor tells people, as data (the alerts adapter renders and sends them).

An :class:`Alert` is one fact worth telling: a listing, a retirement, an
exhausted pool. Its ``key`` names the *condition*, not the occurrence, so the
alerts adapter deduplicates by key (re-sending only after its repeat
interval) and sends a resolution when an alert with the same key arrives
with ``resolved=True``. Keys are built by :func:`alert_key` so every producer
spells them the same way: ``kind:pool:ip:scope`` with empty parts left out.

``details`` carries the evidence and a link-worthy reason (zone, codes, TXT,
lookup URL) as JSON-able values; :meth:`Alert.as_dict` is the webhook body.

A resolution keeps the kind and severity of the alert it resolves (routing by
either must pair them); ``event`` names what happened when that is not the
kind itself: a listing resolves as ``kind=listing, event=delisting``, an
operator's retirement as ``kind=retirement, event=restoration``. One event is
one alert: a listing that makes rotation retire the IP is the listing alert
carrying the action (``details["action"]``, :func:`merge_decided`), not a
listing alert plus a retirement alert. ``handled`` marks an alert the daemon
acted on while the pool can still send: the log channel writes it at WARNING.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
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
    event: str = ""  # what happened, where not the kind itself (a resolution: "delisting")
    handled: bool = False  # the daemon acted on it and the pool still sends (log: WARNING)

    @property
    def state(self) -> str:
        """``firing`` while the condition holds, ``resolved`` once it is over."""
        return "resolved" if self.resolved else "firing"

    def as_dict(self) -> dict[str, object]:
        """A JSON-able rendering (the webhook body; datetimes as ISO 8601)."""
        return {
            "kind": str(self.kind),
            "severity": str(self.severity),
            "state": self.state,
            "event": self.event or str(self.kind),
            "key": self.key,
            "summary": self.summary,
            "at": self.at.isoformat(),
            "details": _jsonable(self.details),
            "pool": self.pool,
            "ip": self.ip,
            "resolved": self.resolved,
            "handled": self.handled,
            "node": self.node,
        }


class Claimed(StrEnum):
    """What the dedupe store made of one alert (``Store.claim_alerts``)."""

    NEW = "new"  # a condition opened: never seen, or again well after its resolution
    REFIRE = "refire"  # opened again within ``repeat_after`` of its resolution: flapping
    REPEAT = "repeat"  # still open, sent again after ``repeat_after``
    RESOLVED = "resolved"  # the resolution of an open alert
    HELD = "held"  # dedupe holds it back: nothing to send

    @property
    def sends(self) -> bool:
        return self is not Claimed.HELD


@dataclass(frozen=True, slots=True)
class Claim:
    """One alert's dedupe answer; for a resolution, the kind and severity it was raised with."""

    outcome: Claimed
    kind: str | None = None
    severity: Severity | None = None


def as_resolution_of(alert: Alert, claim: Claim) -> Alert:
    """``alert`` (a resolution) with the kind and severity of the alert it resolves."""
    if not alert.resolved or claim.outcome is not Claimed.RESOLVED:
        return alert
    kind = alert.kind
    if claim.kind is not None and claim.kind in AlertKind._value2member_map_:
        kind = AlertKind(claim.kind)
    severity = claim.severity if claim.severity is not None else alert.severity
    event = alert.event or (str(alert.kind) if alert.kind is not kind else "")
    return replace(alert, kind=kind, severity=severity, event=event)


_LISTING_KINDS = (AlertKind.LISTING, AlertKind.NORMAL_IP_LISTED, AlertKind.DELISTING)


def merge_decided(told: Sequence[Alert], decided: Sequence[Alert]) -> list[Alert]:
    """One sweep's alerts, one per event: the monitor's (``told``) merged with rotation's.

    The monitor tells new listings and delistings with the zone's lookup link;
    rotation decides what a listing means for its pool (``normal-ip-listed``,
    the IP retired, replacements promoted). An alert of rotation's with the key
    of one of the monitor's becomes that alert with rotation's kind, severity,
    summary and facts added. Rotation's listing alerts for listings the monitor
    did not tell now are open already: they go on under their key (dedupe sends
    them again only after ``repeat_after``), except one that retires its IP,
    which is a new event: it goes out as a ``retirement`` under the IP's
    retirement key (its resolution is the IP's restoration). Everything else
    passes as it is, the monitor's alerts first.
    """
    by_key = {a.key: a for a in decided if a.kind in _LISTING_KINDS}
    merged: list[Alert] = []
    for alert in told:
        own = by_key.pop(alert.key, None)
        if own is None:
            merged.append(alert)
            continue
        merged.append(
            replace(
                alert,
                kind=own.kind,
                severity=max(own.severity, alert.severity, key=lambda s: s.rank),
                summary=own.summary if not alert.resolved else alert.summary,
                details={**alert.details, **own.details},
                event=alert.event or own.event,
                handled=own.handled,
            )
        )
    for alert in decided:
        if alert.kind not in _LISTING_KINDS:
            merged.append(alert)
        elif by_key.get(alert.key) is alert:
            if "action" in alert.details and not alert.resolved:
                key = alert_key(AlertKind.RETIREMENT, alert.pool, alert.ip)
                event = str(alert.kind)  # what happened: the IP was listed
                merged.append(replace(alert, kind=AlertKind.RETIREMENT, key=key, event=event))
            else:
                merged.append(alert)
    return merged


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
