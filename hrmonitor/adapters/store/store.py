"""The one object services talk to: every method is a transaction, typed in and out.

Synchronous on purpose (SQLAlchemy's sync engine); async services call it through
``asyncio.to_thread``. Several daemons may share one database: every decision that
two nodes could make at once (a state transition, opening a listing, claiming an
alert, lifting a suspension) is a compare-and-set settled by the database.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hrmonitor.adapters.store import (
    alerts,
    audit,
    listings,
    migrate,
    pools,
    suspensions,
    volume,
)
from hrmonitor.adapters.store.engine import create_store_engine
from hrmonitor.adapters.store.records import (
    AlertRecord,
    AnswerRecord,
    CleanRun,
    IpRecord,
    ListingChanges,
    ListingRecord,
    PoolHistoryRecord,
    Suspension,
    VolumeCount,
    ZoneHealthRecord,
)
from hrmonitor.adapters.store.sweep.record import record_sweep
from hrmonitor.core.alert import Alert, Claim
from hrmonitor.core.model import (
    Answer,
    AuditEvent,
    IPState,
    Pool,
    Severity,
    ZoneHealth,
    canonical_ip,
)
from hrmonitor.errors import OperatorError, StoreError

T = TypeVar("T")


def open_store(url: str) -> Store:
    """A store on ``sqlite:///path`` or ``postgresql+psycopg://...`` (not yet upgraded)."""
    return Store(create_store_engine(url))


def _canonical_counts(counts: Sequence[VolumeCount]) -> list[VolumeCount]:
    return [c if c.ip == canonical_ip(c.ip) else replace(c, ip=_ip(c.ip)) for c in counts]


def _ip(text: str) -> str:
    try:
        return canonical_ip(text)
    except ValueError as exc:
        raise OperatorError(f"{text!r} is not an IP address") from exc


