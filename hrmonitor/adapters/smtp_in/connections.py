"""How many SMTP connections the listener holds, in all and per client address.

Every connection costs a file descriptor; a process has 1,024 by default and
the relay needs some for its store, DNS and outbound connections. Without a
limit, idle connections from one client use them all and ``accept()`` fails
for everyone else, silently. Over a limit a client gets ``421`` and the
connection is closed at once, as Postfix's ``smtpd_client_connection_count_limit``
does; refusals are logged, at most once per ``log_every`` seconds with a count.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

log = logging.getLogger(__name__)


class ConnectionLimits:
    """Admits or refuses each new connection; ``release`` when an admitted one ends."""

    def __init__(self, total: int, per_client: int, log_every: float = 10.0) -> None:
        self.total = total
        self.per_client = per_client
        self._open: Counter[str] = Counter()
        self._count = 0
        self._log_every = log_every
        self._last_log = float("-inf")
        self._unlogged = 0

    @property
    def open(self) -> int:
        return self._count

    def admit(self, client: str) -> str | None:
        """None if ``client`` may have one more connection (now counted), else why not."""
        if self._count >= self.total:
            reason = f"{self._count} connections open (max_connections = {self.total})"
        elif self._open[client] >= self.per_client:
            reason = (
                f"{self._open[client]} connections open from {client} "
                f"(max_connections_per_client = {self.per_client})"
            )
        else:
            self._open[client] += 1
            self._count += 1
            return None
        self._report(client, reason)
        return reason

    def release(self, client: str) -> None:
        self._count -= 1
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]

    def _report(self, client: str, reason: str) -> None:
        now = time.monotonic()
        if now - self._last_log < self._log_every:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more refused since the last report)" if self._unlogged else ""
        log.warning("SMTP connection from %s refused with 421: %s%s", client, reason, more)
        self._last_log = now
        self._unlogged = 0
