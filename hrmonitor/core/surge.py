"""DSN surges: when bounces jump on a tenant, sender domain, destination or source IP, and why.

Events come in as plain values (:class:`MessageAccepted`,
:class:`DeliveryOutcome`, :class:`BounceReturned`); :class:`SurgeTracker`
counts them per key in bucketed sliding windows and, on each
:meth:`SurgeTracker.evaluate`, opens a :class:`Surge` only when three tests
agree (SPEC.md "Bounces and surges", docs/mail-facts.md "Surges"):

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
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from hrmonitor.core.alert import Alert, AlertKind, alert_key
from hrmonitor.core.anomaly import AnomalyParams, Detector, SlidingCounts, wilson_bounds
from hrmonitor.core.model import Severity
from hrmonitor.core.surge_cause import Cause, attribute
from hrmonitor.core.surge_events import (
    BOUNCE_KINDS,
    COMPLAINT_KIND,
    DELIVERED,
    BounceReturned,
    DeliveryOutcome,
    FailedAddress,
    MessageAccepted,
    domain_of,
)
from hrmonitor.core.surge_evidence import (
    LOCALS_CAP,
    REFUSALS,
    SENDERS_CAP,
    Evidence,
    EvidenceSummary,
    summarise,
)
from hrmonitor.core.surge_rates import RateRow, RateStatus, RateThresholds, rate_rows
from hrmonitor.core.verp import BatvVerdict, batv_strip, verp_decode

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

_RCPTS, _DSNS = 0, 1
_SENT, _HARD, _COMPLAINTS = 0, 1, 2


class Dimension(StrEnum):
    TENANT = "tenant"
    SENDER_DOMAIN = "sender-domain"
    DESTINATION = "destination-domain"
    SOURCE_IP = "source-ip"


@dataclass(frozen=True, slots=True)
class SurgeSettings:
    """Surge detection settings; app.py builds them from the ``[surge]`` config table.

    Defaults: 15-minute windows of 1-minute buckets; a surge needs 100
    recipients and 25 bounces in the window and a Wilson lower bound of the
    bounce ratio of at least 10 %, plus the anomaly test.
    """

    window: timedelta = timedelta(minutes=15)
    bucket: timedelta = timedelta(minutes=1)
    min_messages: int = 100
    min_dsns: int = 25
    ratio: float = 0.10
    confidence_z: float = 1.96
    anomaly: AnomalyParams = field(default_factory=AnomalyParams)
    clear_after: int = 5
    clear_factor: float = 0.5
    max_keys: int = 10_000
    outbound_index: int = 100_000
    rates_window: timedelta = timedelta(days=1)
    rates_bucket: timedelta = timedelta(hours=1)
    client_learning: timedelta = timedelta(days=1)
    cause_share: float = 0.5
    dha_min_local_parts: int = 20
    dha_max_senders: int = 5
    spam_threshold: float = 5.0
    spam_share: float = 0.3
    loop_hops: int = 30

    def __post_init__(self) -> None:
        if self.bucket <= timedelta(0) or self.window < self.bucket:
            raise ValueError("surge bucket must be positive and no longer than the window")
        if self.rates_bucket <= timedelta(0) or self.rates_window < self.rates_bucket:
            raise ValueError("surge rates_bucket must be positive and within rates_window")
        if not 0 < self.ratio < 1 or not 0 < self.clear_factor <= 1:
            raise ValueError("surge ratio must be within (0, 1), clear_factor within (0, 1]")
        if min(self.min_messages, self.min_dsns, self.clear_after, self.max_keys) < 1:
            raise ValueError("surge min_messages, min_dsns, clear_after, max_keys must be >= 1")
        if not 1 <= self.dha_min_local_parts <= LOCALS_CAP:
            raise ValueError(f"surge dha_min_local_parts must be within 1..{LOCALS_CAP}")
        if not 0 <= self.dha_max_senders < SENDERS_CAP:
            raise ValueError(f"surge dha_max_senders must be within 0..{SENDERS_CAP - 1}")

    @property
    def buckets(self) -> int:
        return max(1, round(self.window / self.bucket))


@dataclass(frozen=True, slots=True)
class Surge:
    """An open (or just closed) DSN surge on one key, with its likely cause and evidence."""

    dimension: Dimension
    key: str
    opened_at: datetime
    cause: Cause
    evidence: Mapping[str, object]
    messages: int
    dsns: int
    ratio: float
    lower_bound: float
    baseline: float
    peak_ratio: float
    within: str = ""  # "tenant contoso": a destination surge folded into that one

    def as_dict(self) -> dict[str, object]:
        return {
            "within": self.within,
            "dimension": str(self.dimension),
            "key": self.key,
            "opened_at": self.opened_at.isoformat(),
            "cause": str(self.cause),
            "evidence": dict(self.evidence),
            "messages": self.messages,
            "dsns": self.dsns,
            "ratio": round(self.ratio, 4),
            "lower_bound": round(self.lower_bound, 4),
            "baseline": round(self.baseline, 4),
            "peak_ratio": round(self.peak_ratio, 4),
        }


@dataclass(frozen=True, slots=True)
class SurgeChange:
    """A surge opened (``resolved=False``) or subsided (``resolved=True``) at ``at``."""

    surge: Surge
    at: datetime
    resolved: bool

    @property
    def folded(self) -> bool:
        """Part of a tenant or sender-domain surge with the same cause: reported, not alerted."""
        return bool(self.surge.within)


def surge_alert(change: SurgeChange) -> Alert:
    """The ``dsn-surge`` alert (or its resolution); one dedupe key per dimension and key."""
    surge = change.surge
    ip = surge.key if surge.dimension is Dimension.SOURCE_IP else None
    scope = str(surge.dimension) if ip else f"{surge.dimension}={surge.key}"
    where = f"{surge.dimension} {surge.key}"
    if change.resolved:
        summary = f"DSN surge on {where} subsided (peak {surge.peak_ratio:.0%})"
    else:
        summary = (
            f"DSN surge on {where}: {surge.dsns} of {surge.messages} recipients bounced "
            f"({surge.ratio:.0%}, at least {surge.lower_bound:.0%}); likely cause: {surge.cause}"
        )
    return Alert(
        kind=AlertKind.DSN_SURGE,
        severity=Severity.HIGH,
        key=alert_key(AlertKind.DSN_SURGE, None, ip, scope),
        summary=summary,
        at=change.at,
        details=surge.as_dict(),
        ip=ip,
        resolved=change.resolved,
    )


# --- The tracker --------------------------------------------------------------------------


class _Track:
    """One key's window, detector, evidence and surge state."""

    __slots__ = (
        "calm",
        "detector",
        "evaluated",
        "evidence",
        "generation",
        "previous",
        "surge",
        "window",
    )

    def __init__(self, settings: SurgeSettings, bucket: int) -> None:
        self.window = SlidingCounts(settings.buckets, 2, bucket)
        self.detector = Detector(settings.anomaly)
        self.evidence = Evidence()
        self.previous: Evidence | None = None
        self.generation = bucket
        self.evaluated = bucket - 1
        self.surge: Surge | None = None
        self.calm = 0

    def evidence_at(self, bucket: int, length: int) -> Evidence:
        """The current evidence generation; generations turn over once per window length."""
        if bucket >= self.generation + length:
            recent = bucket < self.generation + 2 * length
            self.previous = self.evidence if recent else None
            self.evidence = Evidence()
            self.generation = bucket
        return self.evidence


