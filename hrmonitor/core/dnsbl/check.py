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
from typing import Any

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


# --- the Nagios plugin output ----------------------------------------------------------------

# How many listings the status line names before "+N more": Nagios keeps the first line
# as the service's status text (shown in lists, paged by SMS), so it stays short.
STATUS_LINE_LISTINGS = 3


def plugin_output(
    zones: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]], result: Verdict
) -> list[str]:
    """``check``'s text: a Nagios plugin's status line with performance data, then details.

    ``zones`` and ``results`` are the rows of ``check --json``. The first line is
    ``DNSBL CRITICAL - 2 listed of 40 (zen: 198.51.100.9 XBL)|listed=2;;1 checked=40 ...``
    (Nagios plugin guidelines: status, text, ``|``, ``label=value;warn;crit``);
    the lines after it are the long output: every unhealthy zone, every listing,
    and the unanswered lookups counted per list. ``listed`` and ``checked`` count
    IPs; ``answers``, ``unknown`` and ``errors`` count (IP, list) lookups.
    Nothing is wrapped or cut: each line is as long as what it says.
    """
    listed = [r for r in results if r["status"] == "listed"]
    listed_ips = {r["ip"] for r in listed}
    checked = len({r["ip"] for r in results})
    unknown = sum(1 for r in results if r["status"] == "unknown")
    errors = sum(1 for r in results if r["status"] == "error")
    unhealthy = [z for z in zones if z["health"] != "ok"]
    text = f"{len(listed_ips)} listed of {checked}"
    if listed:
        named = [f"{r['list']}: {r['ip']} {_what(r)}" for r in listed[:STATUS_LINE_LISTINGS]]
        if len(listed) > STATUS_LINE_LISTINGS:
            named.append(f"+{len(listed) - STATUS_LINE_LISTINGS} more")
        text += f" ({'; '.join(named)})"
    if unhealthy:
        text += ", zones not usable: " + ", ".join(f"{z['name']} {z['health']}" for z in unhealthy)
    if unknown or errors:
        text += f", {unknown + errors} of {len(results)} lookups unanswered"
    perf = (
        f"listed={len(listed_ips)};;1 checked={checked} answers={len(results)} "
        f"unknown={unknown} errors={errors} zones={len(zones)} zones_unhealthy={len(unhealthy)}"
    )
    lines = [f"DNSBL {result.name} - {text}|{perf}"]
    lines += [f"zone {z['name']} ({z['zone']}): {z['health']}" for z in unhealthy]
    for r in listed:
        severity = r.get("severity") or "-"
        txt = f": {r['txt']}" if r.get("txt") else ""
        lines.append(
            f"{r['ip']} ({r.get('pool') or 'no pool'}) listed on {r['list']} ({r['zone']}) "
            f"{_what(r)} {severity}{txt}"
        )
    unanswered: dict[tuple[str, str], int] = {}
    for r in results:
        if r["status"] in ("unknown", "error"):
            key = (r["list"], r["status"])
            unanswered[key] = unanswered.get(key, 0) + 1
    lines += [f"{name}: {n} lookup(s) {status}" for (name, status), n in sorted(unanswered.items())]
    return lines


def _what(row: Mapping[str, Any]) -> str:
    return ",".join(row.get("tags") or ()) or ",".join(row.get("codes") or ()) or "listed"
