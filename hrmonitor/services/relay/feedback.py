"""What the queue runner tells the rest of the daemon: remote replies and exhausted pools.

Every remote reply goes to the reply callback (the controller turns it into
evidence); a failing callback is logged, never allowed to cost the delivery.
Every attempt that finds no eligible IP in its pool raises that pool's
``pool-exhausted`` alert (one key per pool); the first attempt that gets an IP
of the pool again resolves it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from hrmonitor.adapters.smtp_out import Reply
from hrmonitor.core.alert import Alert, AlertKind, alert_key
from hrmonitor.core.feedback.replies import RemoteReply
from hrmonitor.core.model import Severity
from hrmonitor.services.relay.settings import AlertFn, ReplyFn

log = logging.getLogger(__name__)


def _split_enhanced(text: str) -> tuple[str, str]:
    first, _, rest = text.partition(" ")
    parts = first.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return first, rest
    return "", text


def report_reply(on_reply: ReplyFn, reply: Reply, ip: str, host: str, now: datetime) -> None:
    """Tell ``on_reply`` what ``host`` answered ``ip``, its enhanced status code split off."""
    enhanced, text = _split_enhanced(reply.text)
    try:
        on_reply(RemoteReply(reply.code, enhanced, text, ip, host, now))
    except Exception:
        log.exception("reply feedback failed")


class PoolExhaustion:
    """The ``pool-exhausted`` alerts: raised when a pool has no eligible IP, then resolved."""

    def __init__(self, on_alert: AlertFn) -> None:
        self._on_alert = on_alert
        self._exhausted: set[str] = set()

    def exhausted(self, pool: str, destination: str, now: datetime) -> None:
        self._exhausted.add(pool)
        self._on_alert(
            Alert(
                kind=AlertKind.POOL_EXHAUSTED,
                severity=Severity.CRITICAL,
                key=alert_key(AlertKind.POOL_EXHAUSTED, pool),
                summary=f"pool {pool} has no eligible IP; its mail is held",
                at=now,
                details={"destination": destination},
                pool=pool,
            )
        )

    def resolved(self, pool: str, now: datetime) -> None:
        if pool not in self._exhausted:
            return
        self._exhausted.discard(pool)
        self._on_alert(
            Alert(
                kind=AlertKind.POOL_EXHAUSTED,
                severity=Severity.CRITICAL,
                key=alert_key(AlertKind.POOL_EXHAUSTED, pool),
                summary=f"pool {pool} has an eligible IP again",
                at=now,
                pool=pool,
                resolved=True,
            )
        )
