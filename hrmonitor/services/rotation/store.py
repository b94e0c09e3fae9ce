"""The store as rotation sees it: IP states and audit, listings, suspensions, volumes."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date, datetime
from typing import Protocol

from hrmonitor.adapters.store.records import (
    CleanRun,
    IpRecord,
    ListingRecord,
    VolumeCount,
    ZoneHealthRecord,
)
from hrmonitor.adapters.store.records import Suspension as StoredSuspension
from hrmonitor.core.model import AuditEvent, IPState


class RotationStore(Protocol):
    """What the controller needs of the store (``adapters.store.Store`` satisfies it)."""

    def ip_records(self, pool: str | None = None) -> list[IpRecord]: ...

    def current_listings(self, ip: str | None = None) -> list[ListingRecord]: ...

    def clean_run(
        self, ip: str, zones: Collection[str], listed_on: Collection[str] | None = None
    ) -> CleanRun | None: ...

    def active_suspensions(
        self, now: datetime, ip: str | None = None
    ) -> list[StoredSuspension]: ...

    def lift_expired(self, now: datetime, actor: str = ...) -> list[StoredSuspension]: ...

    def lift_suspension(
        self, ip: str, scope: str, now: datetime, actor: str, reason: str
    ) -> bool: ...

    def zone_health(self) -> Mapping[str, ZoneHealthRecord]: ...

    def record_event(self, event: AuditEvent) -> None: ...

    def transition_ip(
        self,
        ip: str,
        expected: IPState,
        to: IPState,
        event: AuditEvent,
        *,
        warmup_stage: int | None = None,
    ) -> bool: ...

    def set_warmup_stage(
        self, ip: str, expected: int | None, to: int | None, event: AuditEvent
    ) -> bool: ...

    def add_suspension(
        self,
        ip: str,
        scope: str,
        reason: str,
        evidence: dict[str, object],
        since: datetime,
        until: datetime,
        actor: str,
    ) -> StoredSuspension: ...

    def record_volumes(self, node: str, counts: list[VolumeCount]) -> None: ...

    def reserve_volume(
        self, node: str, ip: str, day: date, want: int, cap: int, counts: list[VolumeCount]
    ) -> int: ...

    def prune_volume(self, before: date) -> int: ...
