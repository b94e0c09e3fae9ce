"""The Nagios-style verdict of one sweep, for ``hrmonitor check``.

- 2 CRITICAL: a trusted listing at or above the retire_at severity of the IP's
  pool (``high`` for an IP outside every pool);
- 3 UNKNOWN: nothing trustworthy was learnt (every answer Unknown or Error, or
  no answer at all), so "clean" cannot be claimed;
- 1 WARNING: any other listing, a zone that failed its self-test, or some
  answers that could not be had;
- 0 OK: every answer trusted and clean (or reputation info only).

CRITICAL wins over UNKNOWN: a confirmed listing is worth knowing even when
other zones are down.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from enum import IntEnum

from hrmonitor.core.model import Answer, Listed, Severity, Status, ZoneHealth


class Verdict(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


def verdict(
    trusted: Sequence[Answer],
    health: Mapping[str, ZoneHealth],
    retire_at: Callable[[str], Severity],
) -> Verdict:
    """``trusted``: answers with unhealthy zones' answers already turned Unknown."""
    if any(isinstance(a, Listed) and a.severity.at_least(retire_at(a.ip)) for a in trusted):
        return Verdict.CRITICAL
    known = [a for a in trusted if a.status not in (Status.UNKNOWN, Status.ERROR)]
    if not known:
        return Verdict.UNKNOWN
    if len(known) < len(trusted) or any(a.status is Status.LISTED for a in known):
        return Verdict.WARNING
    if any(h is not ZoneHealth.OK for h in health.values()):
        return Verdict.WARNING
    return Verdict.OK
