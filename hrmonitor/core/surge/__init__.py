"""DSN surges: when bounces jump on a tenant, sender domain, destination or source IP, and why.

Events come in as plain values (:class:`MessageAccepted`,
:class:`DeliveryOutcome`, :class:`BounceReturned`); :class:`SurgeTracker`
counts them per key in bucketed sliding windows and, on each
:meth:`SurgeTracker.evaluate`, opens a :class:`Surge` only when three tests
agree (docs/mail-facts.md "Surges"):

1. volume: at least ``min_messages`` recipients and ``min_dsns`` bounces in the window;
2. ratio: the Wilson lower bound of bounces / recipients is at least ``ratio``;
3. anomaly: the EWMA chart or CUSUM of the per-bucket ratio is out of control.

A surge closes after ``clear_after`` evaluations in a row with the raw ratio
under ``ratio * clear_factor``, the volume under ``min_messages *
clear_factor``, or the detector back in control (a level it has learnt,
slowly, is no longer a surge): the gap between the opening tests (a lower
bound over the threshold) and the closing ones (half of each) is the
hysteresis that stops flapping.

The unit is the recipient: a message to 40 recipients is 40 in the
denominator, and each failed recipient one bounce. What counts where:

- :class:`MessageAccepted` (mail a tenant hands us): recipients on tenant,
  sender domain and each destination domain; a DSN passing outbound counts
  as a bounce too. Feed only mail accepted from tenants, not the DSNs the
  queue runner makes itself: their failures already arrive as outcomes.
- :class:`DeliveryOutcome`: final outcomes on the source IP (each a
  recipient, a hard failure a bounce; DSNs delivered count as volume only,
  since high-risk IPs carry every DSN by design); a hard failure is a
  bounce on tenant, sender and destination domain (the recipient was
  counted at acceptance).
- :class:`BounceReturned` (a bounce coming back to us): a bounce for each
  failed recipient; if it matches no mail we sent, its recipients were never
  counted, so they join the denominator as well.

Cause attribution reads evidence kept per key over the last one to two
windows (see :func:`attribute`). Memory is bounded: ``max_keys`` tracked keys
with least-recently-used eviction (never a key with an open surge), an
outbound index of ``outbound_index`` ids, capped evidence tables.

Where each part lives: the settings in ``surge_settings``, what is reported
(:class:`Surge`, :class:`SurgeChange`, :func:`surge_alert`) in
``surge_changes``, the per-key tests in ``surge_detection``, the counting and
its bounded state in ``surge_tracker``; the events, evidence, causes and rates
in ``surge_events``, ``surge_evidence``, ``surge_cause`` and ``surge_rates``.
This module is the watcher's API: every name it needs, in one import.
"""

from __future__ import annotations

from hrmonitor.core.surge.cause import Cause, attribute
from hrmonitor.core.surge.changes import Dimension, Surge, SurgeChange, surge_alert
from hrmonitor.core.surge.events import (
    BounceReturned,
    DeliveryOutcome,
    FailedAddress,
    MessageAccepted,
    domain_of,
)
from hrmonitor.core.surge.evidence import EvidenceSummary
from hrmonitor.core.surge.rates import RateRow, RateStatus, RateThresholds, rate_rows
from hrmonitor.core.surge.settings import SurgeSettings
from hrmonitor.core.surge.tracker import SurgeTracker

__all__ = [
    "BounceReturned",
    "Cause",
    "DeliveryOutcome",
    "Dimension",
    "EvidenceSummary",
    "FailedAddress",
    "MessageAccepted",
    "RateRow",
    "RateStatus",
    "RateThresholds",
    "Surge",
    "SurgeChange",
    "SurgeSettings",
    "SurgeTracker",
    "attribute",
    "domain_of",
    "rate_rows",
    "surge_alert",
]
