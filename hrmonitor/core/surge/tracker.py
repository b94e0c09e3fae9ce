"""The surge tracker: counts events per key in bounded state; evaluating it opens and closes surges.

What counts where (the unit is the recipient):

- :class:`MessageAccepted` (mail a tenant hands us): recipients on tenant,
  sender domain and each destination domain; a DSN passing outbound counts
  as a bounce too.
- :class:`DeliveryOutcome`: final outcomes on the source IP (each a
  recipient, a hard failure a bounce; DSNs delivered count as volume only);
  a hard failure is a bounce on tenant, sender and destination domain.
- :class:`BounceReturned`: a bounce for each failed recipient; if it matches
  no mail we sent, its recipients join the denominator as well.

The tests that open and close a surge are in ``surge_detection``. Memory is
bounded: ``max_keys`` tracked keys with least-recently-used eviction (never a
key with an open surge), an outbound index of ``outbound_index`` ids, capped
evidence tables.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

from hrmonitor.core.surge.anomaly import SlidingCounts
from hrmonitor.core.surge.changes import Dimension, Surge, SurgeChange
from hrmonitor.core.surge.detection import DSNS, RCPTS, Track, evaluate, fold
from hrmonitor.core.surge.events import (
    BOUNCE_KINDS,
    COMPLAINT_KIND,
    DELIVERED,
    BounceReturned,
    DeliveryOutcome,
    FailedAddress,
    MessageAccepted,
    domain_of,
)
from hrmonitor.core.surge.evidence import REFUSALS
from hrmonitor.core.surge.rates import RateRow, RateThresholds, rate_rows
from hrmonitor.core.surge.settings import SurgeSettings
from hrmonitor.core.surge.verp import BatvVerdict, batv_strip, verp_decode

_SENT, _HARD, _COMPLAINTS = 0, 1, 2
# The default settings: frozen, so one shared instance serves every tracker.
_DEFAULTS = SurgeSettings()


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

    def __init__(self, settings: SurgeSettings = _DEFAULTS) -> None:
        self.settings = settings
        self._bucket_seconds = settings.bucket.total_seconds()
        self._rates_seconds = settings.rates_bucket.total_seconds()
        self._rate_buckets = max(1, round(settings.rates_window / settings.rates_bucket))
        self._learning = settings.client_learning.total_seconds()
        self._length = settings.buckets
        self._tracks: OrderedDict[tuple[Dimension, str], Track] = OrderedDict()
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
            track.window.add(bucket, RCPTS, amount)
            evidence = track.evidence_at(bucket, length)
            evidence.volume(
                amount, event.sender, client, new_client, loop, event.spam_score,
                settings.spam_threshold,
            )  # fmt: skip
            if bounce:
                track.window.add(bucket, DSNS, amount)
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
                track.window.add(bucket, RCPTS, 1)
                evidence.volume(1, event.sender, "", False, False, None, 0.0)
            if refused:
                evidence.refusals += 1
            if failed:
                track.window.add(bucket, DSNS, 1)
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
                track.window.add(bucket, DSNS, 1)
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
                track.window.add(bucket, RCPTS, amount)
            track.window.add(bucket, DSNS, amount)
            track.evidence_at(bucket, length).bounce(
                amount, failed, (sender,), returned=True, ours=ours, batv=event.batv
            )

    # -- evaluation --

    def evaluate(self, now: datetime) -> tuple[SurgeChange, ...]:
        """Roll every window to ``now``, feed the detectors, open and close surges."""
        bucket = int(now.timestamp() // self._bucket_seconds)
        return fold(self._tracks, evaluate(self._tracks, bucket, now, self.settings))

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

    def _track(self, dimension: Dimension, value: str, bucket: int) -> Track:
        key = (dimension, value)
        tracks = self._tracks
        track = tracks.get(key)
        if track is not None:
            tracks.move_to_end(key)
            return track
        track = tracks[key] = Track(self.settings, bucket)
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
