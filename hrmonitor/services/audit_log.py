"""The audit trail in the daemon's log: each new event logged once (issue 14, item 3).

Operators act from other processes (``hrmonitor ip retire``, ``hrmonitor queue
hold``): their changes reach the daemon only through the store's audit trail.
:class:`AuditTail` reads the events added since its last look (a scheduled job)
and logs each once, as ``core.auditlog`` writes it:

- an event of a command (no node) is logged, INFO for an operator's action;
- an event of this node is logged unless this process logged it when it made
  the decision (state changes: ``services.rotation.apply`` logs them with the
  level the decision calls for), so nothing is logged twice;
- an event of another node is left to that node's log.

Event ids come from the database; on PostgreSQL a lower id can commit after a
higher one was read, so each look re-reads a window of recent ids and skips
those it has seen.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from hrmonitor.core import auditlog
from hrmonitor.core.model import AuditEvent

log = logging.getLogger(__name__)

BACKTRACK = 200  # recent ids re-read at each look (late commits)
PAGE = 500
# This node's kinds logged where decided: state changes by the applier (and a reload),
# a reload's "config" events (an IP added or removed that keeps its state) by the reload.
LOGGED_WHERE_DECIDED = frozenset({"state", "config"})


class AuditSource(Protocol):
    def last_audit_id(self) -> int: ...

    def audit_events_after(
        self, after_id: int, limit: int = PAGE
    ) -> list[tuple[int, str | None, AuditEvent]]: ...


class AuditTail:
    """Logs new audit events once; :meth:`start` first, then :meth:`poll` now and then."""

    def __init__(self, store: AuditSource, node: str, backtrack: int = BACKTRACK) -> None:
        self._store = store
        self._node = node
        self._backtrack = backtrack
        self._cursor = 0
        self._seen: set[int] = set()

    async def start(self) -> None:
        """From now on: what the trail already holds is not logged."""
        self._cursor = await asyncio.to_thread(self._store.last_audit_id)
        recent = await asyncio.to_thread(
            self._store.audit_events_after, max(self._cursor - self._backtrack, 0), PAGE
        )
        self._seen = {event_id for event_id, _, _ in recent}
        self._cursor = max([self._cursor, *self._seen])

    async def poll(self) -> int:
        """Log the events added since the last look; how many were logged."""
        logged = 0
        while True:
            rows = await asyncio.to_thread(
                self._store.audit_events_after, max(self._cursor - self._backtrack, 0), PAGE
            )
            fresh = [row for row in rows if row[0] not in self._seen]
            for event_id, node, event in fresh:
                self._seen.add(event_id)
                self._cursor = max(self._cursor, event_id)
                if self._log(event_id, node, event):
                    logged += 1
            floor = self._cursor - self._backtrack
            self._seen = {i for i in self._seen if i > floor}
            if len(rows) < PAGE or not fresh:
                return logged

    def _log(self, event_id: int, node: str | None, event: AuditEvent) -> bool:
        if node is not None and node != self._node:
            return False  # that node's log has it
        if node == self._node and event.kind in LOGGED_WHERE_DECIDED:
            return False  # logged when this node applied it
        values = auditlog.fields(event, event_id, node or "command")
        level = logging.WARNING if auditlog.needs_attention(event) else logging.INFO
        log.log(level, "%s", auditlog.text(values), extra={"fields": {"event": "audit", **values}})
        return True
