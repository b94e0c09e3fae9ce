"""The store: SQLAlchemy 2 tables, repositories and Alembic migrations (SQLite or PostgreSQL).

Use :func:`open_store` and the :class:`Store` it returns; the modules behind it
(pools, volume, listings, suspensions, alerts, audit) each hold one field's queries.
"""

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
    ZoneHealthChange,
    ZoneHealthRecord,
)
from hrmonitor.adapters.store.store import Store, open_store

__all__ = [
    "AlertRecord",
    "AnswerRecord",
    "CleanRun",
    "IpRecord",
    "ListingChanges",
    "ListingRecord",
    "PoolHistoryRecord",
    "Store",
    "Suspension",
    "VolumeCount",
    "ZoneHealthChange",
    "ZoneHealthRecord",
    "open_store",
]