class Store:
    def __init__(self, engine: Engine, node: str | None = None) -> None:
        self._engine = engine
        # The daemon's node name, written into every audit event this store adds;
        # None for commands (``hrmonitor ip retire``), whose events name no node.
        self.node = node

    @property
    def engine(self) -> Engine:
        """The engine, shared with the queue tables (``adapters.store.queue``)."""
        return self._engine

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """One transaction; committed on success, rolled back on any exception."""
        try:
            with Session(self._engine, expire_on_commit=False) as session, session.begin():
                session.info["node"] = self.node
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {exc}") from exc

    def _run(self, work: Callable[[Session], T]) -> T:
        with self._session() as session:
            return work(session)

    # --- lifecycle -------------------------------------------------------------------

    def upgrade(self) -> bool:
        """Apply the migrations up to every head; False (and cheap) if already there."""
        try:
            return migrate.upgrade(self._engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"database migration failed: {exc}") from exc

    def revision(self) -> str | None:
        """The database's migration revision (heads joined by ","); None before any migration."""
        revisions = migrate.stored_revisions(self._engine)
        return ",".join(sorted(revisions)) if revisions else None

    def is_current(self) -> bool:
        """True if the database schema is at the shipped head revisions."""
        try:
            with self._engine.connect() as connection:
                return migrate.current_revisions(connection) == migrate.head_revisions()
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {exc}") from exc

    def close(self) -> None:
        self._engine.dispose()

    # --- pools and IPs ---------------------------------------------------------------

    def sync_pools(self, configured: Sequence[Pool], now: datetime) -> list[str]:
        """Register configured pools and IPs; the problems (nothing applied) or []."""
        return self._run(lambda s: pools.sync_pools(s, configured, now))

    def ip_records(self, pool: str | None = None) -> list[IpRecord]:
        return self._run(lambda s: pools.ip_records(s, pool))

    def ip_record(self, ip: str) -> IpRecord | None:
        return self._run(lambda s: pools.ip_record(s, _ip(ip)))

    def pool_history(self, ip: str) -> list[PoolHistoryRecord]:
        return self._run(lambda s: pools.pool_history(s, _ip(ip)))

    def transition_ip(
        self,
        ip: str,
        expected: IPState,
        to: IPState,
        event: AuditEvent,
        *,
        warmup_stage: int | None = None,
    ) -> bool:
        """Move ``ip`` from ``expected`` to ``to`` and store ``event``, or change nothing.

        False if the IP is unknown or no longer in ``expected`` (another node or an
        operator moved it first). ``state_since`` becomes ``event.at``. The warm-up
        stage becomes ``warmup_stage``; entering ``warming`` without one starts at 0.
        """
        canonical = _ip(ip)
        if _ip(event.ip) != canonical:
            raise OperatorError(f"audit event about {event.ip} given for a transition of {ip}")
        return self._run(
            lambda s: pools.transition_ip(s, canonical, expected, to, event, warmup_stage)
        )

    def set_warmup_stage(
        self, ip: str, expected: int | None, to: int | None, event: AuditEvent
    ) -> bool:
        """Compare-and-set the warm-up stage with its audit event; False if not ``expected``."""
        return self._run(lambda s: pools.set_warmup_stage(s, _ip(ip), expected, to, event))

    def record_volumes(self, node: str, counts: Sequence[VolumeCount]) -> None:
        """Add a batch of per-IP counts to ``node``'s rows, in one transaction.

        The relay counts in memory and calls this once per batch, never per message.
        """
        self._run(lambda s: volume.add_volumes(s, node, _canonical_counts(counts)))

    def reserve_volume(
        self,
        node: str,
        ip: str,
        day: date,
        want: int,
        cap: int,
        counts: Sequence[VolumeCount] = (),
    ) -> int:
        """Take up to ``want`` of warming ``ip``'s ``cap`` for ``day`` for ``node``.

        How many were granted (0 when the nodes together reached the cap). ``counts``
        (the caller's unwritten batch) go in first, in the same transaction, so the
        reservation sees every send this node made.
        """
        canonical = _ip(ip)

        def work(s: Session) -> int:
            volume.add_volumes(s, node, _canonical_counts(counts))
            return volume.reserve(s, node, canonical, day, want, cap)

        return self._run(work)

    def prune_volume(self, before: date) -> int:
        """Forget per-IP counts of days before ``before`` (the warm-up reads the last day)."""
        return self._run(lambda s: volume.prune_volume(s, before))

    def record_sent(self, ip: str, now: datetime, count: int = 1) -> int:
        """Count ``count`` messages sent from ``ip`` on ``now``'s UTC day; the day's total.

        One transaction per call, for tools and tests; the relay batches
        (:meth:`record_volumes`).
        """
        day = now.astimezone(UTC).date()
        canonical = _ip(ip)

        def work(s: Session) -> int:
            volume.add_volumes(s, "", [VolumeCount(canonical, day, sent=count, last_sent_at=now)])
            found = volume.day_volumes(s, [canonical]).get(canonical)
            return found[1] if found and found[0] == day else 0

        return self._run(work)

    def record_delivered(self, ip: str, now: datetime, count: int = 1) -> None:
        """Count ``count`` messages delivered from ``ip`` on ``now``'s UTC day (warm-up rate)."""
        day = now.astimezone(UTC).date()
        self.record_volumes("", [VolumeCount(_ip(ip), day, delivered=count)])

    # --- DNSBL ----------------------------------------------------------------------

    def record_sweep(
        self,
        answers: Sequence[Answer],
        health: Mapping[str, ZoneHealth],
        now: datetime,
        *,
        details: Mapping[str, str] | None = None,
        zone_health: bool = True,
    ) -> ListingChanges:
        """Store one sweep's answers and zone health; what changed, for alerts.

        ``health`` must name every zone answered for: a zone missing from it counts
        as unhealthy, so its answers change nothing. ``details`` explains a zone's
        health (shown in reports). ``zone_health=False`` judges the answers by
        ``health`` but leaves the stored zone health as it is (``hrmonitor check``,
        whose resolver may not be the daemon's).
        """
        return self._run(
            lambda s: record_sweep(s, answers, health, now, details or {}, zone_health=zone_health)
        )

    def current_listings(self, ip: str | None = None) -> list[ListingRecord]:
        return self._run(lambda s: listings.current_listings(s, None if ip is None else _ip(ip)))

    def listed_keys(self) -> set[tuple[str, str]]:
        """The (ip, list) pairs whose latest answer is Listed (a sweep confirms the others)."""
        return self._run(listings.listed_keys)

    def latest_answers(self, ip: str | None = None) -> list[AnswerRecord]:
        return self._run(lambda s: listings.latest_answers(s, None if ip is None else _ip(ip)))

    def listing_history(self, ip: str) -> list[ListingRecord]:
        """Every listing interval of ``ip``, oldest first."""
        return self._run(lambda s: listings.listing_history(s, _ip(ip)))

    def zone_health(self) -> dict[str, ZoneHealthRecord]:
        return self._run(listings.zone_health)

    def clean_run(
        self, ip: str, zones: Collection[str], listed_on: Collection[str] | None = None
    ) -> CleanRun | None:
        """The run of trustworthy clean answers ``ip`` is in on every zone in ``zones``
        with no open listing (on ``listed_on``'s zones only, when given); None if there
        is none, which never counts as clean."""
        return self._run(lambda s: listings.clean_run(s, _ip(ip), zones, listed_on))

    def clean_since(self, ip: str, zones: Collection[str]) -> datetime | None:
        """Since when ``ip`` has been clean on every zone in ``zones`` (see :meth:`clean_run`)."""
        run = self.clean_run(ip, zones)
        return None if run is None else run.since

    # --- suspensions and audit ------------------------------------------------------

    def add_suspension(
        self,
        ip: str,
        scope: str,
        reason: str,
        evidence: Mapping[str, object],
        since: datetime,
        until: datetime,
        actor: str,
    ) -> Suspension:
        """Suspend ``ip`` for ``scope`` (a provider, or ``*``), or extend its open suspension."""
        return self._run(
            lambda s: suspensions.add_suspension(
                s, _ip(ip), scope, reason, evidence, since, until, actor
            )
        )

    def active_suspensions(self, now: datetime, ip: str | None = None) -> list[Suspension]:
        return self._run(
            lambda s: suspensions.active_suspensions(s, now, None if ip is None else _ip(ip))
        )

    def lift_expired(self, now: datetime, actor: str = "suspension.expiry") -> list[Suspension]:
        """Lift (and audit) every suspension whose time is up; those this call lifted."""
        return self._run(lambda s: suspensions.lift_expired(s, now, actor))

    def lift_suspension(self, ip: str, scope: str, now: datetime, actor: str, reason: str) -> bool:
        """Lift an open suspension early, audited; False if there was none."""
        return self._run(lambda s: suspensions.lift(s, _ip(ip), scope, now, actor, reason))

    def record_event(self, event: AuditEvent) -> None:
        """Store an audit event that goes with no state change here (e.g. an alert-only policy)."""
        self._run(lambda s: audit.add_event(s, event))

    def audit_trail(self, ip: str) -> list[AuditEvent]:
        """The IP's audit events, oldest first."""
        return self._run(lambda s: audit.trail(s, _ip(ip)))

    def last_audit_id(self) -> int:
        """The highest audit event id so far (0 for none)."""
        return self._run(audit.last_event_id)

    def audit_events_after(
        self, after_id: int, limit: int = 500
    ) -> list[tuple[int, str | None, AuditEvent]]:
        """Audit events with an id above ``after_id``, oldest first: (id, node, event)."""
        return self._run(lambda s: audit.events_after(s, after_id, limit))

    # --- alerts ---------------------------------------------------------------------

    def claim_alert(
        self,
        key: str,
        kind: str,
        severity: Severity,
        payload: Mapping[str, object],
        now: datetime,
        repeat_after: timedelta,
    ) -> bool:
        """True if this alert should be sent now (and the send is recorded atomically)."""
        return self._run(
            lambda s: alerts.claim_alert(s, key, kind, severity, payload, now, repeat_after)
        )

    def resolve_alert(self, key: str, now: datetime) -> bool:
        """True if the alert was open, so its resolution should be sent."""
        return self._run(lambda s: alerts.resolve_alert(s, key, now))

    def claim_alerts(self, batch: Sequence[Alert], repeat_after: timedelta) -> list[bool]:
        """Per alert, in order, whether to send it: ``claim_alert``/``resolve_alert`` in one go.

        One transaction for the whole batch: all its claims are recorded, or none.
        """
        return self._run(lambda s: alerts.claim_alerts(s, batch, repeat_after))

    def claim_alerts_detailed(self, batch: Sequence[Alert], repeat_after: timedelta) -> list[Claim]:
        """``claim_alerts`` saying new, re-fire, repeat or resolved (with the alert's kind)."""
        return self._run(lambda s: alerts.claim_alerts_detailed(s, batch, repeat_after))

    def recent_alerts(self, limit: int = 20) -> list[AlertRecord]:
        return self._run(lambda s: alerts.recent_alerts(s, limit))

    def open_alerts(self) -> list[AlertRecord]:
        return self._run(alerts.open_alerts)
