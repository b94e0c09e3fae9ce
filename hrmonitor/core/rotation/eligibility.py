"""Eligible to send: the one definition the picker, rotation, the alerts and the report share.

An IP of a pool is *eligible* now when the picker could send from it to a
destination nobody has suspended it for: its state is in rotation
(``active``/``warming``), no whole-IP suspension is running (a bind failure
is one), and a warming IP has warm-up capacity left today. This is
``selection.ineligibility`` asked about "any destination", applied to the
views every consumer reads, so delivery ("no eligible IP"), promotion
(top up while eligible IPs are short), ``pool-exhausted`` and ``report``
cannot count differently. A suspension scoped to one provider does not make
an IP ineligible: it can still send everywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from hrmonitor.core.model import Pool
from hrmonitor.core.rotation.selection import ineligibility
from hrmonitor.core.rotation.suspension import WHOLE_IP
from hrmonitor.core.rotation.views import IpView, candidates


def blockers(pool: Pool, ips: Sequence[IpView], now: datetime) -> dict[str, str]:
    """Why each IP of ``pool`` that cannot send anywhere now cannot (eligible IPs are absent)."""
    found: dict[str, str] = {}
    for candidate in candidates(pool, ips, now):
        why = ineligibility(candidate, WHOLE_IP, now)
        if why is not None:
            found[candidate.ip] = why
    return found


def eligible_ips(pool: Pool, ips: Sequence[IpView], now: datetime) -> tuple[str, ...]:
    """The IPs of ``pool`` that may send now, in the order given."""
    blocked = blockers(pool, ips, now)
    return tuple(view.ip for view in ips if view.ip not in blocked)