class _Clients:
    """The client addresses and connectors a tenant has used, with when each was first seen."""

    __slots__ = ("first", "seen")

    def __init__(self, first: float) -> None:
        self.first = first
        self.seen: OrderedDict[str, float] = OrderedDict()

    def is_new(self, client: str, now: float, learning: float, cap: int) -> bool:
        first = self.seen.get(client)
        if first is None:
            first = self.seen[client] = now
            if len(self.seen) > cap:
                self.seen.popitem(last=False)
        else:
            self.seen.move_to_end(client)
        return first - self.first >= learning and now - first < learning


class SurgeTracker:
    """Counts events per key and tells, on :meth:`evaluate`, which surges opened or subsided."""

    _CLIENTS_PER_TENANT = 256

    def __init__(self, settings: SurgeSettings = SurgeSettings()) -> None:
        self.settings = settings
        self._bucket_seconds = settings.bucket.total_seconds()
        self._rates_seconds = settings.rates_bucket.total_seconds()
        self._rate_buckets = max(1, round(settings.rates_window / settings.rates_bucket))
        self._learning = settings.client_learning.total_seconds()
        self._length = settings.buckets
        self._tracks: OrderedDict[tuple[Dimension, str], _Track] = OrderedDict()
        self._outbound: OrderedDict[str, str] = OrderedDict()  # message/envelope id -> tenant
        self._clients: OrderedDict[str, _Clients] = OrderedDict()
        self._rates: OrderedDict[str, SlidingCounts] = OrderedDict()

    # -- events --

    def accepted(self, event: MessageAccepted) -> None:
        """Count a message accepted from a tenant (cheap: called on the acceptance path)."""
        stamp = event.at.timestamp()
        bucket = int(stamp // self._bucket_seconds)
        settings = self.settings
        # Hops, not repeated Message-IDs: MTAs split one message into several transactions.
        loop = event.hops >= settings.loop_hops
        for ident in (event.message_id, event.envelope_id):
            if ident:
                self._remember(ident, event.tenant)
        new_client = self._new_client(event, stamp)
        client = event.client_ip or event.connector
        bounce = event.kind in BOUNCE_KINDS
        rcpts = len(event.recipients) or 1
        harvest_senders = event.recipients if bounce else (event.sender,)
        keys = [
            (Dimension.TENANT, event.tenant, rcpts),
            (Dimension.SENDER_DOMAIN, event.sender_domain or domain_of(event.sender), rcpts),
        ]
        destinations: dict[str, int] = {}
        for recipient in event.recipients:
            domain = domain_of(recipient)
            destinations[domain] = destinations.get(domain, 0) + 1
        keys.extend((Dimension.DESTINATION, d, n) for d, n in destinations.items())
        length = self._length
        for dimension, value, amount in keys:
            if not value:
                continue
            track = self._track(dimension, value, bucket)
            track.window.add(bucket, _RCPTS, amount)
            evidence = track.evidence_at(bucket, length)
            evidence.volume(
                amount, event.sender, client, new_client, loop, event.spam_score,
                settings.spam_threshold,
            )  # fmt: skip
            if bounce:
                track.window.add(bucket, _DSNS, amount)
                evidence.bounce(amount, event.failed, harvest_senders, returned=False)

    def delivered(self, event: DeliveryOutcome) -> None:
        """Count one recipient's remote reply."""
        bucket = int(event.at.timestamp() // self._bucket_seconds)
        length = self._length
        failed = event.hard and event.reason != DELIVERED
        refused = event.reason in REFUSALS
        lost = (FailedAddress(event.recipient, event.reason, True, event.diagnostic),)
        if event.final:
            self._rate(event.tenant, event.at, _SENT, 1)
            if failed:
                self._rate(event.tenant, event.at, _HARD, 1)
        if event.source_ip:
            track = self._track(Dimension.SOURCE_IP, event.source_ip, bucket)
            evidence = track.evidence_at(bucket, length)
            if event.final:
                track.window.add(bucket, _RCPTS, 1)
                evidence.volume(1, event.sender, "", False, False, None, 0.0)
            if refused:
                evidence.refusals += 1
            if failed:
                track.window.add(bucket, _DSNS, 1)
                evidence.bounce(1, lost, (event.sender,), returned=False)
        if not (failed or refused):
            return  # a delivery: its recipient was counted at acceptance, nothing more to learn
        for dimension, value in (
            (Dimension.TENANT, event.tenant),
            (Dimension.SENDER_DOMAIN, event.sender_domain or domain_of(event.sender)),
            (Dimension.DESTINATION, domain_of(event.recipient)),
        ):
            if not value:
                continue
            track = self._track(dimension, value, bucket)
            evidence = track.evidence_at(bucket, length)
            if refused:
                evidence.refusals += 1
            if failed:
                track.window.add(bucket, _DSNS, 1)
                evidence.bounce(1, lost, (event.sender,), returned=False)

    def returned(self, event: BounceReturned) -> None:
        """Count a bounce (or, for kind ``arf``, a complaint) that came back to us."""
        owner = ""
        for ident in (*event.message_ids, event.envelope_id):
            if ident and ident in self._outbound:
                owner = self._outbound[ident]
                break
        tenant = owner or event.tenant
        if event.kind == COMPLAINT_KIND:
            if tenant:
                self._rate(tenant, event.at, _COMPLAINTS, 1)
            return
        if event.kind not in BOUNCE_KINDS:
            return
        ours = bool(owner) or event.batv in (BatvVerdict.VALID, BatvVerdict.EXPIRED)
        failed = event.failed
        if not failed:
            verp = verp_decode(event.bounced_address)
            failed = (FailedAddress(verp[1]),) if verp else (FailedAddress(""),)
        if ours and tenant:
            hard = sum(1 for f in failed if f.hard)
            if hard:
                self._rate(tenant, event.at, _HARD, hard)
        bucket = int(event.at.timestamp() // self._bucket_seconds)
        sender = batv_strip(event.bounced_address)
        keys = [(Dimension.TENANT, tenant), (Dimension.SENDER_DOMAIN, domain_of(sender))]
        if ours:  # mail we never sent says nothing about where we send
            keys.extend((Dimension.DESTINATION, d) for d in {domain_of(f.address) for f in failed})
        length = self._length
        for dimension, value in keys:
            if not value:
                continue
            amount = (
                len(failed)
                if dimension is not Dimension.DESTINATION
                else sum(1 for f in failed if domain_of(f.address) == value)
            )
            track = self._track(dimension, value, bucket)
            if not ours:
                track.window.add(bucket, _RCPTS, amount)
            track.window.add(bucket, _DSNS, amount)
            track.evidence_at(bucket, length).bounce(
                amount, failed, (sender,), returned=True, ours=ours, batv=event.batv
            )

    # -- evaluation --

    def evaluate(self, now: datetime) -> tuple[SurgeChange, ...]:
        """Roll every window to ``now``, feed the detectors, open and close surges."""
        bucket = int(now.timestamp() // self._bucket_seconds)
        settings = self.settings
        size = settings.buckets
        changes: list[SurgeChange] = []
        for (dimension, value), track in self._tracks.items():
            window = track.window
            if track.surge is None and not any(window.sums):
                continue  # nothing to observe, nothing that could open: idle keys cost nothing
            window.advance(bucket)
            for closed in range(max(track.evaluated + 1, bucket - size + 1), bucket):
                rcpts, dsns = window.bucket(closed)
                if rcpts or dsns:
                    track.detector.observe(min(dsns, rcpts) / rcpts if rcpts else 1.0)
            track.evaluated = max(track.evaluated, bucket - 1)
            rcpts, dsns = window.sums
            messages = max(rcpts, dsns)
            ratio = dsns / messages if messages else 0.0
            if track.surge is None:
                if messages < settings.min_messages or dsns < settings.min_dsns:
                    continue
                lower = wilson_bounds(dsns, messages, settings.confidence_z)[0]
                if lower < settings.ratio or not track.detector.out_of_control:
                    continue
                cause, evidence = attribute(summarise(track.evidence, track.previous), settings)
                track.surge = Surge(
                    dimension, value, now, cause, evidence, messages, dsns, ratio, lower,
                    track.detector.mean, ratio,
                )  # fmt: skip
                track.calm = 0
                changes.append(SurgeChange(track.surge, now, resolved=False))
                continue
            surge = track.surge
            lower = wilson_bounds(dsns, messages, settings.confidence_z)[0]
            track.surge = surge = Surge(
                dimension, value, surge.opened_at, surge.cause, surge.evidence, messages, dsns,
                ratio, lower, track.detector.mean, max(surge.peak_ratio, ratio), surge.within,
            )  # fmt: skip
            # Both limits sit below the opening ones, so a surge hovering there does not flap.
            factor = settings.clear_factor
            subsided = messages < settings.min_messages * factor or ratio < settings.ratio * factor
            # A level the detector has learnt is no longer a surge, even if it stays high.
            learnt = not track.detector.out_of_control
            track.calm = track.calm + 1 if subsided or learnt else 0
            if track.calm >= settings.clear_after:
                track.surge = None
                track.calm = 0
                changes.append(SurgeChange(surge, now, resolved=True))
        return self._folded(changes)

    def _folded(self, changes: list[SurgeChange]) -> tuple[SurgeChange, ...]:
        """Fold new destination surges into an open tenant/sender-domain surge of the same cause.

        A spam run to 40 domains is one incident, not 41 alerts; the folded
        surges stay visible in the report with ``within`` naming the parent.
        """
        if not any(c.surge.dimension is Dimension.DESTINATION and not c.resolved for c in changes):
            return tuple(changes)
        parents: dict[Cause, str] = {}
        for dimension in (Dimension.TENANT, Dimension.SENDER_DOMAIN):  # tenants name it best
            for track in self._tracks.values():
                open_ = track.surge
                if open_ and open_.dimension is dimension and open_.cause is not Cause.UNKNOWN:
                    parents.setdefault(open_.cause, f"{dimension} {open_.key}")
        result = []
        for change in changes:
            surge = change.surge
            parent = parents.get(surge.cause)
            if (
                not change.resolved
                and surge.dimension is Dimension.DESTINATION
                and parent is not None
            ):
                surge = dataclasses.replace(surge, within=parent)
                self._tracks[(surge.dimension, surge.key)].surge = surge
                result.append(SurgeChange(surge, change.at, change.resolved))
            else:
                result.append(change)
        return tuple(result)

    def open_surges(self) -> tuple[Surge, ...]:
        return tuple(t.surge for t in self._tracks.values() if t.surge is not None)

    def rates(self, now: datetime, thresholds: RateThresholds | None = None) -> tuple[RateRow, ...]:
        """Hard-bounce and complaint rates per tenant over ``rates_window`` up to ``now``."""
        bucket = int(now.timestamp() // self._rates_seconds)
        counts = []
        for tenant, window in self._rates.items():
            window.advance(bucket)
            sent, hard, complaints = window.sums
            counts.append((tenant, sent, hard, complaints))
        return rate_rows(counts, thresholds or RateThresholds())

    @property
    def tracked_keys(self) -> int:
        return len(self._tracks)

    @property
    def indexed_ids(self) -> int:
        return len(self._outbound)

    # -- bounded state --

    def _track(self, dimension: Dimension, value: str, bucket: int) -> _Track:
        key = (dimension, value)
        tracks = self._tracks
        track = tracks.get(key)
        if track is not None:
            tracks.move_to_end(key)
            return track
        track = tracks[key] = _Track(self.settings, bucket)
        if len(tracks) > self.settings.max_keys:
            self._evict()
        return track

    def _evict(self) -> None:
        """Drop the least recently used key without an open surge (its resolution must follow)."""
        for _ in range(len(self._tracks)):
            key, oldest = self._tracks.popitem(last=False)
            if oldest.surge is None:
                return
            self._tracks[key] = oldest

    def _remember(self, ident: str, tenant: str) -> None:
        outbound = self._outbound
        if ident in outbound:
            outbound.move_to_end(ident)
            return
        outbound[ident] = tenant
        if len(outbound) > self.settings.outbound_index:
            outbound.popitem(last=False)

    def _new_client(self, event: MessageAccepted, stamp: float) -> bool:
        clients = self._clients.get(event.tenant)
        if clients is None:
            clients = self._clients[event.tenant] = _Clients(stamp)
            if len(self._clients) > self.settings.max_keys:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(event.tenant)
        new = False
        for client in (f"ip:{event.client_ip}", f"connector:{event.connector}"):
            if client[-1] != ":":
                new |= clients.is_new(client, stamp, self._learning, self._CLIENTS_PER_TENANT)
        return new

    def _rate(self, tenant: str, at: datetime, index: int, amount: int) -> None:
        bucket = int(at.timestamp() // self._rates_seconds)
        window = self._rates.get(tenant)
        if window is None:
            window = self._rates[tenant] = SlidingCounts(self._rate_buckets, 3, bucket)
            if len(self._rates) > self.settings.max_keys:
                self._rates.popitem(last=False)
        else:
            self._rates.move_to_end(tenant)
        window.add(bucket, index, amount)
