"""Audit events as log lines: one stable ``key=value`` line per event, and its level.

The daemon logs each audit event once (``services.audit_log``): the operators'
commands (``hrmonitor ip ...``, ``hrmonitor queue ...``, run from another
process) and its own rotation decisions::

    audit: kind=state ip=127.0.0.21 pool=high-risk from=active to=retired
        actor=operator:alice origin=command reason="maintenance" id=12

(one line). ``reason`` is quoted as a JSON string, so a reason cannot break
the line. Pure: no I/O, no clock.
"""

from __future__ import annotations

import json

from hrmonitor.core.model import AuditEvent

OPERATOR = "operator:"
WHOLE_IP = "*"  # a suspension's scope that takes the IP out for every destination


def fields(event: AuditEvent, event_id: int | None, origin: str) -> dict[str, object]:
    """The event's fields, in the order the line writes them; ``origin``: a node or command."""
    out: dict[str, object] = {"kind": event.kind}
    if event.ip:
        out["ip"] = event.ip
    queue_id = event.evidence.get("queue_id")
    if queue_id:
        out["queue_id"] = str(queue_id)
    out["pool"] = event.pool or "-"
    scope = event.evidence.get("scope")
    if scope:
        out["scope"] = str(scope)
    out["from"] = event.from_state or "-"
    out["to"] = event.to_state or "-"
    if event.until is not None:
        out["until"] = event.until.isoformat(timespec="seconds")
    out["actor"] = event.actor
    out["origin"] = origin
    out["reason"] = event.reason
    if event_id is not None:
        out["id"] = event_id
    return out


def text(values: dict[str, object]) -> str:
    """``audit: key=value ...``; the reason as a JSON string."""
    parts = [
        f"{key}={json.dumps(value, ensure_ascii=False) if key == 'reason' else value}"
        for key, value in values.items()
    ]
    return "audit: " + " ".join(parts)


def needs_attention(event: AuditEvent) -> bool:
    """Whether the event is a WARNING rather than INFO.

    An operator's action is INFO (the operator knows). A suspension of the
    whole IP by the daemon (it cannot be bound, or several destinations'
    replies name a blocklist) takes capacity away until someone looks: WARNING.
    State changes read from the trail are routine (retire, promote, restore);
    the daemon's own decisions are levelled where they are made, where the
    pool's state is known (``services.rotation.apply``).
    """
    if event.actor.startswith(OPERATOR):
        return False
    return event.kind == "suspension" and event.evidence.get("scope") == WHOLE_IP
