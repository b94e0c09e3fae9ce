"""Blocklist-naming replies across destinations: when they take an IP out everywhere.

One remote MX saying "blocked using ..." proves only what that MX thinks: it
suspends the IP for that destination (``destination_scope``) and asks for a
DNSBL re-check, whose confirmed listing is what rotation acts on. Only
permanent blocklist replies from ``destinations`` independent destinations
within ``window`` suspend the IP for every destination: then it is not one
MX's opinion any more. Counted per IP by distinct destination scope, so
replies from many MX hosts of one organisation count once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["MentionSpread"]


@dataclass(frozen=True, slots=True)
class MentionSpread:
    """Enough independent destinations named a blocklist for ``ip`` within the window."""

    ip: str
    destinations: tuple[str, ...]  # the scopes, sorted
    observed_at: datetime  # the reply that made them enough


class MentionTracker:
    """Per IP, the latest blocklist reply time of each destination scope (bounded by window)."""

    def __init__(self, destinations: int, window: timedelta) -> None:
        if destinations < 1 or window <= timedelta(0):
            raise ValueError("destinations must be >= 1 and window positive")
        self._needed = destinations
        self._window = window
        self._seen: dict[str, dict[str, datetime]] = {}

    def observe(self, ip: str, scope: str, at: datetime) -> MentionSpread | None:
        """Record a blocklist reply; the spread when ``destinations`` scopes agree within window."""
        seen = self._seen.setdefault(ip, {})
        if at > seen.get(scope, datetime.min.replace(tzinfo=at.tzinfo)):
            seen[scope] = at
        since = at - self._window
        for old in [s for s, when in seen.items() if when <= since]:
            del seen[old]  # memory stays bounded by one window of destinations
        recent = sorted(s for s, when in seen.items() if when <= at)
        if len(recent) < self._needed:
            return None
        return MentionSpread(ip, tuple(recent), at)
